"""Statutory time limits in working days (Administrative Licensing Law Arts. 32, 42, 45, 82).

All functions take and return whole days (``datetime.date``); the service stores the results on
the case, so a later change of calendar never moves a deadline already promised.
"""

from __future__ import annotations

from datetime import date

from workflow.calendar import WorkingCalendar
from workflow.definition import Step, WorkflowDefinition


def compute_deadline(calendar: WorkingCalendar, accepted_on: date, limit_days: int) -> date:
    """Deadline of a case accepted on ``accepted_on``: the acceptance day itself is not counted."""
    return calendar.add_working_days(accepted_on, limit_days)


def extend_for_suspension(
    calendar: WorkingCalendar, deadline: date, suspended_on: date, resumed_on: date
) -> date:
    """Push the deadline back by the working days in (suspended_on, resumed_on].

    The clock stops while the applicant supplements materials (补正) or during special procedures
    (Art. 45: hearing, testing, expert review...), which are not counted against the limit.
    """
    if resumed_on < suspended_on:
        raise ValueError(
            f"resumed_on {resumed_on.isoformat()} is before suspended_on {suspended_on.isoformat()}"
        )
    paused = calendar.working_days_between(suspended_on, resumed_on)
    return calendar.add_working_days(deadline, paused)


def is_overdue(deadline: date, today: date) -> bool:
    """Overdue from the day after the deadline; the deadline day itself is still in time."""
    return today > deadline


def working_days_left(calendar: WorkingCalendar, today: date, deadline: date) -> int:
    """Working days from ``today`` to ``deadline``; negative when overdue.

    An overdue case is at least 1 day over even when only a weekend or holiday has passed since the
    deadline, so that the sign always agrees with ``is_overdue``.
    """
    if not is_overdue(deadline, today):
        return calendar.working_days_between(today, deadline)
    return -max(1, calendar.working_days_between(deadline, today))


def compute_intake_deadline(
    definition: WorkflowDefinition, calendar: WorkingCalendar, submitted_on: date
) -> date:
    """Day by which the intake decision (accept, refuse or request a supplement) is due."""
    return calendar.add_working_days(submitted_on, _intake_step(definition).time_allocation_days)


def allocate_step_deadlines(
    definition: WorkflowDefinition, calendar: WorkingCalendar, accepted_on: date, limit_days: int
) -> dict[str, date]:
    """Deadline of each step after acceptance, sharing ``limit_days`` by the steps' weights.

    The steps after the intake step (the one whose transition starts the clock) get cumulative
    shares of the limit rounded to whole days, so deadlines never go backwards and the last step
    ends exactly on the case deadline. The intake step is not included: it ends at acceptance, and
    its own limit runs from submission (see ``compute_intake_deadline``).
    """
    if limit_days < 0:
        raise ValueError(f"limit_days must not be negative, got {limit_days}")
    steps = _steps_after_acceptance(definition)
    weights = [step.time_allocation_days for step in steps]
    total = sum(weights)
    if total == 0:
        # No weights given: share the limit evenly rather than cram everything into the last step.
        weights, total = [1] * len(steps), len(steps)
    deadlines: dict[str, date] = {}
    cumulative = 0
    for step, weight in zip(steps, weights, strict=True):
        cumulative += weight
        # Round half up in integers: exact, and the final share is limit_days * total / total.
        offset = (2 * limit_days * cumulative + total) // (2 * total)
        deadlines[step.name] = calendar.add_working_days(accepted_on, offset)
    return deadlines


def _intake_step(definition: WorkflowDefinition) -> Step:
    for transition in definition.transitions:
        if transition.clock == "start":
            return definition.step(transition.step)
    raise ValueError(f"workflow {definition.id} v{definition.version} never starts the clock")


def _steps_after_acceptance(definition: WorkflowDefinition) -> list[Step]:
    if definition.initial_clock == "running":
        # A joint case's branch: its clock runs from the parent's acceptance, every step shares it.
        return list(definition.steps)
    intake = _intake_step(definition)
    steps = list(definition.steps)
    after = steps[steps.index(intake) + 1 :]
    if not after:
        raise ValueError(
            f"workflow {definition.id} v{definition.version} declares no step after {intake.name!r}"
        )
    return after
