"""One inbound consumer, several apply lanes (issue 8, part lanes; adapters/amqp/lanes.py), against the real broker.

The hub's ``InboundHandler`` with ``lanes`` > 1 under ``adapters.amqp.consume``:

* every record of one case is applied by the same lane, in the order the partner published them, while the
  cases are spread over the lanes;
* the lanes really work at once: while a transaction of the test holds one case's advisory lock (as another
  worker applying it would), that case's lane waits, and records of cases on the other lane are applied and
  acked meanwhile — one by one, as the blocked delivery is below them; once the lock is released the blocked
  record follows;
* a poison record in a lane is dead-lettered alone, with its reason; the records around it apply;
* the connection dropped while a lane is in the middle of a batch: what that lane committed is never acked on
  the next connection (delivery tags are per channel), the broker redelivers it and the hub finds it applied:
  nothing lost, nothing twice;
* `hub worker` SIGKILLed while one lane waits for a held case: the record it had not committed was not acked,
  and the next worker applies it, once.

The PostgreSQL database is the suite's (``HUB_TEST_BACKENDS``); the tests that hold a case's lock need
PostgreSQL's advisory locks and skip on SQLite.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, bindparam, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import INBOUND_QUEUE, open_connection
from adapters.amqp.messages import InboundMessage, Outcome, OutcomeKind
from hub.cases.models import Case
from hub.clock import SystemClock
from hub.exchange.consumer import InboundHandler
from hub.exchange.models import InboxMessage
from hub.settings import Settings
from mocks.city_platform import PartnerPublisher
from tests.adapters.amqp import conftest as amqp_conftest
from tests.adapters.amqp.conftest import running_consumer, wait_for
from tests.exchange.conftest import WORKER_AMQP, Broker, WorkerProcess, dead_letter_reasons, item_code
from tests.support import case_record, envelope, step

PARTNER = "shenyang"
LANES = 3


@dataclass
class RecordingHandler(InboundHandler):
    """The hub's handler, noting which lane thread applied (ACKed) which message, in the order it did."""

    applied_by: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_batch(self, messages: Sequence[InboundMessage]) -> list[Outcome]:
        outcomes = super().handle_batch(messages)
        with self._lock:
            self.applied_by.extend((threading.current_thread().name, str(m.message_id))
                                   for m, o in zip(messages, outcomes, strict=True) if o.kind is OutcomeKind.ACK)
        return outcomes


acks = amqp_conftest.acks  # the same recorder as tests/adapters/amqp's (a fixture bound by name)


def handler(factory: sessionmaker[Session], broker: Broker, settings: Settings, *, batch: int = 10,
            wait_s: float = 0.05, lanes: int = LANES) -> RecordingHandler:
    return RecordingHandler(factory, SystemClock(), broker.admin_user, settings.audit_key, batch_size=batch,
                            batch_wait_s=wait_s, lanes=lanes)


@contextmanager
def consuming(broker: Broker, inbound: InboundHandler, **amqp: Any) -> Iterator[threading.Event]:
    with running_consumer(broker.settings(**{**WORKER_AMQP, **amqp}), INBOUND_QUEUE, inbound) as stop:
        yield stop


def new_case(code: str, external_id: str | None = None) -> dict[str, Any]:
    return envelope(case_record(code, external_id=external_id or f"LN-{uuid.uuid4().hex[:12]}", steps=2))


def lane_of(inbound: InboundHandler, document: dict[str, Any]) -> int:
    """The lane the consumer will choose for this record as the partner publishes it."""
    body = json.dumps(document, ensure_ascii=False).encode()
    return inbound.lane_of(InboundMessage(
        body=body, routing_key=f"{PARTNER}.case-record.v1", exchange="hub.inbound", queue=INBOUND_QUEUE,
        message_id=document["message_id"], user_id=PARTNER, type="case-record.v1", correlation_id=None,
        content_type="application/json", timestamp=None, headers={}, redelivered=False, delivery_count=0))


