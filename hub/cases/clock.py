"""A case's clock as stored on its row: the facts of workflow/clock.py in, the derived deadlines out.

The row keeps both the facts (accepted_on, limits, extension_days, suspensions) and what they give
(deadline, statutory_deadline, step_deadlines, suspended_since, suspended_working_days), so queries and
supervision read plain columns while a recomputation (a holiday notice loaded later) needs only the facts.
"""

from __future__ import annotations

from datetime import date

from hub.cases.models import Case
from hub.clock import business_date
from workflow.calendar import WorkingCalendar
from workflow.clock import ClockFacts, Suspension
from workflow.definition import WorkflowDefinition
from workflow.timelimits import allocate_step_deadlines


def facts_of(case: Case) -> ClockFacts:
    """The clock facts recorded on ``case``."""
    stopped = case.completed_at
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
