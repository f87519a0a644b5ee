"""Fixtures for the AMQP tests against a real RabbitMQ.

``scripts/test.sh`` starts the broker and exports HUB_TEST_AMQP_URL and HUB_TEST_RABBITMQ_MANAGEMENT_URL;
for a local run, ``source scripts/services.sh; ensure_rabbitmq`` first. A missing URL fails the tests that
need the broker (it never skips them); the in-process bus tests need nothing.

Each test gets its own topology (``Topology.with_prefix``: same arguments, unique names) and deletes it
afterwards; tests that must use the real names purge those queues.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp import (
    AmqpSettings,
    Handler,
    OutboundMessage,
    Topology,
    consume,
    declare_topology,
    open_connection,
)

AMQP_URL_ENV = "HUB_TEST_AMQP_URL"
MANAGEMENT_URL_ENV = "HUB_TEST_RABBITMQ_MANAGEMENT_URL"
HOW_TO_START = "run scripts/test.sh, or `source scripts/services.sh; ensure_rabbitmq` before pytest"
TEST_DELIVERY_LIMIT = 3


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is unset: the AMQP tests need a real RabbitMQ; {HOW_TO_START}")
    return value


@pytest.fixture(scope="session")
def amqp_url() -> str:
    url = _required_env(AMQP_URL_ENV)
    try:
        open_connection(AmqpSettings(url=url), attempts=1).close()
    except Exception as exc:
        pytest.fail(f"RabbitMQ at {AMQP_URL_ENV} is not reachable ({exc}); {HOW_TO_START}")
    return url


@pytest.fixture(scope="session")
def management_url() -> str:
    return _required_env(MANAGEMENT_URL_ENV).rstrip("/")


@pytest.fixture(scope="session")
def admin(amqp_url: str) -> tuple[str, str, str]:
    """(user, password, vhost) of the test administrator, from the AMQP URL."""
    parts = urlsplit(amqp_url)
    return unquote(parts.username or ""), unquote(parts.password or ""), unquote(parts.path.lstrip("/")) or "/"


@pytest.fixture
def settings(amqp_url: str) -> AmqpSettings:
    # Production shape, test-sized numbers: short backoff so reconnects take tenths of a second.
    return AmqpSettings(url=amqp_url, heartbeat=10, reconnect_initial_s=0.05, reconnect_max_s=0.5,
                        confirm_timeout_s=10, prefetch=50, delivery_limit=TEST_DELIVERY_LIMIT,
                        retry_initial_s=0.005, retry_max_s=0.02, connection_name=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def channel(settings: AmqpSettings) -> Iterator[BlockingChannel]:
    """A plain channel for arranging and inspecting."""
    connection = open_connection(settings)
    yield connection.channel()
    if connection.is_open:
        connection.close()


@pytest.fixture
def topology(settings: AmqpSettings) -> Iterator[Topology]:
    """A private copy of the hub topology, deleted afterwards."""
    names = Topology.with_prefix(f"test-{uuid.uuid4().hex[:10]}")
    connection = open_connection(settings)
    declare_topology(connection.channel(), names, delivery_limit=settings.delivery_limit)
    connection.close()
    yield names
    connection = open_connection(settings)
    cleanup = connection.channel()
    for queue in names.queues:
        cleanup.queue_delete(queue)
    for exchange in names.exchanges:
        cleanup.exchange_delete(exchange)
    connection.close()


@pytest.fixture
def management(management_url: str, admin: tuple[str, str, str]) -> Iterator[httpx.Client]:
    user, password, _ = admin
    with httpx.Client(base_url=management_url, auth=(user, password), timeout=60, trust_env=False) as client:
        yield client


def vhost_path(vhost: str) -> str:
    return quote(vhost, safe="")


def message(exchange: str, routing_key: str = "p1.case-record.v1", *, body: bytes = b'{"n": 0}',
            **fields: Any) -> OutboundMessage:
    return OutboundMessage(exchange=exchange, routing_key=routing_key, body=body, type="case-record.v1", **fields)


@pytest.fixture
def acks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Every basic.ack a consumer sends: (delivery tag, multiple). Also bound by name in tests/exchange."""
    sent: list[tuple[int, bool]] = []
    original = BlockingChannel.basic_ack

    def basic_ack(channel: BlockingChannel, delivery_tag: int = 0, multiple: bool = False) -> None:
        sent.append((delivery_tag, multiple))
        original(channel, delivery_tag, multiple)

    monkeypatch.setattr(BlockingChannel, "basic_ack", basic_ack)
    return sent


def wait_for(condition: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Bounded polling: the only kind of waiting these tests do."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def get_all(channel: BlockingChannel, queue: str, *, expected: int, timeout_s: float = 10.0
            ) -> list[tuple[Any, pika.BasicProperties, bytes]]:
    """Take ``expected`` messages off ``queue`` (auto-ack), polling until they are there."""
    taken: list[tuple[Any, pika.BasicProperties, bytes]] = []

    def take() -> bool:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            taken.append((method, properties, body))
        return len(taken) >= expected

    wait_for(take, timeout_s=timeout_s, what=f"{expected} message(s) in {queue}", interval_s=0.02)
    return taken


def queue_depth(channel: BlockingChannel, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


@contextmanager
def running_consumer(settings: AmqpSettings, queue: str, handler: Handler, **kwargs: Any) -> Iterator[threading.Event]:
    """``consume`` in a thread; stopped (and joined, bounded) on exit."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            consume(settings, queue, handler, stop_event=stop, **kwargs)
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"consumer-{queue}", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive(), "the consumer did not stop within 15 s of stop_event"
    assert not errors, f"the consumer raised {errors[0]!r}"


def rabbitmqctl(*args: str, timeout_s: float = 60) -> None:
    """Run rabbitmqctl as root (directly, or through password-less sudo)."""
    command = ["rabbitmqctl", "-q", *args]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    if shutil.which(command[0]) is None and not os.path.exists("/usr/sbin/rabbitmqctl"):
        pytest.fail(f"rabbitmqctl is not installed; {HOW_TO_START}")
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    subprocess.run(command, check=True, timeout=timeout_s, env=env, capture_output=True)
