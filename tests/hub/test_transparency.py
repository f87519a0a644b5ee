"""Public disclosure: every case's steps and result, personal data masked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from hub.cases.models import Case
from hub.db import unit_of_work
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


# --- issue 7: identifier-keyed masking, redacted free text, China time, Chinese results -------------------


@pytest.fixture
def as_partner_record(session_factory: sessionmaker[Session]) -> Iterator[Any]:
    """Makes a case look as a partner record of applicant type 9 lands (the type and ID type are the
    record's claims); puts the case back afterwards so the shared database stays as the hub wrote it."""
    changed: list[tuple[str, dict[str, Any]]] = []

    def as_partner_record(number: str, **values: Any) -> None:
        with unit_of_work(session_factory) as session:
            case = session.scalars(select(Case).where(Case.tracking_no == number)).one()
            changed.append((number, {k: getattr(case, k) for k in values}))
            session.execute(update(Case).where(Case.tracking_no == number).values(**values))

    yield as_partner_record
    with unit_of_work(session_factory) as session:
        for number, original in changed:
            session.execute(update(Case).where(Case.tracking_no == number).values(**original))


@pytest.mark.parametrize("claimed_id_type", ["citizen_id", "credit_code", "other"])
def test_a_citizen_id_on_a_record_of_applicant_type_9_is_masked(client: TestClient, as_partner_record: Any,
                                                                claimed_id_type: str) -> None:
    number_id = citizen_id(seq=459)
    receipt = submit(client, KEY, applicant=person(name="赵小六", id_number=number_id))
    as_partner_record(receipt["tracking_no"], applicant_type="9", applicant_id_type=claimed_id_type,
                      origin="partner", channel="partner")
    response = client.get(f"/api/v1/transparency/cases/{receipt['tracking_no']}")
    body = response.json()
    assert body["applicant_id_number"] == number_id[:6] + "********" + number_id[-4:]
    assert body["applicant_name"] == "赵**"
    assert number_id not in response.text and "赵小六" not in response.text
    listed = client.get("/api/v1/transparency/cases", params={"region": "210100", "limit": 100}).text
    assert number_id not in listed and "赵小六" not in listed
    status = client.get(f"/api/v1/applications/{receipt['tracking_no']}",
                        headers={"X-Query-Code": receipt["query_code"]})
    assert number_id not in status.text and "赵小六" not in status.text  # the applicant's view too


def test_a_credit_code_is_shown_as_a_credit_code(client: TestClient) -> None:
    applicant = company()
    body = client.get(f"/api/v1/transparency/cases/{submit(client, 'food-business-licence', applicant)['tracking_no']}"
                      ).json()
    assert (body["applicant_name"], body["applicant_id_number"]) == (applicant["name"], applicant["id_number"])


def test_opinions_are_redacted_and_applicants_own_texts_withheld(client: TestClient, officers) -> None:
    receipt = submit(client, KEY, applicant=person(name="张晓明", phone="13900002222"))
    number, code = receipt["tracking_no"], {"X-Query-Code": receipt["query_code"]}
    opinion = "张晓明 13812345678 11010519491231002X"
    response = client.post(f"/api/v1/cases/{number}/actions", json={"action": "request_supplement", "opinion": opinion},
                           headers=officers.headers(officer_of(KEY, "intake")))
    assert response.status_code == 200, response.text
    note = client.post(f"/api/v1/applications/{number}/supplement", headers=code,
                       json={"note": "已补交，联系我13900002222，地址和平区三好街"})
    assert note.status_code == 200, note.text

    response = client.get(f"/api/v1/transparency/cases/{number}")
    steps = response.json()["steps"]
    assert [s["action"] for s in steps] == ["submit", "request_supplement", "supplement"]
    assert steps[1]["opinion"] == "张** 138****5678 110105********002X"
    assert steps[2]["opinion"] is None  # the applicant's own text is not published
    for secret in ("张晓明", "13812345678", "11010519491231002X", "13900002222", "三好街"):
        assert secret not in response.text


def test_times_are_china_standard_time_and_results_chinese(client: TestClient, officers) -> None:
    number = submit(client, KEY)["tracking_no"]
    for role, action, opinion in (("intake", "accept", None), ("reviewer", "review", "材料齐全"),
                                  ("approver", "grant", "准予许可"), ("approver", "complete", None)):
        response = client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": opinion},
                               headers=officers.headers(officer_of(KEY, role)))
        assert response.status_code == 200, response.text
    body = client.get(f"/api/v1/transparency/cases/{number}").json()
    assert (body["result"], body["result_code"], body["state_label"]) == ("准予许可", "granted", "已办结")
    assert body["submitted_at"] == "2026-03-11T10:00:00+08:00"  # the fixed clock: 02:00 UTC
    assert body["completed_at"].endswith("+08:00")
    assert all(step["at"].endswith("+08:00") for step in body["steps"])