def cases_in_lanes(inbound: InboundHandler, code: str, *, lane: int, other: bool, count: int) -> list[dict[str, Any]]:
    """``count`` new cases whose lane is ``lane`` (or, with ``other``, any other lane)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        document = new_case(code)
        if (lane_of(inbound, document) != lane) == other:
            found.append(document)
    return found


def publish(url: str, documents: list[dict[str, Any]]) -> None:
    with PartnerPublisher(url) as publisher:
        for document in documents:
            publisher.publish(f"{PARTNER}.case-record.v1", json.dumps(document, ensure_ascii=False).encode(),
                              message_id=document["message_id"], type_="case-record.v1")


def applied(factory: sessionmaker[Session], documents: list[dict[str, Any]]) -> int:
    ids = [uuid.UUID(d["message_id"]) for d in documents]
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(InboxMessage)
                                  .where(InboxMessage.message_id.in_(ids))) or 0)


def cases_and_steps(factory: sessionmaker[Session], external_ids: list[str]) -> tuple[int, int]:
    with factory() as session:
        cases = session.scalar(select(func.count()).select_from(Case).where(
            Case.origin_partner == PARTNER, Case.external_id.in_(external_ids))) or 0
        steps = session.execute(text(
            "select count(*) from case_events e join cases c on c.id = e.case_id "
            "where c.origin_partner = :partner and c.external_id in :ids").bindparams(
            bindparam("ids", expanding=True)), {"partner": PARTNER, "ids": external_ids}).scalar_one()
    return int(cases), int(steps)


def queue_empty(broker: Broker) -> bool:
    """Nothing ready and nothing delivered-but-unacknowledged in the inbound queue (the consumer stopped)."""
    connection = open_connection(broker.settings())
    try:
        return int(connection.channel().queue_declare(INBOUND_QUEUE, passive=True).method.message_count) == 0
    finally:
        connection.close()


def postgresql_only(factory: sessionmaker[Session]) -> None:
    if factory.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite has no advisory locks: another worker cannot hold a case there")


@contextmanager
def case_held(factory: sessionmaker[Session], external_id: str) -> Iterator[Connection]:
    """The case's advisory lock held by another transaction, as another worker applying it would hold it."""
    with factory.kw["bind"].connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"),
                           {"key": f"partner-case:{PARTNER}:{external_id}"})
        try:
            yield connection
        finally:
            connection.execute(text("SELECT pg_advisory_unlock_all()"))
            connection.commit()


