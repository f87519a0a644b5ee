"""Working-day calendar for statutory time limits.

Administrative Licensing Law Art. 82: time limits are counted in working days, excluding statutory
holidays, and in whole days — never in hours. The built-in table (``chinese_calendar``) covers a
fixed range of years; each later year is loaded by the province from the State Council holiday
notice (published around November) as overrides. Outside both, Monday to Friday is used and a
warning is logged, because a deadline computed that way may ignore a holiday.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import chinese_calendar

_log = logging.getLogger("workflow.calendar")

Coverage = Literal["override", "builtin", "fallback"]

_ONE_DAY = timedelta(days=1)


def _require_day(value: object, what: str) -> date:
    # datetime is a subclass of date; accepting it would invite hour arithmetic and time-zone
    # mistakes (a UTC timestamp falls on the previous day in China before 08:00).
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"{what} must be a datetime.date (whole day), got {type(value).__name__}")
    return value


@lru_cache(maxsize=8192)
def _builtin_is_workday(day: date) -> bool | None:
    """The built-in table's answer, or None when the year is outside its range."""
    # Cached because the library re-scans its whole table for the year range on every call.
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return None


class WorkingCalendar:
    """Decides which days count towards a time limit.

    Lookup order: the province's override table, then the built-in table, then Monday–Friday.
    """

    def __init__(self, overrides: Mapping[date, bool] | None = None) -> None:
        self._overrides: dict[date, bool] = {}
        for day, working in (overrides or {}).items():
            _require_day(day, "override key")
            if not isinstance(working, bool):
                raise TypeError(f"override for {day.isoformat()} must be a bool")
            self._overrides[day] = working
        self._override_years = frozenset(day.year for day in self._overrides)
        # Warn once per year, not once per call: a deadline scan asks thousands of times.
        self._warned_years: set[int] = set()
        # Per year, working days counted from 1 January: the calendar never changes once built (a
        # loaded notice makes a new one), so day counts are looked up instead of walked day by day.
        self._counts: dict[int, list[int]] = {}

    def is_working_day(self, day: date) -> bool:
        _require_day(day, "day")
        if day in self._overrides:
            return self._overrides[day]
        builtin = _builtin_is_workday(day)
        if builtin is not None:
            return builtin
        if day.year not in self._override_years:
            self._warn_fallback(day.year)
        # A loaded notice lists every holiday and make-up day of its year, so for the other days
        # of that year Monday–Friday is exact, not a guess.
        return day.weekday() < 5

    def coverage(self, year: int) -> Coverage:
        if year in self._override_years:
            return "override"
        if _builtin_is_workday(date(year, 1, 1)) is not None:
            return "builtin"
        return "fallback"

    def add_working_days(self, start: date, days: int) -> date:
        """The ``days``-th working day after ``start``; the start day itself is not counted.

        ``days == 0`` returns ``start``: an instant item (即办件) is due the same day.
        """
        _require_day(start, "start")
        # A float would never count down to zero exactly; limits are whole working days.
        if not isinstance(days, int) or isinstance(days, bool):
            raise TypeError(f"days must be an int, got {type(days).__name__}")
        if days < 0:
            raise ValueError(f"days must not be negative, got {days}")
        if days == 0:
            return start
        year = start.year
        counts = self._year_counts(year)
        # Working days of ``year`` already behind us; the wanted day is the first reaching this count.
        wanted = counts[_day_index(start)] + days
        while wanted > counts[-1]:
            wanted -= counts[-1]
            year += 1
            counts = self._year_counts(year)
        return date(year, 1, 1) + timedelta(days=bisect_left(counts, wanted))

    def working_days_between(self, start: date, end: date) -> int:
        """Number of working days d with start < d <= end (0 when end <= start)."""
        _require_day(start, "start")
        _require_day(end, "end")
        if end <= start:
            return 0
        before = self._year_counts(start.year)[_day_index(start)]
        through = self._year_counts(end.year)[_day_index(end)]
        whole_years = sum(self._year_counts(year)[-1] for year in range(start.year, end.year))
        return whole_years + through - before

    def _year_counts(self, year: int) -> list[int]:
        """counts[i]: working days from 1 January of ``year`` through its i-th day (0-based)."""
        counts = self._counts.get(year)
        if counts is None:
            counts = []
            total = 0
            day = date(year, 1, 1)
            while day.year == year:
                total += self.is_working_day(day)
                counts.append(total)
                day += _ONE_DAY
            self._counts[year] = counts
        return counts

    def _warn_fallback(self, year: int) -> None:
        if year in self._warned_years:
            return
        self._warned_years.add(year)
        _log.warning(
            "no holiday schedule for %d: counting Monday-Friday as working days; "
            "load the State Council holiday notice for %d as calendar overrides",
            year,
            year,
        )


