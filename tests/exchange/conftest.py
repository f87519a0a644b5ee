"""The exchange end to end: city platform simulator → RabbitMQ → hub worker → PostgreSQL, and back out.

Needs a real PostgreSQL and RabbitMQ: HUB_TEST_POSTGRES_URL, HUB_TEST_AMQP_URL and
HUB_TEST_RABBITMQ_MANAGEMENT_URL (``scripts/test.sh`` starts both and exports them; for a local run
``source scripts/services.sh; ensure_postgres; ensure_rabbitmq`` first). A missing one fails these tests, it
never skips them.

Isolation. The session gets its own database ``hub_exchange_<hex>`` (migrated and seeded like tests/conftest.py
does) and its own RabbitMQ vhost ``hub_exchange_<hex>``; both are dropped at the end. Inside the vhost the hub's
real names are used (``hub.inbound`` …), because the partner users' permissions name them. The partner users
(``shenyang``, ``dalian``) are provisioned with the hub's own code (``adapters.amqp.provision_partner_user``,
as ``hub partners sync`` does) and deleted afterwards unless they existed before. Tests share the database and
tell their own cases apart by the simulator's run id (external ids ``SY-<run>-000001`` …).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import pika
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import (
    DEAD_LETTER_QUEUE,
    INBOUND_QUEUE,
    REASON_HEADER,
    AmqpBus,
    AmqpSettings,
    declare_topology,
    delete_partner_user,
    make_bus,
    open_connection,
    provision_partner_user,
)
from adapters.amqp.topology import Topology
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.migrate import upgrade
from hub.seed.service import seed_demo
from hub.settings import Settings
from hub.worker import Worker
from mocks.city_platform import SimulationReport
from tests.adapters.amqp.conftest import wait_for
from tests.support import PARTNER_SECRET, PROCESS_KEYS

PARTNERS = ("shenyang", "dalian")
KEEP = os.environ.get("HUB_TEST_EXCHANGE_KEEP") == "1"  # keep database and vhost for a post-mortem
HOW_TO_START = "run scripts/test.sh, or `source scripts/services.sh; ensure_postgres; ensure_rabbitmq` before pytest"
ROOT = Path(__file__).resolve().parents[2]


def required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is unset: the exchange tests need a real PostgreSQL and RabbitMQ; {HOW_TO_START}")
    return value


@dataclass(frozen=True)
class Broker:
    url: str  # the hub's (administrator's) URL in the private vhost
    management_url: str
    admin_user: str
    admin_password: str
    vhost: str

    def url_for(self, user: str, password: str) -> str:
        parts = urlsplit(self.url)
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 5672}"
        return urlunsplit(parts._replace(netloc=netloc))

    def settings(self, **overrides: Any) -> AmqpSettings:
        return AmqpSettings(url=self.url, **overrides)


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    base = required_env("HUB_TEST_AMQP_URL")
    management_url = required_env("HUB_TEST_RABBITMQ_MANAGEMENT_URL").rstrip("/")
    parts = urlsplit(base)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    with httpx.Client(base_url=management_url, auth=(user, password), timeout=15, trust_env=False) as api, \
            private_vhost(api, base, user, prefix="hub_exchange") as (vhost, url):
        connection = open_connection(AmqpSettings(url=url))
        declare_topology(connection.channel())  # as every hub worker does at start (same arguments)
        connection.close()
        yield Broker(url, management_url, user, password, vhost)


@contextmanager
def private_vhost(api: httpx.Client, base_url: str, user: str, *, prefix: str) -> Iterator[tuple[str, str]]:
    """A new vhost ``<prefix>_<8 hex>`` where ``user`` may do anything, once it takes connections: its name and
    its AMQP URL (``base_url``'s credentials and host). Deleted on leaving, unless HUB_TEST_EXCHANGE_KEEP."""
    vhost = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        api.put(f"/api/vhosts/{vhost}").raise_for_status()
        api.put(f"/api/permissions/{vhost}/{quote(user, safe='')}",
                json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"cannot create a RabbitMQ vhost through {api.base_url} ({exc}); {HOW_TO_START}")
    url = urlunsplit(urlsplit(base_url)._replace(path=f"/{vhost}"))
    wait_for(lambda: _can_connect(url), timeout_s=15, what=f"the new vhost {vhost}")
    yield vhost, url
    if KEEP:
        print(f"\nkept RabbitMQ vhost {vhost}")
    else:
        api.delete(f"/api/vhosts/{vhost}")


@contextmanager
def partner_vhost(broker: Broker, *, prefix: str) -> Iterator[Broker]:
    """A ``private_vhost`` with the partner ``shenyang`` provisioned in it (the session's partner users exist), as
    a Broker of its own."""
    with httpx.Client(base_url=broker.management_url, auth=(broker.admin_user, broker.admin_password), timeout=30,
                      trust_env=False) as api, private_vhost(api, broker.url, broker.admin_user,
                                                             prefix=prefix) as (vhost, url):
        provision_partner_user(broker.management_url, broker.admin_user, broker.admin_password, vhost, "shenyang",
                               PARTNER_SECRET)
        yield Broker(url, broker.management_url, broker.admin_user, broker.admin_password, vhost)


def _can_connect(url: str) -> bool:
    try:
        open_connection(AmqpSettings(url=url), attempts=1).close()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def partner_urls(broker: Broker) -> Iterator[dict[str, str]]:
    """AMQP URLs of the partner users, provisioned in the private vhost with the seeded demo secret."""
    created = []
    with httpx.Client(base_url=broker.management_url, auth=(broker.admin_user, broker.admin_password),
                      timeout=60, trust_env=False) as api:
        for code in PARTNERS:
            if api.get(f"/api/users/{code}").status_code == 404:
                created.append(code)
            provision_partner_user(broker.management_url, broker.admin_user, broker.admin_password, broker.vhost,
                                   code, PARTNER_SECRET)
    yield {code: broker.url_for(code, PARTNER_SECRET) for code in PARTNERS}
    for code in created:
        delete_partner_user(broker.management_url, broker.admin_user, broker.admin_password, code)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database on the test server, migrated and seeded; dropped at the end."""
    base = make_url(required_env("HUB_TEST_POSTGRES_URL"))
    name = f"hub_exchange_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base.render_as_string(hide_password=False))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"cannot create a database on {base.host} ({type(exc).__name__}: {exc}); {HOW_TO_START}")
    url = base.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    with unit_of_work(make_session_factory(engine)) as session:
        seed_demo(session, now=SystemClock().now())
    engine.dispose()
    yield url
    if KEEP:
        print(f"\nkept database {name}")
    else:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def exchange_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def factory(exchange_engine: Engine) -> sessionmaker[Session]:
    """Sessions on the exchange tests' own database (not the suite's ``session_factory``)."""
    return make_session_factory(exchange_engine)


@pytest.fixture
def hub_settings(database_url: str, broker: Broker, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, amqp_url=broker.url, log_json=False)


# Production shape, test-sized reconnect pacing: after a broker restart consumers are back within ~1 s.
WORKER_AMQP = {"heartbeat": 10, "reconnect_initial_s": 0.1, "reconnect_max_s": 1.0, "retry_initial_s": 0.05,
               "retry_max_s": 0.5}


@contextmanager
def running_workers(settings: Settings, factory: sessionmaker[Session], count: int = 1, *,
                    topology: Topology | None = None, name: str = "hub-test-worker") -> Iterator[list[Worker]]:
    """``count`` hub workers (each: inbound consumer, dead-letter consumer, outbox relay) on threads, each with its
    own AmqpBus — as ``count`` replicas of ``hub worker`` would run. ``topology``: by default the one `hub worker`
    builds from the settings (HUB_INGEST_SHARDS: routed by case unless 0)."""
    workers = []
    topology = topology if topology is not None else Topology(shards=settings.ingest_shards)
    try:
        for i in range(count):
            bus = make_bus(settings.amqp_url, topology=topology, connection_name=f"{name}-{i}", **WORKER_AMQP)
            worker = Worker(settings=settings, factory=factory, clock=SystemClock(), bus=bus)
            worker.start()
            workers.append(worker)
        yield workers
    finally:
        for worker in workers:
            worker.stop(timeout=15)


class WorkerProcess:
    """``hub worker`` as its own process, as production runs it."""

    def __init__(self, database_url: str, amqp_url: str, workdir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        self.env.update(HUB_DATABASE_URL=database_url, HUB_AMQP_URL=amqp_url, HUB_DATA_DIR=str(workdir),
                        HUB_LOG_LEVEL="WARNING", HUB_LOG_JSON="false", PYTHONUNBUFFERED="1", **PROCESS_KEYS)
        self.workdir = workdir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"worker-{len(self.started)}.log", "wb")  # noqa: SIM115 — closed with the process
        process = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], cwd=ROOT, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.started.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=15)

    def log(self, index: int) -> str:
        return (self.workdir / f"worker-{index}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# --- looking at the results -----------------------------------------------------------------------


@dataclass(frozen=True)
class HubState:
    """What the hub holds for one simulator run."""

    cases: int
    case_events: int
    applied_messages: int  # expected message ids found in the inbox
    dead_letter_rows: int  # rows for the expected dead message ids (a dead letter may be stored twice)
    dead_letters: dict[str, list[str]]  # message id -> reasons
    misplaced_dead_letters: int  # dead letters of messages that should have been applied
    pending_events: int
    duplicate_steps: int  # (case, partner_seq) pairs stored more than once

    def settled(self, report: SimulationReport) -> bool:
        return (self.applied_messages == len(report.expected_apply)
                and set(self.dead_letters) >= set(report.expected_dead))


def hub_state(factory: sessionmaker[Session], report: SimulationReport) -> HubState:
    like = report.external_id_prefix + "-%"
    partner = report.partner
    with factory() as session:
        one = lambda sql, **params: int(session.execute(text(sql), params).scalar_one())  # noqa: E731
        run_cases = "select id from cases where origin_partner = :partner and external_id like :like"
        cases = one(f"select count(*) from ({run_cases}) c", partner=partner, like=like)
        events = one(f"select count(*) from case_events where case_id in ({run_cases})", partner=partner, like=like)
        duplicate_steps = one(
            f"select count(*) from (select case_id, data->>'partner_seq' from case_events where case_id in "
            f"({run_cases}) group by 1, 2 having count(*) > 1) d", partner=partner, like=like)
        applied = one("select count(*) from inbox where message_id = any(:ids)",
                      ids=[uuid.UUID(i) for i in report.expected_apply])
        rows = session.execute(text("select message_id, reason from dead_letters where message_id = any(:ids)"),
                               {"ids": list(report.expected_dead)}).all()
        misplaced = one("select count(*) from dead_letters where message_id = any(:ids)",
                        ids=list(report.expected_apply))
        pending = one("select count(*) from pending_events where partner_code = :partner and external_id like :like",
                      partner=partner, like=like)
    dead: dict[str, list[str]] = {}
    for message_id, reason in rows:
        dead.setdefault(message_id, []).append(reason)
    return HubState(cases, events, applied, len(rows), dead, misplaced, pending, duplicate_steps)


def run_cases(factory: sessionmaker[Session], report: SimulationReport) -> dict[str, tuple[int, int, str, int, str]]:
    """external_id -> (partner_event_seq, event_count, state, record_version, item code) for the run's cases."""
    with factory() as session:
        rows = session.execute(text(
            "select c.external_id, c.partner_event_seq, c.event_count, c.state, c.record_version, i.code "
            "from cases c join items i on i.id = c.item_id "
            "where c.origin_partner = :partner and c.external_id like :like"),
            {"partner": report.partner, "like": report.external_id_prefix + "-%"}).all()
    return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}


