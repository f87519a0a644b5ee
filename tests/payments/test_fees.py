"""Fees on cases (issue 12, item 1), from the outside: the assessment from the item's fee rule, the guard on
acceptance and completion (409 fee-unpaid), the waiver, the fee view for applicant and officer."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.cases.models import Case, CaseEvent
from hub.db import unit_of_work
from hub.payments import fees
from tests.support import example_form, officer_of, person, submit

ID_CARD = "id-card-renewal"  # 2000 fen, due before acceptance; 低保 exempt by a form field
REAL_ESTATE = "real-estate-transfer-registration"  # 8000 fen per registration unit, due before completion


def act(client: TestClient, officers: Any, key: str, role: str, number: str, action: str) -> Any:
    return client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": "意见"},
                       headers=officers.headers(officer_of(key, role)))


def fee_of(client: TestClient, receipt: dict[str, Any]) -> dict[str, Any]:
    response = client.get(f"/api/v1/cases/{receipt['tracking_no']}/fee",
                          params={"query_code": receipt["query_code"]})
    assert response.status_code == 200, response.text
    return dict(response.json())


def to_granted(client: TestClient, officers: Any, key: str, number: str) -> None:
    for role, action in (("intake", "accept"), ("reviewer", "review"), ("approver", "grant")):
        response = act(client, officers, key, role, number, action)
        assert response.status_code == 200, response.text


def pay(session_factory: sessionmaker[Session], number: str, amount_fen: int, now: Any) -> None:
    """What the orders part does when a gateway confirms a payment (service.apply_trade → fees.mark_paid)."""
    with unit_of_work(session_factory) as session:
        case = session.scalar(select(Case).where(Case.tracking_no == number))
        assert case is not None
        fees.mark_paid(session, case_id=case.id, amount_fen=amount_fen, now=now)


def assert_fee_unpaid(response: Any, yuan: str) -> None:
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["type"].endswith("/fee-unpaid")
    assert problem["title"] == "费用未缴"
    assert problem["code"] == "fee_unpaid"
    assert [(e["field"], e["rule"]) for e in problem["errors"]] == [("fee", "fee_unpaid")]
    assert f"{yuan} 元" in problem["detail"] and "/api/v1/payments" in problem["detail"]


def test_a_granted_case_does_not_complete_until_its_fee_is_paid(client: TestClient, officers, session_factory,
                                                                clock) -> None:
    receipt = submit(client, REAL_ESTATE)
    number = receipt["tracking_no"]
    fee = fee_of(client, receipt)
    assert (fee["status"], fee["amount_fen"], fee["due"]) == ("due", 8000, "before_completion")
    assert "2559号" in fee["basis"] and fee["orders"] == []
    to_granted(client, officers, REAL_ESTATE, number)  # acceptance is not held up: due before completion
    assert_fee_unpaid(act(client, officers, REAL_ESTATE, "approver", number, "complete"), "80.00")
    pay(session_factory, number, 8000, clock.now())
    response = act(client, officers, REAL_ESTATE, "approver", number, "complete")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "completed"
    assert fee_of(client, receipt)["status"] == "paid"


def test_a_fee_due_before_acceptance_holds_up_acceptance(client: TestClient, officers, session_factory,
                                                        clock) -> None:
    receipt = submit(client, ID_CARD, form={**example_form(ID_CARD), "subsistence_allowance_exempt": False})
    number = receipt["tracking_no"]
    assert_fee_unpaid(act(client, officers, ID_CARD, "intake", number, "accept"), "20.00")
    # Nothing was recorded by the refused acceptance.
    view = client.get(f"/api/v1/applications/{number}", headers={"X-Query-Code": receipt["query_code"]}).json()
    assert view["state"] == "submitted" and [s["action"] for s in view["steps"]] == ["submit"]
    assert view["fee"] == {"amount_fen": 2000, "paid_fen": 0, "due": "before_acceptance", "status": "due",
                           "source": "hub"}
    pay(session_factory, number, 2000, clock.now())
    assert act(client, officers, ID_CARD, "intake", number, "accept").status_code == 200


def test_an_exempt_applicant_owes_nothing_and_is_not_held_up(client: TestClient, officers) -> None:
    receipt = submit(client, ID_CARD, form={**example_form(ID_CARD), "subsistence_allowance_exempt": True})
    fee = fee_of(client, receipt)
    assert (fee["status"], fee["amount_fen"]) == ("exempt", 0)
    assert "最低生活保障" in fee["exemption"]
    assert act(client, officers, ID_CARD, "intake", receipt["tracking_no"], "accept").status_code == 200


def test_a_per_unit_fee_counts_the_form_field(client: TestClient) -> None:
    receipt = submit(client, REAL_ESTATE, form={**example_form(REAL_ESTATE), "registration_units": 3})
    assert fee_of(client, receipt)["amount_fen"] == 3 * 8000


def test_a_denied_case_completes_without_paying(client: TestClient, officers) -> None:
    submitted = submit(client, REAL_ESTATE)
    number, query_code = submitted["tracking_no"], submitted["query_code"]
    receipt = {"tracking_no": number, "query_code": query_code}
    assert fee_of(client, receipt)["owed"] is True
    for role, action in (("intake", "accept"), ("reviewer", "review"), ("approver", "deny")):
        assert act(client, officers, REAL_ESTATE, role, number, action).status_code == 200
    assert fee_of(client, receipt)["owed"] is False
    assert act(client, officers, REAL_ESTATE, "approver", number, "complete").status_code == 200


def test_an_approver_waives_the_fee_with_a_reason_recorded_in_the_chain(client: TestClient, officers,
                                                                         session_factory) -> None:
    receipt = submit(client, REAL_ESTATE)
    number = receipt["tracking_no"]
    to_granted(client, officers, REAL_ESTATE, number)
    approver = officers.headers(officer_of(REAL_ESTATE, "approver"))
    response = client.post(f"/api/v1/cases/{number}/fee/waiver", json={"reason": "因灾免收，经局长批准"},
                           headers=approver)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["waived_reason"], body["waived_by"]) == (
        "waived", "因灾免收，经局长批准", officer_of(REAL_ESTATE, "approver"))
    assert act(client, officers, REAL_ESTATE, "approver", number, "complete").status_code == 200
    # The applicant sees the waiver, not who made it or why.
    applicant = fee_of(client, receipt)
    assert applicant["status"] == "waived" and applicant["waived_reason"] is None
    assert applicant["waived_by"] is None
    with session_factory() as session:
        case = session.scalar(select(Case).where(Case.tracking_no == number))
        events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                 .order_by(CaseEvent.seq)).all()
        waiver = next(e for e in events if e.action == "waive_fee")
        assert waiver.data["reason"] == "因灾免收，经局长批准" and waiver.to_state == "granted"
        assert case.last_event_hash == events[-1].hash
    # A second waiver: nothing is owed any more.
    again = client.post(f"/api/v1/cases/{number}/fee/waiver", json={"reason": "再次减免测试"}, headers=approver)
    assert again.status_code == 409


def test_only_an_approver_of_the_department_waives(client: TestClient, officers) -> None:
    number = submit(client, REAL_ESTATE)["tracking_no"]
    path = f"/api/v1/cases/{number}/fee/waiver"
    reviewer = client.post(path, json={"reason": "理由充分"},
                           headers=officers.headers(officer_of(REAL_ESTATE, "reviewer")))
    assert reviewer.status_code == 403
    other = client.post(path, json={"reason": "理由充分"},
                        headers=officers.headers(officer_of(ID_CARD, "approver")))
    assert other.status_code == 404  # another department's case is not even seen
    short = client.post(path, json={"reason": "太短"},
                        headers=officers.headers(officer_of(REAL_ESTATE, "approver")))
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "reason"
    assert client.post(path, json={"reason": "理由充分"}).status_code == 401


def test_the_fee_view_needs_the_query_code_or_an_officer(client: TestClient, officers) -> None:
    receipt = submit(client, REAL_ESTATE)
    path = f"/api/v1/cases/{receipt['tracking_no']}/fee"
    assert client.get(path).status_code == 404
    assert client.get(path, params={"query_code": "000000"}).status_code == 404
    by_header = client.get(path, headers={"X-Query-Code": receipt["query_code"]})
    assert by_header.status_code == 200 and by_header.json()["amount_yuan"] == "80.00"
    officer = client.get(path, headers=officers.headers(officer_of(REAL_ESTATE, "intake")))
    assert officer.status_code == 200 and officer.json()["status"] == "due"
    stranger = client.get(path, headers=officers.headers(officer_of(ID_CARD, "intake")))
    assert stranger.status_code == 404


def test_an_item_without_a_fee_has_none(client: TestClient, officers) -> None:
    receipt = submit(client, "physician-practice-registration", applicant=person())
    assert fee_of(client, receipt)["status"] == "none"
    view = client.get(f"/api/v1/cases/{receipt['tracking_no']}",
                      headers=officers.headers(officer_of("physician-practice-registration", "intake"))).json()
    assert view["fee"] is None


def test_a_case_without_an_assessment_is_assessed_when_first_needed(client: TestClient, officers,
                                                                    session_factory) -> None:
    """A case submitted before its item charged a fee (or before this release) has no row: the guard and the
    fee view assess it from the item then."""
    from sqlalchemy import delete

    from hub.payments.models import CaseFee

    receipt = submit(client, ID_CARD, form={**example_form(ID_CARD), "subsistence_allowance_exempt": False})
    number = receipt["tracking_no"]
    with unit_of_work(session_factory) as session:
        case_id = session.scalar(select(Case.id).where(Case.tracking_no == number))
        session.execute(delete(CaseFee).where(CaseFee.case_id == case_id))
    assert_fee_unpaid(act(client, officers, ID_CARD, "intake", number, "accept"), "20.00")
    assert fee_of(client, receipt)["status"] == "due"
