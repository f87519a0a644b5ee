"""Partner records over REST are checked before anything is written: each bad record is rejected alone with its
field and rule, the others in the batch are applied; formats (date-time), the state against the steps, the
applicant type against the identifier, and names and free texts (hub/text.py) are all enforced; the inbox
deduplicates per (sender, message id)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import PARTNER_SECRET, case_record, citizen_id, credit_code, envelope, item_code, step

KEY = "physician-practice-registration"  # a 沈阳 (210100) item
DALIAN_KEY = "real-estate-transfer-registration"  # a 大连 (210200) item


def push(client: TestClient, *records: Any, partner: str = "shenyang") -> Any:
    response = client.post("/api/v1/exchange/records", json={"records": list(records)}, auth=(partner, PARTNER_SECRET))
    assert response.status_code == 200, response.text
    return response.json()


def new_id(prefix: str = "SY") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def record(client: TestClient, **changes: Any) -> dict[str, Any]:
    value = case_record(item_code(client, KEY), external_id=new_id(), steps=changes.pop("steps", 2))
    value.update(changes)
    return value


def rejected(client: TestClient, document: dict[str, Any]) -> dict[str, Any]:
    result = push(client, document)["results"][0]
    assert result["status"] == "rejected", result
    return dict(result)


def case_exists(client: TestClient, tracking_no: str | None) -> bool:
    return tracking_no is not None and client.get(f"/api/v1/transparency/cases/{tracking_no}").status_code == 200


# --- formats and the batch ------------------------------------------------------------------------


def test_a_garbage_timestamp_is_rejected_alone_and_the_rest_of_the_batch_applies(client: TestClient) -> None:
    first, bad, last = record(client), record(client, submitted_at="garbage"), record(client)
    body = push(client, envelope(first), envelope(bad), envelope(last))
    assert (body["accepted"], body["rejected"]) == (2, 1)
    results = body["results"]
    assert [r["status"] for r in results] == ["applied", "rejected", "applied"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert (results[1]["reason"], results[1]["field"], results[1]["rule"]) == ("schema", "payload.submitted_at",
                                                                              "format")
    assert case_exists(client, results[0]["tracking_no"]) and case_exists(client, results[2]["tracking_no"])


def test_a_batch_sent_twice_finds_its_good_records_as_duplicates(client: TestClient) -> None:
    good, bad = envelope(record(client)), envelope(record(client, submitted_at="garbage"))
    push(client, good, bad)
    results = push(client, good, bad)["results"]
    assert [r["status"] for r in results] == ["duplicate", "rejected"]


@pytest.mark.parametrize(("where", "value", "field"), [
    ("envelope", "2026-03-11T10:00:00", "envelope.occurred_at"),  # no offset: not RFC 3339
    ("accepted_at", "2026-03-09 25:00:00+08:00", "payload.accepted_at"),
    ("step", "yesterday", "payload.steps.1.at"),
    ("accepted_at", "2026-03-09t10:00:00z", "payload.accepted_at"),  # RFC 3339 allows it; the hub cannot read it
])
def test_every_timestamp_is_format_checked(client: TestClient, where: str, value: str, field: str) -> None:
    payload = record(client)
    document = envelope(payload)
    if where == "envelope":
        document["occurred_at"] = value
    elif where == "step":
        payload["steps"][1]["at"] = value
    else:
        payload[where] = value
    result = rejected(client, document)
    assert (result["field"], result["rule"]) == (field, "format")


def test_a_record_that_is_not_an_object_is_rejected_alone(client: TestClient) -> None:
    body = push(client, "not a record", envelope(record(client)))
    assert [r["status"] for r in body["results"]] == ["rejected", "applied"]
    assert body["results"][0]["rule"] == "type"


# --- state against steps ----------------------------------------------------------------------------


def test_state_completed_without_a_completion_step_is_rejected(client: TestClient) -> None:
    result = rejected(client, envelope(record(client, state="completed")))
    assert (result["reason"], result["field"], result["rule"]) == ("state", "payload.state", "follows_steps")


def test_state_under_review_with_only_a_submission_is_rejected(client: TestClient) -> None:
    payload = record(client, steps=1, state="under_review")
    result = rejected(client, envelope(payload))
    assert (result["field"], result["rule"]) == ("payload.state", "follows_steps")


def test_a_step_must_follow_the_standard_flow(client: TestClient) -> None:
    payload = record(client, steps=3)
    payload["steps"][2] = step(3, "accept", "under_review")  # accepted again: a step the case already left
    payload["state"] = "under_review"
    result = rejected(client, envelope(payload))
    assert (result["field"], result["rule"]) == ("payload.steps.2.action", "follows_workflow")


def test_a_record_that_skips_steps_is_stored_for_supervision(client: TestClient) -> None:
    # Issue 10: granted straight after submission is what the platform did — stored, and supervised
    # (tests/hub/supervision/test_rules_realtime.py), no longer refused.
    payload = record(client, steps=2)
    payload["steps"][1] = step(2, "grant", "granted")
    payload["state"] = "granted"
    del payload["accepted_at"]
    assert push(client, envelope(payload))["results"][0]["status"] == "applied"


def test_a_result_without_its_decision_step_is_rejected(client: TestClient) -> None:
    payload = record(client, steps=3, result={"at": "2026-03-12T10:00:00+08:00", "outcome": "granted"})
    result = rejected(client, envelope(payload))
    assert (result["field"], result["rule"]) == ("payload.result.outcome", "follows_steps")


def test_accepted_at_without_an_accept_step_is_rejected(client: TestClient) -> None:
    payload = record(client, steps=1, accepted_at="2026-03-09T10:00:00+08:00")
    result = rejected(client, envelope(payload))
    assert (result["field"], result["rule"]) == ("payload.accepted_at", "follows_steps")


def test_an_event_whose_action_cannot_reach_its_state_is_rejected(client: TestClient) -> None:
    event = envelope({"external_id": new_id(), "step": step(3, "complete", "under_review")}, record_type="case-event")
    result = rejected(client, event)
    assert (result["field"], result["rule"]) == ("payload.step.to_state", "follows_workflow")


# --- applicant type against identifier --------------------------------------------------------------


@pytest.mark.parametrize(("applicant", "field"), [
    ({"type": "1", "name": "赵六", "id_type": "credit_code", "id_number": credit_code()}, "payload.applicant.type"),
    ({"type": "9", "name": "赵六", "id_type": "citizen_id", "id_number": citizen_id()}, "payload.applicant.type"),
    ({"type": "2", "name": "赵六", "id_type": "passport", "id_number": "E12345678"}, "payload.applicant.type"),
    # the identifier's own check digits tell what it is, whatever id_type says
    ({"type": "9", "name": "赵六", "id_type": "other", "id_number": citizen_id()}, "payload.applicant.id_type"),
    ({"type": "1", "name": "赵六", "id_type": "other", "id_number": credit_code()}, "payload.applicant.id_type"),
])
def test_applicant_type_must_match_the_identifier(client: TestClient, applicant: dict[str, Any], field: str) -> None:
    result = rejected(client, envelope(record(client, applicant=applicant)))
    assert (result["reason"], result["field"], result["rule"]) == ("applicant_type", field, "matches_identifier")


@pytest.mark.parametrize("applicant", [
    {"type": "2", "name": "沈阳北方示范科技有限公司", "id_type": "credit_code", "id_number": credit_code()},
    {"type": "9", "name": "沈阳某协会", "id_type": "other", "id_number": "ORG-2026-001"},
    {"type": "1", "name": "John Smith", "id_type": "passport", "id_number": "E12345678"},
])
def test_consistent_applicants_are_applied(client: TestClient, applicant: dict[str, Any]) -> None:
    assert push(client, envelope(record(client, applicant=applicant)))["results"][0]["status"] == "applied"


# --- names and free texts ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rule"), [
    ("\u200b\ufeff", "not_blank"),
    ("\u3000 ", "not_blank"),
    ("张\u0001三", "no_control_characters"),
    ("张\u0085三", "no_control_characters"),
    ("张三\ufffe", "valid_characters"),
    ("张\u200b三", "no_invisible_characters"),
])
def test_applicant_names_go_through_the_text_rules(client: TestClient, name: str, rule: str) -> None:
    payload = record(client)
    payload["applicant"]["name"] = name
    result = rejected(client, envelope(payload))
    assert (result["reason"], result["field"], result["rule"]) == ("text", "payload.applicant.name", rule)


@pytest.mark.parametrize(("where", "value", "field", "rule"), [
    ("opinion", "\u200b", "payload.steps.0.opinion", "not_blank"),
    ("opinion", "同意\u0007", "payload.steps.0.opinion", "no_control_characters"),
    ("officer", "王\u0002科员", "payload.steps.0.officer", "no_control_characters"),
])
def test_step_texts_go_through_the_text_rules(client: TestClient, where: str, value: str, field: str,
                                              rule: str) -> None:
    payload = record(client)
    payload["steps"][0][where] = value
    result = rejected(client, envelope(payload))
    assert (result["field"], result["rule"]) == (field, rule)


def test_padded_names_are_stored_normalised(client: TestClient, session_factory: Any) -> None:
    from sqlalchemy import select

    from hub.cases.models import Case

    payload = record(client)
    payload["applicant"]["name"] = "\ufeff 赵六\u200b "
    result = push(client, envelope(payload))["results"][0]
    assert result["status"] == "applied"
    with session_factory() as session:
        name = session.scalar(select(Case.applicant_name).where(Case.tracking_no == result["tracking_no"]))
    assert name == "赵六"


# --- identity -----------------------------------------------------------------------------------------


def test_a_source_other_than_the_credentials_is_rejected_naming_the_field(client: TestClient) -> None:
    result = rejected(client, envelope(record(client), source="dalian"))
    assert (result["reason"], result["field"]) == ("source_mismatch", "envelope.source")


def test_the_same_message_id_from_two_partners_is_two_messages(client: TestClient) -> None:
    message_id = str(uuid.uuid4())
    shenyang = envelope(record(client), message_id=message_id)
    dalian_record = case_record(item_code(client, DALIAN_KEY), external_id=new_id("DL"), region="210200")
    dalian = envelope(dalian_record, source="dalian", region="210200", message_id=message_id)
    assert push(client, shenyang)["results"][0]["status"] == "applied"
    result = push(client, dalian, partner="dalian")["results"][0]
    assert result["status"] == "applied", result
    assert case_exists(client, result["tracking_no"])
    assert push(client, dalian, partner="dalian")["results"][0]["status"] == "duplicate"
