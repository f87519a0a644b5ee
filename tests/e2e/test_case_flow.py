"""A case goes submit → accept → review → grant → complete over HTTP, with the guards around it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support import ITEM_KEYS, officer_of, submit

KEY = "physician-practice-registration"


def act(client: TestClient, officers, username: str, tracking_no: str, action: str,
        opinion: str | None = "符合条件") -> dict:
    response = client.post(
        f"/api/v1/cases/{tracking_no}/actions", json={"action": action, "opinion": opinion},
        headers=officers.headers(username),
    )
    return {"status": response.status_code, **response.json()}


def test_case_runs_from_submission_to_completion(client: TestClient, officers) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]
    assert receipt["state"] == "submitted"

    for role, action, state in [
        ("intake", "accept", "under_review"),
        ("reviewer", "review", "pending_decision"),
        ("approver", "grant", "granted"),
        ("intake", "complete", "completed"),
    ]:
        result = act(client, officers, officer_of(KEY, role), number, action)
        assert result["status"] == 200, result
        assert result["state"] == state

    status = client.get(f"/api/v1/applications/{number}",
                        headers={"X-Query-Code": receipt["query_code"]})
    assert status.status_code == 200
    body = status.json()
    assert [s["action"] for s in body["steps"]] == ["submit", "accept", "review", "grant", "complete"]
    assert body["result"] == "granted"
    assert all(s["at"] for s in body["steps"])
    assert body["steps"][1]["department"] == body["department_name"]
    assert body["deadline"] is not None


def test_officer_of_another_department_gets_404_as_for_an_unknown_case(client: TestClient, officers) -> None:
    number = submit(client, KEY)["tracking_no"]
    other = next(k for k, row in ITEM_KEYS.items()
                 if (row["region"], row["department"]) != (ITEM_KEYS[KEY]["region"],
                                                           ITEM_KEYS[KEY]["department"]))
    result = act(client, officers, officer_of(other, "intake"), number, "accept")
    assert result["status"] == 404
    assert result["title"] == "未找到"


def test_reviewer_cannot_decide(client: TestClient, officers) -> None:
    number = submit(client, KEY)["tracking_no"]
    assert act(client, officers, officer_of(KEY, "intake"), number, "accept")["status"] == 200
    assert act(client, officers, officer_of(KEY, "reviewer"), number, "review")["status"] == 200
    result = act(client, officers, officer_of(KEY, "reviewer"), number, "grant")
    assert result["status"] == 403


def test_invalid_form_is_422_naming_the_field(client: TestClient) -> None:
    from tests.support import example_form, item_code, person

    form = example_form(KEY)
    required = next(iter(form))
    del form[required]
    response = client.post("/api/v1/applications", json={
        "item_code": item_code(client, KEY), "applicant": person(), "form": form})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    fields = {(e["field"], e["rule"]) for e in response.json()["errors"]}
    assert (f"form.{required}", "required") in fields


def test_wrong_id_check_digit_is_422_naming_the_field(client: TestClient) -> None:
    from tests.support import citizen_id, example_form, item_code, person

    good = citizen_id()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    response = client.post("/api/v1/applications", json={
        "item_code": item_code(client, KEY), "applicant": person(id_number=bad),
        "form": example_form(KEY)})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert errors[0]["field"] == "applicant.id_number"
    assert errors[0]["rule"] == "check_character"
    assert bad not in response.text
