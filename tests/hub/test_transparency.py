"""Public disclosure: every case's steps and result, personal data masked."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support import citizen_id, company, officer_of, person, submit

KEY = "physician-practice-registration"


def test_disclosure_masks_name_id_and_officers(client: TestClient, officers) -> None:
    number_id = citizen_id(seq=457)
    receipt = submit(client, KEY, applicant=person(name="王小明", id_number=number_id, phone="13900001111"))
    number = receipt["tracking_no"]
    client.post(f"/api/v1/cases/{number}/actions", json={"action": "accept", "opinion": "材料齐全"},
                headers=officers.headers(officer_of(KEY, "intake")))
    response = client.get(f"/api/v1/transparency/cases/{number}")
    assert response.status_code == 200
    body = response.json()
    assert body["applicant_name"] == "王**"
    assert body["applicant_id_number"] == number_id[:6] + "********" + number_id[-4:]
    assert "王小明" not in response.text and number_id not in response.text
    assert "13900001111" not in response.text
    assert [s["action"] for s in body["steps"]] == ["submit", "accept"]
    assert body["steps"][1]["actor"] == "经办人"
    assert body["steps"][1]["opinion"] == "材料齐全"


def test_disclosure_list_filters_by_region_and_state(client: TestClient) -> None:
    submit(client, KEY)
    page = client.get("/api/v1/transparency/cases", params={"region": "210100", "state": "submitted"}).json()
    assert page["total"] >= 1
    assert all(c["region"] == "210100" and c["state"] == "submitted" for c in page["cases"])


def test_enterprise_names_stay_public(client: TestClient) -> None:
    receipt = submit(client, "food-business-licence", applicant=company())
    body = client.get(f"/api/v1/transparency/cases/{receipt['tracking_no']}").json()
    assert body["applicant_name"].endswith("有限公司")
