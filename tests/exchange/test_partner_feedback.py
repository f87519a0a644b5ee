"""A partner learns from its own queue what went wrong with its AMQP messages, against the real broker.

The partner (user ``shenyang``, with the permissions ``hub partners`` gives) declares its own queue
``partner.shenyang.<anything>``, binds it to ``hub.events`` with ``partner.shenyang.#`` and publishes a faulty
record: a hub worker rejects it, stores the dead letter and — in the same transaction — the
``partner.rejected.v1`` event its relay publishes with the routing key ``partner.shenyang.rejected.v1``. The
same message sent again is dead-lettered again but tells the partner nothing twice; a message without a
``user_id`` tells nobody (there is nobody to tell) and is still dead-lettered with its reason; another
partner's queue hears nothing of it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pika
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.app import create_app
from hub.exchange.models import DeadLetter, PartnerRejection
from hub.outbox.models import OutboxMessage
from hub.settings import Settings
from mocks.city_platform import CityPlatform, PartnerPublisher
from tests.adapters.amqp.conftest import wait_for
from tests.exchange.conftest import running_workers
from tests.support import PARTNER_SECRET


@pytest.fixture
def worker(hub_settings: Settings, factory: sessionmaker[Session]) -> Iterator[None]:
    with running_workers(hub_settings, factory):
        yield


class PartnerQueue:
    """A partner's own queue on hub.events, declared and read with the partner's own credentials."""

    def __init__(self, url: str, code: str) -> None:
        self.name = f"partner.{code}.feedback-{uuid.uuid4().hex[:8]}"
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare("hub.events", passive=True)  # a partner may only look at hub exchanges
        self.channel.queue_declare(self.name, durable=True, arguments={"x-queue-type": "quorum"})
        self.channel.queue_bind(self.name, "hub.events", routing_key=f"partner.{code}.#")

    def take(self) -> list[dict[str, Any]]:
        """Every message waiting now (acknowledged), as decoded bodies with their routing keys."""
        taken = []
        while True:
            method, properties, body = self.channel.basic_get(self.name, auto_ack=True)
            if method is None:
                return taken
            taken.append({"routing_key": method.routing_key, "message_id": properties.message_id,
                          "body": json.loads(body)})

    def close(self) -> None:
        self.channel.queue_delete(self.name)
        self.connection.close()


@pytest.fixture
def shenyang_queue(partner_urls: dict[str, str]) -> Iterator[PartnerQueue]:
    queue = PartnerQueue(partner_urls["shenyang"], "shenyang")
    yield queue
    queue.close()


@pytest.fixture
def dalian_queue(partner_urls: dict[str, str]) -> Iterator[PartnerQueue]:
    queue = PartnerQueue(partner_urls["dalian"], "dalian")
    yield queue
    queue.close()


def validator(name: str) -> Draft202012Validator:
    schemas = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in files("schemas").iterdir()
               if p.name.endswith(".json")}
    registry: Registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return Draft202012Validator(schemas[name], registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def faulty_record(platform: CityPlatform) -> dict[str, Any]:
    """A valid Shenyang record whose applicant name is blank: rejected (text / payload.applicant.name)."""
    envelope = json.loads(platform.plan(1)[0].body)
    envelope["payload"]["applicant"]["name"] = "   "
    return dict(envelope)


def count(factory: sessionmaker[Session], model: Any, message_id: str) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(model.message_id == message_id)) or 0)


def unsent(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_(None))) or 0)


def test_a_faulty_message_comes_back_as_one_rejection_event_on_the_partners_own_queue(
        worker: None, partner_urls: dict[str, str], factory: sessionmaker[Session],
        shenyang_queue: PartnerQueue, dalian_queue: PartnerQueue) -> None:
    envelope = faulty_record(CityPlatform(partner_urls["shenyang"], "shenyang", seed=41))
    message_id = envelope["message_id"]
    with PartnerPublisher(partner_urls["shenyang"]) as publisher:
        publisher.publish("shenyang.case-record.v1", json.dumps(envelope).encode(), message_id=message_id,
                          type_="case-record.v1")

    received: list[dict[str, Any]] = []
    wait_for(lambda: bool(received.extend(shenyang_queue.take()) or received), timeout_s=60, interval_s=0.2,
             what="the rejection event on the partner's own queue")
    [event] = received
    assert event["routing_key"] == "partner.shenyang.rejected.v1"
    body = event["body"]
    assert not list(validator("envelope.v1.json").iter_errors(body))
    assert (body["type"], body["version"], body["source"]) == ("partner.rejected", 1, "hub")
    payload = body["payload"]
    assert not list(validator("partner-rejection.v1.json").iter_errors(payload))
    assert payload["event_id"] == body["message_id"] == event["message_id"]
    assert (payload["partner_code"], payload["message_id"], payload["outcome"]) == ("shenyang", message_id, "rejected")
    assert payload["routing_key"] == "shenyang.case-record.v1"
    assert [(e["field"], e["rule"]) for e in payload["errors"]] == [("payload.applicant.name", "not_blank")]
    assert payload["reason"].startswith("文本含有不允许的字符或为空：字段 payload.applicant.name")

    # Sent again: dead-lettered again, told nothing twice.
    with PartnerPublisher(partner_urls["shenyang"]) as publisher:
        publisher.publish("shenyang.case-record.v1", json.dumps(envelope).encode(), message_id=message_id,
                          type_="case-record.v1")
    wait_for(lambda: count(factory, DeadLetter, message_id) == 2 and unsent(factory) == 0, timeout_s=60,
             interval_s=0.2, what="the second dead letter stored and the outbox relayed")
    assert shenyang_queue.take() == []
    assert count(factory, PartnerRejection, message_id) == 1
    assert dalian_queue.take() == []  # another partner's queue hears nothing of it


def test_a_message_without_user_id_tells_nobody_and_is_still_dead_lettered(
        worker: None, partner_urls: dict[str, str], factory: sessionmaker[Session],
        shenyang_queue: PartnerQueue) -> None:
    envelope = faulty_record(CityPlatform(partner_urls["shenyang"], "shenyang", seed=42))
    message_id = envelope["message_id"]
    connection = pika.BlockingConnection(pika.URLParameters(partner_urls["shenyang"]))
    try:
        connection.channel().basic_publish(
            "hub.inbound", "shenyang.case-record.v1", json.dumps(envelope).encode(),
            pika.BasicProperties(content_type="application/json", delivery_mode=2, message_id=message_id))
    finally:
        connection.close()
    wait_for(lambda: count(factory, DeadLetter, message_id) == 1 and unsent(factory) == 0, timeout_s=60,
             interval_s=0.2, what="the dead letter of the message without user_id")
    with factory() as session:
        letter = session.scalars(select(DeadLetter).where(DeadLetter.message_id == message_id)).one()
    assert letter.reason.startswith("unauthenticated:")
    assert letter.source is None
    assert count(factory, PartnerRejection, message_id) == 0
    assert shenyang_queue.take() == []


def test_a_reported_case_comes_back_with_the_partners_ids_and_each_message_has_its_status(
        worker: None, partner_urls: dict[str, str], hub_settings: Settings, factory: sessionmaker[Session],
        exchange_engine: Engine) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(partner_urls["shenyang"]))
    channel = connection.channel()
    queue = f"partner.shenyang.cases-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(queue, "hub.events", routing_key="case.reported.v1")
    try:
        platform = CityPlatform(partner_urls["shenyang"], "shenyang", seed=43)
        [good] = platform.plan(1)
        record = json.loads(good.body)
        bad = faulty_record(CityPlatform(partner_urls["shenyang"], "shenyang", seed=44))
        platform.publish([good])
        with PartnerPublisher(partner_urls["shenyang"]) as publisher:
            publisher.publish("shenyang.case-record.v1", json.dumps(bad).encode(), message_id=bad["message_id"],
                              type_="case-record.v1")

        mine: list[dict[str, Any]] = []

        def reported() -> bool:
            while True:
                method, _properties, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return bool(mine)
                payload = json.loads(body)["payload"]
                if payload.get("external_id") == record["payload"]["external_id"]:
                    mine.append(payload)

        wait_for(reported, timeout_s=60, interval_s=0.2, what="case.reported.v1 of the partner's case")
        [event] = mine
        assert event["record_version"] == record["payload"]["record_version"]
        assert event["origin_partner"] == "shenyang"
        assert not list(validator("case-notification.v1.json").iter_errors(event))

        wait_for(lambda: count(factory, PartnerRejection, bad["message_id"]) == 1, timeout_s=60, interval_s=0.2,
                 what="the faulty message's rejection")
        client = TestClient(create_app(hub_settings, engine=exchange_engine))
        auth = ("shenyang", PARTNER_SECRET)
        applied = client.get(f"/api/v1/exchange/records/{good.message_id}", auth=auth).json()
        assert (applied["status"], applied["tracking_no"]) == ("applied", event["tracking_no"])
        rejected = client.get(f"/api/v1/exchange/records/{bad['message_id']}", auth=auth).json()
        assert rejected["status"] == "rejected"
        assert [(e["field"], e["rule"]) for e in rejected["errors"]] == [("payload.applicant.name", "not_blank")]
        assert client.get(f"/api/v1/exchange/records/{bad['message_id']}",
                          auth=("dalian", PARTNER_SECRET)).status_code == 404
    finally:
        channel.queue_delete(queue)
        connection.close()
