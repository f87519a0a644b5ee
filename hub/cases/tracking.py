"""How a case is named: its tracking number (办件编号) and the digest of its query code (查询码).

A tracking number is region + day + a per-region, per-day sequence (workflow/identifiers.py).

On PostgreSQL a process reserves a block of numbers of a region's day at a time, in one short
transaction of its own (``last = last + size … RETURNING last``), and hands them out from memory under a
lock. Concurrent submissions of one region therefore never queue on the sequence row, and only one
submission in a block pays for a round trip to it (a second connection, a transaction). A block is
``BLOCK`` numbers; when a region's block was used up within ``BUSY_S`` of its reservation the next one is
twice as large, up to ``MAX_BLOCK`` (a busy region pays the round trip once in hundreds of submissions), and
back to ``BLOCK`` when it was not. Blocks of different processes never overlap (the upsert is atomic), so
numbers are unique across processes and increasing within one; a process that stops leaves the rest of its
block unused — a gap, harmless like the gap of a failed submission: at most ``MAX_BLOCK - 1`` numbers of the
999,999 of a region's day per stopped process, and only while that region was busy
(docs/architecture.md, "The submission path").

SQLite keeps the number in the submission's own transaction: one writer at a time anyway, and a second
connection would break the transaction's snapshot.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import weakref
from datetime import date
from typing import NamedTuple

from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.cases.models import TrackingSequence
from workflow import identifiers as ids

BLOCK = 32  # 999,999 numbers a region's day: a restart wastes at most BLOCK - 1 of them per process when quiet
MAX_BLOCK = 1024  # … and at most MAX_BLOCK - 1 while the region is busy
BUSY_S = 10.0  # a block used up within this many seconds: the region is busy, the next block is twice as large
QUERY_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def new_query_code() -> str:
    # One read of the system's randomness instead of eight; 256 % 31 bias is negligible for a query code.
    return "".join(QUERY_CODE_ALPHABET[b % len(QUERY_CODE_ALPHABET)] for b in secrets.token_bytes(8))


def query_code_digest(tracking_no: str, query_code: str) -> str:
    return hashlib.sha256(f"{tracking_no}:{query_code.strip().upper()}".encode()).hexdigest()


def tracking_number(session: Session, region_code: str, day: date) -> str:
    return ids.build_tracking_number(region_code, day, next_sequence(session, region_code, day))


def next_sequence(session: Session, region_code: str, day: date) -> int:
    """The next number of a region's day (see the module's docstring for how it is taken)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        engine = bind.engine if hasattr(bind, "engine") else bind
        return _blocks.take(engine, region_code, day)
    return _next_in_transaction(session, region_code, day)


class _Block(NamedTuple):
    following: int  # the next free number
    last: int  # the block's last number
    size: int  # how many numbers it was reserved with
    reserved_at: float  # time.monotonic() of its reservation


_NONE_YET = _Block(1, 0, BLOCK, float("-inf"))  # before the first block of a region's day: BLOCK numbers next


