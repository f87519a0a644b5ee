"""The performance metrics' daily roll-up (issue 10, part metrics): one row per business day and department ×
region × item × channel in ``metrics_daily`` holding that day's additive case figures, so a report over a year
sums a few thousand rows instead of reading every case of the year (hub/supervision/metrics.py reads it).

Exact by construction, not by care on every write path:

* a day's row is computed by the very statement the report runs on the cases (``metrics.live_case_sums``);
* the roll-up holds the days up to a watermark (``metrics_rollup.rolled_until``) that stays before today, so
  the write path's ordinary writes — a submission, an acceptance, a decision: today's figures — touch no
  roll-up row at all (no hot row, no lock shared by a region's submissions);
* a write that changes the figures of a rolled-up day (a partner record with past dates, a correction, a
  deletion) marks the day dirty in ``metrics_dirty_days`` from a trigger on ``cases`` (migration 0015), in the
  writer's own transaction — whatever the code path, ORM or SQL; the report reads dirty days from the cases
  until this job recomputes them;
* the watermark advances only under ``LOCK TABLE cases IN SHARE MODE`` (PostgreSQL): every writer that read
  the old watermark has committed before the new one is visible, and every later writer sees it and marks.

`hub worker` runs ``roll_up`` (job ``metrics-rollup``) every ``HUB_SUPERVISION_METRICS_ROLLUP_INTERVAL_S``;
each call is one bounded transaction, and the job runs again at once while there is work.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import business_date
from hub.db import unit_of_work
from hub.supervision.metrics import (
    DAILY_FIGURES,
    ROLLUP_ID,
    Period,
    cases,
    daily,
    dirty_days,
    live_case_sums,
    rollup_state,
)

log = logging.getLogger("hub.supervision.rollup")

KEYS = ("department_id", "region_code", "item_id", "channel")  # metrics_daily's key besides the day
LOCK_TIMEOUT = "1s"  # writers queue behind the lock request: wait at most this long, then try again later


def roll_up(factory: sessionmaker[Session], *, now: datetime, days: int) -> int:
    """One step of the roll-up, in its own transaction: recompute up to ``days`` dirty days, else advance the
    watermark by up to ``days`` days (never to today). Returns the days done; 0: nothing to do (or the lock on
    the cases was not granted within ``LOCK_TIMEOUT``: next time)."""
    with unit_of_work(factory) as session:
        done = recompute_dirty(session, limit=days)
    if done:
        return done
    try:
        with unit_of_work(factory) as session:
            return advance(session, now=now, days=days)
    except OperationalError as error:  # lock_timeout: writers were busy; they were not held for long
        log.info("metrics roll-up: the watermark waits (%s)", error.orig)
        return 0


def recompute_dirty(session: Session, *, limit: int) -> int:
    """Recompute the first ``limit`` dirty days up to the watermark. The marks are read before the days and
    deleted by id: a writer whose mark this read did not see (not committed yet) keeps it, so its day is
    recomputed again next time; a writer committed before the read is in the recompute."""
    rolled_until = watermark(session)
    if rolled_until is None:
        return 0
    days = select(dirty_days.c.day).where(dirty_days.c.day <= rolled_until).distinct().order_by(dirty_days.c.day)
    found = list(session.scalars(days.limit(limit)))
    if not found:
        return 0
    marks = list(session.scalars(select(dirty_days.c.id).where(dirty_days.c.day.in_(found))))
    session.execute(delete(dirty_days).where(dirty_days.c.id.in_(marks)))
    for day in found:
        recompute_day(session, day)
    return len(found)


def recompute_day(session: Session, day: date) -> int:
    """Replace ``day``'s rows with what the cases say now; returns the rows written."""
    session.execute(delete(daily).where(daily.c.day == day))
    grouped = live_case_sums(session, [], [Period(day, day)], [cases.c[name] for name in KEYS])
    rows = [{"day": day, **dict(zip(KEYS, key, strict=True)), **{name: getattr(sums, name) for name in DAILY_FIGURES}}
            for key, sums in grouped.items() if any(getattr(sums, name) for name in DAILY_FIGURES)]
    if rows:
        session.execute(insert(daily), rows)
    return len(rows)


def advance(session: Session, *, now: datetime, days: int) -> int:
    """Move the watermark up to ``days`` days on, at most to yesterday, and mark the days it takes in as dirty
    (recomputed by the next steps; read from the cases until then)."""
    current = watermark(session, create=True)
    start = current + timedelta(days=1) if current is not None else first_day(session)
    until = business_date(now) - timedelta(days=1)
    if start is None or start > until:
        return 0
    until = min(until, start + timedelta(days=days - 1))
    _hold_writers(session)
    session.execute(update(rollup_state).where(rollup_state.c.id == ROLLUP_ID)
                    .values(rolled_until=until, updated_at=now))
    session.execute(delete(dirty_days).where(dirty_days.c.day.between(start, until)))
    session.execute(insert(dirty_days), [{"day": start + timedelta(days=n)}
                                         for n in range((until - start).days + 1)])
    return (until - start).days + 1


def _hold_writers(session: Session) -> None:
    """PostgreSQL: wait until every transaction writing cases has committed, and hold new ones until this one
    commits — a writer that read the old watermark (and so marked nothing) is then already visible to the
    roll-up. SQLite has one writer at a time already."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    session.execute(text("LOCK TABLE cases IN SHARE MODE"))


def watermark(session: Session, *, create: bool = False) -> date | None:
    found = session.execute(select(rollup_state.c.rolled_until).where(rollup_state.c.id == ROLLUP_ID)).first()
    if found is None and create:  # migration 0015 inserts the row; a schema made otherwise may lack it
        session.execute(insert(rollup_state).values(id=ROLLUP_ID, rolled_until=None, updated_at=None))
    return found.rolled_until if found is not None else None


def first_day(session: Session) -> date | None:
    """The first business day any application's figure falls on: where the roll-up starts."""
    submitted, accepted, completed = session.execute(
        select(func.min(cases.c.submitted_at), func.min(cases.c.accepted_on), func.min(cases.c.completed_at))
        .where(cases.c.parent_id.is_(None))).one()
    found = [day for day in (submitted and business_date(submitted), accepted,
                             completed and business_date(completed)) if day is not None]
    return min(found) if found else None


def reset(session: Session) -> None:
    """Forget the roll-up (the report then reads every day from the cases); the job starts again from the first
    day. For operators after a bulk load that bypassed the trigger (none should), and for tests."""
    session.execute(update(rollup_state).where(rollup_state.c.id == ROLLUP_ID)
                    .values(rolled_until=None, updated_at=None))
    session.execute(delete(dirty_days))
    session.execute(delete(daily))
