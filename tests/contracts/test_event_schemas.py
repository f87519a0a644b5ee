"""Real events, created through the API and the services, match what the hub serves about them: the AsyncAPI
message of their routing key and the JSON Schema of their payload (alert-event, catalogue-event, rating-event,
case-notification, partner-rejection, audit-checkpoint), both fetched from the hub over HTTP."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from hub.cases.models import Case
from hub.catalog.models import Item
from hub.clock import FixedClock
from hub.db import unit_of_work
from hub.outbox.alerts import Unserialisable, report_withheld
from hub.outbox.models import OutboxMessage
from hub.outbox.relay import envelope_of
from hub.seed.service import read_form, read_seed
from hub.supervision import scanner
from hub.supervision import service as supervision
from hub.supervision.findings import Finding
from hub.validation import FORMAT_CHECKER
from tests.conftest import Officers
from tests.support import officer_of, submit

HUB = "http://testserver"
KEY = "physician-practice-registration"  # 沈阳市卫健委: its region 210100 has a parent (210000) to escalate to
FLOW = (("intake", "accept", None), ("reviewer", "review", "材料齐全"), ("approver", "grant", "准予许可"),
        ("approver", "complete", None))
# Schemas this part wrote: a published property they do not declare is a contract gap, not an extension.
STRICT = ("alert-event.v1.json", "catalogue-event.v1.json", "rating-event.v1.json")


class Contracts:
    """What a partner knows: the AsyncAPI document and the served schemas, fetched over HTTP."""

    def __init__(self, client: TestClient) -> None:
        self.document = client.get("/asyncapi.json").json()
        registry: Registry = Registry()
        for entry in client.get("/schemas").json()["schemas"]:
            contents = client.get(entry["url"].removeprefix(HUB)).json()
            resource = Resource.from_contents(contents, default_specification=DRAFT202012)
            registry = registry.with_resources([(entry["url"], resource), (entry["id"], resource)])
        self.registry = registry

    def message_for(self, routing_key: str) -> dict[str, Any]:
        found = [m for m in self.document["components"]["messages"].values()
                 if _key_matches(m["x-routing-key"], routing_key)]
        assert len(found) == 1, f"routing key {routing_key}: {len(found)} messages in /asyncapi.json"
        return dict(found[0])

    def errors(self, routing_key: str, envelope: dict[str, Any]) -> list[str]:
        message = self.message_for(routing_key)
        schema = self._local(message["payload"]["$ref"])
        validator = Draft202012Validator({"$schema": "https://json-schema.org/draft/2020-12/schema", **schema},
                                         registry=self.registry, format_checker=FORMAT_CHECKER)
        found = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(envelope)]
        payload_ref = schema["allOf"][1]["properties"]["payload"]["$ref"]
        if payload_ref.partition("#")[0].rpartition("/")[2] in STRICT:
            declared = self._payload_properties(payload_ref)
            found += [f"payload.{name}: not declared in {payload_ref}" for name in envelope["payload"]
                      if name not in declared]
        return found

    def _local(self, ref: str) -> dict[str, Any]:
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return dict(node)

    def _payload_properties(self, ref: str) -> set[str]:
        resolved = self.registry.resolver().lookup(ref).contents
        return set(resolved.get("properties", {}))


def _key_matches(pattern: str, routing_key: str) -> bool:
    head, found, tail = pattern.partition("{partner}")
    if not found:
        return pattern == routing_key
    middle = routing_key[len(head):len(routing_key) - len(tail)] if len(routing_key) > len(head) + len(tail) else ""
    return routing_key.startswith(head) and routing_key.endswith(tail) and bool(middle) and "." not in middle


@pytest.fixture
def contracts(client: TestClient) -> Contracts:
    return Contracts(client)


def rows_of(factory: sessionmaker[Session], *, correlation_id: str) -> list[OutboxMessage]:
    with factory() as session:
        rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.correlation_id == correlation_id)
                                    .order_by(OutboxMessage.id)))
        session.expunge_all()
        return rows


def check(contracts: Contracts, rows: list[OutboxMessage]) -> set[str]:
    for row in rows:
        assert contracts.errors(row.routing_key, envelope_of(row)) == [], (row.type, row.payload)
    return {row.type for row in rows}


def test_catalogue_events_match_catalogue_event_schema(client: TestClient, officers: Officers,
                                                       contracts: Contracts, session_factory: Any) -> None:
    item = copy.deepcopy(next(i for i in read_seed("items") if i["key"] == "food-business-licence"))
    item["form_schema"] = read_form(item.pop("form"))
    item.update(key=f"contract-check-{uuid.uuid4().hex[:8]}", main_item="937", name="食品经营许可（契约测试）")
    created = client.post("/api/v1/items", json=item, headers=officers.headers("ln_admin"))
    assert created.status_code == 201, created.text
    try:
        updated = client.post("/api/v1/items", json={**item, "name": "食品经营许可（契约测试，改）"},
                              headers=officers.headers("ln_admin"))
        assert updated.status_code in (200, 201), updated.text
        types = check(contracts, rows_of(session_factory, correlation_id=created.json()["code"]))
        assert types == {"catalog.item_created.v1", "catalog.item_updated.v1"}
    finally:  # the catalogue is shared by the whole run: its searches (tests/hub/test_catalog.py) must not see it
        with unit_of_work(session_factory) as session:
            session.execute(delete(Item).where(Item.key == item["key"]))


def test_case_alert_and_rating_events_match_their_schemas(
    client: TestClient, officers: Officers, contracts: Contracts, clock: FixedClock,
    session_factory: sessionmaker[Session],
) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]
    for role, action, opinion in FLOW:
        response = client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": opinion},
                               headers=officers.headers(officer_of(KEY, role)))
        assert response.status_code == 200, response.text
    rated = client.post(f"/api/v1/applications/{number}/rating", json={"level": 2, "comment": "排队太久"},
                        headers={"X-Query-Code": receipt["query_code"]})
    assert rated.status_code in (200, 201), rated.text
    now = clock.now()
    with unit_of_work(session_factory) as session:
        case = session.scalars(select(Case).where(Case.tracking_no == number)).one()
        finding = Finding(rule="time.contract_check", kind="time", level="red", message="契约测试：办理超期")
        assert supervision.raise_findings(session, case=case, findings=[finding], now=now)
        # Four working days later nobody explained it: it goes one region level up.
        assert scanner.escalate_all(session, now=now + timedelta(days=8)) >= 1
        supervision.close_alerts(session, case=case, rules=["time.contract_check"], now=now + timedelta(days=9),
                                 reason="契约测试结束")
        report_withheld(session, case, channel="soap.GetCase",
                        problem=Unserialisable("applicant.name", "xml_characters"), now=now)
        # The SOAP contract's own check (an empty name outside the XSD) is the other rule a withheld case names.
        report_withheld(session, case, channel="soap.FetchPendingCases",
                        problem=Unserialisable("name", "schema"), now=now)
    types = check(contracts, rows_of(session_factory, correlation_id=number))
    assert {"case.submitted.v1", "case.accepted.v1", "case.reviewed.v1", "case.granted.v1", "case.completed.v1",
            "rating.received.v1", "alert.raised.v1", "alert.escalated.v1", "alert.closed.v1",
            "alert.case_withheld.v1"} <= types


def test_a_wrong_payload_is_reported_by_the_served_contracts(contracts: Contracts) -> None:
    """Guards the tests above: the served contracts really check a payload, and a property they do not
    declare is reported."""
    good = {"message_id": str(uuid.uuid4()), "type": "alert.case_withheld", "version": 1, "source": "hub",
            "region": "210100", "occurred_at": "2026-03-11T02:00:00+00:00", "correlation_id": "X",
            "payload": {"tracking_no": "X", "region": "210100", "department": "210100007", "channel": "soap.GetCase",
                        "field": "applicant.name", "rule": "xml_characters", "message": "含有无法传输的字符"}}
    assert contracts.errors("alert.case_withheld.v1", good) == []
    assert contracts.errors("alert.case_withheld.v1", {**good, "payload": {**good["payload"], "rule": "x"}})
    assert contracts.errors("alert.case_withheld.v1", {**good, "payload": {**good["payload"], "extra": 1}})
    assert contracts.errors("alert.raised.v1", good)  # the withheld shape is not a supervision alert
    assert contracts.errors("alert.case_withheld.v1", {**good, "source": "shenyang"})


def test_every_event_in_the_outbox_is_documented_and_matches_its_schema(
        client: TestClient, contracts: Contracts, session_factory: sessionmaker[Session]) -> None:
    """Whatever the other tests of this session published (partner records, rejections, joint cases,
    checkpoints …): each routing key has its message in /asyncapi.json and each body validates."""
    with session_factory() as session:
        rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(3000)))
        session.expunge_all()
    failures: set[str] = set()
    for row in rows:
        try:
            errors = contracts.errors(row.routing_key, envelope_of(row))
        except AssertionError as exc:
            errors = [str(exc).splitlines()[0]]
        failures.update(f"{row.routing_key}: {error}" for error in errors)
    assert not failures, "\n".join(sorted(failures)[:20])
