"""Issue 11's first "Done when": a new city platform connects from the published contracts alone.

The hub runs in production shape (`hub api` + `hub worker` on PostgreSQL and RabbitMQ, tests/docs/live_hub.py);
its operator registers the platform with `hub partners add --json` and hands over that JSON. From then on the
platform (tests/contracts/partner_client.py) uses only what the hub serves over HTTP — /openapi.json,
/asyncapi.json, /schemas/… and the public catalogue — to find the REST path, the exchanges and routing keys, the
broker, the envelope's constants and the record's required fields; it checks its records against the served
schemas before sending, pushes one over REST and two over AMQP, receives its `case.reported.v1` events carrying
its own external ids, and receives `partner.<code>.rejected.v1` for a faulty message. Every event it receives is
checked against the schema the AsyncAPI document names for it.

The client imports nothing of the project and reads no repository file; the first test checks that on its
syntax tree (and on this module's and the live hub's imports).
"""

from __future__ import annotations

import ast
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contracts.partner_client import CityPlatform, Credentials, HubContracts
from tests.docs.live_hub import LiveHub, live_hub

HERE = Path(__file__).resolve().parent
PROJECT_PACKAGES = {"hub", "adapters", "workflow", "mocks", "schemas", "tests"}
CLIENT_MAY_IMPORT = {"httpx", "pika", "jsonschema", "referencing"}
CODE, REGION = "dl-newcity", "210200"
# A valid GB 11643 citizen ID number (check character X), and the same with a wrong check character.
GOOD_ID, BAD_ID = "11010519491231002X", "110105194912310021"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_client_uses_only_the_standard_library_and_protocol_libraries() -> None:
    client = HERE / "partner_client.py"
    roots = imported_roots(client) - {"__future__"}
    foreign = {r for r in roots if r not in sys.stdlib_module_names and r not in CLIENT_MAY_IMPORT}
    assert not foreign, f"partner_client.py imports {sorted(foreign)}: only the stdlib and {sorted(CLIENT_MAY_IMPORT)}"
    tree = ast.parse(client.read_text(encoding="utf-8"))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"open", "__file__"}, "the client must not read files"
    assert not attributes & {"read_text", "read_bytes", "open"}, "the client must not read files"
    # Neither this test nor the live hub it starts imports the project's code: the hub runs as processes.
    for module in (Path(__file__), HERE.parent / "docs" / "live_hub.py", HERE.parent / "e2e" / "cli_support.py",
                   HERE.parent / "servers.py"):
        assert not imported_roots(module) & (PROJECT_PACKAGES - {"tests"}), module


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    with live_hub(tmp_path_factory.mktemp("new-partner-hub")) as live:
        yield live


@pytest.fixture(scope="module")
def platform(hub: LiveHub) -> CityPlatform:
    """The operator's one act: register the platform; the rest is the platform's own."""
    ran = hub.hub("partners", "add", CODE, "--name", "大连市一网通办平台", "--region", REGION,
                  "--kind", "city_platform", "--json")
    assert ran.code == 0, ran
    return CityPlatform(HubContracts(hub.base_url), Credentials.from_json(ran.stdout), region=REGION)


def item_for_a_person(contracts: HubContracts) -> str:
    """An item of the platform's own region that a natural person applies for, from the public catalogue."""
    listing = contracts.http.get(f"{contracts.base_url}api/v1/items", params={"region": REGION}).json()
    for item in listing["items"]:
        if item["region"] != REGION:
            continue
        detail = contracts.http.get(f"{contracts.base_url}api/v1/items/{item['code']}").json()
        if "1" in detail.get("applicant_types", []):
            return str(item["code"])
    raise AssertionError(f"no item of {REGION} for a natural person in the catalogue")


