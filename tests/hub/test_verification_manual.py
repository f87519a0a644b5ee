"""Manual verification over HTTP, against the mock registries: an applicant from outside the province,
whom the provincial population registry cannot know, is granted only after an officer of the case's
department records which uploaded material was inspected and why — on the timeline, in the audit
chain and in the personal-data access log; everything else is refused with a clear 4xx."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.cases.models import Case, CaseEvent
from mocks.registries.seed import Seed
from tests.conftest import Officers
from tests.hub.test_verification import apply, someone
from tests.support import citizen_id, officer_of, person
from workflow import identifiers as ids

PHYSICIAN = "physician-practice-registration"  # id_card about the applicant, replaceable by population
PDF = b"%PDF-1.4\n% ID card scan\n"
OUTSIDE = "110101"  # Beijing, Dongcheng: a valid region code outside Liaoning (21xxxx)


def outsider(seq: int) -> dict[str, Any]:
    return person(name="赵京生", id_number=citizen_id(OUTSIDE, date(1988, 5, 17), seq), region=None)


def upload(client: TestClient, receipt: dict[str, Any], key: str = "id_card") -> dict[str, Any]:
    response = client.post(f"/api/v1/applications/{receipt['tracking_no']}/materials",
                           headers={"X-Query-Code": receipt["query_code"]}, data={"key": key},
                           files={"file": (f"{key}.pdf", PDF, "application/pdf")})
    assert response.status_code == 201, response.text
    return dict(response.json())


def act(client: TestClient, staff: Officers, number: str, role: str, action: str) -> Any:
    return client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": "依法办理"},
                       headers=staff.headers(officer_of(PHYSICIAN, role)))


def verify_manually(client: TestClient, staff: Officers, number: str, body: dict[str, Any],
                    username: str | None = None) -> Any:
    return client.post(f"/api/v1/cases/{number}/verification/manual", json=body,
                       headers=staff.headers(username or officer_of(PHYSICIAN, "reviewer")))


def accepted_and_reviewed(client: TestClient, staff: Officers, number: str) -> None:
    assert act(client, staff, number, "intake", "accept").status_code == 200
    assert act(client, staff, number, "reviewer", "review").status_code == 200


def test_an_out_of_province_applicant_is_granted_only_after_a_manual_verification(
        hub: TestClient, staff: Officers, session_factory: sessionmaker[Session]) -> None:
    receipt = apply(hub, PHYSICIAN, outsider(501))
    number = receipt["tracking_no"]
    assert receipt["verification"] == "failed"  # the provincial registry does not know a Beijing number
    material = upload(hub, receipt)
    accepted_and_reviewed(hub, staff, number)
    refused = act(hub, staff, number, "approver", "grant")
    assert refused.status_code == 409 and refused.json()["type"].endswith("/verification-failed")

    answer = verify_manually(hub, staff, number, {
        "evidence": [{"material_id": material["id"]}],
        "reason": "\u200b 已核对申请人上传的居民身份证（北京市签发）扫描件，与现场出示原件一致\u3000",
    })
    assert answer.status_code == 201, answer.text
    view = answer.json()
    [check] = view["verifications"]
    assert check["outcome"] == "manual" and check["outcome_label"] == "人工核验通过"
    assert check["answer"] == "not_found"
    manual = check["manual"]
    assert manual["officer"] == officer_of(PHYSICIAN, "reviewer")
    assert manual["reason"] == "已核对申请人上传的居民身份证（北京市签发）扫描件，与现场出示原件一致"  # normalised
    assert manual["evidence"] == [{"material_id": material["id"], "key": "id_card", "sha256": material["sha256"]}]
    assert manual["registry_outcome"] == "failed"
    step = view["steps"][-1]
    assert (step["action"], step["label"]) == ("verify_manually", "人工核验申请人身份")
    assert step["seq"] == manual["event_seq"]
    assert step["state"] == view["state"]  # the case did not move
    assert step["opinion"] is None  # the reason is the officers' (and the audit chain's), not the public's
    assert "id_card" not in view["missing_materials"]  # uploaded, not waived

    granted = act(hub, staff, number, "approver", "grant")
    assert granted.status_code == 200, granted.text
    assert granted.json()["state"] != view["state"]

    # The applicant sees the step and the check's outcome; the chain holds the event like any other.
    status = hub.get(f"/api/v1/applications/{number}", headers={"X-Query-Code": receipt["query_code"]}).json()
    assert "verify_manually" in [s["action"] for s in status["steps"]]
    assert status["verifications"][0]["outcome"] == "manual"
    with session_factory() as session:
        case = session.scalars(select(Case).where(Case.tracking_no == number)).one()
        events = list(session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)))
        event = next(e for e in events if e.action == "verify_manually")
        assert event.data["evidence"][0]["sha256"] == material["sha256"]
        assert event.data["registry_answer"] == "not_found" and event.data["reason"] == manual["reason"]
        assert event.prev_hash == events[event.seq - 2].hash
        assert events[event.seq].prev_hash == event.hash  # the grant chains on it


def test_the_manual_verification_is_in_the_personal_data_access_log(
        hub: TestClient, staff: Officers) -> None:
    applicant = outsider(502)
    receipt = apply(hub, PHYSICIAN, applicant)
    number = receipt["tracking_no"]
    upload(hub, receipt)
    assert verify_manually(hub, staff, number, {"evidence": [{"key": "id_card"}],
                                                "reason": "核对身份证扫描件"}).status_code == 201
    log = hub.get("/api/v1/supervision/access-log", params={"case": number, "id_number": applicant["id_number"]},
                  headers=staff.headers("ln_yshj_supervisor"))
    assert log.status_code == 200, log.text
    entries = log.json()["entries"]
    manual = [e for e in entries if e["operation"] == "manual_verification"]
    assert len(manual) == 1
    assert manual[0]["actor"] == officer_of(PHYSICIAN, "reviewer") and manual[0]["actor_kind"] == "officer"
    assert manual[0]["outcome"] == "manual" and manual[0]["registry"] == "population"
    assert applicant["id_number"] not in log.text and "核对身份证" not in log.text


def test_the_evidence_must_be_an_uploaded_material_of_the_case(hub: TestClient, staff: Officers) -> None:
    other = apply(hub, PHYSICIAN, outsider(503))
    elsewhere = upload(hub, other)
    receipt = apply(hub, PHYSICIAN, outsider(504))
    number = receipt["tracking_no"]
    upload(hub, receipt)

    cases = [
        ({"evidence": [{"material_id": elsewhere["id"]}], "reason": "核对"}, "evidence[0].material_id",
         "uploaded_material_of_case"),
        ({"evidence": [{"key": "id_card"}, {"key": "health_certificate"}], "reason": "核对"}, "evidence[1].key",
         "uploaded_material_of_case"),
        ({"evidence": [{"key": "id_card", "material_id": 1}], "reason": "核对"}, "evidence[0]",
         "one_of_material_id_or_key"),
        ({"evidence": [{"key": "id_card"}], "reason": "\u200b\u3000 \ufeff"}, "reason", "not_blank"),
        ({"evidence": [{"key": "id_card"}], "reason": "核对\u0001"}, "reason", "no_control_characters"),
    ]
    for body, field, rule in cases:
        refused = verify_manually(hub, staff, number, body)
        assert refused.status_code == 422, (body, refused.text)
        errors = refused.json()["errors"]
        assert {"field": field, "rule": rule} in [{"field": e["field"], "rule": e["rule"]} for e in errors], errors
    empty = verify_manually(hub, staff, number, {"evidence": [], "reason": "核对"})
    assert empty.status_code == 422 and "evidence" in empty.text
    view = hub.get(f"/api/v1/cases/{number}", headers=staff.headers(officer_of(PHYSICIAN, "reviewer"))).json()
    assert view["verifications"][0]["outcome"] == "failed"  # nothing was recorded
    assert "verify_manually" not in [s["action"] for s in view["steps"]]


@pytest.mark.parametrize("who", ["registered", "deceased", "unknown_in_province", "wrong_name"])
def test_a_registry_that_knows_the_applicant_cannot_be_overridden(
        who: str, hub: TestClient, staff: Officers, seed: Seed) -> None:
    applicant = {
        "registered": someone(seed.normal_person),
        "deceased": someone(seed.deceased_person),
        "unknown_in_province": person(name="王五", id_number=seed.unknown_id_number),
        "wrong_name": person(name="王五", id_number=seed.normal_person.id_number),
    }[who]
    receipt = apply(hub, PHYSICIAN, applicant)
    upload(hub, receipt)
    refused = verify_manually(hub, staff, receipt["tracking_no"], {"evidence": [{"key": "id_card"}],
                                                                   "reason": "核对身份证"})
    assert refused.status_code == 409, refused.text
    expected = "/registry-verified" if who == "registered" else "/registry-knows-applicant"
    assert refused.json()["type"].endswith(expected)


def test_only_once_and_only_while_the_case_is_undecided(hub: TestClient, staff: Officers) -> None:
    receipt = apply(hub, PHYSICIAN, outsider(505))
    number = receipt["tracking_no"]
    upload(hub, receipt)
    body = {"evidence": [{"key": "id_card"}], "reason": "核对身份证"}
    assert verify_manually(hub, staff, number, body).status_code == 201
    again = verify_manually(hub, staff, number, body, officer_of(PHYSICIAN, "approver"))
    assert again.status_code == 409 and again.json()["type"].endswith("/verified-manually")

    denied = apply(hub, PHYSICIAN, outsider(506))
    upload(hub, denied)
    accepted_and_reviewed(hub, staff, denied["tracking_no"])
    assert act(hub, staff, denied["tracking_no"], "approver", "deny").status_code == 200
    late = verify_manually(hub, staff, denied["tracking_no"], body, officer_of(PHYSICIAN, "approver"))
    assert late.status_code == 409 and late.json()["type"].endswith("/case-decided")


def test_only_a_reviewer_or_approver_of_the_case_department(hub: TestClient, staff: Officers) -> None:
    receipt = apply(hub, PHYSICIAN, outsider(507))
    number = receipt["tracking_no"]
    upload(hub, receipt)
    body = {"evidence": [{"key": "id_card"}], "reason": "核对身份证"}
    assert verify_manually(hub, staff, number, body, officer_of(PHYSICIAN, "intake")).status_code == 403
    assert verify_manually(hub, staff, number, body, "ln_zj_reviewer").status_code in (403, 404)  # other dept
    assert verify_manually(hub, staff, number, body, "ln_yshj_supervisor").status_code == 403
    assert hub.post(f"/api/v1/cases/{number}/verification/manual", json=body).status_code == 401
    region, day, _ = ids.parse_tracking_number(number)
    unknown = verify_manually(hub, staff, ids.build_tracking_number(region, day, 99999), body)
    assert unknown.status_code == 404
    view = hub.get(f"/api/v1/cases/{number}", headers=staff.headers(officer_of(PHYSICIAN, "reviewer"))).json()
    assert view["verifications"][0]["outcome"] == "failed"
    assert verify_manually(hub, staff, number, body, officer_of(PHYSICIAN, "approver")).status_code == 201
