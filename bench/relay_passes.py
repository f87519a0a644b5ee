"""The outbox relay as a `hub worker` runs it: many small passes, one per committed batch of records.

    python -m bench.relay_passes --database-url postgresql+psycopg://… --amqp-url amqp://… \
        --management-url http://… [--events-per-pass 60] [--passes 100] [--rounds 3] [--profile]

A worker's relay is woken by each inbound batch's commit and finds that batch's events (≈60 for 50 partner
records, bench.ingest): its cost per event is that of a pass of ≈60, not of the bench.ingest relay's passes of
500. Each round inserts ``--events-per-pass`` outbox rows of the shape the ingest writes (case.reported.v1),
commits, then times one ``relay_once`` with the worker's own publish (``Worker._publish`` on an ``AmqpBus``) and,
after it, one empty pass (what a second wake-up after the same commit costs). Thread CPU, this thread only (pika's
BlockingConnection runs on the calling thread). Prints CPU ms per event of the full passes and ms per empty pass.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert

from adapters.amqp import AmqpBus, AmqpSettings
from bench.ingest import fresh_database, fresh_vhost
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.outbox import service as outbox
from hub.outbox.models import OutboxMessage
from hub.outbox.relay import relay_once
from hub.worker import Worker


def payload(i: int) -> dict[str, Any]:
    """Shaped like hub/cases/service.py ``case_event_payload`` of a partner's case, plus ``origin_partner``."""
    return {"tracking_no": f"2101022612{i:08d}", "item_code": "210102-0001-XK-0003", "department": "dept.shenyang.sc",
            "region": "210102", "state": "accepted", "accepted_on": "2026-12-01", "deadline": "2026-12-15",
            "result": None, "applicant_type": "natural_person", "event_seq": i % 7 + 1, "partner": "shenyang",
            "external_id": f"SY-{i:08d}", "record_version": i % 5 + 1, "origin_partner": "shenyang"}


def insert_events(factory: Any, count: int, start: int) -> None:
    now = datetime.now(UTC)
    rows = [outbox.row(outbox.message(event_type="case.reported.v1", region_code="210102", payload=payload(start + i),
                                      occurred_at=now, correlation_id=f"2101022612{start + i:08d}"))
            for i in range(count)]
    with unit_of_work(factory) as session:
        session.execute(insert(OutboxMessage), rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.relay_passes", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--management-url", required=True)
    parser.add_argument("--events-per-pass", type=int, default=60)
    parser.add_argument("--passes", type=int, default=100, help="passes per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one more round (unmeasured)")
    args = parser.parse_args(argv)
    with fresh_database(args.database_url) as url, fresh_vhost(args.amqp_url, args.management_url) as broker:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        bus = AmqpBus(AmqpSettings(url=broker.admin_url, connection_name="bench-relay-passes"))
        worker = Worker.__new__(Worker)  # only its publish: the worker's own mapping of events to messages
        worker._bus = bus
        publish = worker._publish
        clock = SystemClock()
        relay_once(factory, publish, now=clock.now())  # connect, first statements: outside the figures
        serial = 0

        def one_pass() -> tuple[int, float, float]:
            nonlocal serial
            insert_events(factory, args.events_per_pass, serial)
            serial += args.events_per_pass
            started = time.thread_time()
            sent = relay_once(factory, publish, now=clock.now())
            full = time.thread_time() - started
            started = time.thread_time()
            relay_once(factory, publish, now=clock.now())
            return sent, full, time.thread_time() - started

        per_event, per_empty = [], []
        for round_no in range(1, args.rounds + 1):
            sent = full = empty = 0.0
            for _ in range(args.passes):
                s, f, e = one_pass()
                sent, full, empty = sent + s, full + f, empty + e
            per_event.append(full / sent * 1000)
            per_empty.append(empty / args.passes * 1000)
            print(f"round {round_no}: {int(sent)} events in {args.passes} passes: CPU {per_event[-1]:.4f} ms/event; "
                  f"empty pass {per_empty[-1]:.3f} ms", flush=True)
        print(f"median: CPU {statistics.median(per_event):.4f} ms/event (passes of {args.events_per_pass}); "
              f"empty pass {statistics.median(per_empty):.3f} ms")
        if args.profile:
            profiler = cProfile.Profile()
            for _ in range(args.passes):
                insert_events(factory, args.events_per_pass, serial)
                serial += args.events_per_pass
                profiler.enable()
                relay_once(factory, publish, now=clock.now())
                profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
            print(out.getvalue())
        bus.close()
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
