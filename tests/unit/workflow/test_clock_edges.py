"""Edges of workflow/clock.py's facts that the engine relies on: the refusals a caller bug gets (in
English: they never reach a person, workflow.process checks first), and the defaults of stored facts."""

from __future__ import annotations

from datetime import date

import pytest

from workflow.calendar import WorkingCalendar
from workflow.clock import ClockFacts, Suspension

CALENDAR = WorkingCalendar()
MONDAY = date(2026, 9, 21)


def test_an_extension_is_at_least_one_working_day() -> None:
    facts = ClockFacts(20, 10, accepted_on=MONDAY)
    assert facts.extend(1).extension_days == 1
    for days in (0, -1):
        with pytest.raises(ValueError) as raised:
            facts.extend(days)
        assert str(raised.value) == "an extension is at least one working day"
    with pytest.raises(ValueError) as twice:
        facts.extend(10).extend(10)
    assert str(twice.value) == "the time limit has been extended once already (Art. 42)"


def test_resuming_needs_a_suspension() -> None:
    with pytest.raises(ValueError) as raised:
        ClockFacts(20, 10, accepted_on=MONDAY).resume(MONDAY)
    assert str(raised.value) == "the clock is not suspended"


def test_nothing_is_used_before_acceptance() -> None:
    facts = ClockFacts(20, 10)
    assert facts.working_days_used(CALENDAR, date(2026, 12, 31)) == 0
    assert facts.days_remaining(CALENDAR, date(2026, 12, 31)) is None
    assert facts.statutory_deadline(CALENDAR, date(2026, 12, 31)) is None


def test_a_stored_suspension_without_a_reason_reads_as_empty() -> None:
    stored = {"kind": "supplement", "started_on": "2026-09-21", "reason": None}
    assert Suspension.from_json(stored) == Suspension("supplement", MONDAY, reason="")


@pytest.mark.parametrize(("statutory", "promised", "extension"), [
    (20, -1, 0),   # a negative promise is below the law's limit, so only the sign rule catches it
    (20, 10, -1),
    (-1, -2, 0),
])
def test_no_limit_and_no_extension_is_negative(statutory: int, promised: int, extension: int) -> None:
    with pytest.raises(ValueError) as raised:
        ClockFacts(statutory, promised, extension_days=extension)
    assert str(raised.value) == "limits and extensions are whole working days, never negative"


def test_a_promise_beyond_the_law_is_refused_with_its_reason() -> None:
    with pytest.raises(ValueError) as raised:
        ClockFacts(10, 11)
    assert str(raised.value) == "the promised limit cannot exceed the statutory limit"
    assert ClockFacts(10, 10).promised_limit_days == 10  # equal is the law's own limit


def test_the_clock_starts_once() -> None:
    facts = ClockFacts(20, 10).accept(MONDAY)
    with pytest.raises(ValueError) as raised:
        facts.accept(MONDAY)
    assert str(raised.value) == "the clock has started already"
