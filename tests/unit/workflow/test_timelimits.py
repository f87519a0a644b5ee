"""Statutory deadlines, clock suspension and per-step allocation, in whole working days."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflow.calendar import WorkingCalendar
from workflow.definition import standard_definition
from workflow.timelimits import (
    allocate_step_deadlines,
    compute_deadline,
    compute_intake_deadline,
    extend_for_suspension,
    is_overdue,
    working_days_left,
)

CALENDAR = WorkingCalendar()
builtin_day = st.dates(min_value=date(2004, 1, 1), max_value=date(2026, 10, 31))


def test_twenty_day_limit_skips_national_day_and_counts_make_up_days() -> None:
    # Accepted Friday 26 Sep 2025: counted are Sun 28 Sep (make-up), 29, 30 Sep, then from 9 Oct.
    assert compute_deadline(CALENDAR, date(2025, 9, 26), 20) == date(2025, 10, 30)


def test_instant_item_is_due_the_day_it_is_accepted() -> None:
    assert compute_deadline(CALENDAR, date(2025, 9, 26), 0) == date(2025, 9, 26)


def test_suspension_extends_by_the_working_days_paused() -> None:
    # Paused Monday, resumed Friday: Tue–Fri are not counted, so four more working days.
    extended = extend_for_suspension(
        CALENDAR, date(2025, 9, 22), suspended_on=date(2025, 9, 15), resumed_on=date(2025, 9, 19)
    )
    assert extended == date(2025, 9, 26)


def test_suspension_over_a_weekend_only_does_not_move_the_deadline() -> None:
    deadline = date(2025, 9, 25)
    assert (
        extend_for_suspension(CALENDAR, deadline, date(2025, 9, 19), date(2025, 9, 21)) == deadline
    )


def test_suspension_resumed_the_same_day_does_not_move_the_deadline() -> None:
    deadline = date(2025, 9, 25)
    assert (
        extend_for_suspension(CALENDAR, deadline, date(2025, 9, 17), date(2025, 9, 17)) == deadline
    )


def test_resuming_before_suspending_is_rejected() -> None:
    with pytest.raises(ValueError):
        extend_for_suspension(CALENDAR, date(2025, 9, 25), date(2025, 9, 18), date(2025, 9, 17))


@given(
    accepted=builtin_day,
    limit=st.integers(min_value=1, max_value=45),
    pause_start=st.integers(min_value=0, max_value=30),
    pause_length=st.integers(min_value=0, max_value=30),
)
def test_suspended_working_days_are_added_to_the_limit(
    accepted: date, limit: int, pause_start: int, pause_length: int
) -> None:
    deadline = compute_deadline(CALENDAR, accepted, limit)
    suspended = CALENDAR.add_working_days(accepted, pause_start)
    resumed = CALENDAR.add_working_days(suspended, pause_length)
    extended = extend_for_suspension(CALENDAR, deadline, suspended, resumed)
    assert CALENDAR.working_days_between(accepted, extended) == limit + pause_length


def test_the_deadline_day_itself_is_not_overdue() -> None:
    assert not is_overdue(date(2025, 10, 30), date(2025, 10, 30))
    assert is_overdue(date(2025, 10, 30), date(2025, 10, 31))


def test_working_days_left_counts_down_to_zero_on_the_deadline() -> None:
    deadline = date(2025, 10, 30)
    assert working_days_left(CALENDAR, date(2025, 9, 30), deadline) == 17
    assert working_days_left(CALENDAR, deadline, deadline) == 0


def test_working_days_left_is_negative_when_overdue() -> None:
    assert working_days_left(CALENDAR, date(2025, 11, 4), date(2025, 10, 30)) == -3


def test_overdue_over_a_weekend_only_is_still_negative() -> None:
    # Due Friday, not done; on Saturday the case is overdue though no working day has passed.
    assert working_days_left(CALENDAR, date(2025, 9, 20), date(2025, 9, 19)) == -1


@given(today=builtin_day, deadline=builtin_day)
def test_sign_of_days_left_agrees_with_overdue(today: date, deadline: date) -> None:
    left = working_days_left(CALENDAR, today, deadline)
    assert (left < 0) == is_overdue(deadline, today)


def test_standard_steps_share_a_twenty_day_limit_by_weight() -> None:
    accepted = date(2025, 9, 15)
    steps = allocate_step_deadlines(standard_definition(), CALENDAR, accepted, 20)
    assert list(steps) == ["review", "decision", "completion"]
    assert steps == {
        "review": CALENDAR.add_working_days(accepted, 10),
        "decision": CALENDAR.add_working_days(accepted, 16),
        "completion": compute_deadline(CALENDAR, accepted, 20),
    }


def test_instant_item_steps_all_end_the_same_day() -> None:
    steps = allocate_step_deadlines(standard_definition(), CALENDAR, date(2025, 9, 15), 0)
    assert set(steps.values()) == {date(2025, 9, 15)}


@given(accepted=builtin_day, limit=st.integers(min_value=0, max_value=80))
def test_step_deadlines_are_ordered_and_the_last_is_the_case_deadline(
    accepted: date, limit: int
) -> None:
    steps = list(allocate_step_deadlines(standard_definition(), CALENDAR, accepted, limit).values())
    assert steps == sorted(steps)
    assert steps[-1] == compute_deadline(CALENDAR, accepted, limit)
    assert steps[0] >= accepted


def test_intake_is_due_one_working_day_after_submission() -> None:
    assert compute_intake_deadline(standard_definition(), CALENDAR, date(2025, 9, 30)) == date(
        2025, 10, 9
    )
