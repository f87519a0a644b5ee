"""The inbound consumer on the in-process bus (what `hub up` runs), on every backend: the sender is the
``user_id`` the bus proves, never a header; dead letters keep that sender and replay uses it; a permanent
validation error is dead-lettered on its first delivery with its field and rule."""

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
from adapters.amqp.topology import INBOUND_EXCHANGE
from hub.cases.models import Case
from hub.clock import FixedClock
from hub.db import unit_of_work
from hub.errors import Conflict
from hub.exchange import dlq
from hub.exchange.models import DeadLetter
from hub.exchange.replay import republisher
from hub.settings import Settings
from hub.worker import Worker
from tests.support import case_record, envelope, item_code, wait_until


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus(user="hub", retry_initial_s=0.01, retry_max_s=0.02)


@pytest.fixture
def worker(settings: Settings, session_factory: sessionmaker[Session], clock: FixedClock,
           bus: InProcessBus) -> Iterator[Worker]:
    worker = Worker(settings=settings, factory=session_factory, clock=clock, bus=bus)
    worker.start()
    yield worker
    worker.stop(timeout=5)


def publish(bus: InProcessBus, document: dict[str, object], *, user: str, headers: dict[str, str] | None = None
            ) -> str:
    message_id = str(document["message_id"])
    bus.as_user(user).publish(OutboundMessage(
        exchange=INBOUND_EXCHANGE, routing_key=f"{user}.case-record.v1", body=json.dumps(document).encode(),
        type="case-record", message_id=message_id, user_id=user, headers=headers or {}))
    return message_id


def dead_letters(session_factory: sessionmaker[Session], message_id: str) -> list[DeadLetter]:
    with session_factory() as session:
        return list(session.scalars(select(DeadLetter).where(DeadLetter.message_id == message_id)))


def test_a_forged_source_header_neither_names_the_dead_letter_nor_the_replay(
    client: TestClient, worker: Worker, bus: InProcessBus, session_factory: sessionmaker[Session],
    settings: Settings, clock: FixedClock,
) -> None:
    external_id = f"DL-{uuid.uuid4().hex[:10]}"
    record = case_record(item_code(client, "real-estate-transfer-registration"), external_id=external_id,
                         region="210200")
    forged = envelope(record, source="dalian", region="210200")
    message_id = publish(bus, forged, user="shenyang",
                         headers={"x-hub-source": "dalian", "x-hub-original-routing-key": "dalian.case-record.v1"})
    assert wait_until(lambda: bool(dead_letters(session_factory, message_id)))
    letter = dead_letters(session_factory, message_id)[0]
    assert letter.source == "shenyang"
    assert letter.routing_key == "shenyang.case-record.v1"
    assert letter.reason.startswith("source_mismatch:") and "field envelope.source" in letter.reason

    # Replayed (no broker configured: applied directly) as the authenticated sender, it still cannot apply.
    replay_settings = settings.model_copy(update={"amqp_url": None})
    with pytest.raises(Conflict), unit_of_work(session_factory) as session, \
            republisher(replay_settings, session) as republish:
        dlq.replay(session, letter_ids=[letter.id], republish=republish, now=clock.now())
    with session_factory() as session:
        count = session.scalar(select(func.count()).select_from(Case).where(
            Case.origin_partner == "dalian", Case.external_id == external_id))
    assert count == 0


def test_a_permanent_error_is_dead_lettered_on_its_first_delivery_with_field_and_rule(
    client: TestClient, worker: Worker, bus: InProcessBus, session_factory: sessionmaker[Session],
) -> None:
    record = case_record(item_code(client, "physician-practice-registration"),
                         external_id=f"SY-{uuid.uuid4().hex[:10]}")
    record["submitted_at"] = "garbage"
    message_id = publish(bus, envelope(record), user="shenyang")
    assert wait_until(lambda: bool(dead_letters(session_factory, message_id)))
    letter = dead_letters(session_factory, message_id)[0]
    assert letter.headers["x-hub-delivery-count"] == 1
    assert letter.reason.startswith("schema:") and "field payload.submitted_at, rule format" in letter.reason
    assert letter.source == "shenyang"


def test_a_batch_maps_each_sending_user_to_its_partner_once(
    session_factory: sessionmaker[Session], clock: FixedClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    from adapters.amqp.messages import InboundMessage
    from hub.exchange import partners
    from hub.exchange.consumer import InboundHandler

    asked: list[str] = []

    def partner_of_amqp_user(session: Session, user_id: str) -> str | None:
        asked.append(user_id)
        return {"city.shenyang": "shenyang"}.get(user_id)

    monkeypatch.setattr(partners, "partner_of_amqp_user", partner_of_amqp_user)
    handler = InboundHandler(session_factory, clock, "hub", "audit-key", batch_size=10)

    def delivery(user: str) -> InboundMessage:  # not JSON: refused after its sender is known, nothing applied
        return InboundMessage(body=b"not json", routing_key="r", exchange=INBOUND_EXCHANGE, queue="q",
                              message_id=str(uuid.uuid4()), user_id=user, type=None, correlation_id=None,
                              content_type="application/json", timestamp=datetime.now(UTC), headers={},
                              redelivered=False, delivery_count=0)

    outcomes = handler.handle_batch([delivery(u) for u in ("city.shenyang", "city.shenyang", "dalian",
                                                          "city.shenyang", "dalian")])
    assert sorted(asked) == ["city.shenyang", "dalian"]
    assert [o.kind for o in outcomes] == ["reject"] * 5
    handler.handle_batch([delivery("city.shenyang")])  # a new batch asks the directory again
    assert asked.count("city.shenyang") == 2
