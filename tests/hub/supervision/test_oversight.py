"""Warning and correction over HTTP: who sees which alert, the department's explanation, the supervisor's ruling
(accepted, or accountability: measure, person, date — 责任追究), every step in the history, and the thresholds
per region."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from hub.auth.models import Officer
from hub.db import unit_of_work
from hub.errors import Conflict
from hub.supervision import oversight
from hub.supervision.models import SupervisionThreshold
from hub.supervision.service import thresholds_for
from tests.conftest import Officers
from tests.hub.supervision.oversight_support import HEPING_MARKET, RAISED_AT, alert_on_new_case, stored

ALERTS = "/api/v1/supervision/alerts"
ACCOUNTABILITY = {"ruling": "accountability", "opinion": "超期办理，追究责任",
                  "accountability": {"measure": "诫勉谈话", "person": "李建国", "date": "2026-03-11"}}
EXPLANATION = {"explanation": "专家评审未及时安排，导致超期", "correction": "已建立评审排期台账，每日跟踪"}


def errors_of(response: Any) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return {(e["field"], e["rule"]) for e in response.json()["errors"]}


def listed(client: TestClient, officers: Officers, username: str, **params: Any) -> dict[str, Any]:
    response = client.get(ALERTS, params=params, headers=officers.headers(username))
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- scope ---------------------------------------------------------------------------------------------


def test_supervisors_see_their_region_and_below_departments_their_own(
        client: TestClient, officers: Officers, session_factory: sessionmaker[Session]) -> None:
    tracking_no, alert_id = alert_on_new_case(client, session_factory)
    for username in ("ln_yshj_supervisor", "sy_yshj_supervisor", "sy_wj_intake", "sy_wj_approver"):
        page = listed(client, officers, username, case=tracking_no)
        assert [a["id"] for a in page["alerts"]] == [alert_id], username
        one = client.get(f"{ALERTS}/{alert_id}", headers=officers.headers(username))
        assert one.status_code == 200 and one.json()["tracking_no"] == tracking_no
    alert = client.get(f"{ALERTS}/{alert_id}", headers=officers.headers("sy_wj_intake")).json()
    assert (alert["level"], alert["status"], alert["status_label"], alert["department"]) == (
        "red", "open", "待说明", "210100007")
    assert alert["available_actions"] == ["explain"]
    assert client.get(f"{ALERTS}/{alert_id}", headers=officers.headers("sy_yshj_supervisor")).json()[
        "available_actions"] == ["rule"]
    # Another city's supervisor, the county below and another department: as if it did not exist.
    for username in ("dl_yshj_supervisor", "syhp_yshj_supervisor", "sy_scjg_intake"):
        assert listed(client, officers, username, case=tracking_no)["alerts"] == [], username
        hidden = client.get(f"{ALERTS}/{alert_id}", headers=officers.headers(username))
        assert hidden.status_code == 404, username
        unknown = client.get(f"{ALERTS}/999999999", headers=officers.headers(username)).json()["detail"]
        assert hidden.json()["detail"].replace(str(alert_id), "N") == unknown.replace("999999999", "N")


def test_an_officer_without_a_supervising_or_department_role_is_refused(client: TestClient, officers: Officers) -> None:
    response = client.get(ALERTS, headers=officers.headers("sy_zwfw_window"))
    assert response.status_code == 403
    assert "监察" in response.json()["detail"]
    assert client.get(ALERTS).status_code == 401


def test_a_county_supervisor_sees_the_countys_alerts(
        client: TestClient, officers: Officers, session_factory: sessionmaker[Session]) -> None:
    tracking_no, alert_id = alert_on_new_case(client, session_factory, HEPING_MARKET, level="yellow")
    for username in ("syhp_yshj_supervisor", "sy_yshj_supervisor", "ln_yshj_supervisor", "syhp_scjg_reviewer"):
        assert [a["id"] for a in listed(client, officers, username, case=tracking_no)["alerts"]] == [alert_id]
    assert listed(client, officers, "dl_yshj_supervisor", case=tracking_no)["alerts"] == []


# --- list: filters and pages ---------------------------------------------------------------------------


def test_filters_narrow_the_list_and_pages_count_the_whole(
        client: TestClient, officers: Officers, session_factory: sessionmaker[Session]) -> None:
    tracking_no, red = alert_on_new_case(client, session_factory, rule="time.case_overdue", level="red")
    _, procedure = alert_on_new_case(client, session_factory, rule="procedure.skipped_step", kind="procedure",
                                     level="yellow")
    _, county = alert_on_new_case(client, session_factory, HEPING_MARKET, rule="anomaly.too_fast", kind="anomaly")
    who = "sy_yshj_supervisor"
    assert [a["id"] for a in listed(client, officers, who, case=tracking_no)["alerts"]] == [red]
    kinds = {a["id"] for a in listed(client, officers, who, kind="procedure", limit=500)["alerts"]}
    assert procedure in kinds and red not in kinds and county not in kinds
    yellows = {a["id"] for a in listed(client, officers, who, level="yellow", limit=500)["alerts"]}
    assert procedure in yellows and red not in yellows
    in_county = {a["id"] for a in listed(client, officers, who, region="210102", limit=500)["alerts"]}
    assert county in in_county and red not in in_county
    in_city = {a["id"] for a in listed(client, officers, who, region="210100", limit=500)["alerts"]}
    assert {red, procedure, county} <= in_city  # descendants included
    health = {a["id"] for a in listed(client, officers, who, department="210100007", limit=500)["alerts"]}
    assert {red, procedure} <= health and county not in health
    assert listed(client, officers, who, department="210100999")["total"] == 0
    opened = listed(client, officers, who, status="open", limit=500)
    assert {red, procedure, county} <= {a["id"] for a in opened["alerts"]}

    whole = listed(client, officers, who, limit=500)
    first = listed(client, officers, who, offset=0, limit=2)
    second = listed(client, officers, who, offset=2, limit=2)
    assert first["total"] == whole["total"] >= 3 and (first["offset"], first["limit"]) == (0, 2)
    assert [a["id"] for a in first["alerts"] + second["alerts"]] == [a["id"] for a in whole["alerts"][:4]]


def test_bad_filters_are_refused_naming_the_field_and_the_rule(client: TestClient, officers: Officers) -> None:
    headers = officers.headers("sy_yshj_supervisor")
    response = client.get(ALERTS, params={"status": "done", "level": "orange", "kind": "x", "department": "21",
                                          "region": "21x", "case": "123"}, headers=headers)
    assert errors_of(response) == {("status", "one_of"), ("level", "one_of"), ("kind", "one_of"),
                                   ("department", "pattern"), ("region", "pattern"), ("case", "pattern")}
    assert errors_of(client.get(ALERTS, params={"limit": 0}, headers=headers)) == {("limit", "greater_than_equal")}
    assert client.get(f"{ALERTS}/abc", headers=headers).status_code == 422


# --- explanation ---------------------------------------------------------------------------------------


def test_the_department_explains_and_the_explanation_is_in_the_history(
        client: TestClient, officers: Officers, session_factory: sessionmaker[Session]) -> None:
    _, alert_id = alert_on_new_case(client, session_factory)
    response = client.post(f"{ALERTS}/{alert_id}/explanation", json=EXPLANATION,
                           headers=officers.headers("sy_wj_reviewer"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["explanation"], body["correction"], body["explained_by"]) == (
        "explained", EXPLANATION["explanation"], EXPLANATION["correction"], "sy_wj_reviewer")
    assert [step["action"] for step in body["history"]] == ["raised", "explained"]
    assert body["history"][1]["by"] == "sy_wj_reviewer"
    # A second explanation before the ruling replaces it; both stay in the history.
    again = client.post(f"{ALERTS}/{alert_id}/explanation", headers=officers.headers("sy_wj_approver"),
                        json={"explanation": "补充说明", "correction": "已整改完毕"})
    assert again.status_code == 200 and [s["action"] for s in again.json()["history"]] == [
        "raised", "explained", "explained"]
    assert stored(session_factory, alert_id).explanation == "补充说明"


def test_only_the_responsible_department_explains(
        client: TestClient, officers: Officers, session_factory: sessionmaker[Session]) -> None:
    _, alert_id = alert_on_new_case(client, session_factory)
    by_supervisor = client.post(f"{ALERTS}/{alert_id}/explanation", json=EXPLANATION,
                                headers=officers.headers("sy_yshj_supervisor"))
    assert by_supervisor.status_code == 403 and "责任部门" in by_supervisor.json()["detail"]
    other = client.post(f"{ALERTS}/{alert_id}/explanation", json=EXPLANATION,
                        headers=officers.headers("sy_scjg_intake"))
    assert other.status_code == 404
    assert stored(session_factory, alert_id).status == "open"


def test_a_bad_explanation_is_refused_naming_the_field_and_the_rule(
        client: TestClient, officers: Officers, session_factory: sessionmaker[Session]) -> None:
    _, alert_id = alert_on_new_case(client, session_factory)
    url, headers = f"{ALERTS}/{alert_id}/explanation", officers.headers("sy_wj_intake")
    assert errors_of(client.post(url, json={"explanation": "   ", "correction": "ok"}, headers=headers)) == {
        ("explanation", "not_blank")}
    assert ("correction", "missing") in errors_of(client.post(url, json={"explanation": "说明"}, headers=headers))
    assert ("correction", "string_too_long") in errors_of(
        client.post(url, json={"explanation": "说明", "correction": "长" * 2001}, headers=headers))
    assert ("extra", "extra_forbidden") in errors_of(
        client.post(url, json={**EXPLANATION, "extra": 1}, headers=headers))


# --- ruling --------------------------------------------------------------------------------------------


def test_the_supervisor_records_accountability_and_the_alert_is_closed(
        client: TestClient, officers: Officers, session_factory: sessionmaker[Session]) -> None:
    _, alert_id = alert_on_new_case(client, session_factory)
    client.post(f"{ALERTS}/{alert_id}/explanation", json=EXPLANATION, headers=officers.headers("sy_wj_reviewer"))
    by_department = client.post(f"{ALERTS}/{alert_id}/ruling", json=ACCOUNTABILITY,
                                headers=officers.headers("sy_wj_approver"))
    assert by_department.status_code == 403
    response = client.post(f"{ALERTS}/{alert_id}/ruling", json=ACCOUNTABILITY,
                           headers=officers.headers("sy_yshj_supervisor"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["ruling"], body["ruled_by"]) == ("accountability", "accountability",
                                                                  "sy_yshj_supervisor")
    assert body["accountability"] == {"measure": "诫勉谈话", "person": "李建国", "date": "2026-03-11"}
    assert body["closed_at"] is not None and body["available_actions"] == []
    assert [s["action"] for s in body["history"]] == ["raised", "explained", "ruled"]
    assert body["history"][-1]["accountability"]["measure"] == "诫勉谈话"
    again = client.post(f"{ALERTS}/{alert_id}/ruling", json={"ruling": "accepted"},
                        headers=officers.headers("ln_yshj_supervisor"))
    assert again.status_code == 409 and "已追责" in again.json()["detail"]
    late = client.post(f"{ALERTS}/{alert_id}/explanation", json=EXPLANATION, headers=officers.headers("sy_wj_intake"))
    assert late.status_code == 409
    listed_ruled = listed(client, officers, "sy_yshj_supervisor", status="accountability", limit=500)
    assert alert_id in {a["id"] for a in listed_ruled["alerts"]}


def test_accepting_an_explanation(client: TestClient, officers: Officers,
                                  session_factory: sessionmaker[Session]) -> None:
    _, alert_id = alert_on_new_case(client, session_factory, level="yellow")
    client.post(f"{ALERTS}/{alert_id}/explanation", json=EXPLANATION, headers=officers.headers("sy_wj_reviewer"))
    response = client.post(f"{ALERTS}/{alert_id}/ruling", json={"ruling": "accepted", "opinion": "说明属实"},
                           headers=officers.headers("ln_yshj_supervisor"))  # the province covers the city
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["accountability"]) == ("accepted", None)
    assert response.json()["history"][-1]["opinion"] == "说明属实"


def test_a_bad_ruling_is_refused_naming_the_field_and_the_rule(
        client: TestClient, officers: Officers, session_factory: sessionmaker[Session]) -> None:
    _, alert_id = alert_on_new_case(client, session_factory)
    url, headers = f"{ALERTS}/{alert_id}/ruling", officers.headers("sy_yshj_supervisor")
    assert ("ruling", "literal_error") in errors_of(client.post(url, json={"ruling": "dismissed"}, headers=headers))
    assert errors_of(client.post(url, json={"ruling": "accountability"}, headers=headers)) == {
        ("accountability", "required")}
    assert errors_of(client.post(url, json={**ACCOUNTABILITY, "ruling": "accepted"}, headers=headers)) == {
        ("accountability", "not_allowed")}
    future = {**ACCOUNTABILITY, "accountability": {**ACCOUNTABILITY["accountability"], "date": "2026-04-01"}}
    assert errors_of(client.post(url, json=future, headers=headers)) == {("accountability.date", "not_future")}
    early = {**ACCOUNTABILITY, "accountability": {**ACCOUNTABILITY["accountability"], "date": "2026-03-01"}}
    assert errors_of(client.post(url, json=early, headers=headers)) == {("accountability.date", "not_before_alert")}
    blank = {**ACCOUNTABILITY, "accountability": {"measure": " ", "person": "", "date": "x"}}
    assert {field for field, _ in errors_of(client.post(url, json=blank, headers=headers))} == {
        "accountability.measure", "accountability.person", "accountability.date"}
    assert stored(session_factory, alert_id).status == "open"


def test_after_escalation_only_the_supervisor_one_level_up_rules(
        client: TestClient, officers: Officers, session_factory: sessionmaker[Session]) -> None:
    _, alert_id = alert_on_new_case(client, session_factory, HEPING_MARKET, supervisor_region="210100")
    county = client.get(f"{ALERTS}/{alert_id}", headers=officers.headers("syhp_yshj_supervisor"))
    assert county.status_code == 200 and county.json()["available_actions"] == []  # still sees it
    refused = client.post(f"{ALERTS}/{alert_id}/ruling", json=ACCOUNTABILITY,
                          headers=officers.headers("syhp_yshj_supervisor"))
    assert refused.status_code == 403 and "210100" in refused.json()["detail"]
    ruled = client.post(f"{ALERTS}/{alert_id}/ruling", json=ACCOUNTABILITY,
                        headers=officers.headers("sy_yshj_supervisor"))
    assert ruled.status_code == 200, ruled.text
    assert ruled.json()["escalations"] == 1 and ruled.json()["supervisor_region_code"] == "210100"


# --- thresholds ----------------------------------------------------------------------------------------


@pytest.fixture
def dalian_thresholds_restored(session_factory: sessionmaker[Session]) -> Iterator[None]:
    """The database is shared by the session's tests: other tests expect Dalian on the defaults."""
    yield
    with unit_of_work(session_factory) as session:
        session.execute(delete(SupervisionThreshold).where(SupervisionThreshold.region_code == "210200"))


