"""The worker on the in-process bus (what `hub up` runs): records in, dead letters kept, events out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import InProcessBus
from adapters.amqp.messages import OutboundMessage
from adapters.amqp.topology import EVENTS_EXCHANGE, INBOUND_EXCHANGE
from hub.clock import FixedClock
from hub.exchange.models import DeadLetter
from hub.outbox.models import OutboxMessage
from hub.settings import Settings
from hub.worker import Job, Worker
from tests.support import case_record, envelope, item_code, wait_until

KEY = "physician-practice-registration"



@pytest.fixture
def bus() -> InProcessBus:
    bus = InProcessBus(user="hub", retry_initial_s=0.01, retry_max_s=0.02)
    bus.bind(bus.declare_queue("partner.test.events"), EVENTS_EXCHANGE, "case.#")
    return bus


@pytest.fixture
def worker(settings: Settings, session_factory: sessionmaker[Session], clock: FixedClock,
           bus: InProcessBus) -> Iterator[Worker]:
    worker = Worker(settings=settings, factory=session_factory, clock=clock, bus=bus)
    worker.start()
    yield worker
    worker.stop(timeout=5)


def publish(bus: InProcessBus, body: bytes, *, user: str = "shenyang", routing_key: str = "shenyang.case-record.v1",
            message_id: str | None = None) -> str:
    message_id = message_id or str(uuid.uuid4())
    bus.as_user(user).publish(OutboundMessage(exchange=INBOUND_EXCHANGE, routing_key=routing_key, body=body,
                                              type="case-record", message_id=message_id, user_id=user))
    return message_id


def dead_letters(session_factory: sessionmaker[Session], message_id: str) -> list[DeadLetter]:
    with session_factory() as session:
        return list(session.scalars(select(DeadLetter).where(DeadLetter.message_id == message_id)))


def test_record_published_on_the_bus_becomes_a_case_and_an_event(
    client: TestClient, worker: Worker, bus: InProcessBus, session_factory: sessionmaker[Session]
) -> None:
    ext = f"SY-{uuid.uuid4().hex[:10]}"
    doc = envelope(case_record(item_code(client, KEY), external_id=ext))
    publish(bus, json.dumps(doc).encode(), message_id=doc["message_id"])

    def reported() -> bool:
        return any(json.loads(m.body)["payload"].get("tracking_no") and
                   json.loads(m.body)["type"] == "case.reported" and
                   json.loads(m.body)["payload"]["origin_partner"] == "shenyang"
                   for m in bus.messages("partner.test.events"))

    assert wait_until(reported)

    def all_marked_sent() -> bool:  # the relay marks a batch sent just after the bus confirmed it
        with session_factory() as session:
            return session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_(None))) == 0

    assert wait_until(all_marked_sent)  # checked once: a later re-read races the other jobs


def test_the_heartbeat_tells_what_the_inbound_consumer_did(
    client: TestClient, worker: Worker, bus: InProcessBus, session_factory: sessionmaker[Session]
) -> None:
    """Issue 8, part shards: records acked, deferred (another worker held their case), dead-lettered, retried."""
    doc = envelope(case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:10]}"))
    publish(bus, json.dumps(doc).encode(), message_id=doc["message_id"])
    publish(bus, b"{not json")
    assert wait_until(lambda: worker.heartbeat().get("inbound", {}).get("records") == 2)  # type: ignore[union-attr]
    inbound = worker.heartbeat()["inbound"]
    assert isinstance(inbound, dict)
    assert (inbound["acked"], inbound["rejected"], inbound["deferred"]) == (1, 1, 0), inbound


def test_poison_message_is_kept_with_its_reason_and_the_consumer_goes_on(
    client: TestClient, worker: Worker, bus: InProcessBus, session_factory: sessionmaker[Session]
) -> None:
    bad = publish(bus, b"{not json")
    wrong_region = envelope(case_record(item_code(client, KEY), external_id=f"DL-{uuid.uuid4().hex[:8]}"),
                            source="dalian", region="210100")
    wrong = publish(bus, json.dumps(wrong_region).encode(), user="dalian", routing_key="dalian.case-record.v1",
                    message_id=wrong_region["message_id"])
    good = envelope(case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:10]}"))
    publish(bus, json.dumps(good).encode(), message_id=good["message_id"])

    assert wait_until(lambda: bool(dead_letters(session_factory, bad)) and bool(dead_letters(session_factory, wrong)))
    assert dead_letters(session_factory, bad)[0].reason.startswith("bad_json")
    assert dead_letters(session_factory, wrong)[0].reason.startswith("wrong_region")
    from hub.exchange.models import InboxMessage

    def applied() -> bool:
        with session_factory() as session:
            return session.scalar(select(InboxMessage).where(
                InboxMessage.message_id == uuid.UUID(good["message_id"]))) is not None

    assert wait_until(applied)


def test_every_job_reports_zero_when_idle_so_the_worker_sleeps(settings: Settings,
                                                                 session_factory: sessionmaker[Session],
                                                                 clock: FixedClock, bus: InProcessBus) -> None:
    worker = Worker(settings=settings, factory=session_factory, clock=clock, bus=bus)
    try:
        for job in worker.jobs:
            job.run()  # whatever was due is done (or failed until a later attempt)
        for job in worker.jobs:
            assert job.run() == 0, f"the {job.name} job reports work when there is none: its loop never idles"
    finally:
        worker.stop(timeout=5)


@pytest.mark.parametrize(("idle", "failures", "pause"), [
    (0.5, 0, 0.5), (0.5, 1, 1.0), (0.5, 5, 16.0), (0.5, 6, 16.0), (2.0, 4, 30.0), (60.0, 0, 60.0), (5.0, 0, 5.0),
])
def test_an_idle_job_pauses_its_idle_time_then_doubles_per_failure_five_times_at_most_never_over_30_s(
        idle: float, failures: int, pause: float) -> None:
    assert Job("tick", lambda: 0, idle_seconds=idle).pause_s(failures) == pause


# --- idle: the relay sleeps until a commit wakes it ---------------------------------------------------------

HOUR = 3600.0


def probe_row(occurred_at: object) -> dict[str, object]:
    return {"type": "case.idle-probe.v1", "routing_key": "case.idle-probe.v1", "region_code": "210100",
            "payload": {"probe": True}, "occurred_at": occurred_at, "message_id": uuid.uuid4()}


def on_bus(bus: InProcessBus, message_id: uuid.UUID) -> bool:
    return any(m.message_id == str(message_id) for m in bus.messages("partner.test.events"))


def sent(session_factory: sessionmaker[Session], message_id: uuid.UUID) -> bool:
    with session_factory() as session:
        return session.scalar(select(OutboxMessage.sent_at).where(OutboxMessage.message_id == message_id)) is not None


@pytest.fixture
def sleepy_worker(settings: Settings, session_factory: sessionmaker[Session], clock: FixedClock,
                  bus: InProcessBus) -> Iterator[Worker]:
    """A worker whose relay polls once an hour: anything it publishes sooner, a notification woke it for."""
    worker = Worker(settings=settings.model_copy(update={"outbox_relay_fallback_s": HOUR}),
                    factory=session_factory, clock=clock, bus=bus, consume_inbound=False)
    worker.start()
    yield worker
    worker.stop(timeout=5)


def test_an_outbox_row_committed_in_the_process_wakes_the_sleeping_relay(
    sleepy_worker: Worker, bus: InProcessBus, session_factory: sessionmaker[Session], clock: FixedClock
) -> None:
    from sqlalchemy import insert

    from hub.db import unit_of_work
    from hub.outbox.service import enqueue

    first = probe_row(clock.now())
    with unit_of_work(session_factory) as session:  # an ORM add, as the services write events
        message = enqueue(session, event_type="case.idle-probe.v1", region_code="210100",
                          payload={"probe": True}, occurred_at=clock.now())
        session.flush()  # the message id is generated at the insert
        first["message_id"] = message.message_id
    assert wait_until(lambda: sent(session_factory, first["message_id"]))  # type: ignore[arg-type]
    # The relay has published everything and now sleeps for an hour unless a commit wakes it.
    second = probe_row(clock.now())
    with unit_of_work(session_factory) as session:  # a Core insert, as a hot path may write them
        session.execute(insert(OutboxMessage).values(**second))
    assert wait_until(lambda: on_bus(bus, second["message_id"]) and sent(session_factory, second["message_id"]))  # type: ignore[arg-type]


def test_a_rolled_back_outbox_row_is_never_published(
    sleepy_worker: Worker, bus: InProcessBus, session_factory: sessionmaker[Session], clock: FixedClock
) -> None:
    from sqlalchemy import insert

    from hub.db import unit_of_work

    row = probe_row(clock.now())
    with session_factory() as session:
        session.execute(insert(OutboxMessage).values(**row))
        session.rollback()
        session.commit()  # nothing written since the rollback: this commit must not publish the row
    later = probe_row(clock.now())
    with unit_of_work(session_factory) as session:
        session.execute(insert(OutboxMessage).values(**later))
    assert wait_until(lambda: on_bus(bus, later["message_id"]))  # type: ignore[arg-type]
    assert not on_bus(bus, row["message_id"])  # type: ignore[arg-type]


def test_a_commit_in_another_thread_than_the_insert_still_wakes_the_relay(
    sleepy_worker: Worker, bus: InProcessBus, session_factory: sessionmaker[Session], clock: FixedClock
) -> None:
    """A request's session may be committed by its dependency on another thread than the endpoint's."""
    import threading

    from sqlalchemy import insert

    row = probe_row(clock.now())
    with session_factory() as session:
        writer = threading.Thread(target=lambda: session.execute(insert(OutboxMessage).values(**row)))
        writer.start()
        writer.join()
        session.commit()
    assert wait_until(lambda: on_bus(bus, row["message_id"]) and sent(session_factory, row["message_id"]))  # type: ignore[arg-type]


def test_on_postgresql_a_row_committed_elsewhere_wakes_the_relay_by_notify(
    backend: str, sleepy_worker: Worker, bus: InProcessBus, session_factory: sessionmaker[Session],
    clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite another process's rows wait for the fallback poll")
    from sqlalchemy import insert

    from hub.db import make_engine, unit_of_work
    from hub.outbox import wake

    # As if committed by another process: this process's own wake-up is switched off, only NOTIFY is left — and the
    # NOTIFY is not marked as this process's (which a relay woken by the commit itself passes over).
    monkeypatch.setattr(wake, "notify", lambda: None)
    monkeypatch.setattr(wake, "committed_by_session", lambda _conn: False)
    other = make_engine(session_factory.kw["bind"].url.render_as_string(hide_password=False), pool_size=1)
    try:
        row = probe_row(clock.now())
        with unit_of_work(sessionmaker(other)) as session:
            session.execute(insert(OutboxMessage).values(**row))
        assert wait_until(lambda: on_bus(bus, row["message_id"]) and sent(session_factory, row["message_id"]))  # type: ignore[arg-type]
    finally:
        other.dispose()


def test_a_stop_signal_during_start_up_ends_the_worker_cleanly_without_starting_it(
        settings: Settings, session_factory: sessionmaker[Session], clock: FixedClock, bus: InProcessBus,
        tmp_path) -> None:
    """`hub worker` notes SIGTERM from its first moment (StopSignals): a replica restarted and stopped again
    before its start-up finished exited -15 (Python's default) in the production-shape test."""
    import os
    import signal

    from hub.worker import StopSignals, run_forever

    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        signals = StopSignals()
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread before the next statement
        assert signals.received == ["SIGTERM"]
        heartbeat = tmp_path / "worker.json"
        worker = Worker(settings=settings.model_copy(update={"worker_heartbeat_file": heartbeat}),
                        factory=session_factory, clock=clock, bus=bus)
        assert run_forever(worker, signals) == 0
        assert worker._threads == [] and not heartbeat.exists()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