def wait_until_settled(factory: sessionmaker[Session], report: SimulationReport, *, timeout_s: float,
                       stable_s: float = 2.0) -> HubState:
    """Poll (bounded) until every expected message is applied or dead-lettered, then until nothing changes for
    ``stable_s`` — duplicates that would land late get their chance to show."""
    deadline = time.monotonic() + timeout_s
    progress_at = time.monotonic() + 15
    state = hub_state(factory, report)
    while not state.settled(report):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {len(report.expected_apply)} applied and "
                        f"{len(report.expected_dead)} dead-lettered messages; the hub has {state.applied_messages} "
                        f"applied and {len(state.dead_letters)} dead letters")
        if time.monotonic() > progress_at:
            print(f"[{time.strftime('%H:%M:%S')}] {state.applied_messages}/{len(report.expected_apply)} applied, "
                  f"{len(state.dead_letters)}/{len(report.expected_dead)} dead-lettered", file=sys.stderr)
            progress_at = time.monotonic() + 15
        time.sleep(2.0)
        state = hub_state(factory, report)
    deadline = time.monotonic() + stable_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        again = hub_state(factory, report)
        if again != state:
            state, deadline = again, time.monotonic() + stable_s
    return state


def queue_depth(broker: Broker, queue: str) -> int:
    connection = open_connection(broker.settings(), attempts=3)
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


