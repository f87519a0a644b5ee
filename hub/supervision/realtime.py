"""The procedure and anomaly rules in real time: on every new event, in the unit of work that records it.

The write path (hub/cases/writes.py) notes each case it appends to in ``session.info`` — the hub's own
submissions and officers' actions, partner records and events over REST, AMQP and the legacy SOAP exchange
alike. Just before the unit of work commits (``Session.before_commit``: the final flush still follows, so
the alerts and their outbox messages commit with the events, or not at all), the rules run over every
touched case: ONE query reads the events of all of them, each case is replayed and checked
(hub/supervision/rules), and ``raise_new`` stores what they find (once per case, rule and level).

Kept cheap: a case whose only event is its first (a submission) is not evaluated — no rule can find
anything in a lone submission, so a submission costs nothing more; lookups beyond the case's own events
(the item's history, an officer's other decisions, the applicant's withdrawals) are asked by the few rules
that need them, and only for an event new in this unit of work.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, event, or_, select, text
from sqlalchemy import inspect as orm_inspect
from sqlalchemy.orm import Session

from hub.calendar.service import load_calendar
from hub.cases.models import Case, CaseEvent
from hub.cases.writes import NEW_EVENTS, TOUCHED, StepRow
from hub.clock import business_date
from hub.payments.models import CaseFee
from hub.supervision.findings import Finding
from hub.supervision.rules import RULES, CaseFacts, FeeFacts, Step, Withdrawal
from hub.supervision.rules.base import WITHDRAW, Rule
from hub.supervision.rules.facts import JsonText
from hub.supervision.service import raise_new
from workflow.definition import WorkflowDefinition
from workflow.registry import UnknownDefinition, get_definition

log = logging.getLogger(__name__)
EVENTS = CaseEvent.__table__
# A Step is a plain copy of its event row: the columns read are its fields (and the case the row belongs to).
_STEP_COLUMNS = ("case_id", *(f.name for f in fields(Step)))


def install() -> None:
    """Run the rules before every commit of every Session (hub/db.py's load_all_models calls this)."""
    if not event.contains(Session, "before_commit", _before_commit):
        event.listen(Session, "before_commit", _before_commit)
        event.listen(Session, "after_rollback", _forget)


def definition_for(case: Case) -> WorkflowDefinition:
    """The definition a case is checked against: its own; for a partner platform's case the province's model
    of its item (a joint item's parallel model cannot replay a platform's single-flow report: then the
    standard flow the exchange checked it against, ``case.workflow_id``)."""
    if case.origin == "partner" and case.item is not None:
        try:
            model = get_definition(case.item.workflow_id)
        except UnknownDefinition:
            model = None
        if model is not None and model.parallel is None:
            return model
    return get_definition(case.workflow_id)


def evaluate_touched(session: Session, touched: dict[Case, int], *, rules: Sequence[Rule] = RULES,
                     new_events: dict[Case, list[CaseEvent]] | None = None) -> int:
    """Run ``rules`` over the touched cases (case → first seq new in this unit of work) and raise what they
    find; returns the number of new alerts. ``new_events``: the events made in this unit of work, by case
    (hub/cases/writes.py ``NEW_EVENTS``) — a case opened in it is read from them, not from the database."""
    cases = {case.id: (case, first) for case, first in touched.items() if _evaluable(case)}
    if not cases:
        return 0
    steps = _steps_in_memory(cases, new_events or {})
    missing = [case_id for case_id in cases if case_id not in steps]
    if missing:
        steps.update(_steps_of(session, missing))
    calendar = load_calendar(session)
    # Pass 1 answers every lookup with "nothing" and notes what was asked; pass 2 re-runs only the cases that
    # asked, with the answers read in one query per kind of lookup for the whole unit of work.
    # Pass 2 runs again only the rules that asked: the others' findings cannot change (a rule is a function of
    # the facts and its answers), so pass 1's stand.
    asking = _Collecting()
    found: dict[int, list[Finding]] = {}
    pending: dict[int, tuple[CaseFacts, list[list[Finding] | None]]] = {}
    for case_id, (case, first) in cases.items():
        now = case.updated_at
        facts = CaseFacts(case=case, steps=steps.get(case_id, ()), definition=definition_for(case),
                          calendar=calendar, today=business_date(now), now=now, new_from=first, lookups=asking)
        by_rule = _evaluate_each(facts, rules, asking)
        if by_rule is not None and None in by_rule:
            pending[case_id] = (facts, by_rule)
        elif by_rule:
            findings = [finding for rule_findings in by_rule if rule_findings for finding in rule_findings]
            if findings:
                found[case_id] = findings
    if pending:
        lookups = SqlLookups(session)
        lookups.load(asking.asked)
        for case_id, (facts, by_rule) in pending.items():
            findings = _evaluate_asking(replace(facts, lookups=lookups), rules, by_rule)
            if findings:
                found[case_id] = findings
    if not found:
        return 0
    # Raised through the batch writer: one INSERT (and one for their outbox rows) per moment of the unit of work
    # (a batch of partner records shares its moment), not per case; each alert keeps its case's time. A case
    # evaluated again finds again what it found before: the INSERT's ON CONFLICT DO NOTHING drops those (a query
    # for the case's alerts first cost a statement per unit of work to spare a few index probes).
    by_moment: dict[datetime, list[tuple[Case, list[Finding]]]] = {}
    for case_id, findings in found.items():
        case = cases[case_id][0]
        by_moment.setdefault(case.updated_at, []).append((case, findings))
    return sum(len(raise_new(session, found=batch, now=now)) for now, batch in by_moment.items())


def _evaluate_each(facts: CaseFacts, rules: Sequence[Rule], asking: _Collecting) -> list[list[Finding] | None] | None:
    """Pass 1: each rule's findings, None for a rule that asked a lookup (its findings wait for the answers);
    None altogether when a rule failed (logged: the case then raises nothing)."""
    by_rule: list[list[Finding] | None] = []
    try:
        for rule in rules:
            asked = len(asking.asked)
            findings = list(rule.evaluate(facts))
            by_rule.append(findings if len(asking.asked) == asked else None)
    except Exception:  # a rule's bug must not refuse the officer's action or the partner's record
        log.exception("supervision rules failed on case %s", facts.case.tracking_no)
        return None
    return by_rule


def _evaluate_asking(facts: CaseFacts, rules: Sequence[Rule], by_rule: list[list[Finding] | None]) -> list[Finding]:
    """Pass 2: the rules that asked, with the answers; every finding in the rules' order."""
    try:
        return [finding for rule, known in zip(rules, by_rule, strict=True)
                for finding in (known if known is not None else rule.evaluate(facts))]
    except Exception:
        log.exception("supervision rules failed on case %s", facts.case.tracking_no)
        return []


def _evaluable(case: Case) -> bool:
    """Persistent (a savepoint rolled back leaves a new case transient) and beyond its first event."""
    state = orm_inspect(case)
    return state.persistent and (case.event_count or 0) > 1


def _steps_in_memory(cases: dict[int, tuple[Case, int]], new_events: dict[Case, list[CaseEvent]]
                     ) -> dict[int, list[Step]]:
    """The steps of the cases opened in this unit of work, from the events it made (flushed, so as their rows
    hold them): a case only when all its events are there and written (none lost to a rolled-back savepoint)."""
    steps: dict[int, list[Step]] = {}
    for case_id, (case, first) in cases.items():
        events = new_events.get(case)
        if first != 1 or not events:
            continue
        events = sorted(events, key=_seq)
        if [e.seq for e in events] != list(range(1, case.event_count + 1)) or not all(
                _written(e) for e in events):
            continue
        steps[case_id] = [_step(e) for e in events]
    return steps


def _written(event: Any) -> bool:
    """Whether the event's row is written: a ``CaseEvent`` persistent in the session, or a batch's plain step
    (hub/cases/writes.py ``StepRow``) that ``insert_added`` wrote."""
    if type(event) is StepRow:
        return event.written
    return bool(orm_inspect(event).persistent)


def _seq(event: CaseEvent) -> int:
    return event.seq



def _step(event: CaseEvent) -> Step:
    """The event's Step, its values read from the object's own dict (a flushed event holds every column; an
    attribute expired since is read through the ORM)."""
    loaded = event.__dict__
    values = [loaded[name] if name in loaded else getattr(event, name) for name in _STEP_FIELDS]
    values[_OCCURRED_AT] = values[_OCCURRED_AT].astimezone(UTC)  # as the column hands it back
    if not values[_DATA]:
        values[_DATA] = {}
    return _new_step(values)


def _steps_of(session: Session, case_ids: list[int]) -> dict[int, list[Step]]:
    """The events of every case in ``case_ids``, ordered: one query. On PostgreSQL as the driver's own rows (one
    fixed statement, the ids an array): the rules read plain values, which SQLAlchemy's typed result would only
    copy again — the instants then made UTC here, as ``UTCDateTime`` does."""
    if session.get_bind().dialect.name == "postgresql":
        rows: Any = _driver_rows(session, _STEPS_SQL, {"ids": case_ids})
    else:
        columns = [EVENTS.c[name] for name in _STEP_COLUMNS]
        rows = session.execute(select(*columns).where(EVENTS.c.case_id.in_(case_ids))
                               .order_by(EVENTS.c.case_id, EVENTS.c.seq))
    steps: dict[int, list[Step]] = {}
    for case_id, *values in rows:  # by position: the columns are the Step's fields in order (_STEP_COLUMNS)
        values[_OCCURRED_AT] = values[_OCCURRED_AT].astimezone(UTC)
        data = values[_DATA]
        values[_DATA] = {} if data is None else JsonText(data) if isinstance(data, str) else data
        steps.setdefault(case_id, []).append(_new_step(values))
    return steps


_STEP_FIELDS = _STEP_COLUMNS[1:]
_DATA = _STEP_FIELDS.index("data")  # a Step's position of ``data``
_OCCURRED_AT = _STEP_FIELDS.index("occurred_at")
# ``data`` as its text, parsed only if a rule reads it (none does today: it was a third of the read's cost).
# Each case's events by the (case_id, seq) index, one probe per case: the OFFSET keeps the LATERAL subquery from
# being flattened into a join, which the planner could hash against a scan of the whole table — as it did
# ``case_id = ANY(…)`` whenever the table had grown faster than its statistics (docs/performance-postgres-side.md).
_STEP_SELECTED = ", ".join(c if c != "data" else "data::text AS data" for c in _STEP_COLUMNS)
_STEPS_SQL = (f"SELECT {', '.join('e.' + c for c in _STEP_COLUMNS)} "
              "FROM (SELECT DISTINCT id FROM unnest(CAST(%(ids)s AS integer[])) AS ids(id)) AS k "
              f"CROSS JOIN LATERAL (SELECT {_STEP_SELECTED} "
              "FROM case_events WHERE case_id = k.id OFFSET 0) AS e ORDER BY e.case_id, e.seq")


def _new_step(values: list[Any]) -> Step:
    """``Step(*values)`` without the frozen dataclass's ``__init__``, which sets each of its 13 fields through
    ``object.__setattr__`` (a partner batch makes a few hundred Steps): the same object, its dict filled at once."""
    step = object.__new__(Step)
    step.__dict__.update(zip(_STEP_FIELDS, values, strict=True))
    return step


def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the unit of work goes on
    touched = session.info.pop(TOUCHED, None)
    new_events = session.info.pop(NEW_EVENTS, None)
    if touched:
        session.flush()
        evaluate_touched(session, touched, new_events=new_events)


def _forget(session: Session, *_: Any) -> None:
    if not session.in_nested_transaction():
        session.info.pop(TOUCHED, None)
        session.info.pop(NEW_EVENTS, None)


def _decision_key(q: dict[str, Any]) -> tuple[Any, ...]:
    """A ``decisions_between`` question as the answers' key (its arguments in a fixed order: asked thousands of
    times a batch, a generic sort of the arguments' names cost more than the answer's look-up)."""
    return ("decisions_between", q["actor_id"], q["department_id"], q["start"], q["end"], tuple(q["actions"]),
            q["submitted_since"])


def _withdrawal_key(q: dict[str, Any]) -> tuple[Any, ...]:
    return ("withdrawals_before", q["case_id"], q["applicant_id_number"], q["item_id"], q["since"], q["until"])


class _Collecting:
    """``Lookups`` that find nothing and note what was asked (pass 1 of ``evaluate_touched``)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def completed_durations(self, **arguments: Any) -> Sequence[int]:
        self.asked.append(("completed_durations", arguments))
        return ()

    def decisions_between(self, **arguments: Any) -> int:
        self.asked.append(("decisions_between", arguments))
        return 0

    def withdrawals_before(self, **arguments: Any) -> Sequence[Withdrawal]:
        self.asked.append(("withdrawals_before", arguments))
        return ()

    def case_fee(self, **arguments: Any) -> FeeFacts | None:
        self.asked.append(("case_fee", arguments))
        return None


# An item's recent completion times change slowly: read once per item and process for a few minutes.
_HISTORY_TTL_S = 600.0
_history: dict[tuple[str, int, int], tuple[float, list[tuple[int, int]]]] = {}


class SqlLookups:
    """``Lookups`` over the database (hub/supervision/rules/facts.py); ``load`` reads the answers to many
    questions at once (one query per kind), the methods answer from them or, for a question not loaded, ask
    the database themselves."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.answers: dict[tuple[Any, ...], Any] = {}
        self._database: str | None = None

    @property
    def database(self) -> str:
        """The database the session is bound to, as the item-history cache's key names it (rendered once: a
        URL's text is built anew at every ``str``)."""
        if self._database is None:
            self._database = str(self.session.get_bind().url)
        return self._database

    def load(self, asked: Sequence[tuple[str, dict[str, Any]]]) -> None:
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for kind, arguments in asked:
            by_kind.setdefault(kind, []).append(arguments)
        decisions = by_kind.get("decisions_between", [])
        if self.session.get_bind().dialect.name == "postgresql" and len({tuple(q["actions"]) for q in decisions}) <= 1:
            self._load_together(decisions, by_kind.get("withdrawals_before", []),
                                [q["case_id"] for q in by_kind.get("case_fee", [])])
            return
        if "decisions_between" in by_kind:
            self._load_decisions(by_kind["decisions_between"])
        if "withdrawals_before" in by_kind:
            self._load_withdrawals(by_kind["withdrawals_before"])
        if "case_fee" in by_kind:
            self._load_fees([q["case_id"] for q in by_kind["case_fee"]])

    def completed_durations(self, *, item_id: int, exclude_case_id: int | None, limit: int,
                            submitted_since: datetime) -> Sequence[int]:
        key = (self.database, item_id, limit)  # a process may serve more than one database
        cached = _history.get(key)
        if cached is None or time.monotonic() - cached[0] > _HISTORY_TTL_S:
            query = (select(Case.id, Case.working_days_used)
                     .where(Case.item_id == item_id, Case.submitted_at >= submitted_since,
                            Case.working_days_used.is_not(None), Case.state == "completed")
                     .order_by(Case.completed_at.desc()).limit(limit + 1))
            cached = (time.monotonic(), [(int(i), int(d)) for i, d in self.session.execute(query)])
            _history[key] = cached
        return [days for case_id, days in cached[1] if case_id != exclude_case_id][:limit]

    def decisions_between(self, *, actor_id: str, department_id: int, start: datetime, end: datetime,
                          actions: Sequence[str], submitted_since: datetime) -> int:
        arguments = dict(actor_id=actor_id, department_id=department_id, start=start, end=end, actions=actions,
                         submitted_since=submitted_since)
        key = _decision_key(arguments)
        if key not in self.answers:
            self._load_decisions([arguments])
        return int(self.answers[key])

    def withdrawals_before(self, *, case_id: int, applicant_id_number: str, item_id: int,
                           since: datetime, until: datetime) -> Sequence[Withdrawal]:
        arguments = dict(case_id=case_id, applicant_id_number=applicant_id_number, item_id=item_id, since=since,
                         until=until)
        key = _withdrawal_key(arguments)
        if key not in self.answers:
            self._load_withdrawals([arguments])
        return list(self.answers[key])

    def case_fee(self, *, case_id: int) -> FeeFacts | None:
        key = ("case_fee", (case_id,))
        if key not in self.answers:
            self._load_fees([case_id])
        answer: FeeFacts | None = self.answers[key]
        return answer

    def _load_fees(self, case_ids: list[int]) -> None:
        """The fee rows of the completed cases of the unit of work: those in the session already (a partner
        record's payment, stored in it) without a query, the others in one."""
        missing = self._fees_in_session(case_ids)
        if missing:
            # The five columns the rule reads, not CaseFee objects; on PostgreSQL one fixed statement (an array).
            if self.session.get_bind().dialect.name == "postgresql":
                rows: Sequence[Any] = _driver_rows(self.session, _FEES_SQL, {"ids": missing})
            else:
                rows = self.session.execute(select(*_FEE_COLUMNS).where(CaseFee.case_id.in_(missing))).all()
            for case_id, *values in rows:
                self.answers[("case_fee", (case_id,))] = _fee_facts(*values)

    def _fees_in_session(self, case_ids: list[int]) -> list[int]:
        """Answer the fee questions the session's own rows answer (None until a row is read); the others."""
        missing = []
        for case_id in dict.fromkeys(case_ids):
            row = self.session.identity_map.get(self.session.identity_key(CaseFee, case_id))
            if row is None:
                missing.append(case_id)
            self.answers[("case_fee", (case_id,))] = None if row is None else _fee_facts(
                row.status, row.amount_fen, row.paid_fen, row.due, row.source)
        return missing

    def _load_together(self, decisions: list[dict[str, Any]], withdrawals: list[dict[str, Any]],
                       fee_case_ids: list[int]) -> None:
        """PostgreSQL: every question of the unit of work, of every kind, in one fixed statement (the three
        look-ups as parts of a UNION ALL, each as it runs alone): one round trip per unit of work, not one per kind
        — on this machine a round trip costs the client 0.05–0.25 ms of CPU (more under load), more than
        building the answers (docs/performance-realtime.md)."""
        missing = self._fees_in_session(fee_case_ids)
        if not (decisions or withdrawals or missing):
            return
        kinds, parameters = "", {}
        if decisions:
            kinds, parameters = kinds + "d", {**parameters, **_decision_parameters(decisions, prefix="d_")}
        if withdrawals:
            kinds, parameters = kinds + "w", {**parameters, **_withdrawal_parameters(withdrawals, prefix="w_")}
        if missing:
            kinds, parameters = kinds + "f", {**parameters, "f_ids": missing}
        counts: dict[int, int] = {}
        withdrawn: list[tuple[Any, ...]] = []
        rows = _driver_rows(self.session, _together_sql(kinds), parameters)
        for kind, first, second, third, text1, text2, text3, at in rows:
            if kind == "d":
                counts[first] = second
            elif kind == "w":
                withdrawn.append((first, text1, second, text2, at.astimezone(UTC)))
            else:
                self.answers[("case_fee", (first,))] = _fee_facts(text1, second, third, text2, text3)
        self._answer_decisions(decisions, counts)
        self._answer_withdrawals(withdrawals, withdrawn)

    def _load_decisions(self, questions: list[dict[str, Any]]) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            by_actions: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for q in questions:
                by_actions.setdefault(tuple(q["actions"]), []).append(q)
            for actions, asked in by_actions.items():
                self._count_decisions(actions, asked)
            return
        # case_events has no index on actor or time: reach them through the departments' recent cases.
        actions = sorted({action for q in questions for action in q["actions"]})
        rows = self.session.execute(
            select(CaseEvent.actor_id, Case.department_id, Case.submitted_at, CaseEvent.action,
                   CaseEvent.occurred_at).join(Case, Case.id == CaseEvent.case_id)
            .where(CaseEvent.action.in_(actions), or_(*(and_(
                Case.department_id == q["department_id"], Case.submitted_at >= q["submitted_since"],
                CaseEvent.actor_id == q["actor_id"], CaseEvent.occurred_at >= q["start"],
                CaseEvent.occurred_at <= q["end"]) for q in questions)))).all()
        for q in questions:
            self.answers[_decision_key(q)] = sum(
                1 for actor, department, submitted, action, at in rows
                if actor == q["actor_id"] and department == q["department_id"] and action in q["actions"]
                and submitted >= q["submitted_since"] and q["start"] <= at <= q["end"])

    def _count_decisions(self, actions: tuple[str, ...], questions: list[dict[str, Any]]) -> None:
        """PostgreSQL: every question of the unit of work in one statement whose text never changes (the
        questions are arrays), so the server keeps it prepared, and only the counts come back."""
        self._answer_decisions(questions, dict(_driver_rows(self.session, _DECISIONS_SQL,
                                                            _decision_parameters(questions, prefix=""))))

    def _answer_decisions(self, questions: list[dict[str, Any]], counts: dict[int, int]) -> None:
        """``counts``: by the question's place (from 1), as the statement's ordinality numbers them."""
        for n, q in enumerate(questions, start=1):
            self.answers[_decision_key(q)] = int(counts.get(n, 0))

    def _load_withdrawals(self, questions: list[dict[str, Any]]) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            found = _driver_rows(self.session, _WITHDRAWALS_SQL, _withdrawal_parameters(questions, prefix=""))
            rows: Sequence[Any] = [(case_id, applicant, item, number, at.astimezone(UTC))
                                   for case_id, applicant, item, number, at in found]
        else:
            rows = self.session.execute(
                select(Case.id, Case.applicant_id_number, Case.item_id, Case.tracking_no, CaseEvent.occurred_at)
                .join(CaseEvent, CaseEvent.case_id == Case.id)
                .where(Case.accepted_on.is_not(None),  # its clock had started: the resubmission restarts it
                       CaseEvent.action == WITHDRAW, or_(*(and_(
                           Case.applicant_id_number == q["applicant_id_number"], Case.item_id == q["item_id"],
                           CaseEvent.occurred_at >= q["since"], CaseEvent.occurred_at <= q["until"])
                           for q in questions)))
                .order_by(CaseEvent.occurred_at.desc())).all()
        self._answer_withdrawals(questions, rows)

    def _answer_withdrawals(self, questions: list[dict[str, Any]], rows: Sequence[tuple[Any, ...]]) -> None:
        """``rows``: (case id, applicant, item id, tracking number, withdrawn at), the newest first."""
        for q in questions:
            self.answers[_withdrawal_key(q)] = [
                Withdrawal(number, at) for case_id, applicant, item_id, number, at in rows
                if case_id != q["case_id"] and applicant == q["applicant_id_number"] and item_id == q["item_id"]
                and q["since"] <= at <= q["until"]]


def _fee_facts(status: str, amount_fen: int, paid_fen: int | None, due: str, source: str) -> FeeFacts:
    return FeeFacts(status=status, amount_fen=amount_fen, paid_fen=paid_fen or 0, due=due, source=source)


_FEE_COLUMNS = (CaseFee.case_id, CaseFee.status, CaseFee.amount_fen, CaseFee.paid_fen, CaseFee.due, CaseFee.source)


def _driver_rows(session: Session, sql: str, parameters: dict[str, Any]) -> Sequence[Any]:
    """A fixed PostgreSQL statement run as the driver's own (``exec_driver_sql``: still seen by the engine's
    events), its rows as psycopg makes them — no SQLAlchemy statement, parameters or typed result to build for
    what the rules read as plain values; the session's changes flushed first, as ``Session.execute`` would."""
    if session.autoflush:
        session.flush()
    return session.connection().exec_driver_sql(sql, parameters).all()


def _decision_parameters(questions: list[dict[str, Any]], *, prefix: str) -> dict[str, Any]:
    return {f"{prefix}actor": [q["actor_id"] for q in questions],
            f"{prefix}dept": [q["department_id"] for q in questions],
            f"{prefix}t0": _instants(q["start"] for q in questions),
            f"{prefix}t1": _instants(q["end"] for q in questions),
            f"{prefix}since": _instants(q["submitted_since"] for q in questions),
            f"{prefix}actions": list(questions[0]["actions"]) if questions else []}


def _withdrawal_parameters(questions: list[dict[str, Any]], *, prefix: str) -> dict[str, Any]:
    return {f"{prefix}applicant": [q["applicant_id_number"] for q in questions],
            f"{prefix}item": [q["item_id"] for q in questions],
            f"{prefix}since": _instants(q["since"] for q in questions),
            f"{prefix}until": _instants(q["until"] for q in questions), f"{prefix}action": WITHDRAW}


def _instants(values: Iterable[datetime]) -> list[str]:
    """Instants as ISO text for a ``timestamptz[]`` parameter: the same instants (each with its offset), which
    psycopg sends as they are where it dumps each datetime object in Python."""
    return [value.isoformat() for value in values]


# The lookups on PostgreSQL: one statement each whatever the number of questions (arrays, unnest), a fixed text
# that psycopg prepares once — a list of OR-ed conditions was a new statement for every count.
# Each question counts from the person's events in its window (ix_case_events_actor_id_occurred_at, migration 0020)
# in a subquery of its own: as a join, the planner misjudged how many of a department's cases it would meet and
# went through all of them (docs/performance-postgresql.md).
# Each event's case is read by its primary key in a scalar subquery of its own (never flattened into a join: on
# small or freshly grown tables the planner joined the department's cases instead, reading every one of them for
# each event; docs/performance-postgres-side.md). ``case_id`` is never NULL and always a case (its foreign key), so
# the count is the join's.
def _decisions_sql(p: str) -> str:
    return (
        f"SELECT q.n, (SELECT count(*) FROM case_events e "
        f"WHERE e.actor_id = q.actor AND e.occurred_at BETWEEN q.t0 AND q.t1 "
        f"AND e.action = ANY(CAST(:{p}actions AS text[])) "
        f"AND (SELECT c.department_id = q.dept AND c.submitted_at >= q.since FROM cases c WHERE c.id = e.case_id)) "
        f"FROM unnest(CAST(:{p}actor AS text[]), CAST(:{p}dept AS integer[]), "
        f"CAST(:{p}t0 AS timestamptz[]), "
        f"CAST(:{p}t1 AS timestamptz[]), CAST(:{p}since AS timestamptz[])) "
        f"WITH ORDINALITY AS q(actor, dept, t0, t1, since, n)")


# Withdrawals after acceptance (its clock had started: the resubmission restarts it), the newest first.
# Per question, the applicant's cases by ix_cases_applicant_id_number, then each one's events by
# uq_case_events_case_id_seq: LATERAL subqueries the OFFSET keeps unflattened; ``item_id + 0`` and
# ``accepted_on + 0`` so that neither the item's index (thousands of cases per item) nor the partial index of every
# accepted case is scanned in its place. As joins, the plan followed the tables' statistics: on
# tables growing faster than autovacuum analyses them it hashed the questions against a scan of all the cases
# (docs/performance-postgres-side.md).
def _withdrawals_sql(p: str) -> str:
    return (
        f"SELECT DISTINCT c.id, c.applicant_id_number, c.item_id, c.tracking_no, e.occurred_at "
        f"FROM unnest(CAST(:{p}applicant AS text[]), CAST(:{p}item AS integer[]), "
        f"CAST(:{p}since AS timestamptz[]), CAST(:{p}until AS timestamptz[])) "
        f"AS q(applicant, item, since, until) "
        f"CROSS JOIN LATERAL (SELECT id, applicant_id_number, item_id, tracking_no FROM cases "
        f"WHERE applicant_id_number = q.applicant AND item_id + 0 = q.item AND accepted_on + 0 IS NOT NULL "
        f"OFFSET 0) AS c "
        f"CROSS JOIN LATERAL (SELECT occurred_at FROM case_events WHERE case_id = c.id AND action = :{p}action "
        f"AND occurred_at BETWEEN q.since AND q.until OFFSET 0) AS e")


def _fees_sql(p: str) -> str:
    return (f"SELECT case_id, status, amount_fen, paid_fen, due, source FROM case_fees "
            f"WHERE case_id = ANY(CAST(:{p}ids AS integer[]))")


def _pyformat(sql: str) -> str:
    """A statement's ``:name`` parameters as the driver's ``%(name)s``."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)


# The look-ups as they run alone (a question asked outside ``load``); ``_DECISIONS`` also as SQLAlchemy's text, whose
# plan tests/hub/test_migrations.py checks uses its index.
_DECISIONS = text(_decisions_sql(""))
_DECISIONS_SQL = _pyformat(_decisions_sql(""))
_WITHDRAWALS_SQL = _pyformat(_withdrawals_sql("") + " ORDER BY e.occurred_at DESC")
_FEES_SQL = _pyformat(_fees_sql(""))
# The kinds asked at once (``SqlLookups._load_together``) as one statement of the parts asked (a batch that asks no
# fee reads no fee table), one row shape: kind, three integers, three texts, an instant; the withdrawals the newest
# first, as alone. At most seven texts, each prepared once.
_PARTS = {
    "d": "SELECT 'd', CAST(d.n AS bigint), d.count, CAST(NULL AS bigint), CAST(NULL AS text), CAST(NULL AS text), "
         "CAST(NULL AS text), CAST(NULL AS timestamptz) FROM ({}) AS d(n, count)".format(_decisions_sql("d_")),
    "w": "SELECT 'w', CAST(w.id AS bigint), CAST(w.item_id AS bigint), CAST(NULL AS bigint), "
         "CAST(w.applicant_id_number AS text), CAST(w.tracking_no AS text), CAST(NULL AS text), w.occurred_at "
         "FROM ({}) AS w".format(_withdrawals_sql("w_")),
    "f": "SELECT 'f', CAST(f.case_id AS bigint), CAST(f.amount_fen AS bigint), CAST(f.paid_fen AS bigint), "
         "CAST(f.status AS text), CAST(f.due AS text), CAST(f.source AS text), CAST(NULL AS timestamptz) "
         "FROM ({}) AS f".format(_fees_sql("f_")),
}


@functools.cache
def _together_sql(kinds: str) -> str:
    """The statement of the parts ``kinds`` ("d", "w", "f", in that order) of ``_PARTS``."""
    return _pyformat(" UNION ALL ".join(_PARTS[kind] for kind in kinds) + " ORDER BY 1, 8 DESC")
