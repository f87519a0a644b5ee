"""Feedback a partner can read, over REST (hub/exchange/feedback.py).

* a record answered ``rejected`` writes ONE ``partner.rejected.v1`` event to the outbox, routed
  ``partner.<code>.rejected.v1``, in the request's transaction, with the message id, reason, field and rule —
  valid against schemas/partner-rejection.v1.json; sent again, it writes no second one;
* ``GET /api/v1/exchange/records/{message_id}`` answers what became of one message of the calling partner,
  and 404 for an unknown id or another partner's message;
* ``case.reported.v1`` (and every case event) of a partner's case carries its ``external_id`` and
  ``record_version``; the hub's own cases carry neither.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from importlib.resources import files
from typing import Any

from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp.messages import InboundMessage, Outcome
from hub.exchange.consumer import DeadLetterHandler
from hub.outbox.models import OutboxMessage
from tests.support import PARTNER_SECRET, case_record, envelope, item_code, step, submit

KEY = "physician-practice-registration"  # a 沈阳 (210100) item
REJECTED = "partner.rejected.v1"


def push(client: TestClient, *records: dict[str, Any], partner: str = "shenyang") -> Any:
    response = client.post("/api/v1/exchange/records", json={"records": list(records)}, auth=(partner, PARTNER_SECRET))
    assert response.status_code == 200, response.text
    return response.json()["results"]


def status(client: TestClient, message_id: str, partner: str = "shenyang") -> Any:
    return client.get(f"/api/v1/exchange/records/{message_id}", auth=(partner, PARTNER_SECRET))


def validator(name: str) -> Draft202012Validator:
    schemas = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in files("schemas").iterdir()
               if p.name.endswith(".json")}
    registry: Registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return Draft202012Validator(schemas[name], registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def rejection_events(session_factory: sessionmaker[Session], message_id: str) -> list[OutboxMessage]:
    with session_factory() as session:
        return list(session.scalars(select(OutboxMessage).where(
            OutboxMessage.type == REJECTED, OutboxMessage.correlation_id == message_id)))


def faulty(client: TestClient) -> dict[str, Any]:
    """A record whose submitted_at has no offset: rejected as schema / payload.submitted_at / format."""
    record = case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}")
    record["submitted_at"] = "2026-03-10T10:00:00"
    return envelope(record)


def test_a_rejected_record_tells_its_partner_once_on_its_own_routing_key(
        client: TestClient, session_factory: sessionmaker[Session]) -> None:
    message = faulty(client)
    result = push(client, message)[0]
    assert result["status"] == "rejected"

    events = rejection_events(session_factory, message["message_id"])
    assert len(events) == 1
    event = events[0]
    assert event.routing_key == "partner.shenyang.rejected.v1"
    assert event.sent_at is None  # committed with the request, for the relay to publish
    body = event.payload
    assert not list(validator("partner-rejection.v1.json").iter_errors(body))
    assert body["event_id"] == str(event.message_id)
    assert (body["partner_code"], body["message_id"]) == ("shenyang", message["message_id"])
    assert body["outcome"] == "rejected"
    assert body["routing_key"] == "shenyang.case-record.v1"
    assert body["errors"] == [{"field": result["field"], "rule": result["rule"], "message": result["detail"]}]
    assert (result["field"], result["rule"]) == ("payload.submitted_at", "format")
    assert body["reason"].startswith("记录不符合数据规范：字段 payload.submitted_at 违反规则 format (schema: ")

    again = push(client, message)[0]
    assert again["status"] == "rejected"
    assert len(rejection_events(session_factory, message["message_id"])) == 1  # nothing told twice


def test_an_applied_record_tells_no_rejection(client: TestClient, session_factory: sessionmaker[Session]) -> None:
    good = envelope(case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}"))
    bad = faulty(client)
    results = push(client, good, bad)
    assert [r["status"] for r in results] == ["applied", "rejected"]
    assert rejection_events(session_factory, good["message_id"]) == []
    assert len(rejection_events(session_factory, bad["message_id"])) == 1


def test_record_status_says_what_became_of_each_message(client: TestClient) -> None:
    code, ext = item_code(client, KEY), f"SY-{uuid.uuid4().hex[:12]}"
    applied = envelope(case_record(code, external_id=ext, steps=2))
    held = envelope({"external_id": ext, "step": step(4, "grant", "granted")}, record_type="case-event")
    rejected = faulty(client)
    tracking_no = push(client, applied, held, rejected)[0]["tracking_no"]

    answer = status(client, applied["message_id"])
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"received_at": None} == {
        "message_id": applied["message_id"], "partner_code": "shenyang", "status": "applied",
        "received_at": None, "tracking_no": tracking_no, "reason": None, "errors": []}
    assert status(client, held["message_id"]).json()["status"] == "held"

    refused = status(client, rejected["message_id"]).json()
    assert refused["status"] == "rejected"
    assert refused["tracking_no"] is None
    assert refused["errors"][0]["field"] == "payload.submitted_at"
    assert refused["errors"][0]["rule"] == "format"
    assert "payload.submitted_at" in refused["reason"]


def test_record_status_is_404_for_unknown_ids_and_other_partners_messages(client: TestClient) -> None:
    mine = envelope(case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}"))
    push(client, mine)
    unknown = status(client, str(uuid.uuid4()))
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert status(client, "not-a-uuid").status_code == 404
    assert status(client, mine["message_id"], partner="dalian").status_code == 404  # another partner's message
    assert client.get(f"/api/v1/exchange/records/{mine['message_id']}").status_code == 401
    assert client.get(f"/api/v1/exchange/records/{mine['message_id']}",
                      auth=("shenyang", "wrong-secret")).status_code == 401


def test_case_events_of_a_partner_case_carry_its_external_id_and_record_version(
        client: TestClient, session_factory: sessionmaker[Session]) -> None:
    code, ext = item_code(client, KEY), f"SY-{uuid.uuid4().hex[:12]}"
    tracking_no = push(client, envelope(case_record(code, external_id=ext, version=3, steps=2)))[0]["tracking_no"]
    push(client, envelope({"external_id": ext, "step": step(3, "review", "pending_decision")},
                          record_type="case-event"))

    with session_factory() as session:
        reported = list(session.scalars(select(OutboxMessage).where(
            OutboxMessage.type == "case.reported.v1", OutboxMessage.correlation_id == tracking_no)
            .order_by(OutboxMessage.id)))
    assert len(reported) == 2  # the record, then the event
    check = validator("case-notification.v1.json")
    for event in reported:
        assert not list(check.iter_errors(event.payload))
        assert (event.payload["external_id"], event.payload["record_version"]) == (ext, 3)
        assert event.payload["origin_partner"] == "shenyang"


def test_the_hubs_own_case_events_carry_no_partner_ids(
        client: TestClient, session_factory: sessionmaker[Session]) -> None:
    tracking_no = submit(client, KEY)["tracking_no"]
    with session_factory() as session:
        events = list(session.scalars(select(OutboxMessage).where(OutboxMessage.correlation_id == tracking_no,
                                                                  OutboxMessage.type.like("case.%"))))
    assert events
    check = validator("case-notification.v1.json")
    for event in events:
        assert not list(check.iter_errors(event.payload))
        assert "external_id" not in event.payload and "record_version" not in event.payload


# --- dead letters: the handler that stores them tells the partner ------------------------------------------


def dead_letter(body: dict[str, Any], *, user_id: str, headers: dict[str, Any]) -> InboundMessage:
    return InboundMessage(
        body=json.dumps(body).encode(), routing_key="shenyang.case-record.v1", exchange="hub.dlx",
        queue="hub.inbound.dead", message_id=body["message_id"], user_id=user_id, type="case-record.v1",
        correlation_id=None, content_type="application/json", timestamp=None, headers=headers, redelivered=False,
        delivery_count=0)


def test_a_message_the_broker_dead_lettered_is_told_as_dead_lettered(
        client: TestClient, session_factory: sessionmaker[Session], clock: Any) -> None:
    message = envelope(case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}"))
    handler = DeadLetterHandler(factory=session_factory, clock=clock, hub_user="hub")
    broker_said = dead_letter(message, user_id="shenyang", headers={"x-death": [{"reason": "delivery_limit"}]})
    assert handler(broker_said) is Outcome.ACK
    assert handler(broker_said) is Outcome.ACK  # redelivered: stored again, told once

    [event] = rejection_events(session_factory, message["message_id"])
    assert event.routing_key == "partner.shenyang.rejected.v1"
    assert (event.payload["outcome"], event.payload["category"], event.payload["errors"]) == (
        "dead_lettered", "broker", [])
    assert not list(validator("partner-rejection.v1.json").iter_errors(event.payload))
    answer = status(client, message["message_id"]).json()
    assert (answer["status"], answer["errors"]) == ("dead_lettered", [])
    assert answer["reason"].startswith("消息被消息代理转入死信队列 (broker: ")


def test_retries_exhausted_is_dead_lettered_and_a_cut_short_reason_still_names_field_and_rule(
        client: TestClient, session_factory: sessionmaker[Session], clock: Any) -> None:
    handler = DeadLetterHandler(factory=session_factory, clock=clock, hub_user="hub")
    retried = envelope(case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}"))
    handler(dead_letter(retried, user_id="hub", headers={
        "x-hub-reason": "retries exhausted after 5 deliveries; last: transient: OperationalError",
        "x-hub-source": "shenyang"}))
    [told] = rejection_events(session_factory, retried["message_id"])
    assert (told.payload["outcome"], told.payload["category"]) == ("dead_lettered", "retries_exhausted")

    # The hub's reason header is capped: a long one loses its "[field …, rule …]" tail; the checks name them again.
    cut = faulty(client)
    handler(dead_letter(cut, user_id="hub", headers={
        "x-hub-reason": "schema: payload.submitted_at: not an RFC 3339 date-time with off",
        "x-hub-source": "shenyang"}))
    [rejected] = rejection_events(session_factory, cut["message_id"])
    assert rejected.payload["outcome"] == "rejected"
    assert [(e["field"], e["rule"]) for e in rejected.payload["errors"]] == [("payload.submitted_at", "format")]


def test_a_message_that_is_not_json_is_told_with_the_whole_message_at_fault(
        session_factory: sessionmaker[Session], clock: Any) -> None:
    handler = DeadLetterHandler(factory=session_factory, clock=clock, hub_user="hub")
    message_id = str(uuid.uuid4())
    handler(replace(dead_letter({"message_id": message_id}, user_id="hub", headers={
        "x-hub-reason": "bad_json: Expecting value: line 1 column 1 (char 0)", "x-hub-source": "shenyang"}),
        body=b"not json"))
    [told] = rejection_events(session_factory, message_id)
    assert (told.payload["outcome"], told.payload["message_id"]) == ("rejected", message_id)
    assert told.payload["errors"] == [{"field": None, "rule": "bad_json",
                                       "message": "Expecting value: line 1 column 1 (char 0)"}]
    assert told.payload["reason"].startswith("消息不是合法的JSON (bad_json: ")