@pytest.mark.usefixtures("dalian_thresholds_restored")
def test_thresholds_per_region_inherit_down_the_tree(
        client: TestClient, officers: Officers, session_factory: sessionmaker[Session]) -> None:
    url = "/api/v1/supervision/thresholds"
    city, county = officers.headers("dl_yshj_supervisor"), "210213"
    before = client.get(f"{url}/{county}", headers=city)
    assert before.status_code == 200, before.text
    assert before.json()["source"] in ("default", "inherited")
    values = {"yellow_used_percent": 70, "yellow_days_left": 2, "red_escalation_days": 5}
    put = client.put(f"{url}/210200", json=values, headers=city)
    assert put.status_code == 200, put.text
    assert put.json() | values == put.json() and put.json()["source"] == "own"
    below = client.get(f"{url}/{county}", headers=city).json()
    assert (below["source"], below["source_region_code"], below["yellow_days_left"]) == ("inherited", "210200", 2)
    with unit_of_work(session_factory) as session:  # what the scanner reads
        found = thresholds_for(session, county)
        assert (found.yellow_used_percent, found.red_escalation_days, found.region_code) == (70, 5, "210200")
    # Another city, a department officer, an unknown region, bad values.
    assert client.put(f"{url}/210200", json=values, headers=officers.headers("sy_yshj_supervisor")).status_code == 404
    assert client.get(f"{url}/210200", headers=officers.headers("dl_zwfw_window")).status_code == 403
    assert client.get(f"{url}/219999", headers=city).status_code == 404
    assert errors_of(client.put(f"{url}/210200", json={**values, "yellow_used_percent": 101}, headers=city)) == {
        ("yellow_used_percent", "less_than_equal")}
    assert ("red_escalation_days", "missing") in errors_of(
        client.put(f"{url}/210200", json={"yellow_used_percent": 80, "yellow_days_left": 1}, headers=city))
    assert errors_of(client.get(f"{url}/21", headers=city)) == {("region_code", "string_pattern_mismatch")}


