"""The province's working-day calendar: built-in table plus State Council notices it loads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, extract, select
from sqlalchemy.orm import Session

from hub import refcache
from hub.calendar.models import CalendarOverride
from hub.errors import FieldError, ValidationFailed
from workflow.calendar import WorkingCalendar, overrides_from_notice, parse_notice


def load_calendar(session: Session) -> WorkingCalendar:
    """The calendar with the loaded notices, from the process's reference cache (hub/refcache.py): read
    again only after a notice is loaded, here or in another process."""
    return refcache.lookup(session, refcache.CALENDAR, None, lambda: _read_calendar(session))


def _read_calendar(session: Session) -> WorkingCalendar:
    rows = session.execute(select(CalendarOverride.day, CalendarOverride.working))
    return WorkingCalendar({day: working for day, working in rows})


@dataclass(frozen=True)
class LoadedNotice:
    days: int  # overrides loaded
    recomputed: list[str]  # tracking numbers of the open cases whose deadlines changed


def load_notice(session: Session, *, notice: dict[str, Any], now: datetime, audit_key: str) -> LoadedNotice:
    """Replace one year's overrides with those of a holiday notice, then recompute the deadlines of the open
    cases the changed days reach (Art. 82: working days), each change recorded on its case."""
    try:
        entries = parse_notice(notice)
    except ValueError as exc:
        raise ValidationFailed([FieldError("notice", "holiday_notice", str(exc))]) from exc
    year = int(notice["year"])
    names = {e.day: e.name for e in entries}
    overrides = overrides_from_notice(entries)
    # The days a notice loaded before for this year: replaced, so they may change too.
    previous = list(session.scalars(select(CalendarOverride.day).where(extract("year", CalendarOverride.day) == year)))
    session.execute(
        delete(CalendarOverride).where(extract("year", CalendarOverride.day) == year)
    )
    source = str(notice.get("source", f"{year} holiday notice"))[:255]
    for day, working in sorted(overrides.items()):
        session.merge(
            CalendarOverride(
                day=day, working=working, name=names.get(day, "")[:64], source=source,
                loaded_at=now,
            )
        )
    session.flush()  # the engine hook marks the calendar stale: forgotten everywhere once this commits
    # The notice's calendar as this transaction sees it (the process's cache still holds the old one).
    calendar = _read_calendar(session)
    changed_days = [*overrides, *previous]
    if not changed_days:
        return LoadedNotice(len(overrides), [])
    from hub.cases.clock import recompute_open_deadlines  # hub.cases reads the calendar through this module

    changed = recompute_open_deadlines(session, calendar=calendar, first=min(changed_days), last=max(changed_days),
                                       now=now, audit_key=audit_key)
    return LoadedNotice(len(overrides), [case.tracking_no for case in changed])


def year_overview(session: Session, year: int) -> dict[str, Any]:
    calendar = load_calendar(session)
    start = date(year, 1, 1)
    days = [date.fromordinal(start.toordinal() + i) for i in range(366)]
    days = [d for d in days if d.year == year]
    rows = session.scalars(
        select(CalendarOverride).where(extract("year", CalendarOverride.day) == year)
    ).all()
    return {
        "year": year,
        "coverage": calendar.coverage(year),
        "working_days": sum(1 for d in days if calendar.is_working_day(d)),
        "overrides": [
            {"day": r.day.isoformat(), "working": r.working, "name": r.name, "source": r.source}
            for r in sorted(rows, key=lambda r: r.day)
        ],
    }
