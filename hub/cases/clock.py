"""A case's clock as stored on its row: the facts of workflow/clock.py in, the derived deadlines out.

The row keeps both the facts (accepted_on, limits, extension_days, suspensions) and what they give
(deadline, statutory_deadline, step_deadlines, suspended_since, suspended_working_days), so queries and
supervision read plain columns while a recomputation (a holiday notice loaded later) needs only the facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from hub.cases.models import Case
from hub.clock import business_date
from hub.errors import FieldError, Forbidden, HubError, ValidationFailed
from workflow.calendar import WorkingCalendar
from workflow.clock import (
    LAW_LIMITS,
    LEGAL_BASIS_EXTENSION,
    LEGAL_BASIS_NOTICE,
    LEGAL_BASIS_SPECIAL,
    SPECIAL_PROCEDURES,
    SUPPLEMENT,
    ClockFacts,
    Handling,
    Suspension,
)
from workflow.definition import WorkflowDefinition
from workflow.errors import RoleNotAllowed
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
    case.accepted_on = facts.accepted_on
    case.extension_days = facts.extension_days
    case.suspensions = [s.to_json() for s in facts.suspensions]
    open_suspension = facts.open_suspension
    case.suspended_since = open_suspension.started_on if open_suspension is not None else None
    case.suspended_working_days = facts.days_suspended(calendar, today)
    if facts.accepted_on is None:
        return
    case.deadline = facts.promised_deadline(calendar, today)
    case.statutory_deadline = facts.statutory_deadline(calendar, today)
    if definition is not None:
        suspended = facts.days_suspended(calendar, today)
        steps = allocate_step_deadlines(definition, calendar, facts.accepted_on, facts.promised_limit_days)
        case.step_deadlines = {
            name: calendar.add_working_days(day, suspended).isoformat() for name, day in steps.items()
        }


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
CLOCK_ROLES: Mapping[str, frozenset[str]] = {
    "extend": frozenset({"approver"}),  # Art. 42: the head of the agency approves the extension
    "start_special_procedure": frozenset({"reviewer", "approver"}),
    "end_special_procedure": frozenset({"reviewer", "approver"}),
}
_DATA_FIELDS: Mapping[str, frozenset[str]] = {
    "extend": frozenset(),
    "start_special_procedure": frozenset({"kind", "declared_days"}),
    "end_special_procedure": frozenset({"result"}),
}
MAX_DECLARED_DAYS = 365
# While an Art. 45 procedure is open the clock stands still: only its end, or the applicant's withdrawal.
ALLOWED_DURING_SPECIAL_PROCEDURE = frozenset({"end_special_procedure", "withdraw"})


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
        if kind not in SPECIAL_PROCEDURES:
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


def handling_of(case: Case, definition: WorkflowDefinition | None) -> Handling:
    """Joint handling (Art. 26: 45 days, extended by 15) for a joint case and each of its branches."""
    if case.parent_id is not None or getattr(definition, "parallel", None) is not None:
        return "joint"
    return "single"


@dataclass(frozen=True)
class ClockChange:
    """What a clock action did: the new facts (stored on the row) and the event's data."""

    facts: ClockFacts
    data: dict[str, Any]


def clock_action(case: Case, request: ClockRequest, *, roles: frozenset[str], calendar: WorkingCalendar,
                 today: date, handling: Handling) -> ClockChange:
    """Apply one clock action to the case's facts; raises the hub's errors (403 role, 409 rule, citing
    the article). The state does not change. (The engine's ``advance`` takes this over for joint cases.)"""
    action = request.action
    if not roles & CLOCK_ROLES[action]:
        raise Forbidden(str(RoleNotAllowed(action, CLOCK_ROLES[action], action_label=CLOCK_ACTIONS[action])))
    facts = facts_of(case)
    if facts.accepted_on is None or case.decided_at is not None or case.completed_at is not None:
        raise _conflict("clock-not-running", "clock_running",
                        f"办件未处于法定办理期限内（未受理或已作出决定），不能「{CLOCK_ACTIONS[action]}」")
    old = deadlines_of(case)
    data: dict[str, Any] = request.data()
    if action == "extend":
        if facts.extension_days:
            raise _conflict("already-extended", "once_per_case",
                            f"办理期限只能延长一次，本件已延长{facts.extension_days}个工作日（{LEGAL_BASIS_EXTENSION}）")
        days = LAW_LIMITS[handling][1]
        facts = facts.extend(days)
        data.update(days=days, handling=handling, legal_basis=LEGAL_BASIS_EXTENSION)
    elif action == "start_special_procedure":
        open_now = facts.open_suspension
        if open_now is not None:
            what = SPECIAL_PROCEDURES.get(open_now.kind, "补正")
            raise _conflict("special-procedure-open", "clock_running",
                            f"办理期限已中止（{what}，自{open_now.started_on.isoformat()}起），不能再启动特别程序")
        assert request.kind is not None
        facts = facts.suspend(Suspension(kind=request.kind, started_on=today, reason=request.reason or "",
                                         declared_days=request.declared_days))
        data.update(label=SPECIAL_PROCEDURES[request.kind], legal_basis=LEGAL_BASIS_SPECIAL)
    else:
        open_now = facts.open_suspension
        if open_now is None or open_now.kind == SUPPLEMENT:
            raise _conflict("no-special-procedure", "special_procedure_open", "本件没有进行中的特别程序")
        facts = facts.resume(today)
        closed = facts.suspensions[-1]
        data.update(kind=closed.kind, label=SPECIAL_PROCEDURES[closed.kind], started_on=closed.started_on.isoformat(),
                    working_days=closed.working_days(calendar, today), legal_basis=LEGAL_BASIS_SPECIAL)
    data["old"] = old
    return ClockChange(facts, data)


def refuse_during_special_procedure(case: Case, action: str) -> None:
    """Art. 45: while a special procedure is open, nothing but its end (or the applicant's withdrawal)."""
    if action in ALLOWED_DURING_SPECIAL_PROCEDURE:
        return
    current = facts_of(case).open_suspension
    if current is not None and current.kind != SUPPLEMENT:
        raise _conflict("special-procedure-open", "special_procedure_open",
                        f"特别程序（{SPECIAL_PROCEDURES[current.kind]}）进行中，办理期限中止，只能结束特别程序"
                        f"（{LEGAL_BASIS_SPECIAL}）")


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


def acceptance_day(case: Case, today: date) -> date:
    """The day the clock starts at ``accept``: today, or — accepted after the intake period without a notice —
    the day the materials were received (Art. 32: it counts as accepted that day)."""
    if intake_is_late(case, today) and case.received_on is not None:
        return case.received_on
    return today