def test_a_withdrawn_case_reads_as_withdrawn(client: TestClient) -> None:
    receipt = submit(client, KEY)
    response = client.post(f"/api/v1/applications/{receipt['tracking_no']}/withdraw",
                           headers={"X-Query-Code": receipt["query_code"]}, json={"reason": "本人13900003333不办了"})
    assert response.status_code == 200, response.text
    body = client.get(f"/api/v1/transparency/cases/{receipt['tracking_no']}").json()
    assert (body["result"], body["result_code"]) == ("已撤回", "withdrawn")
    assert body["steps"][-1]["opinion"] is None


# --- issue 9: a joint case's departments side by side --------------------------------------------------


def test_a_joint_case_discloses_every_department_side_by_side(client: TestClient, officers) -> None:
    from tests.joint_support import BRANCH_DEPARTMENTS, open_joint_case

    joint = open_joint_case(client, officers, name="王小明")
    response = client.get(f"/api/v1/transparency/cases/{joint.number}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["applicant_name"] == "王**" and "王小明" not in response.text
    assert (body["branch"], body["parent_tracking_no"]) == (None, None)
    lines = {line["branch"]: line for line in body["branches"]}
    assert {name: line["department"] for name, line in lines.items()} == BRANCH_DEPARTMENTS
    assert lines["tax_invoice"]["department_name"] == "国家税务总局沈阳市税务局"
    assert lines["seal_engraving"]["label"] == "公章刻制（公安）"
    for line in lines.values():
        assert (line["state"], line["state_label"], line["current_step"]) == ("pre_review", "同步预审", "同步预审")
        assert line["deadline"] and line["tracking_no"] == joint.branches[line["branch"]]
        assert line["suspended"] is False


def test_a_disclosed_branch_names_its_joint_case(client: TestClient, officers) -> None:
    from tests.joint_support import open_joint_case

    joint = open_joint_case(client, officers)
    body = client.get(f"/api/v1/transparency/cases/{joint.branches['social_insurance']}").json()
    assert (body["branch"], body["parent_tracking_no"], body["branches"]) == ("social_insurance", joint.number, [])
    assert body["department_name"] == "沈阳市人力资源和社会保障局"
    assert body["applicant_name"] == "张**"


def test_a_departments_request_is_redacted_in_public_and_the_merged_notice_is_the_systems(
        client: TestClient, officers) -> None:
    from tests.joint_support import BRANCH_INTAKE, open_joint_case

    joint = open_joint_case(client, officers, name="李四海")
    request = "请李四海补充印模，联系电话13812345678"
    for branch, number in joint.branches.items():
        action = "request_supplement" if branch == "seal_engraving" else "pass_pre_review"
        response = client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": request},
                               headers=officers.headers(BRANCH_INTAKE[branch]))
        assert response.status_code == 200, response.text
        if branch == "seal_engraving":  # the others are still pre-reviewing: the line is there already
            public = client.get(f"/api/v1/transparency/cases/{joint.number}")
            line = next(b for b in public.json()["branches"] if b["branch"] == branch)
            assert line["supplement_request"] == "请李**补充印模，联系电话138****5678"
            assert "13812345678" not in public.text and "李四海" not in public.text
    body = client.get(f"/api/v1/transparency/cases/{joint.number}").json()
    notice = [s for s in body["steps"] if s["action"] == "notify_supplement"]
    assert len(notice) == 1 and notice[0]["actor"] == "系统" and notice[0]["label"] == "合并告知补正"
    assert "138****5678" in notice[0]["opinion"] and "李四海" not in notice[0]["opinion"]
