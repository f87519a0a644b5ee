"""The working-day calendar API: a State Council notice loaded for a year beyond the package."""

from __future__ import annotations

from fastapi.testclient import TestClient

NOTICE_2031 = {
    "year": 2031,
    "source": "国务院办公厅关于2031年部分节假日安排的通知（测试）",
    "holidays": [{"name": "国庆节", "from": "2031-10-01", "to": "2031-10-07"}],
    "workdays": [{"name": "国庆节调休", "date": "2031-09-28"}],
}


def test_loading_a_notice_changes_the_years_coverage(client: TestClient, officers) -> None:
    before = client.get("/api/v1/calendar/2031").json()
    assert before["coverage"] == "fallback"
    response = client.post("/api/v1/calendar/notices", json=NOTICE_2031,
                           headers=officers.headers("ln_admin"))
    assert response.status_code == 201, response.text
    after = client.get("/api/v1/calendar/2031").json()
    assert after["coverage"] == "override"
    assert {o["day"] for o in after["overrides"] if not o["working"]} >= {"2031-10-01", "2031-10-07"}
    assert after["working_days"] != before["working_days"]


def test_bad_notice_names_the_problem(client: TestClient, officers) -> None:
    bad = {**NOTICE_2031, "holidays": [{"name": "国庆节", "from": "2031-13-01", "to": "2031-10-07"}]}
    response = client.post("/api/v1/calendar/notices", json=bad, headers=officers.headers("ln_admin"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "notice"