class _Blocks:
    """Per engine (one database), per region and day: the reserved block, handed out number by number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: weakref.WeakKeyDictionary[Engine, dict[tuple[str, date], _Block]] = weakref.WeakKeyDictionary()

    def take(self, engine: Engine, region_code: str, day: date) -> int:
        with self._lock:  # held across a reservation: the other threads need its numbers anyway
            blocks = self._free.get(engine)
            if blocks is None:
                blocks = self._free[engine] = {}
            block = blocks.get((region_code, day), _NONE_YET)
            if block.following > block.last:
                now = time.monotonic()
                size = min(block.size * 2, MAX_BLOCK) if now - block.reserved_at < BUSY_S else BLOCK
                last = _reserve(engine, region_code, day, size)
                block = _Block(last - size + 1, last, size, now)
                _forget_old_days(blocks, day)
            blocks[(region_code, day)] = block._replace(following=block.following + 1)
            return block.following


    def ensure(self, engine: Engine, needs: dict[tuple[str, date], int]) -> None:
        """Make sure ``needs[(region, day)]`` numbers of each region's day are free in this process, reserving
        every missing block in ONE short transaction (a batch of partner records numbers new cases of many
        days: a block per day, one transaction each, was most of the sequence's cost). A block replaced
        here leaves its rest unused, a gap like any other."""
        with self._lock:
            blocks = self._free.setdefault(engine, {})
            short = {}
            for key, count in needs.items():
                block = blocks.get(key, _NONE_YET)
                if block.last - block.following + 1 < count:
                    short[key] = max(count, BLOCK)
            if not short:
                return
            for key in [k for k, b in blocks.items() if b.following > b.last and k not in needs]:
                del blocks[key]  # used up: partner cases are numbered by many past days, each kept otherwise
            now = time.monotonic()
            for key, last in _reserve_many(engine, short).items():
                blocks[key] = _Block(last - short[key] + 1, last, short[key], now)


def _forget_old_days(blocks: dict[tuple[str, date], _Block], day: date) -> None:
    # Partner records may still number an older day's case; a block a week old is dropped (and wasted).
    for key in [k for k in blocks if (day - k[1]).days > 7]:
        del blocks[key]


def _reserve(engine: Engine, region_code: str, day: date, count: int) -> int:
    from sqlalchemy.dialects.postgresql import insert

    upsert = (
        insert(TrackingSequence).values(region_code=region_code, day=day, last=count)
        .on_conflict_do_update(index_elements=["region_code", "day"],
                               set_={"last": TrackingSequence.last + count})
        .returning(TrackingSequence.last)
    )
    with engine.begin() as connection:
        # No need to wait for this commit's own disk flush: a case that uses one of the numbers commits
        # after it, and PostgreSQL writes its log in order, so that commit makes this one durable too.
        connection.execute(text("SET LOCAL synchronous_commit = off"))
        return int(connection.execute(upsert).scalar_one())


# Every block in one statement, its rows in a fixed order (two processes reserving the same days never deadlock).
_RESERVE_MANY = text(
    "INSERT INTO tracking_sequences (region_code, day, last) "
    "SELECT r, d, n FROM unnest(CAST(:regions AS varchar[]), CAST(:days AS date[]), CAST(:counts AS integer[])) "
    "AS t(r, d, n) ORDER BY r, d "
    "ON CONFLICT (region_code, day) DO UPDATE SET last = tracking_sequences.last + excluded.last "
    "RETURNING region_code, day, last")


def _reserve_many(engine: Engine, counts: dict[tuple[str, date], int]) -> dict[tuple[str, date], int]:
    keys = sorted(counts)
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL synchronous_commit = off"))  # as `_reserve`
        rows = connection.execute(_RESERVE_MANY, {"regions": [r for r, _ in keys], "days": [d for _, d in keys],
                                                  "counts": [counts[k] for k in keys]})
        return {(region, day): int(last) for region, day, last in rows}


def reserve_for(session: Session, needs: dict[tuple[str, date], int]) -> None:
    """Before numbering many cases at once (a batch of partner records): take the numbers they will need of
    each region's day now, in one round trip, so ``tracking_number`` hands them out from memory. PostgreSQL
    only (SQLite numbers in the case's own transaction); a number reserved and not used is a gap."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql" and needs:
        _blocks.ensure(bind.engine if hasattr(bind, "engine") else bind, needs)


def _next_in_transaction(session: Session, region_code: str, day: date) -> int:
    bump = (
        update(TrackingSequence)
        .where(TrackingSequence.region_code == region_code, TrackingSequence.day == day)
        .values(last=TrackingSequence.last + 1)
        .returning(TrackingSequence.last)
    )
    value = session.execute(bump).scalar()
    if value is not None:
        return int(value)
    try:
        with session.begin_nested():
            session.add(TrackingSequence(region_code=region_code, day=day, last=1))
        return 1
    except IntegrityError:
        # Another transaction created today's row first: take the next number from it.
        return int(session.execute(bump).scalar_one())


_blocks = _Blocks()
