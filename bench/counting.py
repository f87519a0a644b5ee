"""SQL statements and commits a benchmark server sends to PostgreSQL, counted in the server itself.

Both servers of ``bench.submit`` (the hub and the baseline) call ``install()`` when ``BENCH_STATS_DIR``
is set. It wraps psycopg's ``Cursor.execute``/``executemany`` and ``Connection.commit``/``rollback``
— the driver level, under SQLAlchemy — so every round trip counts, including what never passes through
SQLAlchemy's events: the pool's pre-ping ``SELECT 1``, the outbox ``NOTIFY`` issued from the commit
hook, savepoints. Each process keeps its counters in a small memory-mapped file
``<BENCH_STATS_DIR>/<side>.<pid>`` that the benchmark reads between rounds (``read_totals``), so any
number of uvicorn workers can be summed without asking them over HTTP. The cost is a lock and a
``struct.pack_into`` per statement: about a microsecond, against the 0.3 ms or more a statement costs.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path
from typing import Any

FORMAT = "<QQQ"  # statements, commits, rollbacks
SIZE = struct.calcsize(FORMAT)
_installed = False


class _Counters:
    def __init__(self, path: Path) -> None:
        with path.open("w+b") as file:
            file.write(b"\0" * SIZE)
            file.flush()
            self._map = mmap.mmap(file.fileno(), SIZE)
        self._lock = threading.Lock()  # endpoints run in a thread pool: += is not atomic across threads
        self._values = [0, 0, 0]

    def add(self, index: int) -> None:
        with self._lock:
            self._values[index] += 1
            struct.pack_into(FORMAT, self._map, 0, *self._values)


def install(side: str) -> None:
    """Count this process's statements into ``$BENCH_STATS_DIR/<side>.<pid>`` (nothing without it)."""
    global _installed
    directory = os.environ.get("BENCH_STATS_DIR")
    if not directory or _installed:
        return
    _installed = True
    import psycopg

    counters = _Counters(Path(directory) / f"{side}.{os.getpid()}")

    def counted(method: Any, index: int) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counters.add(index)
            return method(self, *args, **kwargs)

        wrapper.__wrapped__ = method  # type: ignore[attr-defined]
        return wrapper

    psycopg.Cursor.execute = counted(psycopg.Cursor.execute, 0)  # type: ignore[method-assign]
    psycopg.Cursor.executemany = counted(psycopg.Cursor.executemany, 0)  # type: ignore[method-assign]
    psycopg.Connection.commit = counted(psycopg.Connection.commit, 1)  # type: ignore[method-assign]
    rollback = psycopg.Connection.rollback

    def counted_rollback(self: Any) -> None:
        # The pool rolls back every connection it takes back; psycopg sends nothing when no transaction
        # is open, so neither is that counted.
        if self.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            counters.add(2)
        rollback(self)

    psycopg.Connection.rollback = counted_rollback  # type: ignore[method-assign]
    # The hub's pool pings with libpq's own call (hub.db._ping_round_trip), under psycopg's cursor: counted here
    # when the round trip is sent (not for a connection returned a moment ago, checked by a poll of its socket),
    # so the hub's figure includes its pings as the baseline's includes its pool_pre_ping.
    import hub.db

    hub.db._ping_round_trip = counted_function(hub.db._ping_round_trip, counters)  # type: ignore[assignment]


def counted_function(function: Any, counters: _Counters) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counters.add(0)
        return function(*args, **kwargs)

    return wrapper


def read_totals(directory: Path, side: str) -> tuple[int, int, int]:
    """Statements, commits and rollbacks so far, summed over every process of ``side``."""
    totals = [0, 0, 0]
    for path in directory.glob(f"{side}.*"):
        data = path.read_bytes()
        if len(data) >= SIZE:
            for i, value in enumerate(struct.unpack_from(FORMAT, data)):
                totals[i] += value
    return totals[0], totals[1], totals[2]
