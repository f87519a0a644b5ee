"""Where the inbound handler's CPU per partner record goes, by phase, without a profiler: which part of it a
record path without the ORM (set-wise application in PostgreSQL, or a compiled path) would keep, and which it
would remove.

    .venv/bin/python -m bench.ingest_phases [--records 3000] [--rounds 3] [--batch 200] [--database-url URL]

As ``bench.ingest_handler`` (a fresh database, the city platform simulator's records, the heap prepared as
``hub worker`` prepares it, one warm-up round), but each phase below is timed by this thread's CPU clock
(``time.thread_time``) as it is entered and left, its *own* time (what its timed callees took is theirs). A
profiler's overhead lands on every Python call and inflates the ORM's many small ones; these timers cost about
a microsecond per timed call, a few hundred per batch. Phases:

* ``decode``: the delivery's JSON and its authenticated sender (``consumer._decode``);
* ``check``: the envelope's and payload's schema, the workflow and identifier checks, normalised texts
  (``service.check``) — any record path keeps these;
* ``seal``: each event's chain seal, its case row and HMAC (``writes._seal``) — kept (values identical);
* ``rules``: the real-time supervision rules over the touched cases (``realtime.evaluate_touched`` without
  the read of their events) — kept in Python, or moved into SQL;
* ``rules_read``: that read of the touched cases' events (``realtime._steps_of``);
* ``prefetch``: the batch's look-ups — inbox, case locks, cases, held events (``service._prefetch``);
* ``write``: the statements of the batch's writes — cases updated, cases and events inserted, deliveries,
  outbox, inbox rows, the flushes (``writes.update_cases``, ``writes.insert_added``, ``insert_rows``,
  ``Session.flush``);
* ``commit``: the commit itself, its hooks other than the rules;
* ``apply``: everything else between the batch's start and its commit — each record applied to its case as
  ORM objects (new cases, steps, clock facts, deadlines, deliveries owed, outbox values), the batch's
  bookkeeping, the consumer's outcomes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from bench.ingest import BENCH_AUDIT_KEY, DEFAULT_DATABASE_URL, PARTNER, bench_messages, fresh_database
from hub.cases import writes
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory
from hub.exchange import consumer, service
from hub.exchange.consumer import InboundHandler
from hub.heap import prepare_heap_for_serving
from hub.settings import Settings
from hub.supervision import realtime
from mocks.city_platform import CityPlatform

PHASES = ("decode", "check", "seal", "rules", "rules_read", "prefetch", "write", "commit", "apply")


class PhaseClock:
    """Own thread-CPU time per phase: a phase's callees that are phases themselves are charged to them."""

    def __init__(self) -> None:
        self.own: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._stack: list[list[Any]] = []  # [phase, started, time charged to timed callees]

    def timed(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([phase, time.thread_time(), 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                _, started, callees = self._stack.pop()
                spent = time.thread_time() - started
                self.own[phase] += spent - callees
                if self._stack:
                    self._stack[-1][2] += spent

        return wrapper

    def reset(self) -> None:
        self.own = dict.fromkeys(PHASES, 0.0)


def install(clock: PhaseClock) -> None:
    """Wrap each phase's functions where their callers look them up."""
    consumer._decode = clock.timed("decode", consumer._decode)
    service.check = clock.timed("check", service.check)
    writes._seal = clock.timed("seal", writes._seal)
    realtime.evaluate_touched = clock.timed("rules", realtime.evaluate_touched)
    realtime._steps_of = clock.timed("rules_read", realtime._steps_of)
    service._prefetch = clock.timed("prefetch", service._prefetch)
    writes.update_cases = clock.timed("write", writes.update_cases)
    writes.insert_added = clock.timed("write", writes.insert_added)
    writes.insert_added_of_cases = clock.timed("write", writes.insert_added_of_cases)
    service.insert_rows = clock.timed("write", service.insert_rows)
    service.deliveries.create_owed = clock.timed("write", service.deliveries.create_owed)
    Session.flush = clock.timed("write", Session.flush)  # type: ignore[method-assign]
    Session.commit = clock.timed("commit", Session.commit)  # type: ignore[method-assign]
    InboundHandler.handle_batch = clock.timed("apply", InboundHandler.handle_batch)  # type: ignore[method-assign]


def one_round(handler: InboundHandler, clock: PhaseClock, records: int, seed: int) -> tuple[float, dict[str, float]]:
    messages = bench_messages(CityPlatform("amqp://unused", PARTNER, seed=seed).plan(records))
    clock.reset()
    started = time.thread_time()
    for i in range(0, len(messages), handler.batch_size):
        handler.handle_batch(messages[i:i + handler.batch_size])
    total = (time.thread_time() - started) / len(messages) * 1000
    return total, {phase: spent / len(messages) * 1000 for phase, spent in clock.own.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest_phases", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=Settings.model_fields["ingest_batch_size"].default)
    parser.add_argument("--database-url", default=os.environ.get("HUB_TEST_POSTGRES_URL", DEFAULT_DATABASE_URL))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    clock = PhaseClock()
    install(clock)
    with fresh_database(args.database_url) as url:
        engine = make_engine(url)
        handler = InboundHandler(make_session_factory(engine), SystemClock(), "hub", BENCH_AUDIT_KEY,
                                 batch_size=args.batch)
        realtime.install()
        one_round(handler, clock, 300, seed=1)  # warm-up: caches, prepared statements
        prepare_heap_for_serving()  # as `hub worker` does after start-up
        totals: list[float] = []
        phases: dict[str, list[float]] = {phase: [] for phase in PHASES}
        for round_ in range(args.rounds):
            total, own = one_round(handler, clock, args.records, seed=100 + round_)
            totals.append(total)
            for phase, value in own.items():
                phases[phase].append(value)
            print(f"round {round_ + 1}: {total:.3f} ms CPU/record; "
                  + ", ".join(f"{p} {v:.3f}" for p, v in own.items()), flush=True)
        total = statistics.median(totals)
        print(f"\nmedian over {args.rounds} rounds of {args.records} records, batches of {args.batch}: "
              f"{total:.3f} ms of CPU per record")
        for phase in PHASES:
            value = statistics.median(phases[phase])
            print(f"  {phase:<11} {value:.3f} ms  {value / total * 100:5.1f} %")
        print(f"load average before {tuple(round(x, 2) for x in load_before)}, "
              f"after {tuple(round(x, 2) for x in os.getloadavg())}")
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