def _day_index(day: date) -> int:
    return day.timetuple().tm_yday - 1


@dataclass(frozen=True)
class HolidayNoticeEntry:
    """One day of a State Council holiday notice: a holiday or a make-up working day (调休上班)."""

    day: date
    working: bool
    name: str


def overrides_from_notice(entries: Iterable[HolidayNoticeEntry]) -> dict[date, bool]:
    """Turn notice entries into ``WorkingCalendar`` overrides; a day may not be both kinds."""
    overrides: dict[date, bool] = {}
    for entry in entries:
        known = overrides.get(entry.day)
        if known is not None and known != entry.working:
            raise ValueError(
                f"{entry.day.isoformat()} is listed both as a holiday and as a working day"
            )
        overrides[entry.day] = entry.working
    return overrides


# Longest holiday span we accept in one entry; the longest real one (Spring Festival) is ~9 days,
# so anything longer is almost certainly a typo in a month or year.
_MAX_HOLIDAY_SPAN_DAYS = 31

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_notice(data: dict[str, Any]) -> list[HolidayNoticeEntry]:
    """Validate a holiday notice document and list its days.

    Shape: ``{"year": 2027, "source": "国务院办公厅关于2027年部分节假日安排的通知",
    "holidays": [{"name": "元旦", "from": "2027-01-01", "to": "2027-01-01"}, ...],
    "workdays": [{"name": "春节调休", "date": "2027-02-07"}, ...]}``. Dates must fall in ``year`` or
    a neighbouring year (a New Year holiday or make-up day may cross the boundary). Errors are
    ``ValueError`` naming the offending field, e.g. ``holidays[2].to``.
    """
    if not isinstance(data, dict):
        raise ValueError("notice: must be a JSON object")
    year = data.get("year")
    if not isinstance(year, int) or isinstance(year, bool) or not 1949 <= year <= 9998:
        raise ValueError("year: must be an integer year")
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ValueError("source: must name the notice the schedule comes from")
    allowed_years = range(year - 1, year + 2)
    entries = _parse_holidays(data.get("holidays"), allowed_years)
    entries += _parse_workdays(data.get("workdays"), allowed_years)
    overrides_from_notice(entries)  # rejects a day listed both ways
    return entries


def _parse_holidays(value: object, allowed_years: range) -> list[HolidayNoticeEntry]:
    items = _require_list(value, "holidays")
    entries: list[HolidayNoticeEntry] = []
    for index, item in enumerate(items):
        where = f"holidays[{index}]"
        fields = _require_object(item, where)
        name = _require_name(fields, where)
        first = _parse_day(fields.get("from"), f"{where}.from", allowed_years)
        last = _parse_day(fields.get("to"), f"{where}.to", allowed_years)
        if last < first:
            raise ValueError(f"{where}.to: {last.isoformat()} is before from {first.isoformat()}")
        if (last - first).days >= _MAX_HOLIDAY_SPAN_DAYS:
            raise ValueError(f"{where}.to: a holiday longer than {_MAX_HOLIDAY_SPAN_DAYS} days")
        day = first
        while day <= last:
            entries.append(HolidayNoticeEntry(day=day, working=False, name=name))
            day += _ONE_DAY
    return entries


def _parse_workdays(value: object, allowed_years: range) -> list[HolidayNoticeEntry]:
    items = _require_list(value, "workdays")
    entries: list[HolidayNoticeEntry] = []
    for index, item in enumerate(items):
        where = f"workdays[{index}]"
        fields = _require_object(item, where)
        name = _require_name(fields, where)
        day = _parse_day(fields.get("date"), f"{where}.date", allowed_years)
        entries.append(HolidayNoticeEntry(day=day, working=True, name=name))
    return entries


def _require_list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: must be a list (empty if none)")
    return value


def _require_object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be an object")
    return value


def _require_name(fields: dict[str, Any], where: str) -> str:
    name = fields.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}.name: must be a non-empty string")
    return name.strip()


def _parse_day(value: object, where: str, allowed_years: range) -> date:
    # fromisoformat alone would also take "20270101" or week dates; the notice format is fixed.
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):
        raise ValueError(f"{where}: must be a date written YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: {value} is not a calendar date") from None
    if day.year not in allowed_years:
        raise ValueError(
            f"{where}: {value} is outside {allowed_years.start}–{allowed_years.stop - 1}"
        )
    return day
