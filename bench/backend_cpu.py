"""PostgreSQL's CPU per partner record, statement by statement: the backend's own clock around each statement the
inbound handler sends, without a broker and without pg_stat_statements (which needs a restart to preload).

    .venv/bin/python -m bench.backend_cpu [--records 3000] [--rounds 2] [--batch 50] [--database-url URL]

Creates a fresh database (as ``bench.ingest`` does), hands ``--records`` city-platform messages per round to
``InboundHandler.handle_batch`` and reads the serving backend's CPU time (``/proc/<pid>/schedstat``, nanoseconds:
the scheduler's run time, not the 10 ms ticks of ``/proc/<pid>/stat``) before and after every statement. The
statements are grouped by kind (their verb and first table); what the backend spends outside them — BEGIN,
COMMIT (the WAL flush), the protocol between statements — is the line "outside statements". Other processes
(the WAL writer, autovacuum) are not counted: this is the backend serving the worker, the part that is serial
with it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import event

from bench.ingest import BENCH_AUDIT_KEY, DEFAULT_DATABASE_URL, PARTNER, bench_messages, fresh_database
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory
from hub.exchange.consumer import InboundHandler
from hub.supervision import realtime
from mocks.city_platform import CityPlatform

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def backend_ns(pid: int) -> int:
    """The backend's CPU so far, in nanoseconds."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def kind_of(statement: str) -> str:
    """A statement's verb and first table: the line it is counted on."""
    words = statement.split(None, 1)
    verb = words[0].upper() if words else "?"
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return verb
    if verb == "WITH":
        verb = "WITH…" + (" UPDATE" if " UPDATE " in statement else " INSERT" if " INSERT " in statement else "")
    match = _TABLE.search(statement)
    return f"{verb} {match.group(1) if match else ''}".strip()


class Meter:
    """The backend's CPU per statement kind, read around each statement."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.rows: dict[str, int] = defaultdict(int)
        self._started: dict[int, int] = {}

    def before(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        self._started[id(cursor)] = backend_ns(conn.connection.dbapi_connection.info.backend_pid)

    def after(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        try:
            spent = backend_ns(conn.connection.dbapi_connection.info.backend_pid) - self._started.pop(id(cursor))
        except FileNotFoundError:
            return
        kind = kind_of(statement)
        self.ns[kind] += spent
        self.calls[kind] += 1
        self.rows[kind] += max(cursor.rowcount, 0)


class Explainer:
    """EXPLAIN (ANALYZE, BUFFERS, WAL) of every statement of one batch, each run first in a savepoint rolled back,
    with the statement's own parameters; then the statement itself runs as usual."""

    def __init__(self) -> None:
        self.on = False
        self.plans: list[str] = []

    def before(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not self.on or not statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "WITH")):
            return
        raw = conn.connection.dbapi_connection
        raw.execute("SAVEPOINT explain_it")
        plan = raw.execute("EXPLAIN (ANALYZE, BUFFERS, WAL, VERBOSE OFF) " + statement, parameters).fetchall()
        raw.execute("ROLLBACK TO SAVEPOINT explain_it")
        self.plans.append(statement[:300] + "\n" + "\n".join(row[0] for row in plan))


def one_round(handler: InboundHandler, engine: Any, records: int, seed: int,
              explainer: Explainer | None = None) -> tuple[Meter, int, float]:
    messages = bench_messages(CityPlatform("amqp://unused", PARTNER, seed=seed).plan(records))
    meter = Meter()
    started: dict[int, int] = {}  # every backend the handler used: its CPU when first handed out

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        pid = dbapi_connection.info.backend_pid
        started.setdefault(pid, backend_ns(pid))

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "before_cursor_execute", meter.before)
    event.listen(engine, "after_cursor_execute", meter.after)
    worker = time.thread_time()
    for n, i in enumerate(range(0, len(messages), handler.batch_size)):
        if explainer is not None:
            explainer.on = n == 20
        handler.handle_batch(messages[i:i + handler.batch_size])
    worker = time.thread_time() - worker
    total = 0
    for pid, ns in started.items():
        try:
            total += backend_ns(pid) - ns
        except FileNotFoundError:  # the backend went away (terminated from outside): its CPU is lost
            print(f"  backend {pid} went away during the round: its CPU is not counted", file=sys.stderr)
    for name, listener in (("checkout", checkout), ("before_cursor_execute", meter.before),
                           ("after_cursor_execute", meter.after)):
        event.remove(engine, name, listener)
    meter.ns["(outside statements: BEGIN, COMMIT, protocol)"] = total - sum(meter.ns.values())
    meter.calls["(backends used)"] = len(started)
    return meter, len(messages), worker / len(messages) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.backend_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE one more round's 21st batch")
    parser.add_argument("--database-url", default=os.environ.get("HUB_TEST_POSTGRES_URL", DEFAULT_DATABASE_URL))
    args = parser.parse_args(argv)
    with fresh_database(args.database_url) as url:
        engine = make_engine(url)
        handler = InboundHandler(make_session_factory(engine), SystemClock(), "hub", BENCH_AUDIT_KEY,
                                 batch_size=args.batch)
        realtime.install()
        one_round(handler, engine, 300, seed=1)  # warm-up: caches, prepared statements
        totals: list[float] = []
        for round_ in range(args.rounds):
            meter, n, worker = one_round(handler, engine, args.records, seed=100 + round_)
            total = sum(meter.ns.values()) / n / 1e6
            totals.append(total)
            print(f"round {round_ + 1}: {n} records, backend {total:.3f} ms CPU/record, handler thread "
                  f"{worker:.3f} ms/record (load {os.getloadavg()[0]:.2f})")
            for kind, ns in sorted(meter.ns.items(), key=lambda item: -item[1]):
                calls = meter.calls.get(kind, 0)
                print(f"  {ns / n / 1e3:8.1f} µs/record {ns / max(sum(meter.ns.values()), 1) * 100:5.1f} %  "
                      f"{calls / n:5.2f} calls/record  {meter.rows.get(kind, 0) / max(calls, 1):6.1f} rows/call  "
                      f"{kind}")
        print(f"median backend CPU {statistics.median(totals):.3f} ms/record")
        with engine.connect() as connection:  # the pool's connection the handler used: how its statements were planned
            plans = connection.exec_driver_sql(
                "SELECT generic_plans, custom_plans, left(regexp_replace(statement, '\\s+', ' ', 'g'), 90) "
                "FROM pg_prepared_statements ORDER BY custom_plans DESC LIMIT 12").all()
        print("prepared statements of one pooled connection (generic plans, custom plans, statement):")
        for generic, custom, statement in plans:
            print(f"  {generic:6d} {custom:6d}  {statement}")
        if args.explain:
            explainer = Explainer()
            event.listen(engine, "before_cursor_execute", explainer.before)
            one_round(handler, engine, args.records, seed=999, explainer=explainer)
            print("\n\n".join(explainer.plans))
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
