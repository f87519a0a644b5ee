"""Case records per second from RabbitMQ into PostgreSQL: the hub (one and two `hub worker` processes) beside a
raw pika baseline; outbox relay throughput.

    .venv/bin/python -m bench.ingest [--records 5000] [--rounds 3] [--prefetch 200] [--batch 200]
                                     [--baseline-commit-every 100] [--workers 1,2] [--relay-events 5000]
                                     [--database-url URL] [--amqp-url URL] [--management-url URL]
                                     [--profile 1000] [--variant NAME:VAR=VALUE[,VAR=VALUE]] [--json PATH]

What one run does:

1. creates a fresh database ``hub_bench_ingest_<pid>`` (migrated, demo province seeded) and a fresh RabbitMQ vhost
   ``hub_bench_<pid>`` with the hub's topology and the partner user ``shenyang``, as ``hub partners sync`` would;
2. per round and side, the city platform simulator (``mocks.city_platform``) plans ``--records`` realistic messages
   — new cases, record updates with full step histories, single events — published by the partner to
   ``hub.inbound`` (→ the case shard queues ``hub.inbound.shard.<n>``, routed by case as the hub does by default;
   with ``--shards 0`` or on a ``one queue`` side → ``hub.inbound.records``); the baseline gets the same bodies in
   ``bench.baseline``, a queue with the same quorum arguments;
3. drains each side in turn, the order alternating between rounds:
   * **hub ×N** (``--workers``, default 1 and 2): N ``hub worker`` processes (HUB_INGEST_BATCH_SIZE = ``--batch``,
     HUB_INGEST_SHARDS = ``--shards``, default the hub's: 4), and with ``--one-queue`` also **hub ×N one queue**
     (HUB_INGEST_SHARDS=0: every worker on ``hub.inbound.records``),
     started once the queue is full; timed from the moment all N consumers are attached until the inbox holds
     every message (what was applied before that moment is not counted). Per batch of up to ``--batch``
     deliveries: JSON Schemas, partner and region checks, inbox, per-case advisory locks, the case with its
     hash-chained events, deadlines, the outbox row, each message in its own savepoint; one commit; acks after
     the commit. CPU: user + system time of the worker processes (/proc), relay and other threads included;
   * **baseline**: a raw pika consumer (same prefetch) that parses the JSON, inserts it into one table
     ``baseline_records(id bigserial, body jsonb)`` and commits every ``--baseline-commit-every`` messages (and
     when the queue runs dry), acking after each commit — as a careful hand-written consumer would;
4. prints every round, then each figure's median over the rounds, the ratios (hub ×1 / baseline, target ≥ 0.5;
   hub ×2 / hub ×1, target ≥ 1.6; it never fails on speed), CPU per record (the side's own, every
   PostgreSQL process's, every RabbitMQ node process's), SQL statements per record (counted
   at the engine over ``--profile`` or 600 messages handled in batches, unmeasured) and the load average; the
   machine's CPU during each side (cores busy of cores present, /proc/stat: every process on the machine) and,
   per ×1 round, the ceiling ×2 / ×1 can reach here (cores present / cores busy during ×1) beside the measured
   ratio; the hub workers' CPU per record by thread (consumer, relay, LISTEN, jobs, heartbeat: /proc/<pid>/task,
   thread names from each worker's heartbeat file);
5. relays the outbox (``--relay-events`` rows at most): ``hub.outbox.relay.relay_once`` with
   ``AmqpBus.publish_many`` (publisher confirms) into ``hub.events`` (rate and CPU per event), beside
   ``Publisher.publish_many`` of the same bodies without the database; with ``--profile N`` a cProfile of the
   handler over N more messages. Then drops the database and the vhost.

``--variant lanes2:HUB_INGEST_LANES=2`` (repeatable) adds a side ``hub xN lanes2`` per worker count whose workers
start with those settings on top, in the same rotation: two settings compared under the same load, with their
ratios to the baseline, to ``hub x1`` and ×2 / ×1 printed apart.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import logging
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
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
    Publisher,
    declare_topology,
    open_connection,
    provision_partner_user,
)
from adapters.amqp.topology import EVENTS_EXCHANGE, INBOUND_QUEUE, Topology, inbound_queue_arguments, unroute_shards
from bench.database import drop_database
from bench.machine import (
    CLOCK_TICKS,
    CORES,
    broker_cpu_seconds,
    cores_busy,
    cores_stolen,
    database_cpu_seconds,
    interference,
    machine_ticks,
)
from bench.machine import process_cpu_seconds as cpu_seconds
from bench.submit import ROLLED_UP_TO_YESTERDAY
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.exchange.consumer import InboundHandler
from hub.migrate import upgrade
from hub.outbox.relay import OutgoingEvent, relay_once, to_event
from hub.seed.service import seed_demo
from hub.settings import Settings
from mocks.city_platform import CityPlatform, Planned

DEFAULT_DATABASE_URL = "postgresql+psycopg://hub_test:hub_test@127.0.0.1:5432/hub_test"
DEFAULT_AMQP_URL = "amqp://hub_test:hub_test@127.0.0.1:5672/hub_test"
DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:15672"
PARTNER, PARTNER_SECRET = "shenyang", "demo-Partner-1"
BENCH_AUDIT_KEY = "bench-audit-key-not-a-secret-0123456789abcdef"  # a throwaway database: any key
BENCH_SECRET_KEY = "bench-secret-key-not-a-secret-0123456789abcdef"
BASELINE_QUEUE = "bench.baseline"
EVENTS_QUEUE = "bench.events"
# The upper-bound experiment (--split): one queue per worker, each fed through an exchange the partner may write
# to already (its own ``partner.<code>.*`` names), the messages split by their case (correlation_id).
SPLIT_EXCHANGE, SPLIT_QUEUE = f"partner.{PARTNER}.split.{{}}", "bench.split.{}"
SHARD_REBALANCE_S = 0.5  # the workers' HUB_INGEST_SHARD_REBALANCE_S when routed by case (the timing starts after)
DEFAULT_SHARDS = Settings.model_fields["ingest_shards"].default  # HUB_INGEST_SHARDS unless set: what `hub xN` runs
TARGET_RATIO = 0.5
TARGET_SCALE = 1.6
ROOT = Path(__file__).resolve().parent.parent


# --- the environment ----------------------------------------------------------------------------


@contextmanager
def fresh_database(base_url: str) -> Iterator[str]:
    base = make_url(base_url)
    name = f"hub_bench_ingest_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    drop_database(admin, name)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" ENCODING \'UTF8\''))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        upgrade(engine)
        with unit_of_work(make_session_factory(engine)) as session:
            seed_demo(session, now=SystemClock().now())
        with engine.begin() as connection:
            connection.execute(text(ROLLED_UP_TO_YESTERDAY))  # the worker's metrics roll-up, caught up (bench.submit)
            connection.execute(text("CREATE TABLE baseline_records (id bigserial PRIMARY KEY, body jsonb NOT NULL, "
                                    "created_at timestamptz NOT NULL DEFAULT now())"))
        engine.dispose()
        yield url
    finally:
        drop_database(admin, name)
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


def publish_hub(broker: Broker, planned: list[Planned], shards: int = 0) -> None:
    """As the partner, into hub.inbound (→ hub.inbound.records, or with ``shards`` the case shard queues: the
    topology is declared as the side's workers will, before they start)."""
    topology = Topology(shards=shards)
    connection = open_connection(AmqpSettings(url=broker.admin_url))
    try:
        declare_topology(connection.channel(), topology)
        if not shards:
            unroute_shards(connection.channel(), topology)
    finally:
        connection.close()
    CityPlatform(broker.partner_url, PARTNER).publish(planned)
    if shards:
        deadline = time.monotonic() + 60
        while sum(queue_depth(broker.admin_url, q) for q in topology.shard_queues) < len(planned):
            if time.monotonic() > deadline:
                raise SystemExit("the shard queues did not fill up")
            time.sleep(0.1)
    else:
        wait_depth(broker.admin_url, INBOUND_QUEUE, len(planned))


def publish_split(broker: Broker, planned: list[Planned], shards: int) -> list[str]:
    """As the partner, each message into the queue of its case's shard (crc32 of the case's external id, the
    correlation_id the simulator sets): no two workers ever see one case. Returns the queues, one per worker."""
    from mocks.city_platform.wire import PartnerPublisher

    connection = open_connection(AmqpSettings(url=broker.admin_url))
    channel = connection.channel()
    queues = []
    for shard in range(shards):
        exchange, queue = SPLIT_EXCHANGE.format(shard), SPLIT_QUEUE.format(shard)
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.queue_declare(queue, durable=True, arguments=inbound_queue_arguments())
        channel.queue_bind(queue, exchange, routing_key="#")
        queues.append(queue)
    connection.close()
    counts = Counter[int]()
    with PartnerPublisher(broker.partner_url, app_id=f"city-platform-{PARTNER}") as publisher:
        for message in planned:
            shard = zlib.crc32(message.external_id.encode()) % shards
            publisher.publish(f"{PARTNER}.{message.type}", message.body, message_id=message.message_id,
                              type_=message.type, correlation_id=message.external_id,
                              exchange=SPLIT_EXCHANGE.format(shard))
            counts[shard] += 1
    for shard, queue in enumerate(queues):
        wait_depth(broker.admin_url, queue, counts[shard])
    return queues


def publish_baseline(broker: Broker, planned: list[Planned]) -> None:
    with Publisher(AmqpSettings(url=broker.admin_url)) as publisher:
        publisher.publish_many([OutboundMessage(exchange="", routing_key=BASELINE_QUEUE, body=m.body, type=m.type,
                                                message_id=m.message_id) for m in planned])
    wait_depth(broker.admin_url, BASELINE_QUEUE, len(planned))


# --- draining -------------------------------------------------------------------------------------


@dataclass
class Drain:
    side: str
    messages: int
    seconds: float
    cpu_seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    machine_cores_busy: float = 0.0  # the whole machine's CPU use over the drain (/proc/stat), everyone's
    machine_cores_stolen: float = 0.0  # of which the hypervisor's other guests (steal; bench.machine.cores_stolen)
    thread_cpu_seconds: dict[str, float] = field(default_factory=dict)  # hub workers: per thread name, all workers
    database_cpu_seconds: float = 0.0  # every PostgreSQL process's CPU over the drain (bench.machine)
    broker_cpu_seconds: float = 0.0  # every RabbitMQ node process's CPU over the drain (bench.machine)
    # hub workers: their inbound consumers' tallies summed (heartbeat ``inbound``: batches, records handed over,
    # acked, deferred, lock waits), over the workers' whole run (started with the queue full)
    tally: dict[str, float] = field(default_factory=dict)

    @property
    def deferred_per_record(self) -> float:
        return self.tally.get("deferred", 0) / self.tally["acked"] if self.tally.get("acked") else 0.0

    @property
    def mean_batch(self) -> float:
        return self.tally.get("records", 0) / self.tally["batches"] if self.tally.get("batches") else 0.0

    @property
    def own_cores_busy(self) -> float:
        """The measured side's own processes' CPU over the drain, in cores."""
        return self.cpu_seconds / self.seconds if self.seconds else 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_ms_per_message(self) -> float:
        return self.cpu_seconds / self.messages * 1000

    @property
    def database_ms_per_message(self) -> float:
        return self.database_cpu_seconds / self.messages * 1000

    @property
    def broker_ms_per_message(self) -> float:
        return self.broker_cpu_seconds / self.messages * 1000


def thread_ticks(pid: int) -> dict[int, int]:
    """User + system clock ticks of each thread of a process, by kernel thread id (/proc/<pid>/task)."""
    ticks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        ticks[int(task.name)] = int(fields[11]) + int(fields[12])
    return ticks


def read_tally(heartbeat: Path, after: float, timeout_s: float = 5) -> dict[str, float]:
    """The inbound consumer's tally from a heartbeat written after ``after`` (time.time()), or the last one."""
    deadline = time.monotonic() + timeout_s
    beat: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            beat = json.loads(heartbeat.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            beat = {}
        if beat.get("written_at", 0) > after:
            break
        time.sleep(0.1)
    return dict(beat.get("inbound", {}))


def shards_balanced(heartbeats: list[Path], shards: int) -> bool:
    """Every shard consumed, each worker its fair share (from their heartbeats' ``shards``)."""
    held = []
    for heartbeat in heartbeats:
        try:
            held.append(json.loads(heartbeat.read_text(encoding="utf-8")).get("shards", []))
        except (OSError, ValueError):
            return False
    share = -(-shards // len(heartbeats))
    return sorted(s for h in held for s in h) == list(range(shards)) and all(
        share - 1 <= len(h) <= share for h in held)


def thread_names(heartbeat: Path, pid: int) -> dict[int, str]:
    """Kernel thread id → thread name, from the worker's heartbeat file (hub/worker.py writes ``native_ids``)."""
    try:
        beat = json.loads(heartbeat.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    names = {int(tid): name.removeprefix("hub-worker-") for tid, name in beat.get("native_ids", {}).items()}
    names.setdefault(pid, "MainThread")
    return names


class QueueDepths:
    """Whether any of some queues has no message ready, over one connection (polled every 50 ms)."""

    def __init__(self, url: str, queues: list[str]) -> None:
        self.queues = queues
        self.connection = open_connection(AmqpSettings(url=url))
        self.channel = self.connection.channel()

    def any_empty(self) -> bool:
        return any(self.channel.queue_declare(q, passive=True).method.message_count == 0 for q in self.queues)

    def close(self) -> None:
        self.connection.close()


def consumers(url: str, queue: str) -> int:
    connection = open_connection(AmqpSettings(url=url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    finally:
        connection.close()


def inbox_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM inbox")).scalar_one())


# The progress poll counts the inbox, which grows by every round's records: at 100-200k rows each count(*) costs
# PostgreSQL 7-15 ms, and 20 of them a second were a fifth of a core taken from the hub's side alone (and
# counted in its PostgreSQL figure). So it polls by the work left: rarely while much is left, every 50 ms near
# the end, where the timing's precision is decided.
FINAL_POLL_S, LONGEST_POLL_S = 0.05, 1.0


def next_poll_s(left: int, applied: int, elapsed_s: float) -> float:
    """How long to sleep before counting again: a quarter of the time the ``left`` records should take at the
    rate so far (``applied`` in ``elapsed_s``), between 50 ms and 1 s; 50 ms until the rate is known."""
    if applied <= 0 or elapsed_s <= 0:
        return FINAL_POLL_S
    return min(LONGEST_POLL_S, max(FINAL_POLL_S, left / (applied / elapsed_s) / 4))


def _variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:VAR=VALUE[,VAR=VALUE]`` of ``--variant``."""
    name, _, settings = text.partition(":")
    if not name or " " in name or not settings:
        raise SystemExit(f"--variant {text!r}: expected NAME:VAR=VALUE[,VAR=VALUE], the name without spaces")
    pairs = [item.partition("=") for item in settings.split(",")]
    if any(not key or not sep for key, sep, _ in pairs):
        raise SystemExit(f"--variant {text!r}: each setting as VAR=VALUE")
    return name, {key: value for key, _, value in pairs}


def drain_workers(broker: Broker, database_url: str, engine: Engine, count: int, workers: int, batch: int,
                  log_dir: Path, lanes: int | None = None, queues: list[str] | None = None,
                  shards: int = 0, side: str | None = None, extra_env: dict[str, str] | None = None) -> Drain:
    """``workers`` `hub worker` processes drain the full queue; timed from when all their consumers are attached.
    With ``queues`` (one per worker, --split) each worker consumes its own queue instead of hub.inbound.records."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=database_url, HUB_AMQP_URL=broker.admin_url, HUB_DATA_DIR=str(log_dir),
               HUB_SECRET_KEY=BENCH_SECRET_KEY, HUB_AUDIT_KEY=BENCH_AUDIT_KEY, HUB_LOG_LEVEL="ERROR",
               HUB_LOG_JSON="false", HUB_INGEST_BATCH_SIZE=str(batch), HUB_AUDIT_CHECKPOINT_INTERVAL_S="0",
               # The worker's periodic supervision jobs are not ingest: the minute scanner would judge each of the
               # earlier rounds' back-dated cases (≈1.3 ms each, bench.supervision) inside these figures, the
               # metrics roll-up recompute their days. The real-time rules of each record stay on.
               HUB_SUPERVISION_SCAN_INTERVAL_S="0", HUB_SUPERVISION_METRICS_ROLLUP_INTERVAL_S="0",
               # Each its own heartbeat file, read for the threads' kernel ids (per-thread CPU).
               HUB_WORKER_HEARTBEAT_S="1", PYTHONUNBUFFERED="1")
    if lanes is not None:  # issue 8, part lanes: the inbound consumer's apply lanes (default: the hub's)
        env["HUB_INGEST_LANES"] = str(lanes)
    # Always explicit, so each side says what it measures (issue 8, part default: the hub routes by case unless 0).
    env["HUB_INGEST_SHARDS"] = str(shards)
    if shards:  # issue 8, part shards: records routed by case; the shards balanced quickly (default every 5 s)
        env["HUB_INGEST_SHARD_REBALANCE_S"] = str(SHARD_REBALANCE_S)
    env.update(extra_env or {})  # a --variant side's settings, last
    target = inbox_count(engine) + count
    processes, heartbeats = [], []
    for i in range(workers):
        log = open(log_dir / f"worker-{workers}-{i}.log", "ab")  # noqa: SIM115 — closed with the process
        heartbeats.append(log_dir / f"heartbeat-{workers}-{i}.json")
        heartbeats[-1].unlink(missing_ok=True)
        command = [sys.executable, "-m", "hub.cli", "worker"] if queues is None else [
            sys.executable, "-c", WORKER_ON_QUEUE, queues[i]]
        processes.append(subprocess.Popen(command, cwd=ROOT,
                                          env={**env, "HUB_WORKER_HEARTBEAT_FILE": str(heartbeats[-1])},
                                          stdout=log, stderr=subprocess.STDOUT))
        log.close()
    try:
        deadline = time.monotonic() + 120
        while (sum(consumers(broker.admin_url, q) for q in queues or [INBOUND_QUEUE]) < workers
               or (shards and not shards_balanced(heartbeats, shards))):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise SystemExit(f"hub worker did not start; see {log_dir}")
            time.sleep(0.05)
        started, cpu_started = time.perf_counter(), sum(cpu_seconds(p.pid) for p in processes)
        machine_started, threads_started = machine_ticks(), [thread_ticks(p.pid) for p in processes]
        database_started, broker_started = database_cpu_seconds(), broker_cpu_seconds()
        applied_before = inbox_count(engine)
        deadline = time.monotonic() + 3600
        # With a queue per worker, timed only while every worker has work: the first worker attached has drained
        # its own queue for a while alone (its start), and the other one would finish alone (an x1 tail).
        depths = QueueDepths(broker.admin_url, queues) if queues else None
        while (applied := inbox_count(engine)) < target and not (depths is not None and depths.any_empty()):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise SystemExit(f"the hub workers did not drain their queue; see {log_dir}")
            # With a queue per worker the end is a queue running empty, not a count: poll as before.
            time.sleep(FINAL_POLL_S if depths is not None else
                       next_poll_s(target - applied, applied - applied_before, time.perf_counter() - started))
        seconds = time.perf_counter() - started
        cpu = sum(cpu_seconds(p.pid) for p in processes) - cpu_started
        machine_ended = machine_ticks()
        machine, database = cores_busy(machine_started, machine_ended), database_cpu_seconds() - database_started
        stolen = cores_stolen(machine_started, machine_ended)
        broker_used = broker_cpu_seconds() - broker_started
        threads_ended, ended_at = [thread_ticks(p.pid) for p in processes], time.time()
        if depths is not None:
            depths.close()
            while inbox_count(engine) < target:  # the rest, untimed: the next round starts from an empty queue
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    raise SystemExit(f"the hub workers did not drain their queue; see {log_dir}")
                time.sleep(0.05)
        while not all(h.exists() for h in heartbeats) and time.monotonic() < deadline:
            time.sleep(0.05)
        per_thread: Counter[str] = Counter()
        for process, heartbeat, before, after in zip(processes, heartbeats, threads_started, threads_ended,
                                                     strict=True):
            names = thread_names(heartbeat, process.pid)
            for tid, ticks in after.items():
                per_thread[names.get(tid, "other")] += (ticks - before.get(tid, 0)) / CLOCK_TICKS
        tally: Counter[str] = Counter()
        for heartbeat in heartbeats:
            tally.update(read_tally(heartbeat, ended_at))
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    measured = applied - applied_before
    if measured <= 0:  # no rate to give (it divided by zero here before)
        raise SystemExit(f"the hub workers applied all {count} records before timing began (rounds this short are "
                         f"gone in their start-up; batches of {batch}): use --records of several thousand")
    return Drain(side or f"hub x{workers}", measured, seconds, cpu,
                 Counter({"applied": measured}), machine, stolen, dict(per_thread), database, broker_used, dict(tally))


# A `hub worker` consuming another queue than hub.inbound.records (the --split experiment only: no setting for it).
WORKER_ON_QUEUE = ("import sys, hub.worker; hub.worker.INBOUND_QUEUE = sys.argv[1]; from hub.cli import app; "
                   "app(['worker'])")


def drain_baseline(broker: Broker, engine: Engine, count: int, prefetch: int, commit_every: int) -> Drain:
    """Raw pika: parse the JSON, insert it into one table; commit every ``commit_every`` messages (or when no
    delivery is waiting), then ack everything up to there in one basic.ack(multiple)."""
    insert = text("INSERT INTO baseline_records (body) VALUES (CAST(:body AS jsonb))")
    params = pika.URLParameters(broker.admin_url)
    outcomes: Counter[str] = Counter()
    started, cpu_started, machine_started = time.perf_counter(), time.thread_time(), machine_ticks()
    database_started, broker_started = database_cpu_seconds(), broker_cpu_seconds()
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    pending: list[tuple[int, bytes]] = []
    channel.basic_consume(BASELINE_QUEUE, lambda _ch, method, _p, body: pending.append((method.delivery_tag, body)))
    with engine.connect() as db:
        while outcomes["ack"] < count:
            if not pending:
                connection.process_data_events(time_limit=1)
                continue
            taken, last_tag = 0, 0
            while pending and taken < commit_every:
                tag, body = pending.pop(0)
                db.execute(insert, {"body": json.dumps(json.loads(body), ensure_ascii=False)})
                taken, last_tag = taken + 1, tag
                if not pending:
                    connection.process_data_events(time_limit=0)
            db.commit()
            channel.basic_ack(last_tag, multiple=True)
            outcomes["ack"] += taken
    seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
    machine_ended = machine_ticks()
    machine, database = cores_busy(machine_started, machine_ended), database_cpu_seconds() - database_started
    broker_used = broker_cpu_seconds() - broker_started
    connection.close()
    return Drain("baseline", count, seconds, cpu, outcomes, machine, cores_stolen(machine_started, machine_ended),
                 database_cpu_seconds=database,
                 broker_cpu_seconds=broker_used)


# --- relay ----------------------------------------------------------------------------------------


@dataclass
class RelayFigures:
    events: int
    relay_seconds: float
    raw_seconds: float
    relay_cpu_seconds: float = 0.0  # this process (relay_once and the bus, every thread)

    @property
    def relay_cpu_ms_per_event(self) -> float:
        return self.relay_cpu_seconds / self.events * 1000 if self.events else 0.0

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

    # This process holds ≈200k objects by now (the rounds' planned messages): a full collection (≈0.1 s) falling
    # inside the timed relay of ≈700 events tripled its CPU per event. Collected before, not during.
    gc.collect()
    started, cpu_started = time.perf_counter(), time.process_time()
    sent = 0
    while (batch := relay_once(factory, publish, now=SystemClock().now())) > 0:
        sent += batch
    relay_seconds, relay_cpu = time.perf_counter() - started, time.process_time() - cpu_started
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
    return RelayFigures(sent, relay_seconds, raw_seconds, relay_cpu)


def purge_events(broker: Broker) -> None:
    """Empty bench.events after a hub side (untimed), as a subscriber that keeps up would: left to pile up, the
    quorum queue held every earlier round's events (hundreds of thousands by the last round), and each hub round
    published into a longer backlog than the one before — a cost the baseline side never meets."""
    connection = open_connection(AmqpSettings(url=broker.admin_url))
    try:
        connection.channel().queue_purge(EVENTS_QUEUE)
    finally:
        connection.close()


# --- profile --------------------------------------------------------------------------------------

GROUPS = (("psycopg", "PostgreSQL driver (psycopg, incl. waiting for the server)"),
          ("sqlalchemy", "SQLAlchemy (ORM, Core, pool)"), ("jsonschema", "JSON Schema validation (jsonschema)"),
          ("referencing", "JSON Schema validation (jsonschema)"), ("rpds", "JSON Schema validation (jsonschema)"),
          ("/hub/", "hub code"), ("/workflow/", "workflow (calendar, identifiers)"), ("json/", "json"))


def bench_messages(planned: list[Planned]) -> list[InboundMessage]:
    return [InboundMessage(body=m.body, routing_key=f"{PARTNER}.{m.type}", exchange="hub.inbound",
                           queue=INBOUND_QUEUE, message_id=m.message_id, user_id=PARTNER, type=m.type,
                           correlation_id=None, content_type="application/json", timestamp=None, headers={},
                           redelivered=False, delivery_count=0) for m in planned]


def in_batches(handler: InboundHandler, messages: list[InboundMessage]) -> None:
    for i in range(0, len(messages), handler.batch_size):
        handler.handle_batch(messages[i:i + handler.batch_size])


def profile_handler(factory: sessionmaker[Session], planned: list[Planned], user: str, batch: int) -> str:
    """cProfile of the handler alone (no broker) over ``planned``, in batches; where the time goes."""
    handler = InboundHandler(factory, SystemClock(), user, BENCH_AUDIT_KEY, batch_size=batch)
    messages = bench_messages(planned)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    in_batches(handler, messages)
    profiler.disable()
    elapsed = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    groups: Counter[str] = Counter()
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        label = next((label for key, label in GROUPS if key in filename), "other (stdlib and the rest)")
        groups[label] += tottime
    out = io.StringIO()
    out.write(f"profile: {len(messages)} messages through InboundHandler (batches of {batch}) in {elapsed:.1f} s "
              f"under cProfile ({elapsed / len(messages) * 1000:.1f} ms/message profiled)\n  own time by library:\n")
    for label, seconds in groups.most_common():
        out.write(f"    {seconds / total * 100:5.1f} %  {label}\n")
    out.write("  top functions by cumulative time:\n")
    top = io.StringIO()
    pstats.Stats(profiler, stream=top).sort_stats("cumulative").print_stats(r"hub/|workflow/", 25)
    out.write("\n".join("    " + line for line in top.getvalue().splitlines() if line.strip()
                        and not line.startswith(("   Ordered", "   List reduced"))))
    return out.getvalue()


def statements_per_message(engine: Engine, factory: sessionmaker[Session], planned: list[Planned],
                           user: str, batch: int) -> tuple[float, float, float]:
    """SQL statements per message (COMMIT included), commits per message and CPU ms per message of the handler
    in this process, over ``planned`` handled in batches of ``batch`` (counted with an engine event)."""
    from sqlalchemy import event

    counted = [0, 0]

    def count(*_: Any) -> None:
        counted[0] += 1

    def commit(*_: Any) -> None:
        counted[1] += 1

    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "commit", commit)
    handler = InboundHandler(factory, SystemClock(), user, BENCH_AUDIT_KEY, batch_size=batch)
    cpu = time.thread_time()
    in_batches(handler, bench_messages(planned))
    cpu = time.thread_time() - cpu
    event.remove(engine, "before_cursor_execute", count)
    event.remove(engine, "commit", commit)
    n = len(planned)
    return round((counted[0] + counted[1]) / n, 2), round(counted[1] / n, 3), round(cpu / n * 1000, 2)


# --- main -----------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000, help="messages per side and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (at least 3 for a median); the order alternates")
    parser.add_argument("--prefetch", type=int, default=AmqpSettings.prefetch,
                        help="basic.qos of the baseline (the workers prefetch two of their batches, at least 200)")
    parser.add_argument("--batch", type=int, default=Settings.model_fields["ingest_batch_size"].default,
                        help="HUB_INGEST_BATCH_SIZE of the hub workers (default: the hub's default)")
    parser.add_argument("--lanes", type=int, default=None,
                        help="HUB_INGEST_LANES of the hub workers (default: the hub's default, Settings.ingest_lanes)")
    parser.add_argument("--baseline-commit-every", type=int, default=100, help="the baseline's messages per commit")
    parser.add_argument("--workers", default="1,2", help="hub worker processes per side, e.g. 1,2")
    parser.add_argument("--relay-events", type=int, default=5000, help="outbox rows to relay (at most)")
    parser.add_argument("--database-url", default=os.environ.get("HUB_TEST_POSTGRES_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--amqp-url", default=os.environ.get("HUB_TEST_AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument("--management-url",
                        default=os.environ.get("HUB_TEST_RABBITMQ_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL))
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="cProfile the handler over N more messages (unmeasured)")
    parser.add_argument("--split", action="store_true",
                        help="experiment: a side 'hub xN split' (N > 1) beside hub xN, the messages split by case into "
                             "one queue per worker, each worker consuming only its own (no two share a case)")
    parser.add_argument("--shards", type=int, default=DEFAULT_SHARDS,
                        help=f"HUB_INGEST_SHARDS of the 'hub xN' sides (default {DEFAULT_SHARDS}, the hub's default: "
                             "records routed by case, each shard consumed by one worker; 0: the one queue "
                             "hub.inbound.records)")
    parser.add_argument("--one-queue", action="store_true",
                        help="also a side 'hub xN one queue' per worker count: HUB_INGEST_SHARDS=0, every worker on "
                             "hub.inbound.records (routing by case off)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE[,VAR=VALUE]",
                        help="experiment: also a side 'hub xN NAME' per worker count, its workers started with these "
                             "settings on top (e.g. lanes2:HUB_INGEST_LANES=2), in the same rotation as the others — "
                             "two settings compared under the same load; repeatable")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]
    variants = dict(_variant(text) for text in args.variant)
    variant_env = {f"hub x{n} {variant}": env for variant, env in variants.items() for n in worker_counts}
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("pika", "workflow", "hub", "adapters", "mocks"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    load_before = os.getloadavg()
    # How much more CPU each of two CPU-bound processes needs than one alone here: x2 / x1 cannot beat the
    # ceiling divided by it, whatever the hub does (bench.machine.interference).
    interference_factor = interference()
    print(f"machine: two CPU-bound processes at once each need {interference_factor:.3f} x the CPU of one alone "
          f"(load {os.getloadavg()[0]:.2f})", flush=True)
    drains: list[Drain] = []
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"hub_bench_ingest_{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    with fresh_database(args.database_url) as database_url, fresh_vhost(args.amqp_url, args.management_url) as broker:
        engine = make_engine(database_url)
        factory = make_session_factory(engine)
        user = urlsplit(broker.admin_url).username or "guest"
        seed = args.seed
        for round_ in range(args.rounds):
            order = ["baseline", *(f"hub x{n}" for n in worker_counts),
                     *(f"hub x{n} split" for n in worker_counts if args.split and n > 1),
                     *(f"hub x{n} one queue" for n in worker_counts if args.one_queue),
                     *variant_env]
            order = order[round_ % len(order):] + order[:round_ % len(order)]  # each side goes first in turn
            for name in order:
                seed += 1
                planned = CityPlatform(broker.partner_url, PARTNER, seed=seed).plan(args.records)
                if name == "baseline":
                    publish_baseline(broker, planned)
                    drain = drain_baseline(broker, engine, len(planned), args.prefetch, args.baseline_commit_every)
                else:
                    workers = int(name.split("x")[1].split()[0])
                    queues = None
                    # The split side's workers consume their own queues: routing by case off for them.
                    shards = 0 if name.endswith((" one queue", " split")) else args.shards
                    if name.endswith(" split"):
                        queues = publish_split(broker, planned, workers)
                    else:
                        publish_hub(broker, planned, shards)
                    drain = drain_workers(broker, database_url, engine, len(planned), workers, args.batch, log_dir,
                                          args.lanes, queues, shards, side=name, extra_env=variant_env.get(name))
                    purge_events(broker)
                drains.append(drain)
                print(f"round {round_ + 1}: {drain.side:15} {drain.messages} messages in {drain.seconds:6.1f} s = "
                      f"{drain.rate:7.1f} msg/s, consumer CPU {drain.cpu_ms_per_message:.2f} ms/message, PostgreSQL "
                      f"{drain.database_ms_per_message:.2f} ms/message, RabbitMQ {drain.broker_ms_per_message:.2f} "
                      "ms/message "
                      f"(load {os.getloadavg()[0]:.2f}; machine {drain.machine_cores_busy:.2f} of {CORES} cores busy, "
                      f"stolen {drain.machine_cores_stolen:.2f}, this side {drain.own_cores_busy:.2f})", flush=True)
                if drain.tally:
                    print(f"         inbound: {drain.deferred_per_record:.3f} deferrals per record, mean batch "
                          f"{drain.mean_batch:.1f} deliveries, {int(drain.tally.get('lock_waits', 0))} batches waited "
                          f"for locks ({drain.tally.get('lock_wait_s', 0):.2f} s)", flush=True)
                if drain.side == "hub x1" and drain.machine_cores_busy:
                    print(f"         ceiling of x2 / x1 on this machine from this round: {CORES} cores / "
                          f"{drain.machine_cores_busy:.2f} busy = {CORES / drain.machine_cores_busy:.2f}", flush=True)
                if drain.thread_cpu_seconds:
                    print("         worker threads, CPU ms/record: " + ", ".join(
                        f"{name} {seconds / drain.messages * 1000:.3f}" for name, seconds
                        in sorted(drain.thread_cpu_seconds.items(), key=lambda kv: -kv[1])), flush=True)
        extra = CityPlatform(broker.partner_url, PARTNER, seed=args.seed + 1000).plan(600 + args.profile)
        statements, commits, handler_cpu = statements_per_message(engine, factory, extra[:600], user, args.batch)
        profile_text = profile_handler(factory, extra[600:], user, args.batch) if args.profile else ""
        figures = relay(broker, factory, args.relay_events)  # the outbox rows of the messages above (no worker ran)
        engine.dispose()

    load_after = os.getloadavg()
    rates = {side: median([d.rate for d in drains if d.side == side]) for side in dict.fromkeys(d.side for d in drains)}
    cpu = {side: median([d.cpu_ms_per_message for d in drains if d.side == side]) for side in rates}
    database = {side: median([d.database_ms_per_message for d in drains if d.side == side]) for side in rates}
    broker = {side: median([d.broker_ms_per_message for d in drains if d.side == side]) for side in rates}
    baseline = rates.get("baseline", 0.0)
    one, two, split = rates.get("hub x1"), rates.get("hub x2"), rates.get("hub x2 split")
    one_queue, two_queue = rates.get("hub x1 one queue"), rates.get("hub x2 one queue")
    print(f"\ningest, median of {args.rounds} rounds ({args.records} messages per side and round, hub batches of "
          f"{args.batch}, lanes {args.lanes or 'default'}, 'hub xN' with HUB_INGEST_SHARDS={args.shards}, baseline "
          f"commits every {args.baseline_commit_every}):")
    for side, rate in rates.items():
        print(f"  {side:15} {rate:8.1f} msg/s   (PostgreSQL {database[side]:.2f}, RabbitMQ {broker[side]:.2f} "
              "ms/message; "
              f"CPU {cpu[side]:.2f} ms/message"
              + (", worker processes incl. relay)" if side != "baseline" else ", consumer thread)")
              + "   rounds: " + ", ".join(f"{d.rate:.1f}" for d in drains if d.side == side))
    ratio = one / baseline if one and baseline else 0.0
    scale = two / one if one and two else 0.0
    busy = {side: median([d.machine_cores_busy for d in drains if d.side == side]) for side in rates}
    ceilings = [CORES / d.machine_cores_busy for d in drains if d.side == "hub x1" and d.machine_cores_busy]
    print("  machine CPU during each side (median cores busy of " + str(CORES) + ", /proc/stat, everything on the "
          "machine): " + ", ".join(f"{side} {value:.2f}" for side, value in busy.items()))
    threads: dict[str, dict[str, float]] = {}
    for side in rates:
        names = {n for d in drains if d.side == side for n in d.thread_cpu_seconds}
        threads[side] = {n: median([d.thread_cpu_seconds.get(n, 0.0) / d.messages * 1000 for d in drains
                                    if d.side == side]) for n in names}
        if names:
            print(f"  {side} threads, CPU ms/record (all workers): " + ", ".join(
                f"{n} {v:.3f}" for n, v in sorted(threads[side].items(), key=lambda kv: -kv[1])))
    if one:
        met = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(f"  hub x1 / baseline  {ratio:6.3f}   target >= {TARGET_RATIO}: {met}")
    if one and two:
        met = "met" if scale >= TARGET_SCALE else "NOT met"
        print(f"  hub x2 / hub x1    {scale:6.3f}   target >= {TARGET_SCALE}: {met}")
    if one_queue and two_queue:
        print(f"  hub x2 one queue / hub x1 one queue {two_queue / one_queue:6.3f}   (routing by case off)"
              + (f"; hub x1 / hub x1 one queue {one / one_queue:6.3f}" if one else ""))
    for variant in variants:
        v_one, v_two = rates.get(f"hub x1 {variant}"), rates.get(f"hub x2 {variant}")
        if v_one:
            print(f"  variant {variant}: hub x1 {variant} / baseline {v_one / baseline if baseline else 0.0:6.3f}"
                  + (f", / hub x1 {v_one / one:6.3f}" if one else "")
                  + (f"; hub x2 {variant} / hub x1 {variant} {v_two / v_one:6.3f}" if v_two else ""))
    if one and split:
        print(f"  hub x2 split / hub x1 {split / one:6.3f}   (the upper bound of routing each case to one worker)")
    if ceilings:
        print("  ceiling of x2 / x1 on this machine (cores present / machine cores busy during x1), per x1 round: "
              + ", ".join(f"{c:.2f}" for c in ceilings) + f"; median {median(ceilings):.2f}"
              + (f", measured {scale:.3f}" if scale else "")
              + (" — the target is above what this machine can give" if median(ceilings) < TARGET_SCALE else ""))
        print(f"  the ceiling corrected by the cores' interference (two CPU-bound processes each need "
              f"{interference_factor:.3f} x the CPU of one alone): {median(ceilings) / interference_factor:.2f}")
    for side in rates:
        tallies = [d for d in drains if d.side == side and d.tally]
        if tallies:
            print(f"  {side} inbound: deferrals per record "
                  + ", ".join(f"{d.deferred_per_record:.3f}" for d in tallies)
                  + "; mean batch " + ", ".join(f"{d.mean_batch:.1f}" for d in tallies)
                  + "; batches that waited for locks " + ", ".join(
                      f"{int(d.tally.get('lock_waits', 0))} ({d.tally.get('lock_wait_s', 0):.2f} s)" for d in tallies))
    print(f"  SQL statements per record {statements} (COMMIT included; {commits} commits per record, the "
          f"tracking-number transactions of new cases included), handler CPU "
          f"{handler_cpu} ms/record in batches of {args.batch} (600 messages, this process, no broker)")
    print(f"  load average (1, 5, 15 min) before {tuple(round(x, 2) for x in load_before)}, "
          f"after {tuple(round(x, 2) for x in load_after)}; {os.cpu_count()} CPUs")
    print(f"outbox relay: {figures.events} events in {figures.relay_seconds:.2f} s = {figures.relay_rate:.0f} "
          f"events/s, CPU {figures.relay_cpu_ms_per_event:.3f} ms/event (relay_once + AmqpBus.publish_many, "
          f"confirms); the same bodies through Publisher.publish_many alone: {figures.raw_rate:.0f} events/s")
    if profile_text:
        print(profile_text)
    result = {
        "records": args.records, "rounds": args.rounds, "batch": args.batch, "lanes": args.lanes,
        "prefetch": args.prefetch,
        "baseline_commit_every": args.baseline_commit_every,
        "median_msg_per_s": {k: round(v, 1) for k, v in rates.items()},
        "median_cpu_ms_per_msg": {k: round(v, 2) for k, v in cpu.items()},
        "median_database_cpu_ms_per_msg": {k: round(v, 2) for k, v in database.items()},
        "median_broker_cpu_ms_per_msg": {k: round(v, 2) for k, v in broker.items()},
        "ratio_hub1_baseline": round(ratio, 3), "ratio_hub2_hub1": round(scale, 3),
        "ratio_hub2split_hub1": round(split / one, 3) if one and split else None,
        "shards": args.shards,
        "ratio_hub2onequeue_hub1onequeue": round(two_queue / one_queue, 3) if one_queue and two_queue else None,
        "statements_per_record": statements, "commits_per_record": commits, "handler_cpu_ms_per_record": handler_cpu,
        "rounds_detail": [{"side": d.side, "rate": round(d.rate, 1), "seconds": round(d.seconds, 2),
                           "cpu_ms_per_msg": round(d.cpu_ms_per_message, 2),
                           "database_cpu_ms_per_msg": round(d.database_ms_per_message, 2),
                           "broker_cpu_ms_per_msg": round(d.broker_ms_per_message, 2),
                           "machine_cores_busy": round(d.machine_cores_busy, 2),
                           "machine_cores_stolen": round(d.machine_cores_stolen, 2)} for d in drains],
        "relay_events": figures.events, "relay_events_per_s": round(figures.relay_rate, 1),
        "relay_cpu_ms_per_event": round(figures.relay_cpu_ms_per_event, 3),
        "machine_cores_busy": {k: round(v, 2) for k, v in busy.items()}, "cores": CORES,
        "ceiling_hub2_hub1": [round(c, 2) for c in ceilings], "interference": round(interference_factor, 3),
        "inbound_tallies": {side: [d.tally for d in drains if d.side == side and d.tally] for side in rates},
        "thread_cpu_ms_per_record": {side: {n: round(v, 3) for n, v in t.items()} for side, t in threads.items()},
        "raw_publish_events_per_s": round(figures.raw_rate, 1),
        "load_average": [list(map(lambda x: round(x, 2), load_before)), list(map(lambda x: round(x, 2), load_after))],
        "cpus": os.cpu_count(), "python": platform.python_version(),
    }
    if load_before[0] > (os.cpu_count() or 1):
        print(f"warning: load average {load_before[0]:.1f} above the CPU count: figures are noisy", file=sys.stderr)
    line = json.dumps(result, ensure_ascii=False)
    print(line)
    if args.json_path:
        Path(args.json_path).write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
