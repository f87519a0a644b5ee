"""Applications and officer actions: routing, supplements and the stopped clock, withdrawal, queue."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient

from hub.clock import FixedClock
from tests.support import ITEM_KEYS, officer_of, person, submit

KEY = "physician-practice-registration"  # 沈阳市卫健委, promised 5 working days


def act(client: TestClient, officers, key: str, role: str, number: str, action: str,
        opinion: str | None = "意见") -> dict:
    response = client.post(f"/api/v1/cases/{number}/actions",
                           json={"action": action, "opinion": opinion},
                           headers=officers.headers(officer_of(key, role)))
    return {"status": response.status_code, **response.json()}


def queue_of(client: TestClient, officers, role: str):
    return client.get("/api/v1/cases/queue", params={"limit": 500},
                      headers=officers.headers(officer_of(KEY, role)))


def status(client: TestClient, receipt: dict) -> dict:
    response = client.get(f"/api/v1/applications/{receipt['tracking_no']}",
                          headers={"X-Query-Code": receipt["query_code"]})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_application_from_another_region_goes_to_the_items_department(client: TestClient, officers) -> None:
    receipt = submit(client, KEY, applicant=person(region="210213"))
    row = ITEM_KEYS[KEY]
    assert receipt["department"] == row["region"] + row["department"]
    assert receipt["tracking_no"].startswith(row["region"])
    queue = queue_of(client, officers, "intake")
    assert receipt["tracking_no"] in {e["tracking_no"] for e in queue.json()["entries"]}


def test_acceptance_stores_deadline_in_working_days(client: TestClient, officers) -> None:
    receipt = submit(client, KEY)  # Wednesday 2026-03-11
    act(client, officers, KEY, "intake", receipt["tracking_no"], "accept")
    body = status(client, receipt)
    assert body["accepted_on"] == "2026-03-11"
    assert body["deadline"] == "2026-03-18"  # 5 working days, the weekend not counted


def test_supplement_during_review_stops_the_clock(client: TestClient, officers, clock: FixedClock) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]
    act(client, officers, KEY, "intake", number, "accept")
    clock.advance(days=1)  # Thursday: reviewer asks for a supplement
    assert act(client, officers, KEY, "reviewer", number, "request_supplement",
               "请补充体检报告原件")["state"] == "review_supplement"
    assert status(client, receipt)["suspended"] is True
    clock.advance(days=5)  # the following Tuesday: three working days have gone by
    response = client.post(f"/api/v1/applications/{number}/supplement", json={"note": "已补交"},
                           headers={"X-Query-Code": receipt["query_code"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "under_review"
    assert body["suspended"] is False
    assert date.fromisoformat(body["deadline"]) == date(2026, 3, 23)  # 18th + 3 working days


def test_supplement_before_acceptance_returns_to_intake(client: TestClient, officers) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]
    assert act(client, officers, KEY, "intake", number, "request_supplement",
               "请一次性补齐执业机构证明")["state"] == "awaiting_supplement"
    response = client.post(f"/api/v1/applications/{number}/supplement", json={"note": "已补齐"},
                           headers={"X-Query-Code": receipt["query_code"]})
    assert response.json()["state"] == "submitted"
    assert response.json()["accepted_on"] is None


def test_refusal_needs_an_opinion(client: TestClient, officers) -> None:
    number = submit(client, KEY)["tracking_no"]
    result = act(client, officers, KEY, "intake", number, "refuse_intake", opinion="  ")
    assert result["status"] == 422
    assert result["errors"][0]["field"] == "opinion"


def test_action_not_available_in_state_is_409(client: TestClient, officers) -> None:
    number = submit(client, KEY)["tracking_no"]
    result = act(client, officers, KEY, "intake", number, "complete")
    assert result["status"] == 409


def test_applicant_can_withdraw_until_decided(client: TestClient, officers) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]
    act(client, officers, KEY, "intake", number, "accept")
    response = client.post(f"/api/v1/applications/{number}/withdraw", json={"reason": "不再需要"},
                           headers={"X-Query-Code": receipt["query_code"]})
    assert response.status_code == 200
    assert response.json()["state"] == "withdrawn"
    again = client.post(f"/api/v1/applications/{number}/withdraw", json={"reason": "再次"},
                        headers={"X-Query-Code": receipt["query_code"]})
    assert again.status_code == 409


def test_wrong_query_code_looks_like_an_unknown_case(client: TestClient) -> None:
    receipt = submit(client, KEY)
    wrong = client.get(f"/api/v1/applications/{receipt['tracking_no']}",
                       headers={"X-Query-Code": "WRONGCODE"})
    assert wrong.status_code == 404
    unknown = client.get("/api/v1/applications/210100202603110999991",
                         headers={"X-Query-Code": receipt["query_code"]})
    assert unknown.status_code == 404
    assert wrong.json()["detail"] == unknown.json()["detail"]


def test_status_masks_personal_data(client: TestClient) -> None:
    receipt = submit(client, KEY, applicant=person(name="欧阳娜娜"))
    body = status(client, receipt)
    assert body["applicant_name"] == "欧***"
    assert "*" in body["applicant_id_number"]


def test_officer_view_shows_applicant_in_clear_and_missing_materials(client: TestClient, officers) -> None:
    receipt = submit(client, KEY, applicant=person(name="李四"))
    response = client.get(f"/api/v1/cases/{receipt['tracking_no']}",
                          headers=officers.headers(officer_of(KEY, "intake")))
    assert response.status_code == 200
    body = response.json()
    assert body["applicant_name"] == "李四"
    assert body["available_actions"] == ["accept", "refuse_intake", "request_supplement"]
    required = [m["key"] for m in ITEM_KEYS[KEY]["materials"] if m["required"]]
    assert body["missing_materials"] == required


def test_supervisor_of_the_province_may_read_but_not_act(client: TestClient, officers) -> None:
    number = submit(client, KEY)["tracking_no"]
    headers = officers.headers("ln_yshj_supervisor")
    assert client.get(f"/api/v1/cases/{number}", headers=headers).status_code == 200
    response = client.post(f"/api/v1/cases/{number}/actions", json={"action": "accept"},
                           headers=headers)
    assert response.status_code == 403


def test_queue_lists_only_cases_the_role_can_act_on(client: TestClient, officers) -> None:
    number = submit(client, KEY)["tracking_no"]
    reviewer = queue_of(client, officers, "reviewer")
    assert number not in {e["tracking_no"] for e in reviewer.json()["entries"]}
    act(client, officers, KEY, "intake", number, "accept")
    reviewer = queue_of(client, officers, "reviewer")
    entry = next(e for e in reviewer.json()["entries"] if e["tracking_no"] == number)
    assert sorted(entry["actions"]) == ["request_supplement", "review"]
    assert entry["step_deadline"] is not None
