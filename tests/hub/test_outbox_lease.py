"""One outbox relay per installation (hub/outbox/lease.py): on PostgreSQL, of several workers' relays one holds the
relay's lease (a session-level advisory lock) and publishes; the others stand by and take over when it stops."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, insert, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import InProcessBus
from adapters.amqp.topology import EVENTS_EXCHANGE
from hub.clock import FixedClock
from hub.db import unit_of_work
from hub.outbox.lease import LEASE_KEY
from hub.outbox.models import OutboxMessage
from hub.settings import Settings
from hub.worker import Worker
from tests.support import wait_until

PROBE = "case.lease-probe.v1"
# The lease's holder, as PostgreSQL sees it: the backend pid holding the two-int advisory lock in this database.
HOLDER = text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :c AND objid = :o "
              "AND objsubid = 2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")


@pytest.fixture(autouse=True)
def postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; on SQLite every relay works, as before")


def holders(session_factory: sessionmaker[Session]) -> list[int]:
    with session_factory() as session:
        return list(session.scalars(HOLDER, {"c": LEASE_KEY[0], "o": LEASE_KEY[1]}))


def events_bus() -> InProcessBus:
    bus = InProcessBus(user="hub", retry_initial_s=0.01, retry_max_s=0.02)
    bus.bind(bus.declare_queue("partner.test.events"), EVENTS_EXCHANGE, "case.#")
    return bus


def published(bus: InProcessBus) -> set[str]:
    return {m.message_id for m in bus.messages("partner.test.events")}


def commit_event(session_factory: sessionmaker[Session], clock: FixedClock) -> str:
    message_id = uuid.uuid4()
    with unit_of_work(session_factory) as session:
        session.execute(insert(OutboxMessage).values(
            type=PROBE, routing_key=PROBE, region_code="210100",
            payload={"probe": True}, occurred_at=clock.now(), message_id=message_id))
    return str(message_id)


@pytest.fixture
def two_workers(settings: Settings, session_factory: sessionmaker[Session],
                clock: FixedClock) -> Iterator[list[tuple[Worker, InProcessBus]]]:
    quick = settings.model_copy(update={"outbox_relay_standby_s": 0.1})
    pairs = []
    try:
        for _ in range(2):
            bus = events_bus()
            worker = Worker(settings=quick, factory=session_factory, clock=clock, bus=bus, consume_inbound=False)
            worker.start()
            pairs.append((worker, bus))
        yield pairs
    finally:
        for worker, _bus in pairs:
            worker.stop(timeout=5)
        forget_probes(session_factory)


def forget_probes(session_factory: sessionmaker[Session]) -> None:
    """The probe events are no contract's (tests/contracts checks every event left in the outbox)."""
    with unit_of_work(session_factory) as session:
        session.execute(delete(OutboxMessage).where(OutboxMessage.type == PROBE))


def test_of_two_workers_one_relay_holds_the_lease_and_publishes_every_event(
    two_workers: list[tuple[Worker, InProcessBus]], session_factory: sessionmaker[Session], clock: FixedClock
) -> None:
    assert wait_until(lambda: len(holders(session_factory)) == 1)
    ids = []
    for _ in range(5):  # one at a time: each commit wakes both workers' relays
        ids.append(commit_event(session_factory, clock))
        assert wait_until(lambda: ids[-1] in published(two_workers[0][1]) | published(two_workers[1][1]))
    on_first, on_second = published(two_workers[0][1]), published(two_workers[1][1])
    # Every event published by one and the same relay, none by the other.
    assert {frozenset(on_first & set(ids)), frozenset(on_second & set(ids))} == {frozenset(ids), frozenset()}
    assert len(holders(session_factory)) == 1


def test_when_the_relay_holding_the_lease_stops_the_other_takes_over(
    two_workers: list[tuple[Worker, InProcessBus]], session_factory: sessionmaker[Session], clock: FixedClock
) -> None:
    first = commit_event(session_factory, clock)
    assert wait_until(lambda: any(first in published(bus) for _worker, bus in two_workers))
    holder = next(i for i, (_worker, bus) in enumerate(two_workers) if first in published(bus))
    old_holder = holders(session_factory)
    assert len(old_holder) == 1
    assert two_workers[holder][0].stop(timeout=5) == []

    later = commit_event(session_factory, clock)
    other_bus = two_workers[1 - holder][1]
    assert wait_until(lambda: later in published(other_bus))
    new_holder = holders(session_factory)
    assert len(new_holder) == 1 and new_holder != old_holder
