"""A case's clock as stored on its row: the facts of workflow/clock.py in, the derived deadlines out.

The row keeps both the facts (accepted_on, limits, extension_days, suspensions) and what they give
(deadline, statutory_deadline, step_deadlines, suspended_since, suspended_working_days), so queries and
supervision read plain columns while a recomputation (a holiday notice loaded later) needs only the facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from hub.cases import writes
from hub.cases.models import Case
from hub.clock import CHINA_TZ, business_date
from hub.errors import FieldError, HubError, ValidationFailed
from hub.outbox import service as outbox
from workflow.calendar import WorkingCalendar
from workflow.clock import (
    LEGAL_BASIS_EXTENSION,
    LEGAL_BASIS_NOTICE,
    LEGAL_BASIS_SPECIAL,
    SPECIAL_PROCEDURES,
    ClockFacts,
    Suspension,
    intake_deadline,
)
from workflow.clock import received_on as received_day
from workflow.definition import WorkflowDefinition
from workflow.timelimits import allocate_step_deadlines


def facts_of(case: Case) -> ClockFacts:
    """The clock facts recorded on ``case``."""
    # Art. 42 limits the decision: the clock counts no further once the case is decided (or ended).
    stopped = case.decided_at or case.completed_at
    return ClockFacts(
        statutory_limit_days=case.statutory_limit_days,
        promised_limit_days=min(case.promised_limit_days, case.statutory_limit_days),
        accepted_on=case.accepted_on,
        extension_days=case.extension_days or 0,
        suspensions=tuple(Suspension.from_json(s) for s in case.suspensions or ()),
        stopped_on=business_date(stopped) if stopped is not None else None,
    )


def store(case: Case, facts: ClockFacts, *, calendar: WorkingCalendar, today: date,
          definition: WorkflowDefinition | None = None) -> None:
    """Write ``facts`` and the deadlines they give onto the case row (changed before its event is appended:
    the event seals the row). ``definition``: given, the per-step deadlines are allocated again."""
    # Electronic supervision: the clock changed, so the scanner reads this case again today (its colour and
    # the next day it may change are computed there, hub/supervision/scanner.py).
    case.colour_due_on = today
    flag_modified(case, "colour_due_on")  # written even when unchanged: the scanner may have moved it meanwhile
    case.accepted_on = facts.accepted_on
    case.extension_days = facts.extension_days
    case.suspensions = [s.to_json() for s in facts.suspensions]
    open_suspension = facts.open_suspension
    case.suspended_since = open_suspension.started_on if open_suspension is not None else None
    # While the clock stands still the stored deadlines are those of the day it stopped (the views compute
    # today's; supervision reads ``suspended_since``): recomputing them on another day gives the same row.
    today = open_suspension.started_on if open_suspension is not None else today
    case.suspended_working_days = facts.days_suspended(calendar, today)
    if facts.accepted_on is None:
        return
    record_stop(case, facts, calendar=calendar)
    case.deadline = facts.promised_deadline(calendar, today)
    case.statutory_deadline = facts.statutory_deadline(calendar, today)
    if definition is not None:
        suspended = facts.days_suspended(calendar, today)
        steps = allocate_step_deadlines(definition, calendar, facts.accepted_on, facts.promised_limit_days)
        case.step_deadlines = {
            name: calendar.add_working_days(day, suspended).isoformat() for name, day in steps.items()
        }


def record_stop(case: Case, facts: ClockFacts, *, calendar: WorkingCalendar) -> None:
    """Once the clock has stopped (the decision, Art. 42, or the end of the case): the working days used net
    of suspensions and whether the promise was kept — what the performance metrics aggregate in SQL."""
    figures = stop_figures(case, facts, calendar=calendar)
    if figures is not None:
        case.working_days_used, case.on_time = figures


def stop_figures(case: Case, facts: ClockFacts, *, calendar: WorkingCalendar) -> tuple[int, bool] | None:
    """(working days used, on time) of a stopped clock; None while it runs or never started."""
    # Art. 42 limits the decision: the earliest of the engine's stop, the decision and the end counts.
    days = [day for day in (facts.stopped_on, *(business_date(moment) for moment in (case.decided_at,
            case.completed_at) if moment is not None)) if day is not None]
    if not days or facts.accepted_on is None:
        return None
    stopped_facts = replace(facts, stopped_on=min(days))
    used = stopped_facts.working_days_used(calendar, min(days))
    return used, used <= stopped_facts.promised_limit_days


# --- what every view shows -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockView:
    """The five figures every case and branch view exposes, computed for ``today`` (working days, Art. 82)."""

    statutory_deadline: date | None
    promised_deadline: date | None
    working_days_used: int
    days_suspended: int
    days_remaining: int | None


def view_of(case: Case, *, calendar: WorkingCalendar, today: date) -> ClockView:
    facts = facts_of(case)
    if case.origin == "partner" and case.deadline is not None:
        # A partner platform's own promised date (its record), moved by its special procedures.
        promised: date | None = case.deadline
    else:
        promised = facts.promised_deadline(calendar, today)
    return ClockView(
        statutory_deadline=facts.statutory_deadline(calendar, today),
        promised_deadline=promised,
        working_days_used=facts.working_days_used(calendar, today),
        days_suspended=facts.days_suspended(calendar, today),
        days_remaining=facts.days_remaining(calendar, today),
    )


def deadlines_of(case: Case) -> dict[str, str | None]:
    """The stored deadlines as an event records them (``old`` / ``new``)."""
    return {name: value.isoformat() if value is not None else None for name, value in (
        ("intake_deadline", case.intake_deadline), ("statutory_deadline", case.statutory_deadline),
        ("promised_deadline", case.deadline),
    )}


# --- the clock actions: Art. 42 extension, Art. 45 special procedures --------------------------------

CLOCK_ACTIONS: Mapping[str, str] = {
    "extend": "延长办理期限",
    "start_special_procedure": "启动特别程序",
    "end_special_procedure": "结束特别程序",
}
_DATA_FIELDS: Mapping[str, frozenset[str]] = {
    "extend": frozenset(),
    "start_special_procedure": frozenset({"kind", "declared_days"}),
    "end_special_procedure": frozenset({"result"}),
}
MAX_DECLARED_DAYS = 365


@dataclass(frozen=True)
class ClockRequest:
    """A clock action as asked for, its data checked (the same checks for REST and SOAP)."""

    action: str
    reason: str | None
    kind: str | None = None
    declared_days: int | None = None
    result: str | None = None

    def data(self) -> dict[str, Any]:
        return {name: value for name, value in (("kind", self.kind), ("declared_days", self.declared_days),
                                                ("result", self.result)) if value is not None}


def checked_request(action: str, *, opinion: str | None, data: Mapping[str, Any] | None) -> ClockRequest:
    """``data`` of a clock action checked field by field; 422 naming each bad field and its rule."""
    data = data or {}
    errors = [FieldError(f"data.{name}", "unknown_field", f"「{CLOCK_ACTIONS[action]}」不接受字段 {name}")
              for name in data if name not in _DATA_FIELDS[action]]
    reason = (opinion or "").strip() or None
    if action in ("extend", "start_special_procedure") and reason is None:
        basis = LEGAL_BASIS_EXTENSION if action == "extend" else LEGAL_BASIS_SPECIAL
        errors.append(FieldError("opinion", "required", f"「{CLOCK_ACTIONS[action]}」必须在意见中说明理由（{basis}）"))
    kind = declared = result = None
    if action == "start_special_procedure":
        kind = data.get("kind")
        if not isinstance(kind, str) or kind not in SPECIAL_PROCEDURES:
            allowed = "、".join(f"{key}（{name}）" for key, name in SPECIAL_PROCEDURES.items())
            errors.append(FieldError("data.kind", "special_procedure_kind",
                                     f"特别程序种类须为以下之一：{allowed}（{LEGAL_BASIS_SPECIAL}）"))
        declared = data.get("declared_days")
        if isinstance(declared, bool) or not isinstance(declared, int) or not 1 <= declared <= MAX_DECLARED_DAYS:
            errors.append(FieldError("data.declared_days", "working_days_1_365",
                                     f"须告知申请人所需时间：1至{MAX_DECLARED_DAYS}之间的整数个工作日"))
    if action == "end_special_procedure":
        result = data.get("result")
        if not isinstance(result, str) or not result.strip() or len(result) > 500:
            errors.append(FieldError("data.result", "required", "结束特别程序须填写结果（不超过500字）"))
        else:
            result = result.strip()
    if errors:
        raise ValidationFailed(errors)
    return ClockRequest(action, reason, kind, declared, result)


def _conflict(slug: str, rule: str, message: str) -> HubError:
    return HubError(detail=message, title="状态冲突", status=409, type_slug=slug,
                    errors=[FieldError("action", rule, message)])


# --- Art. 32 at intake -------------------------------------------------------------------------------


def intake_is_late(case: Case, today: date) -> bool:
    """The five working days for the one supplement notice (Art. 32) have passed."""
    return case.intake_deadline is not None and today > case.intake_deadline


def check_intake_notice(case: Case, action: str, *, step: str | None, today: date) -> None:
    """A supplement notice at intake after its five working days is refused: the case counts as accepted."""
    if action == "request_supplement" and step == "intake" and intake_is_late(case, today):
        assert case.intake_deadline is not None
        raise _conflict(
            "intake-notice-late", "intake_notice_period",
            f"补正告知期限已过（{case.intake_deadline.isoformat()}）：依照{LEGAL_BASIS_NOTICE}，逾期不告知的，"
            f"自收到申请材料之日起即为受理，本件视为已于{(case.received_on or case.intake_deadline).isoformat()}受理，"
            "请直接受理 (the 5-working-day supplement notice period of Art. 32 has passed; "
            "the case counts as accepted)",
        )


def engine_data(case: Case, action: str, *, opinion: str | None, data: Mapping[str, Any] | None,
                definition: WorkflowDefinition, calendar: WorkingCalendar, now: datetime) -> dict[str, Any] | None:
    """What the hub tells the engine (workflow.process.advance) with ``action``, after the time rules it
    applies first (Art. 32 at intake, the clock actions' data):

    * a clock action's data is checked field by field (422, the same for REST and SOAP);
    * a supplement notice at intake after its 5 working days is refused (409);
    * the applicant's supplement at intake: the completed materials count as received that day (after hours:
      the next working day) and the intake period runs again from it;
    * an acceptance after the intake period (no timely notice) is dated the day the application was received.

    Nothing a caller sends reaches the engine for other actions (an officer does not choose the acceptance day).
    """
    if action in CLOCK_ACTIONS:
        return checked_request(action, opinion=opinion, data=data).data()
    today = business_date(now)
    step = next((t.step for t in definition.transitions if t.source == case.state and t.action == action), None)
    check_intake_notice(case, action, step=step, today=today)
    if action == "supplement" and step == "intake":
        case.received_on = received_day(calendar, now.astimezone(CHINA_TZ))
        case.intake_deadline = intake_deadline(calendar, case.received_on)
    if action == "accept" and intake_is_late(case, today) and case.received_on is not None:
        return {"accepted_on": case.received_on.isoformat()}
    return None


# --- a holiday notice loaded: open deadlines recomputed -----------------------------------------------

RECOMPUTED = "deadline_recomputed"
SYSTEM_ACTOR = ("system", "hub", "系统")  # as hub/cases/service.py records the engine's own steps
RECOMPUTED_NOTE = "国务院节假日安排公布后，按工作日重新计算期限（行政许可法第八十二条）"


def recompute_open_deadlines(session: Session, *, calendar: WorkingCalendar, first: date, last: date,
                             now: datetime, audit_key: str) -> list[Case]:
    """Recompute from their facts the deadlines of every open case whose counting window meets the changed
    days [first, last], with ``calendar`` (the notice loaded); each case whose deadlines change gets a
    ``deadline_recomputed`` event (system actor, data {"old", "new"}) and an outbox message.

    Open: not yet decided (a decided case's deadlines are the record its timeliness is judged by) and handled
    here (a partner platform's record brings its own). A window ending before ``first`` or starting after
    ``last`` cannot change."""
    from hub.cases import service  # the case service imports this module

    rows = session.scalars(select(Case).where(
        Case.decided_at.is_(None), Case.completed_at.is_(None), Case.origin != "partner",
        or_(and_(Case.accepted_on.is_not(None), Case.accepted_on <= last, Case.statutory_deadline >= first),
            and_(Case.accepted_on.is_(None), Case.received_on.is_not(None), Case.received_on <= last,
                 Case.intake_deadline >= first)),
    ).order_by(Case.id)).unique().all()
    today = business_date(now)
    changed = []
    for case in rows:
        old = {**deadlines_of(case), "step_deadlines": dict(case.step_deadlines or {})}
        if case.accepted_on is None:
            assert case.received_on is not None
            case.intake_deadline = intake_deadline(calendar, case.received_on)
        else:
            store(case, facts_of(case), calendar=calendar, today=today, definition=service.definition_for(case))
        new = {**deadlines_of(case), "step_deadlines": dict(case.step_deadlines or {})}
        if new == old:
            continue
        case.updated_at = now
        kind, actor_id, name = SYSTEM_ACTOR
        writes.append_step(session, case, writes.NewEvent(
            action=RECOMPUTED, from_state=case.state, to_state=case.state, actor_type=kind, actor_id=actor_id,
            actor_name=name, occurred_at=now, opinion=RECOMPUTED_NOTE,
            data={"old": old, "new": new},
        ), key=audit_key)
        session.add(outbox.message(
            event_type=f"case.{RECOMPUTED}.v1", region_code=case.region_code,
            payload={**service.case_event_payload(case), "old": old, "new": new}, occurred_at=now,
            correlation_id=case.tracking_no,
        ))
        changed.append(case)
    return changed