class EventCollector:
    """A test queue bound to hub.events (``#``), read on a thread: every event message id, with repeats."""

    def __init__(self, broker: Broker, queue: str, binding_keys: Sequence[str] = ("#",)) -> None:
        self.broker = broker
        self.queue = queue
        self.binding_keys = binding_keys
        self.received: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"collector-{queue}", daemon=True)

    def __enter__(self) -> EventCollector:
        connection = open_connection(self.broker.settings())
        channel = connection.channel()
        channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        for key in self.binding_keys:
            channel.queue_bind(self.queue, "hub.events", routing_key=key)
        connection.close()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        connection = open_connection(self.broker.settings())
        connection.channel().queue_delete(self.queue)
        connection.close()

    def ids(self) -> set[str]:
        with self._lock:
            return set(self.received)

    def deliveries(self) -> int:
        with self._lock:
            return sum(self.received.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection = open_connection(self.broker.settings(heartbeat=10), attempts=1)
            except Exception:
                self._stop.wait(0.2)
                continue
            try:
                channel = connection.channel()
                channel.basic_qos(prefetch_count=1000)
                channel.basic_consume(self.queue, self._on_message)
                while not self._stop.is_set():
                    connection.process_data_events(time_limit=0.1)
            except pika.exceptions.AMQPError:
                self._stop.wait(0.2)
            finally:
                if connection.is_open:
                    with suppress(pika.exceptions.AMQPError):
                        connection.close()

    def _on_message(self, channel: Any, method: Any, properties: pika.BasicProperties, _body: bytes) -> None:
        with self._lock:
            key = properties.message_id or ""
            self.received[key] = self.received.get(key, 0) + 1
        channel.basic_ack(method.delivery_tag)


def timed(label: str, durations: dict[str, float]) -> Callable[[], None]:
    started = time.monotonic()

    def done() -> None:
        durations[label] = time.monotonic() - started

    return done


def dead_letter_reasons(broker: Broker, expected: int) -> dict[str, str]:
    """message id -> x-hub-reason of the dead letters in hub.inbound.dead (no dead-letter consumer runs here)."""
    found: dict[str, str] = {}
    connection = open_connection(broker.settings())
    channel = connection.channel()

    def take() -> bool:
        method, properties, _ = channel.basic_get(DEAD_LETTER_QUEUE, auto_ack=True)
        if method is not None:
            found[str(properties.message_id)] = str((properties.headers or {}).get(REASON_HEADER))
        return len(found) >= expected

    try:
        wait_for(take, timeout_s=30, what=f"{expected} dead letter(s)", interval_s=0.02)
    finally:
        connection.close()
    return found


ITEM_KEY = "physician-practice-registration"  # the consumer tests' item (沈阳市卫健委)


def item_code(factory: sessionmaker[Session]) -> str:
    from hub.catalog.models import Item

    with factory() as session:
        return str(session.scalars(select(Item.code).where(Item.region_code == "210100",
                                                           Item.key.like(f"{ITEM_KEY}%")).order_by(Item.id)).first())


@pytest.fixture
def one_queue(broker: Broker) -> None:
    """The session's vhost routed to hub.inbound.records, as a worker with HUB_INGEST_SHARDS=0 leaves it at start
    (shards unrouted): for the tests of the bare consumer of the one queue. Workers started through settings
    route by case (the default), and the vhost is shared."""
    bus = make_bus(broker.url, topology=Topology(shards=0))
    assert isinstance(bus, AmqpBus)
    bus.declare_topology()
    bus.close()


@pytest.fixture
def empty_queues(broker: Broker, one_queue: None) -> None:
    connection = open_connection(broker.settings())
    channel = connection.channel()
    channel.queue_purge(INBOUND_QUEUE)
    channel.queue_purge(DEAD_LETTER_QUEUE)
    connection.close()
