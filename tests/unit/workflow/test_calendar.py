"""Working-day calendar: built-in table, province overrides, Monday–Friday fallback, notices."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflow.calendar import (
    HolidayNoticeEntry,
    WorkingCalendar,
    overrides_from_notice,
    parse_notice,
)

# Spans the built-in table's lower edge (2004), its range, and fallback years after 2026.
any_day = st.dates(min_value=date(2003, 6, 1), max_value=date(2028, 12, 31))
some_days = st.integers(min_value=1, max_value=60)


@pytest.fixture
def calendar() -> WorkingCalendar:
    return WorkingCalendar()


def test_national_day_2025_is_not_a_working_day(calendar: WorkingCalendar) -> None:
    assert not calendar.is_working_day(date(2025, 10, 1))


def test_make_up_sunday_2025_09_28_is_a_working_day(calendar: WorkingCalendar) -> None:
    assert date(2025, 9, 28).weekday() == 6
    assert calendar.is_working_day(date(2025, 9, 28))


def test_new_year_2026_is_a_holiday(calendar: WorkingCalendar) -> None:
    assert not calendar.is_working_day(date(2026, 1, 1))


def test_ordinary_saturday_is_not_a_working_day(calendar: WorkingCalendar) -> None:
    assert not calendar.is_working_day(date(2025, 9, 27))


def test_year_without_schedule_falls_back_to_monday_to_friday_and_warns_once(
    calendar: WorkingCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="workflow.calendar")
    monday = date(2027, 3, 1)
    week = [monday + timedelta(days=i) for i in range(7)]

    answers = [calendar.is_working_day(day) for day in week]
    calendar.add_working_days(monday, 30)

    assert answers == [True, True, True, True, True, False, False]
    warnings = [r for r in caplog.records if r.name == "workflow.calendar"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "2027" in warnings[0].getMessage()


def test_each_fallback_year_warns_separately(
    calendar: WorkingCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="workflow.calendar")
    for _ in range(3):
        calendar.is_working_day(date(2027, 6, 1))
        calendar.is_working_day(date(2028, 6, 1))
    assert len([r for r in caplog.records if r.name == "workflow.calendar"]) == 2


def test_year_loaded_from_a_notice_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="workflow.calendar")
    calendar = WorkingCalendar({date(2027, 1, 1): False})
    assert calendar.is_working_day(date(2027, 3, 3))
    assert not calendar.is_working_day(date(2027, 1, 1))
    assert not caplog.records


def test_overrides_win_over_the_builtin_table() -> None:
    calendar = WorkingCalendar({date(2025, 10, 1): True, date(2025, 9, 29): False})
    assert calendar.is_working_day(date(2025, 10, 1))
    assert not calendar.is_working_day(date(2025, 9, 29))
    # Days without an override still come from the built-in table.
    assert calendar.is_working_day(date(2025, 9, 28))


def test_coverage_tells_where_a_year_comes_from() -> None:
    calendar = WorkingCalendar({date(2027, 2, 7): True})
    assert calendar.coverage(2025) == "builtin"
    assert calendar.coverage(2027) == "override"
    assert calendar.coverage(2028) == "fallback"
    assert calendar.coverage(1999) == "fallback"


def test_zero_days_is_the_same_day_even_on_a_holiday(calendar: WorkingCalendar) -> None:
    assert calendar.add_working_days(date(2025, 10, 1), 0) == date(2025, 10, 1)


def test_start_day_is_not_counted(calendar: WorkingCalendar) -> None:
    # Monday + 1 working day is Tuesday: one whole day, not 24 office hours (≈3 days).
    assert calendar.add_working_days(date(2025, 9, 15), 1) == date(2025, 9, 16)


def test_adding_days_skips_the_national_day_week(calendar: WorkingCalendar) -> None:
    assert calendar.add_working_days(date(2025, 9, 30), 1) == date(2025, 10, 9)


def test_adding_days_counts_a_make_up_sunday(calendar: WorkingCalendar) -> None:
    assert calendar.add_working_days(date(2025, 9, 26), 1) == date(2025, 9, 28)


def test_negative_days_are_rejected(calendar: WorkingCalendar) -> None:
    with pytest.raises(ValueError):
        calendar.add_working_days(date(2025, 9, 15), -1)


def test_fractional_days_are_rejected(calendar: WorkingCalendar) -> None:
    with pytest.raises(TypeError):
        calendar.add_working_days(date(2025, 9, 15), 1.5)  # type: ignore[arg-type]


def test_timestamps_are_rejected_so_hours_never_count(calendar: WorkingCalendar) -> None:
    with pytest.raises(TypeError):
        calendar.is_working_day(datetime(2025, 9, 15, 9, 0))
    with pytest.raises(TypeError):
        calendar.add_working_days(datetime(2025, 9, 15, 9, 0), 1)


def test_working_days_between_excludes_start_and_includes_end(calendar: WorkingCalendar) -> None:
    assert calendar.working_days_between(date(2025, 9, 15), date(2025, 9, 19)) == 4
    assert calendar.working_days_between(date(2025, 9, 30), date(2025, 10, 9)) == 1


def test_working_days_between_is_zero_when_end_is_not_after_start(
    calendar: WorkingCalendar,
) -> None:
    assert calendar.working_days_between(date(2025, 9, 19), date(2025, 9, 19)) == 0
    assert calendar.working_days_between(date(2025, 9, 19), date(2025, 9, 1)) == 0


@given(start=any_day, days=some_days)
def test_added_days_land_on_a_working_day(start: date, days: int) -> None:
    calendar = WorkingCalendar()
    assert calendar.is_working_day(calendar.add_working_days(start, days))


@given(start=any_day, days=st.integers(min_value=0, max_value=60))
def test_adding_days_is_strictly_monotonic(start: date, days: int) -> None:
    calendar = WorkingCalendar()
    assert calendar.add_working_days(start, days + 1) > calendar.add_working_days(start, days)


@given(start=any_day, days=st.integers(min_value=0, max_value=60))
def test_working_days_between_inverts_add_working_days(start: date, days: int) -> None:
    calendar = WorkingCalendar()
    assert calendar.working_days_between(start, calendar.add_working_days(start, days)) == days


@given(
    start=any_day,
    days=some_days,
    overrides=st.dictionaries(any_day, st.booleans(), max_size=20),
)
def test_properties_hold_with_province_overrides(
    start: date, days: int, overrides: dict[date, bool]
) -> None:
    calendar = WorkingCalendar(overrides)
    end = calendar.add_working_days(start, days)
    assert calendar.is_working_day(end)
    assert calendar.working_days_between(start, end) == days


NOTICE_2027 = {
    "year": 2027,
    "source": "国务院办公厅关于2027年部分节假日安排的通知",
    "holidays": [
        {"name": "元旦", "from": "2027-01-01", "to": "2027-01-03"},
        {"name": "春节", "from": "2027-02-05", "to": "2027-02-11"},
    ],
    "workdays": [{"name": "春节调休", "date": "2027-02-14"}],
}


def test_notice_expands_holiday_ranges_and_make_up_days() -> None:
    entries = parse_notice(NOTICE_2027)
    overrides = overrides_from_notice(entries)
    assert len(entries) == 3 + 7 + 1
    assert overrides[date(2027, 1, 2)] is False
    assert overrides[date(2027, 2, 14)] is True
    assert HolidayNoticeEntry(date(2027, 2, 5), False, "春节") in entries


def test_calendar_built_from_a_notice_uses_it() -> None:
    calendar = WorkingCalendar(overrides_from_notice(parse_notice(NOTICE_2027)))
    assert calendar.coverage(2027) == "override"
    assert not calendar.is_working_day(date(2027, 2, 8))  # a Monday in the Spring Festival
    assert calendar.is_working_day(date(2027, 2, 14))  # make-up Sunday
    assert calendar.add_working_days(date(2027, 2, 4), 1) == date(2027, 2, 12)


def _notice(**changes: object) -> dict[str, object]:
    return {**NOTICE_2027, **changes}


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (_notice(year="2027"), "year"),
        (_notice(source=""), "source"),
        (_notice(holidays=None), "holidays"),
        (
            _notice(holidays=[{"name": "元旦", "from": "2027-01-03", "to": "2027-01-01"}]),
            "holidays[0].to",
        ),
        (
            _notice(holidays=[{"name": "元旦", "from": "20270101", "to": "2027-01-01"}]),
            "holidays[0].from",
        ),
        (
            _notice(holidays=[{"name": "", "from": "2027-01-01", "to": "2027-01-01"}]),
            "holidays[0].name",
        ),
        (
            _notice(holidays=[{"name": "国庆", "from": "2027-10-01", "to": "2027-12-07"}]),
            "holidays[0].to",
        ),
        (_notice(workdays=[{"name": "调休", "date": "2027-02-30"}]), "workdays[0].date"),
        (_notice(workdays=[{"name": "调休", "date": "2029-01-04"}]), "workdays[0].date"),
        (_notice(workdays=["2027-02-14"]), "workdays[0]"),
    ],
)
def test_invalid_notice_names_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_notice(document)
    assert str(raised.value).startswith(f"{field}:")


def test_notice_may_reach_into_the_neighbouring_year() -> None:
    entries = parse_notice(
        _notice(holidays=[{"name": "元旦", "from": "2026-12-31", "to": "2027-01-02"}], workdays=[])
    )
    assert [e.day for e in entries] == [date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 2)]


def test_a_day_cannot_be_both_holiday_and_working_day() -> None:
    with pytest.raises(ValueError, match="both"):
        parse_notice(_notice(workdays=[{"name": "调休", "date": "2027-02-06"}]))


# --- notices: exact messages and boundaries -------------------------------------------------------

HOLIDAY = {"name": "元旦", "from": "2027-01-01", "to": "2027-01-01"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "notice: must be a JSON object"),
        (_notice(year=True), "year: must be an integer year"),
        (_notice(year=1948), "year: must be an integer year"),
        (_notice(year=9999), "year: must be an integer year"),
        (_notice(source=None), "source: must name the notice the schedule comes from"),
        (_notice(source="  "), "source: must name the notice the schedule comes from"),
        (_notice(holidays="元旦"), "holidays: must be a list (empty if none)"),
        (_notice(workdays=None), "workdays: must be a list (empty if none)"),
        (_notice(holidays=["元旦"]), "holidays[0]: must be an object"),
        (_notice(holidays=[HOLIDAY, {**HOLIDAY, "name": 3}]), "holidays[1].name: must be a non-empty string"),
        (_notice(holidays=[{**HOLIDAY, "from": 20270101}]), "holidays[0].from: must be a date written YYYY-MM-DD"),
        (_notice(holidays=[{**HOLIDAY, "from": "2027-02-30"}]), "holidays[0].from: 2027-02-30 is not a calendar date"),
        (_notice(holidays=[{**HOLIDAY, "to": "2029-01-01"}]), "holidays[0].to: 2029-01-01 is outside 2026–2028"),
        (_notice(holidays=[{**HOLIDAY, "from": "2025-12-31"}]), "holidays[0].from: 2025-12-31 is outside 2026–2028"),
        (_notice(holidays=[{**HOLIDAY, "from": "2027-01-03"}]), "holidays[0].to: 2027-01-01 is before from 2027-01-03"),
        (_notice(holidays=[{**HOLIDAY, "to": "2027-02-01"}]), "holidays[0].to: a holiday longer than 31 days"),
        (_notice(workdays=[{"name": "调休"}]), "workdays[0].date: must be a date written YYYY-MM-DD"),
        (_notice(workdays=[{"date": "2027-02-14"}]), "workdays[0].name: must be a non-empty string"),
        (_notice(workdays=[{"name": "调休", "date": "2027-02-06"}]),
         "2027-02-06 is listed both as a holiday and as a working day"),
    ],
)
def test_notice_errors_say_what_is_wrong(document: object, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_notice(document)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_notice_boundaries_are_accepted() -> None:
    entries = parse_notice({
        "year": 2027, "source": "通知",
        "holidays": [{"name": " 长假 ", "from": "2027-01-01", "to": "2027-01-31"}],
        "workdays": [{"name": "调休", "date": "2028-12-31"}],
    })
    assert len(entries) == 32
    assert (entries[0].name, entries[0].working, entries[-1].working) == ("长假", False, True)
    assert (entries[-1].name, entries[-1].day) == ("调休", date(2028, 12, 31))
    one_day = parse_notice(_notice(holidays=[HOLIDAY], workdays=[]))
    assert [(e.day, e.name) for e in one_day] == [(date(2027, 1, 1), "元旦")]
    assert parse_notice({"year": 1949, "source": "通知", "holidays": [], "workdays": []}) == []
    assert parse_notice({"year": 9998, "source": "通知", "holidays": [], "workdays": []}) == []


def test_coverage_of_a_year_loaded_from_a_notice_and_of_one_without() -> None:
    calendar = WorkingCalendar({date(2031, 10, 1): False})
    assert [calendar.coverage(year) for year in (2031, 2026, 2032)] == ["override", "builtin", "fallback"]
