"""The procedure and anomaly rules in real time: on every new event, in the unit of work that records it.

The write path (hub/cases/writes.py) notes each case it appends to in ``session.info`` — the hub's own
submissions and officers' actions, partner records and events over REST, AMQP and the legacy SOAP exchange
alike. Just before the unit of work commits (``Session.before_commit``: the final flush still follows, so
the alerts and their outbox messages commit with the events, or not at all), the rules run over every
touched case: ONE query reads the events of all of them, each case is replayed and checked
(hub/supervision/rules), and ``raise_findings`` stores what they find (once per case, rule and level).

Kept cheap: a case whose only event is its first (a submission) is not evaluated — no rule can find
anything in a lone submission, so a submission costs nothing more; lookups beyond the case's own events
(the item's history, an officer's other decisions, the applicant's withdrawals) are asked by the few rules
that need them, and only for an event new in this unit of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy import inspect as orm_inspect
from sqlalchemy.orm import Session

from hub.calendar.service import load_calendar
from hub.cases.models import Case, CaseEvent
from hub.cases.writes import TOUCHED
from hub.clock import business_date
from hub.supervision.findings import Finding
from hub.supervision.rules import RULES, CaseFacts, Step, Withdrawal, evaluate
from hub.supervision.rules.base import WITHDRAW, Rule
from hub.supervision.service import raise_findings
from workflow.definition import WorkflowDefinition
from workflow.registry import UnknownDefinition, get_definition

EVENTS = CaseEvent.__table__
_STEP_COLUMNS = ("case_id", "seq", "action", "step", "from_state", "to_state", "actor_type", "actor_id",
                 "department_id", "opinion", "occurred_at", "data", "prev_hash", "hash")


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


def evaluate_touched(session: Session, touched: dict[Case, int], *, rules: Sequence[Rule] = RULES) -> int:
    """Run ``rules`` over the touched cases (case → first seq new in this unit of work) and raise what they
    find; returns the number of new alerts."""
    cases = {case.id: (case, first) for case, first in touched.items() if _evaluable(case)}
    if not cases:
        return 0
    steps = _steps_of(session, list(cases))
    calendar = load_calendar(session)
    lookups = SqlLookups(session)
    raised = 0
    for case_id, (case, first) in cases.items():
        now = case.updated_at
        facts = CaseFacts(case=case, steps=steps.get(case_id, ()), definition=definition_for(case),
                          calendar=calendar, today=business_date(now), now=now, new_from=first, lookups=lookups)
        findings: list[Finding] = evaluate(facts, rules)
        if findings:
            raised += len(raise_findings(session, case=case, findings=findings, now=now))
    return raised


def _evaluable(case: Case) -> bool:
    """Persistent (a savepoint rolled back leaves a new case transient) and beyond its first event."""
    state = orm_inspect(case)
    return state.persistent and (case.event_count or 0) > 1


def _steps_of(session: Session, case_ids: list[int]) -> dict[int, list[Step]]:
    """The events of every case in ``case_ids``, ordered: one query."""
    columns = [EVENTS.c[name] for name in _STEP_COLUMNS]
    rows = session.execute(select(*columns).where(EVENTS.c.case_id.in_(case_ids))
                           .order_by(EVENTS.c.case_id, EVENTS.c.seq))
    steps: dict[int, list[Step]] = {}
    for row in rows:
        values = row._asdict()
        case_id = values.pop("case_id")
        values["data"] = values["data"] or {}
        steps.setdefault(case_id, []).append(Step(**values))
    return steps


def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the unit of work goes on
    touched = session.info.pop(TOUCHED, None)
    if touched:
        session.flush()
        evaluate_touched(session, touched)


def _forget(session: Session, *_: Any) -> None:
    if not session.in_nested_transaction():
        session.info.pop(TOUCHED, None)


class SqlLookups:
    """``Lookups`` over the database (hub/supervision/rules/facts.py)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def completed_durations(self, *, item_id: int, exclude_case_id: int | None, limit: int) -> Sequence[int]:
        query = (select(Case.working_days_used)
                 .where(Case.item_id == item_id, Case.working_days_used.is_not(None), Case.state == "completed")
                 .order_by(Case.completed_at.desc()).limit(limit))
        if exclude_case_id is not None:
            query = query.where(Case.id != exclude_case_id)
        return [int(days) for days in self.session.scalars(query)]

    def decisions_between(self, *, actor_id: str, start: datetime, end: datetime, actions: Sequence[str]) -> int:
        return int(self.session.scalar(select(func.count()).select_from(CaseEvent).where(
            CaseEvent.actor_id == actor_id, CaseEvent.action.in_(list(actions)),
            CaseEvent.occurred_at >= start, CaseEvent.occurred_at <= end)) or 0)

    def withdrawals_before(self, *, case_id: int, applicant_id_number: str, item_id: int,
                           since: datetime, until: datetime) -> Sequence[Withdrawal]:
        rows = self.session.execute(
            select(Case.tracking_no, CaseEvent.occurred_at).join(CaseEvent, CaseEvent.case_id == Case.id)
            .where(Case.applicant_id_number == applicant_id_number, Case.item_id == item_id, Case.id != case_id,
                   CaseEvent.action == WITHDRAW, CaseEvent.occurred_at >= since, CaseEvent.occurred_at <= until)
            .order_by(CaseEvent.occurred_at.desc()))
        return [Withdrawal(tracking_no, at) for tracking_no, at in rows]
