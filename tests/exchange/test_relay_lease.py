"""Two `hub worker` processes, one outbox relay: the relay holding the lease (hub/outbox/lease.py) is SIGKILLed with
its worker, PostgreSQL ends its session and frees the lock, and the other worker's relay takes over — events
committed after the kill are still published to hub.events."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import delete, insert, text
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import SystemClock
from hub.db import unit_of_work
from hub.outbox.lease import LEASE_KEY
from hub.outbox.models import OutboxMessage
from tests.adapters.amqp.conftest import wait_for
from tests.exchange.conftest import Broker, EventCollector, WorkerProcess

PROBE = "case.lease-probe.v1"
HOLDER = text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :c AND objid = :o "
              "AND objsubid = 2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def holders(factory: sessionmaker[Session]) -> list[int]:
    with factory() as session:
        return list(session.scalars(HOLDER, {"c": LEASE_KEY[0], "o": LEASE_KEY[1]}))


def commit_event(factory: sessionmaker[Session]) -> str:
    message_id = uuid.uuid4()
    with unit_of_work(factory) as session:
        session.execute(insert(OutboxMessage).values(
            type=PROBE, routing_key=PROBE, region_code="210100",
            payload={"probe": True}, occurred_at=SystemClock().now(), message_id=message_id))
    return str(message_id)


def test_a_sigkilled_workers_relay_lease_passes_to_the_other_worker(
        broker: Broker, database_url: str, factory: sessionmaker[Session], tmp_path: Path) -> None:
    workers = WorkerProcess(database_url, broker.url, tmp_path)
    workers.env.update(HUB_OUTBOX_RELAY_STANDBY_S="0.2", HUB_WORKER_HEARTBEAT_S="0.5")
    with EventCollector(broker, f"test.events.{uuid.uuid4().hex[:8]}") as collector:
        try:
            workers.env["HUB_WORKER_HEARTBEAT_FILE"] = str(tmp_path / "first.json")
            first = workers.start()
            wait_for(lambda: len(holders(factory)) == 1, timeout_s=60, what="the first worker's relay lease")
            leased_by_first = holders(factory)
            workers.env["HUB_WORKER_HEARTBEAT_FILE"] = str(tmp_path / "second.json")
            workers.start()
            wait_for(lambda: (tmp_path / "second.json").exists(), timeout_s=60, what="the second worker running")

            before = commit_event(factory)
            wait_for(lambda: before in collector.ids(), timeout_s=30, what="the event relayed by the lease holder")
            assert holders(factory) == leased_by_first  # the second worker's relay stood by

            workers.kill(first)
            after = commit_event(factory)
            wait_for(lambda: after in collector.ids(), timeout_s=30, what="the event relayed after the kill")
            assert len(holders(factory)) == 1 and holders(factory) != leased_by_first
            assert workers.started[1].poll() is None, workers.log(1)
        finally:
            workers.stop_all()
            with unit_of_work(factory) as session:  # no contract's event (tests/contracts checks the outbox)
                session.execute(delete(OutboxMessage).where(OutboxMessage.type == PROBE))
