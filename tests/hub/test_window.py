"""The window channel (窗口) and cross-region registration (跨域通办), over HTTP.

A paper application is registered by a signed-in window officer (role ``window``) on the applicant's
behalf, with the scans handed in; the officer is the submit step's actor and the case follows the same
flow. Anonymous callers submit online applications only. A window of one city may register an application
for another region's item: the case goes to the implementing department and the receiving window is
recorded (docs/window.md)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.audit.service import verify
from hub.cases import service
from hub.cases.models import Case, CaseEvent, Material
from hub.outbox.models import OutboxMessage
from hub.settings import DEV_AUDIT_KEY
from tests.conftest import Officers
from tests.support import citizen_id, example_form, item_code, officer_of, person, submit

KEY = "physician-practice-registration"  # implemented by 沈阳市卫健委 (210100 007): officers sy_wj_*
SHENYANG_WINDOW = "sy_zwfw_window"  # 沈阳市营商环境建设局 (210100 090), the city's service centre
DALIAN_WINDOW = "dl_zwfw_window"  # 大连市营商环境建设局 (210200 090)
PROVINCE_WINDOW = "ln_zwfw_window"  # 辽宁省营商环境建设局 (210000 090)
SCAN = b"%PDF-1.4\n% scanned at the window\n"
URL = "/api/v1/window/applications"


def scan(key: str = "application_form", content: bytes = SCAN, **overrides: str) -> dict[str, str]:
    material = {"key": key, "filename": "扫描件.pdf", "content_type": "application/pdf",
                "content_base64": base64.b64encode(content).decode()}
    material.update(overrides)
    return material


def paper_application(client: TestClient, *, seq: int = 401, materials: list[dict[str, str]] | None = None,
                      **extra: Any) -> dict[str, Any]:
    applicant = person(id_number=citizen_id(seq=seq), name="王秀英")
    return {"item_code": item_code(client, KEY), "applicant": applicant, "form": example_form(KEY),
            "materials": [scan()] if materials is None else materials, **extra}


def register(client: TestClient, officers: Officers, officer: str, body: dict[str, Any],
             **headers: str) -> httpx.Response:
    return client.post(URL, json=body, headers=officers.headers(officer) | headers)


def registered(client: TestClient, officers: Officers, officer: str = SHENYANG_WINDOW, **kwargs: Any
               ) -> dict[str, Any]:
    response = register(client, officers, officer, paper_application(client, **kwargs))
    assert response.status_code == 201, response.text
    return dict(response.json())


def the_error(response: httpx.Response, field: str) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    matching = [e for e in response.json()["errors"] if e["field"] == field]
    assert matching, response.text
    return dict(matching[0])


def first_event(session_factory: sessionmaker[Session], number: str) -> CaseEvent:
    with session_factory() as session:
        case = service.get_case(session, number)
        return service.events_of(session, case)[0]


def case_row(session_factory: sessionmaker[Session], number: str) -> Case:
    with session_factory() as session:
        return service.get_case(session, number)


def case_count(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Case)) or 0)


# --- anonymous callers: online only ---------------------------------------------------------------


def test_an_anonymous_window_application_is_refused_naming_the_channel_and_the_rule(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    before = case_count(session_factory)
    body = {"item_code": item_code(client, KEY), "applicant": person(), "form": example_form(KEY),
            "channel": "window"}
    error = the_error(client.post("/api/v1/applications", json=body), "channel")
    assert error["rule"] == "window_requires_officer"
    assert "窗口" in error["message"]
    assert case_count(session_factory) == before


def test_an_anonymous_partner_application_is_refused_too(client: TestClient) -> None:
    body = {"item_code": item_code(client, KEY), "applicant": person(), "form": example_form(KEY),
            "channel": "partner"}
    assert the_error(client.post("/api/v1/applications", json=body), "channel")["rule"] == "partner_via_exchange"


def test_an_application_without_a_channel_is_an_online_one(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    receipt = submit(client, KEY)
    case = case_row(session_factory, receipt["tracking_no"])
    assert (case.channel, case.receiving_region_code, case.receiving_department_id) == ("online", None, None)
    event = first_event(session_factory, receipt["tracking_no"])
    assert (event.actor_type, event.data) == ("applicant", {"channel": "online"})


# --- a window officer registers a paper application -----------------------------------------------


def test_a_window_officers_registration_records_the_officer_as_actor_and_stores_the_scans(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session]
) -> None:
    receipt = registered(client, officers)
    number = receipt["tracking_no"]
    assert receipt["query_code"] and receipt["state"] == "submitted"
    assert (receipt["channel"], receipt["registered_by"], receipt["registered_by_name"]) == (
        "window", SHENYANG_WINDOW, "孙婷婷")
    assert (receipt["receiving_department"], receipt["forwarded"]) == ("210100090", False)
    assert receipt["department"] == "210100007"
    (material,) = receipt["materials_received"]
    assert (material["key"], material["purpose"], material["size"]) == ("application_form", "application", len(SCAN))

    event = first_event(session_factory, number)
    assert (event.action, event.actor_type, event.actor_id, event.actor_name) == (
        "submit", "officer", SHENYANG_WINDOW, "孙婷婷")
    assert event.department is not None and event.department.name == "沈阳市营商环境建设局"
    assert event.data["channel"] == "window"
    assert event.data["received_at"]["department"] == "210100090"
    assert "forwarded_to" not in event.data
    case = case_row(session_factory, number)
    assert (case.channel, case.receiving_region_code) == ("window", "210100")
    with session_factory() as session:
        assert verify(session, key=DEV_AUDIT_KEY, tracking_no=number) == (1, [])
        stored = session.scalars(select(Material).where(Material.case_id == case.id)).all()
        assert [(m.material_key, m.purpose) for m in stored] == [("application_form", "application")]

    # The implementing department sees who registered it and acts on it as on any case.
    intake = officers.headers(officer_of(KEY, "intake"))
    view = client.get(f"/api/v1/cases/{number}", headers=intake).json()
    assert view["channel"] == "window"
    assert (view["steps"][0]["actor"], view["steps"][0]["department"]) == ("孙婷婷", "沈阳市营商环境建设局")
    assert [m["key"] for m in view["materials"]] == ["application_form"]
    accepted = client.post(f"/api/v1/cases/{number}/actions", json={"action": "accept"}, headers=intake)
    assert accepted.status_code == 200, accepted.text
    # The applicant follows it with the printed receipt.
    status = client.get(f"/api/v1/applications/{number}", headers={"X-Query-Code": receipt["query_code"]})
    assert status.status_code == 200 and status.json()["state"] == accepted.json()["state"]


def test_only_window_officers_register_paper_applications(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session]
) -> None:
    before = case_count(session_factory)
    body = paper_application(client)
    for officer in (officer_of(KEY, "intake"), "sy_yshj_supervisor"):
        refused = register(client, officers, officer, body)
        assert refused.status_code == 403, refused.text
        assert "窗口人员" in refused.json()["detail"]
    assert client.post(URL, json=body).status_code == 401
    assert case_count(session_factory) == before


def test_a_window_officer_acts_on_no_case(client: TestClient, officers: Officers) -> None:
    number = registered(client, officers)["tracking_no"]
    response = client.post(f"/api/v1/cases/{number}/actions", json={"action": "accept"},
                           headers=officers.headers(SHENYANG_WINDOW))
    assert response.status_code == 403, response.text


def test_a_bad_scan_refuses_the_whole_registration(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session]
) -> None:
    before = case_count(session_factory)
    not_base64 = register(client, officers, SHENYANG_WINDOW,
                          paper_application(client, materials=[scan(content_base64="不是base64")]))
    assert the_error(not_base64, "materials.0.content_base64")["rule"] == "base64"
    unlisted = register(client, officers, SHENYANG_WINDOW, paper_application(client, materials=[scan("tax_return")]))
    assert the_error(unlisted, "key")["rule"] == "material_listed"
    not_a_pdf = register(client, officers, SHENYANG_WINDOW,
                         paper_application(client, materials=[scan(content=b"plain text")]))
    assert the_error(not_a_pdf, "file")["rule"] == "content_matches_type"
    bad_applicant = paper_application(client)
    bad_applicant["applicant"]["id_number"] = "210102199003071230"
    assert the_error(register(client, officers, SHENYANG_WINDOW, bad_applicant), "applicant.id_number")
    assert case_count(session_factory) == before  # nothing half-registered


def test_a_further_scan_is_added_by_the_window_that_registered_the_case(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session]
) -> None:
    number = registered(client, officers)["tracking_no"]
    files = {"file": ("体检证明.pdf", SCAN + b"2", "application/pdf")}
    added = client.post(f"{URL}/{number}/materials", data={"key": "health_certificate"}, files=files,
                        headers=officers.headers(SHENYANG_WINDOW))
    assert added.status_code == 201, added.text
    assert (added.json()["key"], added.json()["purpose"]) == ("health_certificate", "application")
    other = client.post(f"{URL}/{number}/materials", data={"key": "health_certificate"}, files=files,
                        headers=officers.headers(DALIAN_WINDOW))
    assert other.status_code == 404


# --- cross-region (跨域通办) ------------------------------------------------------------------------


def test_a_dalian_window_registers_a_shenyang_item_forwarded_to_the_implementing_department(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session]
) -> None:
    receipt = registered(client, officers, DALIAN_WINDOW, seq=402)
    number = receipt["tracking_no"]
    assert number.startswith("210100")  # numbered by the implementing region
    assert (receipt["department"], receipt["receiving_department"], receipt["forwarded"]) == (
        "210100007", "210200090", True)

    case = case_row(session_factory, number)
    assert (case.region_code, case.department.key) == ("210100", "210100007")
    assert case.receiving_region_code == "210200"
    event = first_event(session_factory, number)
    assert event.actor_id == DALIAN_WINDOW
    assert event.data["received_at"] == {"region": "210200", "department": "210200090",
                                         "department_name": "大连市营商环境建设局"}
    assert event.data["forwarded_to"]["department"] == "210100007"
    with session_factory() as session:
        assert case.receiving_department_id is not None
        messages = session.scalars(select(OutboxMessage).where(OutboxMessage.correlation_id == number)).all()
        forwarded = [m for m in messages if m.type == "case.forwarded.v1"]
        assert sorted(m.type for m in messages) == ["case.forwarded.v1", "case.submitted.v1"]
        assert forwarded[0].region_code == "210100"
        assert (forwarded[0].payload["receiving_region"], forwarded[0].payload["receiving_department"]) == (
            "210200", "210200090")

    # The implementing department finds it in its queue and acts on it normally.
    intake = officers.headers(officer_of(KEY, "intake"))
    queue = client.get("/api/v1/cases/queue", headers=intake, params={"limit": 500}).json()
    assert number in [entry["tracking_no"] for entry in queue["entries"]]
    accepted = client.post(f"/api/v1/cases/{number}/actions", json={"action": "accept"}, headers=intake)
    assert accepted.status_code == 200, accepted.text

    # The receiving window follows the status of what it registered; no other window sees it.
    status = client.get(f"{URL}/{number}", headers=officers.headers(DALIAN_WINDOW))
    assert status.status_code == 200, status.text
    assert (status.json()["state"], status.json()["forwarded"], status.json()["receiving_department_name"]) == (
        accepted.json()["state"], True, "大连市营商环境建设局")
    assert [s["action"] for s in status.json()["steps"]] == ["submit", "accept"]
    for other in (SHENYANG_WINDOW, PROVINCE_WINDOW):
        assert client.get(f"{URL}/{number}", headers=officers.headers(other)).status_code == 404
    assert client.get(f"{URL}/{number}", headers=intake).status_code == 403
    # The Dalian window is not the department: the case's officer view stays closed to it.
    assert client.get(f"/api/v1/cases/{number}", headers=officers.headers(DALIAN_WINDOW)).status_code == 404


def test_a_window_reads_no_online_case(client: TestClient, officers: Officers) -> None:
    number = submit(client, KEY)["tracking_no"]
    assert client.get(f"{URL}/{number}", headers=officers.headers(SHENYANG_WINDOW)).status_code == 404


# --- idempotency and throttling apply as online -----------------------------------------------------


def test_a_retried_registration_with_the_same_key_makes_one_case(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session]
) -> None:
    key = str(uuid.uuid4())
    body = paper_application(client, seq=403)
    first = register(client, officers, DALIAN_WINDOW, body, **{"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    before = case_count(session_factory)
    again = register(client, officers, DALIAN_WINDOW, body, **{"Idempotency-Key": key})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert case_count(session_factory) == before
    with session_factory() as session:
        case = service.get_case(session, first.json()["tracking_no"])
        assert len(service.materials_of(session, case)) == 1

    changed = register(client, officers, DALIAN_WINDOW, body | {"form": {}}, **{"Idempotency-Key": key})
    assert the_error(changed, "Idempotency-Key")["rule"] == "idempotency_key_reused"
    # Keys are per officer: another window's same key is its own registration, never this receipt.
    other = register(client, officers, SHENYANG_WINDOW, body, **{"Idempotency-Key": key})
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers
    assert other.json()["tracking_no"] != first.json()["tracking_no"]


def test_wrong_query_codes_on_a_window_case_are_throttled_as_online(
    client: TestClient, officers: Officers
) -> None:
    receipt = registered(client, officers, seq=404)
    url = f"/api/v1/applications/{receipt['tracking_no']}"
    answers = [client.get(url, headers={"X-Query-Code": "WRONG-CODE"}).status_code for _ in range(6)]
    assert answers[:5] == [404] * 5 and answers[5] == 429
    assert client.get(url, headers={"X-Query-Code": receipt["query_code"]}).status_code == 429