def test_two_rulings_at_once_apply_one_after_the_other(
        backend: str, client: TestClient, session_factory: sessionmaker[Session]) -> None:
    """The second supervisor waits on the alert's row lock, then finds it ruled: 409, one ruling in the history."""
    if backend != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    _, alert_id = alert_on_new_case(client, session_factory)
    outcome: dict[str, Any] = {}
    first, second = session_factory(), session_factory()

    def rule_as(session: Session, username: str, ruling: str, started: threading.Event | None = None) -> None:
        officer = session.scalars(select(Officer).where(Officer.username == username)).one()
        if started is not None:
            started.set()
        try:
            alert = oversight.get_alert(session, officer=officer, alert_id=alert_id, for_update=True)
            oversight.rule(session, officer=officer, alert=alert, ruling=ruling,  # type: ignore[arg-type]
                           opinion=None, accountability=None, now=RAISED_AT)
            outcome[username] = "ruled"
        except Conflict:
            outcome[username] = "conflict"

    try:
        rule_as(first, "sy_yshj_supervisor", "accepted")  # holds the row, not committed yet
        started = threading.Event()
        thread = threading.Thread(target=rule_as, args=(second, "ln_yshj_supervisor", "accepted", started))
        thread.start()
        assert started.wait(10)
        first.commit()
        thread.join(10)
        second.commit()
    finally:
        first.close()
        second.close()
    assert outcome == {"sy_yshj_supervisor": "ruled", "ln_yshj_supervisor": "conflict"}
    assert [step["action"] for step in stored(session_factory, alert_id).history] == ["raised", "ruled"]
