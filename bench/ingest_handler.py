"""The inbound handler's own CPU per partner record, in this process, without a broker: a quick figure to compare
code changes by (`bench/ingest.py` measures the whole worker against a raw consumer).

    .venv/bin/python -m bench.ingest_handler [--records 3000] [--rounds 3] [--batch 200] [--no-realtime]
                                             [--database-url URL] [--profile]

Creates a fresh database (as ``bench.ingest`` does), plans ``--records`` messages per round with the city platform
simulator (new cases, record updates with full step histories, single events), hands them to
``InboundHandler.handle_batch`` in batches and prints, per round and as the median, the handler's thread CPU per
record and the SQL statements per record. ``--no-realtime`` removes the electronic-supervision hook
(hub/supervision/realtime.py) for the run, so its cost on ingest is the difference between two runs;
``--compare`` runs both in alternating rounds on the same database and prints the difference.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from bench.ingest import BENCH_AUDIT_KEY, DEFAULT_DATABASE_URL, PARTNER, bench_messages, fresh_database
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory
from hub.exchange.consumer import InboundHandler
from hub.heap import prepare_heap_for_serving
from hub.settings import Settings
from hub.supervision import realtime
from mocks.city_platform import CityPlatform


def set_realtime(on: bool) -> None:
    realtime.install()
    if not on:
        event.remove(Session, "before_commit", realtime._before_commit)
        event.remove(Session, "after_rollback", realtime._forget)


def one_round(handler: InboundHandler, engine: Any, records: int, seed: int) -> tuple[float, float, int]:
    planned = CityPlatform("amqp://unused", PARTNER, seed=seed).plan(records)
    messages = bench_messages(planned)
    counted = [0]

    def count(*_: Any) -> None:
        counted[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    outcomes: dict[str, int] = {}
    started = time.thread_time()
    for i in range(0, len(messages), handler.batch_size):
        for outcome in handler.handle_batch(messages[i:i + handler.batch_size]):
            outcomes[outcome.kind] = outcomes.get(outcome.kind, 0) + 1
    cpu = time.thread_time() - started
    event.remove(engine, "before_cursor_execute", count)
    if outcomes.get("ack", 0) != len(messages):
        print(f"  outcomes: {outcomes}", file=sys.stderr)
    return cpu / len(messages) * 1000, counted[0] / len(messages), len(messages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest_handler", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=Settings.model_fields["ingest_batch_size"].default)
    parser.add_argument("--no-realtime", action="store_true", help="without the supervision hook")
    parser.add_argument("--compare", action="store_true", help="with and without the hook, alternating rounds")
    parser.add_argument("--profile", action="store_true", help="cProfile one more round")
    parser.add_argument("--default-heap", action="store_true",
                        help="leave the collector at CPython's pace (a `hub worker` freezes start-up and collects at "
                             "a server's pace: hub/heap.py)")
    parser.add_argument("--database-url", default=os.environ.get("HUB_TEST_POSTGRES_URL", DEFAULT_DATABASE_URL))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with fresh_database(args.database_url) as url:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        handler = InboundHandler(factory, SystemClock(), "hub", BENCH_AUDIT_KEY, batch_size=args.batch)
        modes = [True, False] if args.compare else [not args.no_realtime]
        set_realtime(modes[0])
        one_round(handler, engine, 300, seed=1)  # warm-up: caches, prepared statements
        if not args.default_heap:
            prepare_heap_for_serving()  # as `hub worker` does after start-up
        figures: dict[bool, list[tuple[float, float]]] = {mode: [] for mode in modes}
        seed = 100
        for round_ in range(args.rounds):
            for mode in (modes if round_ % 2 == 0 else modes[::-1]):
                set_realtime(mode)
                seed += 1
                cpu, statements, n = one_round(handler, engine, args.records, seed)
                figures[mode].append((cpu, statements))
                print(f"round {round_ + 1} realtime={'on' if mode else 'off'}: {n} records, {cpu:.3f} ms CPU/record, "
                      f"{statements:.2f} statements/record (load {os.getloadavg()[0]:.2f})", flush=True)
        medians = {mode: statistics.median(c for c, _ in values) for mode, values in figures.items()}
        for mode, value in medians.items():
            print(f"median realtime={'on' if mode else 'off'}: {value:.3f} ms CPU/record, "
                  f"{statistics.median(s for _, s in figures[mode]):.2f} statements/record")
        if args.compare:
            print(f"realtime hook: +{(medians[True] / medians[False] - 1) * 100:.1f} % handler CPU on ingest")
        if args.profile:
            set_realtime(modes[0])
            profiler = cProfile.Profile()
            profiler.enable()
            one_round(handler, engine, args.records, seed=9999)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(45)
            stats.sort_stats("tottime").print_stats(40)
            stats.print_callees(os.environ.get("CALLEES", "evaluate_touched"))
        print(f"load average before {tuple(round(x, 2) for x in load_before)}, "
              f"after {tuple(round(x, 2) for x in os.getloadavg())}")
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
