"""Case records per second from RabbitMQ into PostgreSQL, beside a raw pika baseline; outbox relay throughput.

    .venv/bin/python -m bench.ingest [--records 5000] [--rounds 2] [--prefetch 200] [--relay-events 5000]
                                     [--database-url URL] [--amqp-url URL] [--management-url URL]
                                     [--profile 1000] [--json PATH]

What one run does:

1. creates a fresh database ``hub_bench_ingest_<pid>`` (migrated, demo province seeded) and a fresh RabbitMQ vhost
   ``hub_bench_<pid>`` with the hub's topology and the partner user ``shenyang`` (as ``hub partners sync`` would);
2. per round, the city platform simulator (``mocks.city_platform``) plans ``--records`` realistic messages —
   new cases, record updates with full step histories, single events — and the same bodies are published
   twice: by the partner to ``hub.inbound`` (→ ``hub.inbound.records``), and to ``bench.baseline``, a queue with
   the same quorum arguments;
3. drains each queue in turn (the order alternates between rounds), timing from the consumer's start until the
   last message is settled:
   * **hub**: ``adapters.amqp.consume`` with ``hub.exchange.consumer.InboundHandler`` — envelope and payload
     validated against their JSON Schemas, partner and region checked, inbox, the case with its hash-chained
     events, deadlines, the outbox row, one transaction per message, ack after commit;
   * **baseline**: a raw pika consumer (same prefetch, manual ack after commit) that parses the JSON and inserts it
     into one table ``baseline_records(id bigserial, body jsonb)``, one transaction per message;
4. relays the outbox the hub run filled (``--relay-events`` rows at most): ``hub.outbox.relay.relay_once`` with
   ``AmqpBus.publish_many`` (publisher confirms) into ``hub.events`` (a bound queue takes them), beside
   ``Publisher.publish_many`` of the same bodies without the database;
5. prints rates, the ratio hub/baseline (target ≥ 0.5; it never fails on speed) and, with ``--profile N`` or when
   the ratio is below the target, a cProfile of the hub handler over N more messages (unmeasured): where the
   time goes, grouped by library, and the top functions. Then drops the database and the vhost.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

if __package__ in (None, ""):  # run as `python bench/ingest.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import pika
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import (
    AmqpBus,
    AmqpSettings,
    InboundMessage,
    OutboundMessage,
    Outcome,
    Publisher,
    consume,
    declare_topology,
    open_connection,
    provision_partner_user,
)
from adapters.amqp.topology import EVENTS_EXCHANGE, INBOUND_QUEUE, inbound_queue_arguments
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.exchange.consumer import InboundHandler
from hub.migrate import upgrade
from hub.outbox.relay import OutgoingEvent, relay_once, to_event
from hub.seed.service import seed_demo
from mocks.city_platform import CityPlatform, Planned

DEFAULT_DATABASE_URL = "postgresql+psycopg://hub_test:hub_test@127.0.0.1:5432/hub_test"
DEFAULT_AMQP_URL = "amqp://hub_test:hub_test@127.0.0.1:5672/hub_test"
DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:15672"
PARTNER, PARTNER_SECRET = "shenyang", "demo-Partner-1"
BENCH_AUDIT_KEY = "bench-audit-key-not-a-secret-0123456789abcdef"  # a throwaway database: any key
BASELINE_QUEUE = "bench.baseline"
EVENTS_QUEUE = "bench.events"
TARGET_RATIO = 0.5


# --- the environment ----------------------------------------------------------------------------


@contextmanager
def fresh_database(base_url: str) -> Iterator[str]:
    base = make_url(base_url)
    name = f"hub_bench_ingest_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}" ENCODING \'UTF8\''))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        upgrade(engine)
        with unit_of_work(make_session_factory(engine)) as session:
            seed_demo(session, now=SystemClock().now())
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE baseline_records (id bigserial PRIMARY KEY, body jsonb NOT NULL, "
                                    "created_at timestamptz NOT NULL DEFAULT now())"))
        engine.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass(frozen=True)
class Broker:
    admin_url: str
    partner_url: str


@contextmanager
def fresh_vhost(amqp_url: str, management_url: str) -> Iterator[Broker]:
    parts = urlsplit(amqp_url)
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    vhost = f"hub_bench_{os.getpid()}"
    host = f"{parts.hostname}:{parts.port or 5672}"
    with httpx.Client(base_url=management_url.rstrip("/"), auth=(user, password), timeout=15,
                      trust_env=False) as api:
        api.put(f"/api/vhosts/{vhost}").raise_for_status()
        created_partner = api.get(f"/api/users/{PARTNER}").status_code == 404
        try:
            api.put(f"/api/permissions/{vhost}/{quote(user, safe='')}",
                    json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
            provision_partner_user(management_url, user, password, vhost, PARTNER, PARTNER_SECRET)
            admin_url = urlunsplit(parts._replace(path=f"/{vhost}"))
            partner_url = urlunsplit(parts._replace(netloc=f"{PARTNER}:{PARTNER_SECRET}@{host}", path=f"/{vhost}"))
            for _ in range(50):  # the new vhost takes a moment to accept connections
                try:
                    connection = open_connection(AmqpSettings(url=admin_url), attempts=1)
                    break
                except Exception:
                    time.sleep(0.1)
            channel = connection.channel()
            declare_topology(channel)
            channel.queue_declare(BASELINE_QUEUE, durable=True, arguments=inbound_queue_arguments())
            channel.queue_declare(EVENTS_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(EVENTS_QUEUE, EVENTS_EXCHANGE, routing_key="#")
            connection.close()
            yield Broker(admin_url, partner_url)
        finally:
            api.delete(f"/api/vhosts/{vhost}")
            if created_partner:
                api.delete(f"/api/users/{PARTNER}")


def queue_depth(url: str, queue: str) -> int:
    connection = open_connection(AmqpSettings(url=url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def wait_depth(url: str, queue: str, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while queue_depth(url, queue) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{queue} did not fill up to {count} messages")
        time.sleep(0.1)


# --- publishing -----------------------------------------------------------------------------------


def prepublish(broker: Broker, planned: list[Planned]) -> None:
    """The same bodies into hub.inbound (as the partner) and into the baseline queue."""
    platform_ = CityPlatform(broker.partner_url, PARTNER)
    platform_.publish(planned)
    with Publisher(AmqpSettings(url=broker.admin_url)) as publisher:
        publisher.publish_many([OutboundMessage(exchange="", routing_key=BASELINE_QUEUE, body=m.body, type=m.type,
                                                message_id=m.message_id) for m in planned])
    wait_depth(broker.admin_url, INBOUND_QUEUE, len(planned))
    wait_depth(broker.admin_url, BASELINE_QUEUE, len(planned))


# --- draining -------------------------------------------------------------------------------------


@dataclass
class Drain:
    side: str
    messages: int
    seconds: float
    cpu_seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_ms_per_message(self) -> float:
        return self.cpu_seconds / self.messages * 1000


def drain_hub(broker: Broker, factory: sessionmaker[Session], count: int, prefetch: int) -> Drain:
    handler = InboundHandler(factory, SystemClock(), urlsplit(broker.admin_url).username or "guest", BENCH_AUDIT_KEY)
    outcomes: Counter[str] = Counter()
    done = threading.Event()
    stop = threading.Event()
    cpu = [0.0]

    def counted(message: InboundMessage) -> Outcome:
        outcome = handler(message)
        outcomes[outcome.kind.value] += 1
        if sum(outcomes.values()) >= count:
            done.set()
        return outcome

    def run() -> None:
        started = time.thread_time()
        consume(AmqpSettings(url=broker.admin_url, prefetch=prefetch, connection_name="bench-hub"), INBOUND_QUEUE,
                counted, stop_event=stop)
        cpu[0] = time.thread_time() - started

    thread = threading.Thread(target=run, name="bench-hub-consumer")
    started = time.perf_counter()
    thread.start()
    if not done.wait(timeout=3600):
        raise SystemExit("the hub consumer did not drain its queue within an hour")
    seconds = time.perf_counter() - started
    stop.set()
    thread.join(timeout=30)
    return Drain("hub", count, seconds, cpu[0], outcomes)


def drain_baseline(broker: Broker, engine: Engine, count: int, prefetch: int) -> Drain:
    """Raw pika: parse the JSON, insert it into one table, commit, ack."""
    insert = text("INSERT INTO baseline_records (body) VALUES (CAST(:body AS jsonb))")
    params = pika.URLParameters(broker.admin_url)
    outcomes: Counter[str] = Counter()
    started, cpu_started = time.perf_counter(), time.thread_time()
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)

    def on_message(ch: Any, method: Any, _properties: Any, body: bytes) -> None:
        document = json.loads(body)
        with engine.begin() as db:
            db.execute(insert, {"body": json.dumps(document, ensure_ascii=False)})
        ch.basic_ack(method.delivery_tag)
        outcomes["ack"] += 1
        if outcomes["ack"] >= count:
            ch.stop_consuming()

    channel.basic_consume(BASELINE_QUEUE, on_message)
    channel.start_consuming()
    seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
    connection.close()
    return Drain("baseline", count, seconds, cpu, outcomes)


# --- relay ----------------------------------------------------------------------------------------


@dataclass
class RelayFigures:
    events: int
    relay_seconds: float
    raw_seconds: float

    @property
    def relay_rate(self) -> float:
        return self.events / self.relay_seconds if self.relay_seconds else 0.0

    @property
    def raw_rate(self) -> float:
        return self.events / self.raw_seconds if self.raw_seconds else 0.0


def relay(broker: Broker, factory: sessionmaker[Session], limit: int) -> RelayFigures:
    from sqlalchemy import select, update

    from hub.outbox.models import OutboxMessage

    with unit_of_work(factory) as session:  # leave ``limit`` unsent rows, the newest
        ids = list(session.scalars(select(OutboxMessage.id).where(OutboxMessage.sent_at.is_(None))
                                   .order_by(OutboxMessage.id.desc()).offset(limit)))
        if ids:
            session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(sent_at=SystemClock().now()))
        rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))))
        bodies = [to_event(r) for r in rows]
    if not bodies:
        return RelayFigures(0, 0.0, 0.0)
    bus = AmqpBus(AmqpSettings(url=broker.admin_url, connection_name="bench-relay"))

    def publish(events: list[OutgoingEvent] | Any) -> None:
        bus.publish_many([OutboundMessage(exchange=EVENTS_EXCHANGE, routing_key=e.routing_key, body=e.body,
                                          type=e.event_type, message_id=e.message_id, correlation_id=e.correlation_id,
                                          headers=e.headers, mandatory=False) for e in events])

    started = time.perf_counter()
    sent = 0
    while (batch := relay_once(factory, publish, now=SystemClock().now())) > 0:
        sent += batch
    relay_seconds = time.perf_counter() - started
    bus.close()
    # The same bodies straight through the publisher, with confirms and the same batch size, no database.
    with Publisher(AmqpSettings(url=broker.admin_url, connection_name="bench-raw")) as publisher:
        started = time.perf_counter()
        for i in range(0, len(bodies), 500):
            publisher.publish_many([OutboundMessage(exchange=EVENTS_EXCHANGE, routing_key=e.routing_key, body=e.body,
                                                    type=e.event_type, message_id=str(uuid.uuid4()), mandatory=False)
                                    for e in bodies[i:i + 500]])
        raw_seconds = time.perf_counter() - started
    connection = open_connection(AmqpSettings(url=broker.admin_url))
    connection.channel().queue_purge(EVENTS_QUEUE)
    connection.close()
    return RelayFigures(sent, relay_seconds, raw_seconds)


# --- profile --------------------------------------------------------------------------------------

GROUPS = (("psycopg", "PostgreSQL driver (psycopg, incl. waiting for the server)"),
          ("sqlalchemy", "SQLAlchemy (ORM, Core, pool)"), ("jsonschema", "JSON Schema validation (jsonschema)"),
          ("referencing", "JSON Schema validation (jsonschema)"), ("rpds", "JSON Schema validation (jsonschema)"),
          ("/hub/", "hub code"), ("/workflow/", "workflow (calendar, identifiers)"), ("json/", "json"))


def profile_handler(factory: sessionmaker[Session], planned: list[Planned], user: str) -> str:
    """cProfile of the handler alone (no broker) over ``planned``; where the time goes."""
    handler = InboundHandler(factory, SystemClock(), user, BENCH_AUDIT_KEY)
    messages = [InboundMessage(body=m.body, routing_key=f"{PARTNER}.{m.type}", exchange="hub.inbound",
                               queue=INBOUND_QUEUE, message_id=m.message_id, user_id=PARTNER, type=m.type,
                               correlation_id=None, content_type="application/json", timestamp=None, headers={},
                               redelivered=False, delivery_count=0) for m in planned]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for message in messages:
        handler(message)
    profiler.disable()
    elapsed = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    groups: Counter[str] = Counter()
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        label = next((label for key, label in GROUPS if key in filename), "other (stdlib and the rest)")
        groups[label] += tottime
    out = io.StringIO()
    out.write(f"profile: {len(messages)} messages through InboundHandler in {elapsed:.1f} s under cProfile "
              f"({elapsed / len(messages) * 1000:.1f} ms/message profiled)\n  own time by library:\n")
    for label, seconds in groups.most_common():
        out.write(f"    {seconds / total * 100:5.1f} %  {label}\n")
    out.write("  top functions by cumulative time:\n")
    top = io.StringIO()
    pstats.Stats(profiler, stream=top).sort_stats("cumulative").print_stats(r"hub/|workflow/", 25)
    out.write("\n".join("    " + line for line in top.getvalue().splitlines() if line.strip()
                        and not line.startswith(("   Ordered", "   List reduced"))))
    return out.getvalue()


def statements_per_message(engine: Engine, factory: sessionmaker[Session], planned: list[Planned],
                           user: str) -> dict[str, float]:
    """SQL statements per message kind (counted with an engine event)."""
    from sqlalchemy import event

    counts: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    current = [""]

    def count(*_: Any) -> None:
        counts[current[0]] += 1

    event.listen(engine, "before_cursor_execute", count)
    handler = InboundHandler(factory, SystemClock(), user, BENCH_AUDIT_KEY)
    for m in planned:
        current[0] = m.category
        seen[m.category] += 1
        handler(InboundMessage(body=m.body, routing_key="", exchange="hub.inbound", queue=INBOUND_QUEUE,
                               message_id=m.message_id, user_id=PARTNER, type=m.type, correlation_id=None,
                               content_type=None, timestamp=None, headers={}, redelivered=False, delivery_count=0))
    event.remove(engine, "before_cursor_execute", count)
    return {k: round(counts[k] / seen[k], 1) for k in seen}


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000, help="messages per queue and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the drain order alternates")
    parser.add_argument("--prefetch", type=int, default=AmqpSettings.prefetch, help="basic.qos for both consumers")
    parser.add_argument("--relay-events", type=int, default=5000, help="outbox rows to relay (at most)")
    parser.add_argument("--database-url", default=os.environ.get("HUB_TEST_POSTGRES_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--amqp-url", default=os.environ.get("HUB_TEST_AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument("--management-url",
                        default=os.environ.get("HUB_TEST_RABBITMQ_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL))
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="cProfile the handler over N extra messages (done anyway, N=1000, below the target)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("pika", "workflow", "hub", "adapters", "mocks"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    load_before = os.getloadavg()[0]
    drains: list[Drain] = []
    with fresh_database(args.database_url) as database_url, fresh_vhost(args.amqp_url, args.management_url) as broker:
        engine = make_engine(database_url)
        factory = make_session_factory(engine)
        user = urlsplit(broker.admin_url).username or "guest"
        for round_ in range(args.rounds):
            platform_ = CityPlatform(broker.partner_url, PARTNER, seed=args.seed + round_)
            planned = platform_.plan(args.records)
            prepublish(broker, planned)
            count = len(planned)
            sides: list[Callable[[], Drain]] = [
                lambda n=count: drain_baseline(broker, engine, n, args.prefetch),  # type: ignore[misc]
                lambda n=count: drain_hub(broker, factory, n, args.prefetch)]  # type: ignore[misc]
            for side in (sides if round_ % 2 == 0 else sides[::-1]):
                drain = side()
                drains.append(drain)
                print(f"round {round_ + 1}: {drain.side:8} {drain.messages} messages in {drain.seconds:6.1f} s = "
                      f"{drain.rate:7.1f} msg/s, consumer CPU {drain.cpu_ms_per_message:.2f} ms/message"
                      + (f", outcomes {dict(drain.outcomes)}" if drain.side == "hub" else ""), flush=True)
        figures = relay(broker, factory, args.relay_events)
        hub = max((d for d in drains if d.side == "hub"), key=lambda d: d.rate)
        baseline = max((d for d in drains if d.side == "baseline"), key=lambda d: d.rate)
        ratio = hub.rate / baseline.rate
        print(f"\ningest (best round of {args.rounds}, prefetch {args.prefetch}, {args.records} messages):\n"
              f"  hub       {hub.rate:8.1f} msg/s   (consumer CPU {hub.cpu_ms_per_message:.2f} ms/message)\n"
              f"  baseline  {baseline.rate:8.1f} msg/s   (consumer CPU {baseline.cpu_ms_per_message:.2f} ms/message)\n"
              f"  ratio     {ratio:8.3f}         target >= {TARGET_RATIO}: "
              f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}")
        print(f"outbox relay: {figures.events} events in {figures.relay_seconds:.2f} s = {figures.relay_rate:.0f} "
              f"events/s (relay_once + AmqpBus.publish_many, confirms); the same bodies through "
              f"Publisher.publish_many alone: {figures.raw_rate:.0f} events/s")
        profile_text, statements = "", {}
        if args.profile or ratio < TARGET_RATIO:
            extra = CityPlatform(broker.partner_url, PARTNER, seed=args.seed + 100).plan(args.profile or 1000)
            statements = statements_per_message(engine, factory, extra[: len(extra) // 3], user)
            profile_text = profile_handler(factory, extra[len(extra) // 3:], user)
            print(f"\nSQL statements per message kind (COMMIT not counted): {statements}")
            print(profile_text)
        engine.dispose()

    load_after = os.getloadavg()[0]
    result = {
        "records": args.records, "rounds": args.rounds, "prefetch": args.prefetch,
        "hub_msg_per_s": round(hub.rate, 1), "baseline_msg_per_s": round(baseline.rate, 1), "ratio": round(ratio, 3),
        "target_met": ratio >= TARGET_RATIO, "hub_cpu_ms_per_msg": round(hub.cpu_ms_per_message, 2),
        "baseline_cpu_ms_per_msg": round(baseline.cpu_ms_per_message, 2),
        "rounds_detail": [{"side": d.side, "rate": round(d.rate, 1), "seconds": round(d.seconds, 2)} for d in drains],
        "relay_events": figures.events, "relay_events_per_s": round(figures.relay_rate, 1),
        "raw_publish_events_per_s": round(figures.raw_rate, 1), "statements_per_message": statements,
        "load_average_1m": [round(load_before, 2), round(load_after, 2)], "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    if load_before > (os.cpu_count() or 1):
        print(f"warning: load average {load_before:.1f} above the CPU count: figures are noisy", file=sys.stderr)
    line = json.dumps(result, ensure_ascii=False)
    print(line)
    if args.json_path:
        Path(args.json_path).write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
