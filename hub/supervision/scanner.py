"""The time-limit scanner and the escalation of unresolved red alerts, run by `hub worker` every minute.

Index-driven: a case's ``colour_due_on`` is the next day its colour may change (hub/supervision/timelimits.py
computes it; every clock change on the write path sets it to that day, hub/cases/clock.store; a new case has
its submission day). A scan reads only ``colour_due_on <= today`` — an index range — in bounded batches,
so its cost follows the cases changing colour, not the open ones. On PostgreSQL the batch is claimed with
``FOR UPDATE SKIP LOCKED``: two workers take different cases, and an officer's action in flight is left for
the next minute; the alerts' UNIQUE (case, rule, level) makes a duplicate impossible even so.

Escalation (``escalate``): a red alert neither ruled on nor closed after ``red_escalation_days`` working days
(thresholds of the case's region) moves to the supervisor one region level up, and again after as many
working days there, up to the province.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from hub.calendar.service import load_calendar
from hub.cases.clock import facts_of, stop_figures
from hub.cases.models import Case, CaseEvent
from hub.clock import business_date
from hub.db import unit_of_work
from hub.org.service import _region_parents
from hub.supervision import service
from hub.supervision.findings import Finding
from hub.supervision.models import Alert
from hub.supervision.timelimits import Judgement, intake_notice_state, judge, supplement_notice_findings
from workflow.calendar import WorkingCalendar

DEFAULT_BATCH = 500
CLOSED_ON_STOP = "办件已作出决定或办结，时限预警解除"
CLOSED_NO_LONGER = "时限预警条件已不存在（环节已完成或期限已变更）"
ESCALATED_ACTION = "escalated"


@dataclass
class ScanReport:
    scanned: int = 0
    raised: int = 0
    closed: int = 0


def scan(session: Session, *, now: datetime, batch: int = DEFAULT_BATCH,
         calendar: WorkingCalendar | None = None) -> ScanReport:
    """One bounded batch: the cases whose colour may change by ``now``'s business day, judged, their alerts
    raised or closed, their colour and next day stored. Returns what it did (``scanned`` < ``batch``: done)."""
    today = business_date(now)
    claim = (select(Case.id).where(Case.colour_due_on <= today)
             .order_by(Case.colour_due_on, Case.id).limit(batch).with_for_update(skip_locked=True))
    ids = list(session.scalars(claim))
    report = ScanReport(scanned=len(ids))
    if not ids:
        return report
    calendar = calendar or load_calendar(session)
    cases = session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.id)).unique().all()
    notices = _intake_notices(session, ids)
    unresolved = _unresolved_time_alerts(session, ids)
    rows: list[dict[str, object]] = []
    found: list[tuple[Case, list[Finding]]] = []
    for case in cases:
        thresholds = service.thresholds_for(session, case.region_code)
        judgement = judge(case, calendar=calendar, today=today, thresholds=thresholds)
        intake_notices = notices.get(case.id, {}).get(intake_notice_state(case), ())
        findings = [*judgement.findings, *supplement_notice_findings(case, intake_notices, calendar=calendar)]
        found.append((case, findings))
        report.closed += _close_stale(session, case, judgement, {(f.rule, f.level) for f in findings},
                                      unresolved.get(case.id, ()), now=now)
        rows.append(_new_values(case, judgement, findings, calendar=calendar))
    # The batch's findings in one statement (per chunk): the scan's cost is a few statements per batch.
    report.raised += len(service.raise_new(session, found=found, now=now))
    _store(session, rows)
    return report


def scan_once(factory: sessionmaker[Session], *, now: datetime, batch: int = DEFAULT_BATCH) -> int:
    """One batch of ``scan`` in its own transaction, as `hub worker` runs it; returns the cases it read
    (fewer than ``batch``: nothing more is due)."""
    with unit_of_work(factory) as session:
        return scan(session, now=now, batch=batch).scanned


def _new_values(case: Case, judgement: Judgement, findings: Sequence[object], *,
                calendar: WorkingCalendar) -> dict[str, object]:
    """The case's colour and next day, and a stopped clock's figures when the write path left them unset (a
    partner's record whose result came without a clock change)."""
    used, on_time = case.working_days_used, case.on_time
    if judgement.stopped and used is None:
        used, on_time = stop_figures(case, facts_of(case), calendar=calendar) or (None, None)
    return {"_id": case.id, "_colour": _colour(judgement, findings), "_due": judgement.due_on,
            "_used": used, "_on_time": on_time}


def _store(session: Session, rows: list[dict[str, object]]) -> None:
    """One executemany UPDATE for the batch, on the table (not the ORM): an officer's action on a row in
    flight keeps its version (lock_version); the batch's rows are locked by this transaction meanwhile."""
    table = Case.__table__
    statement = table.update().where(table.c.id == bindparam("_id")).values(
        colour=bindparam("_colour"), colour_due_on=bindparam("_due"), working_days_used=bindparam("_used"),
        on_time=bindparam("_on_time"))
    session.connection().execute(statement, rows)
    for case_id in (row["_id"] for row in rows):
        case = session.get(Case, case_id)
        if case is not None:
            session.expire(case, ["colour", "colour_due_on", "working_days_used", "on_time"])


def _colour(judgement: Judgement, findings: Sequence[object]) -> str | None:
    levels = {getattr(f, "level", None) for f in findings}
    if judgement.stopped:
        return judgement.colour  # the colour it had when the clock stopped
    return "red" if "red" in levels else "yellow" if "yellow" in levels else None


def _close_stale(session: Session, case: Case, judgement: Judgement, current: set[tuple[str, str]],
                 alerts: Iterable[Alert], *, now: datetime) -> int:
    """Yellow time alerts whose condition has ended are closed: the clock stopped (decision, completion,
    withdrawal), the step was done, or an extension moved the limit. A red one stays for the department's
    explanation and the supervisor's ruling: the breach happened."""
    stale = sorted({a.rule for a in alerts if a.level == "yellow" and (a.rule, a.level) not in current})
    if not stale:
        return 0
    reason = CLOSED_ON_STOP if judgement.stopped else CLOSED_NO_LONGER
    closed = service.close_alerts(session, case=case, rules=stale, now=now, reason=reason)
    return sum(1 for a in closed if a.level == "yellow")


def _intake_notices(session: Session, ids: Sequence[int]) -> dict[int, dict[str, list[date]]]:
    """The days of each case's supplement notices by the state they were given from (one query for the
    batch): those from the initial state were given at intake (Art. 32)."""
    rows = session.execute(select(CaseEvent.case_id, CaseEvent.from_state, CaseEvent.occurred_at).where(
        CaseEvent.case_id.in_(ids), CaseEvent.action == "request_supplement"))
    found: dict[int, dict[str, list[date]]] = defaultdict(lambda: defaultdict(list))
    for case_id, from_state, occurred_at in rows:
        found[case_id][str(from_state)].append(business_date(occurred_at))
    return found


def _unresolved_time_alerts(session: Session, ids: Sequence[int]) -> dict[int, list[Alert]]:
    rows = session.scalars(select(Alert).where(Alert.case_id.in_(ids), Alert.kind == "time",
                                               Alert.status.in_(service.UNRESOLVED)))
    found: dict[int, list[Alert]] = defaultdict(list)
    for alert in rows:
        found[alert.case_id].append(alert)
    return found


# --- escalation ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EscalationPage:
    moved: int
    last_id: int | None  # None: no alert after ``after``, the pass is done


def escalate(session: Session, *, now: datetime, after: int = 0, batch: int = DEFAULT_BATCH,
             calendar: WorkingCalendar | None = None) -> EscalationPage:
    """One page (ids after ``after``) of the red alerts left unresolved (open or explained: neither ruled on
    nor closed): each one waiting more than its region's ``red_escalation_days`` working days — counted from
    its raising, then from its last escalation — moves to the supervisor one region level up, with
    ``alert.escalated.v1``. A page is locked in id order (FOR UPDATE, waiting: a worker doing the same pass
    reads the first one's escalation and finds nothing left to do; nobody is skipped for a day).

    Escalation changes only when the business day does, so a worker makes one pass a day (hub/worker.py):
    its cost follows the unresolved red alerts, not the cases."""
    today = business_date(now)
    claim = (select(Alert.id).where(Alert.level == "red", Alert.status.in_(service.UNRESOLVED),
                                    Alert.raised_on < today, Alert.id > after)
             .order_by(Alert.id).limit(batch).with_for_update())
    ids = list(session.scalars(claim))
    if not ids:
        return EscalationPage(0, None)
    calendar = calendar or load_calendar(session)
    parents = _region_parents(session)
    moved = 0
    for alert in session.scalars(select(Alert).where(Alert.id.in_(ids)).order_by(Alert.id)):
        parent = parents.get(alert.supervisor_region_code)
        if parent is None:
            continue  # the province's supervisors: nobody above
        days = service.thresholds_for(session, alert.region_code).red_escalation_days
        since = _waiting_since(alert)
        if calendar.working_days_between(since, max(today, since)) <= days:
            continue
        _escalate_one(session, alert, parent, now=now, today=today)
        moved += 1
    return EscalationPage(moved, ids[-1])


def escalate_all(session: Session, *, now: datetime, batch: int = DEFAULT_BATCH) -> int:
    """A whole pass in one transaction (tests, the CLI): every page of ``escalate``."""
    moved, after = 0, 0
    while True:
        page = escalate(session, now=now, after=after, batch=batch)
        if page.last_id is None:
            return moved
        moved, after = moved + page.moved, page.last_id


def _waiting_since(alert: Alert) -> date:
    """The day the alert came to its current supervisor: its last escalation, else the day it was raised."""
    for entry in reversed(alert.history or []):
        if entry.get("action") == ESCALATED_ACTION and entry.get("on"):
            return date.fromisoformat(entry["on"])
    return alert.raised_on


def _escalate_one(session: Session, alert: Alert, parent: str, *, now: datetime, today: date) -> None:
    case = session.get(Case, alert.case_id)
    assert case is not None
    before = alert.supervisor_region_code
    alert.supervisor_region_code = parent
    alert.escalations = (alert.escalations or 0) + 1
    alert.history = [*(alert.history or []), {
        "at": now.isoformat(), "on": today.isoformat(), "action": ESCALATED_ACTION, "by": "system",
        "from_region": before, "to_region": parent,
        "reason": "红色预警逾期未处理，提交上一级监察机构",
    }]
    service.publish(session, service.ESCALATED, alert, case=case, now=now,
                    extra={"from_region": before, "to_region": parent})
