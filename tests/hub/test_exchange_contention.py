"""Two workers whose batches share a partner case (PostgreSQL): the second does not wait for the first one's
commit. It applies the rest of its batch and defers the messages about the busy case (the consumer hands them
over again with its next batch); only a batch with nothing else to do waits — and then applies in order."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp.messages import Outcome
from hub.cases.models import Case
from hub.clock import FixedClock
from hub.exchange import service
from hub.exchange.consumer import InboundHandler
from hub.settings import Settings
from tests.support import case_record, envelope, inbound_message, item_code, wait_until

ITEM = "physician-practice-registration"


@pytest.fixture(autouse=True)
def postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("advisory locks between workers: PostgreSQL (SQLite has one writer at a time)")




@pytest.fixture
def other_worker(session_factory: sessionmaker[Session], clock: FixedClock, settings: Settings
                 ) -> Iterator[Any]:
    """Another worker in the middle of its batch: it applied ``documents`` and has not committed yet."""
    session = session_factory()

    def applying(*documents: dict[str, Any]) -> Session:
        session.begin()
        outcomes = service.ingest_batch(session, envelopes=[(d, "shenyang") for d in documents], now=clock.now(),
                                        audit_key=settings.audit_key)
        assert all(o.result is not None and o.result.outcome == "applied" for o in outcomes), outcomes
        return session

    yield applying
    session.rollback()
    session.close()


def in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


def versions(session_factory: sessionmaker[Session], *external_ids: str) -> dict[str, int | None]:
    with session_factory() as session:
        return {x: v for x, v in session.execute(select(Case.external_id, Case.record_version)
                                                 .where(Case.external_id.in_(external_ids)))}


def test_a_batch_sharing_a_case_with_another_worker_applies_the_rest_without_waiting(
    client: TestClient, handler: InboundHandler, other_worker: Any, session_factory: sessionmaker[Session],
) -> None:
    code = item_code(client, ITEM)
    busy, free = f"CT-{uuid.uuid4().hex[:10]}", f"CT-{uuid.uuid4().hex[:10]}"
    holder = other_worker(envelope(case_record(code, external_id=busy, version=1)))
    later = envelope(case_record(code, external_id=busy, version=2, steps=3))
    unrelated = envelope(case_record(code, external_id=free, version=1))
    thread, outcomes = in_thread(lambda: handler.handle_batch([inbound_message(later), inbound_message(unrelated)]))
    thread.join(timeout=60)
    alive = thread.is_alive()
    holder.commit()  # lets a waiting handler (the old behaviour) finish, so a failure does not hang the run
    thread.join(timeout=60)
    assert not alive, "the batch waited for the other worker's commit"
    assert outcomes == [[Outcome.DEFER, Outcome.ACK]]
    assert versions(session_factory, busy, free) == {busy: 1, free: 1}
    # Handed over again once the other worker committed: applied after it, in order.
    assert handler.handle_batch([inbound_message(later)]) == [Outcome.ACK]
    assert versions(session_factory, busy) == {busy: 2}


def test_a_batch_whose_every_case_is_busy_waits_for_them_and_applies_after(
    client: TestClient, handler: InboundHandler, other_worker: Any, session_factory: sessionmaker[Session],
    engine: Engine,
) -> None:
    code = item_code(client, ITEM)
    busy = f"CT-{uuid.uuid4().hex[:10]}"
    holder = other_worker(envelope(case_record(code, external_id=busy, version=1)))
    thread, outcomes = in_thread(lambda: handler.handle_batch(
        [inbound_message(envelope(case_record(code, external_id=busy, version=2, steps=3)))]))

    assert wait_until(lambda: waiting_for_a_lock(engine), timeout=60), "the batch did not wait for the busy case"
    holder.commit()
    thread.join(timeout=60)
    assert outcomes == [[Outcome.ACK]]
    assert versions(session_factory, busy) == {busy: 2}


def test_the_handler_tallies_what_its_batches_came_to_deferrals_and_lock_waits_included(
    client: TestClient, handler: InboundHandler, other_worker: Any, session_factory: sessionmaker[Session],
    engine: Engine,
) -> None:
    """Issue 8, part shards: how often two workers' batches meet on a case, for operators (the heartbeat) and
    bench.ingest — a record handed over again counts each time, a batch that had to wait counts its wait."""
    code = item_code(client, ITEM)
    busy, free = f"CT-{uuid.uuid4().hex[:10]}", f"CT-{uuid.uuid4().hex[:10]}"
    holder = other_worker(envelope(case_record(code, external_id=busy, version=1)))
    later = inbound_message(envelope(case_record(code, external_id=busy, version=2, steps=3)))
    unrelated = inbound_message(envelope(case_record(code, external_id=free, version=1)))
    assert handler.handle_batch([later, unrelated]) == [Outcome.DEFER, Outcome.ACK]
    assert handler.tally.as_dict() == {"batches": 1, "records": 2, "acked": 1, "deferred": 1, "rejected": 0,
                                       "retried": 0, "lock_waits": 0, "lock_wait_s": 0.0}

    thread, outcomes = in_thread(lambda: handler.handle_batch([later]))  # its only case is busy: it waits

    assert wait_until(lambda: waiting_for_a_lock(engine), timeout=60), "the batch did not wait for the busy case"
    holder.commit()
    thread.join(timeout=60)
    assert outcomes == [[Outcome.ACK]]
    tally = handler.tally.as_dict()
    assert {k: tally[k] for k in ("batches", "records", "acked", "deferred", "lock_waits")} == {
        "batches": 2, "records": 3, "acked": 2, "deferred": 1, "lock_waits": 1}
    assert tally["lock_wait_s"] > 0


def waiting_for_a_lock(engine: Engine) -> bool:
    """Whether a session waits for an advisory lock (a batch whose cases are all busy waits for them)."""
    with engine.connect() as connection:
        return bool(connection.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                           "AND NOT granted")))