def test_the_openapi_document_states_the_record_schema(platform: CityPlatform) -> None:
    """The REST batch endpoint's OpenAPI names what one record is — the envelope with a case-record or
    case-event payload, stated in full — so a record built from /schemas passes it, and one without a required
    field does not. (A free-form object, as before, would accept both.)"""
    contracts = platform.contracts
    _, item_schema = contracts.records_endpoint()
    assert item_schema, "the OpenAPI of the records endpoint states no record schema (a free-form object)"
    assert "envelope.v1.json" in json.dumps(item_schema), "the record schema does not name the served envelope"
    record = platform.case_record("NC-OPENAPI-1", item_for_a_person(contracts), id_number=GOOD_ID)
    assert contracts.errors(item_schema, record) == []
    incomplete = {**record, "payload": {k: v for k, v in record["payload"].items() if k != "steps"}}
    assert contracts.errors(item_schema, incomplete), "the OpenAPI record schema accepts a record without steps"


def test_a_new_city_platform_reports_cases_and_hears_back(platform: CityPlatform, hub: LiveHub) -> None:
    contracts, code = platform.contracts, platform.credentials.code
    assert contracts.asyncapi["asyncapi"].startswith("3."), "an AsyncAPI 3 document"
    assert platform.credentials.amqp_username == f"{hub.vhost}.{code}"  # users are broker-wide: vhost-scoped
    reported_key = contracts.async_message("case.reported.v1")["x-routing-key"]
    rejection_key = contracts.async_message("partner.rejected.v1")["x-routing-key"].replace("{partner}", code)
    queue = platform.events_queue([f"partner.{code}.#", reported_key])

    item = item_for_a_person(contracts)
    run = uuid.uuid4().hex[:8].upper()
    records = [platform.case_record(f"NC-{run}-{n}", item, id_number=GOOD_ID) for n in (1, 2, 3)]
    record_schema = contracts.message_schema("case-record.v1")
    for record in records:
        assert contracts.errors(record_schema, record) == [], "a record the served schemas reject"
    faulty = platform.case_record(f"NC-{run}-4", item, id_number=BAD_ID)  # schema-valid, wrong check character

    answer = platform.post_records([records[0]])
    assert [r["status"] for r in answer["results"]] == ["applied"], answer
    rest_tracking_no = answer["results"][0]["tracking_no"]
    platform.publish([records[1], records[2], faulty])

    expected = {r["payload"]["external_id"] for r in records}

    def heard_everything(events: list[tuple[str, dict[str, Any]]]) -> bool:
        ours = {e["payload"].get("external_id") for key, e in events if key == reported_key}
        return expected <= ours and any(key == rejection_key for key, _ in events)

    events = platform.collect(queue, heard_everything, timeout_s=120)
    assert heard_everything(events), f"events received: {[(k, e['payload']) for k, e in events]}\n{hub.logs()}"

    reported = {}
    for key, event in events:
        name = "case.reported.v1" if key == reported_key else "partner.rejected.v1"
        assert contracts.errors(contracts.message_schema(name), event) == [], (name, event)
        if key == reported_key and event["payload"].get("origin_partner") == code:
            reported[event["payload"]["external_id"]] = event["payload"]
    for record in records:
        payload = reported[record["payload"]["external_id"]]
        assert payload["record_version"] == 1 and payload["item_code"] == item, payload
    assert reported[records[0]["payload"]["external_id"]]["tracking_no"] == rest_tracking_no

    rejection = next(e["payload"] for k, e in events if k == rejection_key)
    assert rejection["message_id"] == faulty["message_id"] and rejection["partner_code"] == code, rejection
    assert [e["field"] for e in rejection["errors"]] == ["payload.applicant.id_number"], rejection

    status = platform.record_status(records[1]["message_id"])
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "applied", status.json()
    assert status.json()["tracking_no"] == reported[records[1]["payload"]["external_id"]]["tracking_no"]
    status = platform.record_status(faulty["message_id"])
    assert status.status_code == 200 and status.json()["status"] == "rejected", status.text
    assert platform.record_status(str(uuid.uuid4())).status_code == 404
