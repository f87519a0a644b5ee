"""GET /asyncapi.json: an AsyncAPI 3.0.0 document of the AMQP side, valid against the official schema, generated
from the topology and the schemas, every payload resolvable from the hub's own /schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from hub.app import create_app
from hub.settings import Settings

OFFICIAL_SCHEMA = Path(__file__).parent / "asyncapi" / "asyncapi-3.0.0.schema.json"
BROKER_URL = "amqp://hub-service:s3cret-Pass@rabbit.internal.example:5673/hubvh"
HUB = "http://testserver/"


@pytest.fixture
def brokered(settings: Settings, clock: Any, engine: Any) -> Iterator[TestClient]:
    """The hub configured with a broker on another host, port and vhost than the defaults."""
    app = create_app(settings.model_copy(update={"amqp_url": BROKER_URL}), clock=clock, engine=engine)
    with TestClient(app) as client:
        yield client


def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/asyncapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return dict(response.json())


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def pointer(node: Any, fragment: str) -> Any:
    for part in [p for p in fragment.lstrip("/").split("/") if p]:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_valid_asyncapi_3_0_0_per_the_official_json_schema(brokered: TestClient) -> None:
    doc = document(brokered)
    assert doc["asyncapi"] == "3.0.0"
    validator = Draft7Validator(json.loads(OFFICIAL_SCHEMA.read_text(encoding="utf-8")))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]
    assert errors == []


def test_the_official_schema_really_checks_the_document(brokered: TestClient) -> None:
    """Guards the test above: a broken binding or operation must be reported, not waved through."""
    validator = Draft7Validator(json.loads(OFFICIAL_SCHEMA.read_text(encoding="utf-8")))
    doc = document(brokered)
    doc["channels"]["hub.events"]["bindings"]["amqp"]["exchange"]["type"] = "nonsense"
    doc["operations"]["sendRecord"]["action"] = "publish"
    assert len(list(validator.iter_errors(doc))) == 2


def test_every_payload_ref_resolves_against_the_hubs_own_schemas(brokered: TestClient) -> None:
    doc = document(brokered)
    external = sorted({ref for ref in refs(doc) if not ref.startswith("#")})
    assert external, "payloads reference the served schemas"
    served: dict[str, Any] = {}
    for ref in external:
        url, _, fragment = ref.partition("#")
        assert url.startswith(HUB + "schemas/"), ref
        if url not in served:
            response = brokered.get(url.removeprefix(HUB.rstrip("/")))
            assert response.status_code == 200, f"{ref}: {response.status_code}"
            assert response.headers["content-type"] == "application/schema+json"
            served[url] = response.json()
        assert isinstance(pointer(served[url], fragment), dict), ref
    for ref in refs(doc):
        if ref.startswith("#"):
            assert isinstance(pointer(doc, ref[1:]), dict), ref
    # The messages' payload schemas are the envelope around the record or event schema.
    for name, message in doc["components"]["messages"].items():
        schema = pointer(doc, message["payload"]["$ref"][1:])
        envelope, fixed = schema["allOf"]
        assert envelope["$ref"] == HUB + "schemas/envelope.v1.json", name
        assert fixed["properties"]["payload"]["$ref"].startswith(HUB + "schemas/"), name


def test_a_real_event_validates_against_its_message_payload_resolved_from_the_hub(brokered: TestClient) -> None:
    """A partner's tooling can validate what it receives with nothing but the hub's documents."""
    doc = document(brokered)
    registry: Registry = Registry()
    for entry in brokered.get("/schemas").json()["schemas"]:
        contents = brokered.get(entry["url"].removeprefix(HUB.rstrip("/"))).json()
        resource = Resource.from_contents(contents, default_specification=DRAFT202012)
        registry = registry.with_resources([(entry["url"], resource), (entry["id"], resource)])
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              **pointer(doc, doc["components"]["messages"]["CatalogItemUpdated"]["payload"]["$ref"][1:])}
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema, registry=registry)
    event = {"message_id": "6b0b7f0e-8a55-4a53-9e61-5d3a2b7c9d10", "type": "catalog.item_updated", "version": 1,
             "source": "hub", "region": "210000", "occurred_at": "2026-03-11T02:00:00+00:00",
             "correlation_id": "210100001012000010", "payload": {
                 "code": "210100001012000010", "key": "food-business-licence", "version": 2, "name": "食品经营许可",
                 "national_code": "000101001000", "active": True}}
    assert list(validator.iter_errors(event)) == []
    wrong = {**event, "type": "case.accepted"}
    assert [e.validator for e in validator.iter_errors(wrong)] == ["const"]


def test_it_describes_the_topology_exchanges_routing_keys_and_publish_rules(brokered: TestClient) -> None:
    from adapters.amqp.topology import HUB_TOPOLOGY

    doc = document(brokered)
    inbound, events = doc["channels"][HUB_TOPOLOGY.inbound_exchange], doc["channels"][HUB_TOPOLOGY.events_exchange]
    for channel, name in ((inbound, "hub.inbound"), (events, "hub.events")):
        exchange = channel["bindings"]["amqp"]["exchange"]
        assert exchange == {"name": name, "type": "topic", "durable": True, "autoDelete": False, "vhost": "hubvh"}
    assert inbound["address"] == "{partner}.{recordType}.v1"
    assert inbound["parameters"]["recordType"]["enum"] == ["case-event", "case-record"]
    send = doc["operations"]["sendRecord"]
    assert send["action"] == "send" and send["bindings"]["amqp"]["deliveryMode"] == 2
    assert send["bindings"]["amqp"]["userId"] == "hubvh.{partner}"  # vhost-scoped partner users
    text = json.dumps(doc, ensure_ascii=False)
    assert "user_id" in doc["info"]["description"] and "passive=True" in doc["info"]["description"]
    assert "`message_id`" in doc["info"]["description"]
    keys = {m["x-routing-key"] for m in doc["components"]["messages"].values()}
    assert {"case.submitted.v1", "case.reported.v1", "alert.raised.v1", "alert.case_withheld.v1",
            "catalog.item_created.v1", "catalog.item_updated.v1", "partner.{partner}.rejected.v1",
            "{partner}.case-record.v1", "{partner}.case-event.v1"} <= keys
    rejected = doc["components"]["messages"]["PartnerRejected"]
    assert doc["components"]["schemas"]["PartnerRejectedEnvelope"]["allOf"][1]["properties"]["payload"] == {
        "$ref": HUB + "schemas/partner-rejection.v1.json"}
    assert rejected["bindings"]["amqp"]["messageType"] == "partner.rejected.v1"
    assert "s3cret" not in text and "hub-service" not in text  # the hub's own broker credentials never leak
    assert doc["servers"]["hub"]["host"] == "rabbit.internal.example:5673"
    assert doc["servers"]["hub"]["pathname"] == "/hubvh"


def test_operations_use_only_their_channels_messages_and_every_address_parameter_is_declared(
        brokered: TestClient) -> None:
    doc = document(brokered)
    for name, operation in doc["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
        assert operation["action"] == ("send" if name.startswith("send") else "receive")
    for name, channel in doc["channels"].items():
        assert set(re.findall(r"\{(\w+)\}", channel["address"])) == set(channel.get("parameters", {})), name


def test_every_case_action_of_the_packaged_workflows_has_its_event_documented(brokered: TestClient) -> None:
    from importlib.resources import files

    from hub.cases.service import EVENT_NAMES

    doc = document(brokered)
    types = {m["bindings"]["amqp"]["messageType"] for m in doc["components"]["messages"].values()}
    actions: set[str] = set()
    for resource in files("workflow.definitions").iterdir():
        if resource.name.endswith(".json"):
            actions |= set(re.findall(r'"action":\s*"([a-z_]+)"', resource.read_text(encoding="utf-8")))
    assert actions
    for action in actions | {"submit", "withdraw", "supplement"}:
        assert f"case.{EVENT_NAMES.get(action, action)}.v1" in types, action


def test_without_a_broker_the_server_says_so_and_the_document_is_still_valid(client: TestClient) -> None:
    doc = document(client)
    assert "in-process bus" in doc["servers"]["hub"]["description"]
    assert doc["servers"]["hub"]["host"] == "127.0.0.1:5672"
    validator = Draft7Validator(json.loads(OFFICIAL_SCHEMA.read_text(encoding="utf-8")))
    assert list(validator.iter_errors(doc)) == []


def test_the_document_has_an_etag_and_needs_no_credentials(client: TestClient) -> None:
    first = client.get("/asyncapi.json")
    assert first.status_code == 200
    again = client.get("/asyncapi.json", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_the_example_records_are_valid_and_apply_in_order_over_rest(client: TestClient) -> None:
    """The document's examples are a newcomer's first messages: they validate against the served schemas and
    the hub applies them (the record, then its next step) on the demo catalogue."""
    import copy
    import uuid

    from jsonschema import Draft202012Validator

    from hub.validation import FORMAT_CHECKER
    from tests.support import PARTNER_SECRET

    doc = document(client)
    registry: Registry = Registry()
    for entry in client.get("/schemas").json()["schemas"]:
        resource = Resource.from_contents(client.get(entry["url"].removeprefix(HUB.rstrip("/"))).json(),
                                          default_specification=DRAFT202012)
        registry = registry.with_resources([(entry["url"], resource), (entry["id"], resource)])
    external_id = f"SY-EX-{uuid.uuid4().hex[:8]}"
    records = []
    for name in ("CaseRecord", "CaseEvent"):
        message = doc["components"]["messages"][name]
        schema = pointer(doc, message["payload"]["$ref"][1:])
        validator = Draft202012Validator({"$schema": "https://json-schema.org/draft/2020-12/schema", **schema},
                                         registry=registry, format_checker=FORMAT_CHECKER)
        example = copy.deepcopy(message["examples"][0]["payload"])
        assert list(validator.iter_errors(example)) == [], name
        example["message_id"] = str(uuid.uuid4())
        example["correlation_id"] = example["payload"]["external_id"] = external_id
        records.append(example)
    response = client.post("/api/v1/exchange/records", json={"records": records}, auth=("shenyang", PARTNER_SECRET))
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["applied", "applied"], response.text


def test_it_says_which_event_keys_a_partner_user_may_bind(client: TestClient) -> None:
    """The broker grants a partner's user topic read on hub.events only for its own rejections and the public
    case and catalogue events (adapters/amqp/management.py); the document must not promise more."""
    from adapters.amqp.management import PUBLIC_EVENT_PREFIXES

    doc = document(client)
    for prefix in PUBLIC_EVENT_PREFIXES:
        assert f"`{prefix}.#`" in doc["info"]["description"]
    for name, operation in doc["operations"].items():
        restricted = "Not for partner users" in operation["description"]
        family = name.removeprefix("receive").removesuffix("Events").lower()
        if operation["action"] == "receive":
            assert restricted == (family not in (*PUBLIC_EVENT_PREFIXES, "partner")), name
