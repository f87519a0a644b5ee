"""The OpenAPI of POST /api/v1/exchange/records names the record schema (the envelope and its case-record or
case-event payload) instead of a free-form object; a bad record is still one `rejected` result, not a 422."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from hub.validation import FORMAT_CHECKER
from tests.support import PARTNER_SECRET, case_record, envelope, item_code, step

KEY = "physician-practice-registration"  # a Shenyang item: partner shenyang may report its cases


def record_schema(client: TestClient) -> dict[str, Any]:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/api/v1/exchange/records"]["post"]["requestBody"]["content"]["application/json"]
    batch = document["components"]["schemas"][body["schema"]["$ref"].rpartition("/")[2]]
    return dict(batch["properties"]["records"]["items"])


def test_the_batch_items_are_the_record_envelope_not_a_free_form_object(client: TestClient) -> None:
    items = record_schema(client)
    assert items["title"] == "Record envelope"
    served = client.get("/schemas/envelope.v1.json").json()
    assert set(items["required"]) == set(served["required"])
    assert set(items["properties"]) == set(served["properties"])
    record, step_schema = items["properties"]["payload"]["oneOf"]
    assert {"external_id", "record_version", "item_code", "steps"} <= set(record["required"])
    assert set(step_schema["required"]) == {"external_id", "step"}
    assert "$ref" not in json.dumps(items)  # self-contained: Swagger UI needs no other host, offline too


def test_real_records_validate_against_the_documented_items_and_a_broken_one_does_not(client: TestClient) -> None:
    validator = Draft202012Validator(record_schema(client), format_checker=FORMAT_CHECKER)
    code = item_code(client, KEY)
    whole = envelope(case_record(code, external_id="SY-OPENAPI-1"))
    one_step = envelope({"external_id": "SY-OPENAPI-1", "step": step(3, "review", "pending_decision")},
                        record_type="case-event")
    assert list(validator.iter_errors(whole)) == []
    assert list(validator.iter_errors(one_step)) == []
    broken = json.loads(json.dumps(whole))
    del broken["payload"]["submitted_at"]
    assert list(validator.iter_errors(broken))


def test_a_bad_record_is_still_answered_rejected_with_its_field_and_rule(client: TestClient) -> None:
    code = item_code(client, KEY)
    good = envelope(case_record(code, external_id=f"SY-OA-{uuid.uuid4().hex[:8]}"))
    bad = envelope(case_record(code, external_id=f"SY-OA-{uuid.uuid4().hex[:8]}"))
    bad["payload"]["submitted_at"] = "yesterday"
    response = client.post("/api/v1/exchange/records", json={"records": [good, bad, {"not": "an envelope"}]},
                           auth=("shenyang", PARTNER_SECRET))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["status"] == "applied"
    assert (results[1]["status"], results[1]["field"], results[1]["rule"]) == (
        "rejected", "payload.submitted_at", "format")
    assert results[2]["status"] == "rejected"
