"""Partners push case records over REST: idempotent by message id and by version, region-bound."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.support import PARTNER_SECRET, case_record, envelope, item_code, step

KEY = "physician-practice-registration"  # a 沈阳 (210100) item


def push(client: TestClient, *records: dict[str, Any], partner: str = "shenyang",
         secret: str = PARTNER_SECRET) -> Any:
    return client.post("/api/v1/exchange/records", json={"records": list(records)},
                       auth=(partner, secret))


def new_id() -> str:
    return f"SY-{uuid.uuid4().hex[:12]}"


def test_record_becomes_a_case_with_its_steps(client: TestClient) -> None:
    ext = new_id()
    response = push(client, envelope(case_record(item_code(client, KEY), external_id=ext, steps=2)))
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["status"] == "applied"
    disclosed = client.get(f"/api/v1/transparency/cases/{result['tracking_no']}").json()
    assert [s["action"] for s in disclosed["steps"]] == ["submit", "accept"]
    assert disclosed["state"] == "under_review"
    assert disclosed["deadline"] is not None  # supervised like a hub case


def test_redelivered_message_and_older_version_change_nothing(client: TestClient) -> None:
    code, ext = item_code(client, KEY), new_id()
    first = envelope(case_record(code, external_id=ext, version=2, steps=3))
    assert push(client, first).json()["results"][0]["status"] == "applied"
    again = push(client, first).json()["results"][0]
    older = push(client, envelope(case_record(code, external_id=ext, version=1, steps=2))).json()["results"][0]
    assert again["status"] == "duplicate"
    assert older["status"] == "stale"
    steps = client.get(f"/api/v1/transparency/cases/{again['tracking_no'] or older['tracking_no']}").json()["steps"]
    assert len(steps) == 3


def test_newer_version_appends_only_new_steps(client: TestClient) -> None:
    code, ext = item_code(client, KEY), new_id()
    push(client, envelope(case_record(code, external_id=ext, version=1, steps=2)))
    result = push(client, envelope(case_record(code, external_id=ext, version=2, steps=5))).json()["results"][0]
    body = client.get(f"/api/v1/transparency/cases/{result['tracking_no']}").json()
    assert [s["action"] for s in body["steps"]] == ["submit", "accept", "review", "grant", "complete"]
    assert body["state"] == "completed"


def test_out_of_order_event_is_held_until_the_gap_fills(client: TestClient) -> None:
    code, ext = item_code(client, KEY), new_id()
    tracking = push(client, envelope(case_record(code, external_id=ext, steps=2))).json()["results"][0]["tracking_no"]
    late = envelope({"external_id": ext, "step": step(4, "grant", "granted")}, record_type="case-event")
    assert push(client, late).json()["results"][0]["status"] == "held"
    gap = envelope({"external_id": ext, "step": step(3, "review", "pending_decision")}, record_type="case-event")
    assert push(client, gap).json()["results"][0]["status"] == "applied"
    body = client.get(f"/api/v1/transparency/cases/{tracking}").json()
    assert [s["action"] for s in body["steps"]] == ["submit", "accept", "review", "grant"]
    assert body["state"] == "granted"


def test_partner_may_not_report_another_regions_case(client: TestClient) -> None:
    record = case_record(item_code(client, KEY), external_id=new_id())
    result = push(client, envelope(record, source="dalian", region="210100"), partner="dalian").json()
    assert result["results"][0]["status"] == "rejected"
    assert result["results"][0]["reason"] == "wrong_region"


def test_envelope_source_must_be_the_authenticated_partner(client: TestClient) -> None:
    record = case_record(item_code(client, KEY), external_id=new_id())
    result = push(client, envelope(record, source="dalian")).json()["results"][0]
    assert result["reason"] == "source_mismatch"


def test_schema_violation_names_the_field(client: TestClient) -> None:
    record = case_record(item_code(client, KEY), external_id=new_id())
    record["steps"][0]["action"] = "teleport"
    result = push(client, envelope(record)).json()["results"][0]
    assert result["reason"] == "schema"
    assert result["detail"].startswith("payload.steps.0.action")


def test_bad_applicant_id_is_rejected(client: TestClient) -> None:
    record = case_record(item_code(client, KEY), external_id=new_id())
    record["applicant"]["id_number"] = record["applicant"]["id_number"][:-1] + "Y"
    result = push(client, envelope(record)).json()["results"][0]
    assert result["reason"] == "identifier"


def test_one_bad_record_does_not_hold_back_the_batch(client: TestClient) -> None:
    code = item_code(client, KEY)
    good = envelope(case_record(code, external_id=new_id()))
    bad = envelope(case_record(code, external_id=new_id()), source="dalian")
    body = push(client, good, bad).json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert [r["status"] for r in body["results"]] == ["applied", "rejected"]


def test_wrong_partner_secret_is_401(client: TestClient) -> None:
    record = envelope(case_record(item_code(client, KEY), external_id=new_id()))
    assert push(client, record, secret="wrong").status_code == 401