def waiting_for_a_case_lock(factory: sessionmaker[Session]) -> bool:
    with factory() as session:
        return bool(session.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")))


def test_records_of_one_case_are_applied_by_one_lane_in_the_order_published(
        broker: Broker, partner_urls: dict[str, str], session_factory: sessionmaker[Session], settings: Settings,
        empty_queues: None) -> None:
    code = item_code(session_factory)
    inbound = handler(session_factory, broker, settings, batch=4)
    cases: dict[str, list[dict[str, Any]]] = {}
    for lane in range(LANES):  # two cases on every lane, so the lanes all have work
        for document in cases_in_lanes(inbound, code, lane=lane, other=False, count=2):
            external_id = document["payload"]["external_id"]
            cases[external_id] = [document] + [
                envelope({"external_id": external_id, "step": step(n, "review", "pending_decision")},
                         record_type="case-event") for n in (3, 4, 5)]
    # Interleaved as a partner pushing several cases at once would: one record of each case in turn.
    documents = [records[i] for i in range(4) for records in cases.values()]
    publish(partner_urls[PARTNER], documents)
    with consuming(broker, inbound):
        wait_for(lambda: applied(session_factory, documents) == len(documents), timeout_s=90,
                 what="every record of every case")
    by_message = {m: thread for thread, m in inbound.applied_by}
    order = [m for _, m in inbound.applied_by]
    for external_id, records in cases.items():
        ids = [r["message_id"] for r in records]
        assert sorted(ids, key=order.index) == ids, f"case {external_id} applied out of order"
        assert len({by_message[i] for i in ids}) == 1, f"case {external_id} applied by more than one lane"
    assert len(set(by_message.values())) == LANES, "the cases were not spread over the lanes"
    assert cases_and_steps(session_factory, list(cases)) == (len(cases), 5 * len(cases))


def test_a_held_case_blocks_only_its_lane_and_the_other_lanes_apply_and_ack_meanwhile(
        broker: Broker, partner_urls: dict[str, str], session_factory: sessionmaker[Session], settings: Settings,
        acks: list[tuple[int, bool]], empty_queues: None) -> None:
    postgresql_only(session_factory)
    code = item_code(session_factory)
    inbound = handler(session_factory, broker, settings, lanes=2)
    held = new_case(code)
    others = cases_in_lanes(inbound, code, lane=lane_of(inbound, held), other=True, count=6)
    with consuming(broker, inbound), case_held(session_factory, held["payload"]["external_id"]):
        publish(partner_urls[PARTNER], [held])
        wait_for(lambda: waiting_for_a_case_lock(session_factory), timeout_s=60,
                 what="the held case's lane waiting for its lock")
        publish(partner_urls[PARTNER], others)
        # Applied and acked while the held case's lane is still waiting — each alone, as the first delivery of
        # the channel (the held one) is still unsettled: no ``multiple`` ack may cover it.
        wait_for(lambda: applied(session_factory, others) == len(others) and len(acks) == len(others),
                 timeout_s=60, what="the other lane's records applied and acked")
        assert applied(session_factory, [held]) == 0
        assert waiting_for_a_case_lock(session_factory)
        assert not any(multiple for _, multiple in acks), acks
    # (Leaving case_held released the lock; the consumer is stopped last, so the lane finishes first.)
    wait_for(lambda: queue_empty(broker), timeout_s=30, what="every delivery settled")
    assert applied(session_factory, [held, *others]) == 1 + len(others)


def test_after_the_lock_is_released_the_blocked_record_follows(
        broker: Broker, partner_urls: dict[str, str], session_factory: sessionmaker[Session], settings: Settings,
        empty_queues: None) -> None:
    postgresql_only(session_factory)
    code = item_code(session_factory)
    inbound = handler(session_factory, broker, settings, lanes=2)
    held = new_case(code)
    with consuming(broker, inbound):
        with case_held(session_factory, held["payload"]["external_id"]):
            publish(partner_urls[PARTNER], [held])
            wait_for(lambda: waiting_for_a_case_lock(session_factory), timeout_s=60,
                     what="the held case's lane waiting for its lock")
            assert applied(session_factory, [held]) == 0
        wait_for(lambda: applied(session_factory, [held]) == 1, timeout_s=60, what="the blocked record")
    assert queue_empty(broker)
    assert cases_and_steps(session_factory, [held["payload"]["external_id"]]) == (1, 2)


def test_a_poison_record_in_a_lane_is_dead_lettered_alone_with_its_reason(
        broker: Broker, partner_urls: dict[str, str], session_factory: sessionmaker[Session], settings: Settings,
        empty_queues: None) -> None:
    code = item_code(session_factory)
    inbound = handler(session_factory, broker, settings)
    documents = [new_case(code) for _ in range(9)]
    poison = documents[4]
    poison["payload"]["submitted_at"] = "garbage"  # refused by a check
    good = [d for d in documents if d is not poison]
    publish(partner_urls[PARTNER], documents)
    with consuming(broker, inbound):
        reasons = dead_letter_reasons(broker, expected=1)
        wait_for(lambda: applied(session_factory, good) == len(good), timeout_s=60, what="the good records")
    assert list(reasons) == [poison["message_id"]]
    assert "field payload.submitted_at, rule format" in reasons[poison["message_id"]], reasons
    assert applied(session_factory, [poison]) == 0
    assert queue_empty(broker)


def close_consumer_connections(broker: Broker, name: str) -> int:
    """Close the consumer's connection(s) through the management API, as a broker restart would drop them."""
    with httpx.Client(base_url=broker.management_url, auth=(broker.admin_user, broker.admin_password),
                      timeout=30, trust_env=False) as api:
        connections = [c for c in api.get("/api/connections").raise_for_status().json()
                       if (c.get("client_properties") or {}).get("connection_name") == name]
        for connection in connections:
            api.delete(f"/api/connections/{connection['name']}",
                       headers={"X-Reason": "test: the connection drops mid-batch"})
    return len(connections)


def test_a_connection_dropped_while_a_lane_is_mid_batch_loses_and_duplicates_nothing(
        broker: Broker, partner_urls: dict[str, str], session_factory: sessionmaker[Session], settings: Settings,
        acks: list[tuple[int, bool]], empty_queues: None) -> None:
    postgresql_only(session_factory)
    code = item_code(session_factory)
    inbound = handler(session_factory, broker, settings, lanes=2)
    held = new_case(code)
    same_lane = cases_in_lanes(inbound, code, lane=lane_of(inbound, held), other=False, count=3)
    other_lane = cases_in_lanes(inbound, code, lane=lane_of(inbound, held), other=True, count=3)
    name = f"hub-test-lanes-{uuid.uuid4().hex[:8]}"
    everything = [held, *same_lane, *other_lane]
    with consuming(broker, inbound, connection_name=name):
        with case_held(session_factory, held["payload"]["external_id"]):
            publish(partner_urls[PARTNER], [held])
            wait_for(lambda: waiting_for_a_case_lock(session_factory), timeout_s=60,
                     what="the held case's lane in the middle of its batch")
            wait_for(lambda: close_consumer_connections(broker, name) > 0, timeout_s=30,
                     what="the consumer's connection to close")
            # Delivered on the new connection; the old one's lane still holds the held record's batch.
            publish(partner_urls[PARTNER], [*same_lane, *other_lane])
            wait_for(lambda: applied(session_factory, other_lane) == len(other_lane), timeout_s=60,
                     what="the other lane's records on the new connection")
        # Released: the old lane commits the held record; its ack is not sent on the new channel (the tag would
        # name another delivery there); the broker's redelivery finds it applied and is acked.
        wait_for(lambda: applied(session_factory, everything) == len(everything), timeout_s=60,
                 what="every record")
        wait_for(lambda: queue_empty(broker), timeout_s=60, what="every delivery settled")
    assert queue_empty(broker)
    external_ids = [d["payload"]["external_id"] for d in everything]
    assert cases_and_steps(session_factory, external_ids) == (len(everything), 2 * len(everything))


def test_a_sigkilled_worker_acked_nothing_its_lanes_had_not_committed(
        broker: Broker, partner_urls: dict[str, str], database_url: str, factory: sessionmaker[Session],
        tmp_path: Path, empty_queues: None) -> None:
    """`hub worker` (two lanes) killed while one lane waits for a held case and the other has applied its
    records: the held record was never acked, so the next worker gets it again and applies it — once."""
    code = item_code(factory)
    chooser = InboundHandler(factory, SystemClock(), broker.admin_user, "-", lanes=2)
    held = new_case(code)
    others = cases_in_lanes(chooser, code, lane=lane_of(chooser, held), other=True, count=4)
    workers = WorkerProcess(database_url, broker.url, tmp_path)
    workers.env.update(HUB_INGEST_LANES="2")
    try:
        with case_held(factory, held["payload"]["external_id"]):
            first = workers.start()
            publish(partner_urls[PARTNER], [held, *others])
            wait_for(lambda: applied(factory, others) == len(others) and waiting_for_a_case_lock(factory),
                     timeout_s=90, what="the other lane's records applied while the held case's lane waits")
            workers.kill(first)
        assert applied(factory, [held]) == 0
        workers.start()
        wait_for(lambda: applied(factory, [held]) == 1, timeout_s=90, what="the held record, redelivered")
    finally:
        workers.stop_all()
    assert cases_and_steps(factory, [d["payload"]["external_id"] for d in [held, *others]]) == (5, 10)
    assert queue_empty(broker)
