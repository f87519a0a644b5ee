"""Each department's progress on a joint case (hub/cases/progress.py): the applicant's status query, the lead
department's view of the joint case, a branch department's view and work queue."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.joint_support import BRANCH_DEPARTMENTS, BRANCH_INTAKE, LEAD_INTAKE, open_joint_case
from tests.support import submit

NAMES = {"registration": "沈阳市市场监督管理局", "seal_engraving": "沈阳市公安局",
         "tax_invoice": "国家税务总局沈阳市税务局", "social_insurance": "沈阳市人力资源和社会保障局"}


def test_the_applicant_sees_every_department_side_by_side(client: TestClient, officers) -> None:
    joint = open_joint_case(client, officers)
    response = client.get(f"/api/v1/applications/{joint.number}", headers={"X-Query-Code": joint.query_code})
    assert response.status_code == 200, response.text
    status = response.json()
    assert (status["state"], status["state_label"]) == ("in_branches", "并联审批中")
    lines = status["branches"]
    assert [line["branch"] for line in lines] == list(BRANCH_DEPARTMENTS)  # the definition's order
    assert {line["branch"]: line["department_name"] for line in lines} == NAMES
    for line in lines:
        assert (line["state_label"], line["current_step"], line["result"]) == ("同步预审", "同步预审", None)
        assert line["deadline"] is not None and line["statutory_deadline"] is not None
        assert line["deadline"] <= status["statutory_deadline"]  # every branch within the joint case's limit
    assert status["applicant_name"] == "张**"  # masked as every applicant view


def test_a_branch_line_follows_its_departments_steps(client: TestClient, officers) -> None:
    joint = open_joint_case(client, officers)
    number = joint.branches["social_insurance"]
    response = client.post(f"/api/v1/cases/{number}/actions", json={"action": "pass_pre_review"},
                           headers=officers.headers(BRANCH_INTAKE["social_insurance"]))
    assert response.status_code == 200, response.text
    status = client.get(f"/api/v1/applications/{joint.number}", headers={"X-Query-Code": joint.query_code}).json()
    line = next(line for line in status["branches"] if line["branch"] == "social_insurance")
    assert (line["state"], line["state_label"], line["current_step"]) == ("under_review", "审核中", "审核")
    others = {line["state"] for line in status["branches"] if line["branch"] != "social_insurance"}
    assert others == {"pre_review"}


def test_a_branch_department_sees_the_joint_case_number_and_only_its_part_of_the_form(
        client: TestClient, officers) -> None:
    joint = open_joint_case(client, officers)
    headers = officers.headers(BRANCH_INTAKE["social_insurance"])
    view = client.get(f"/api/v1/cases/{joint.branches['social_insurance']}", headers=headers).json()
    assert (view["branch"], view["parent_tracking_no"], view["branches"]) == ("social_insurance", joint.number, [])
    assert set(view["form"]) == {"enterprise_name", "domicile", "legal_representative", "social_insurance"}
    assert view["department"] == BRANCH_DEPARTMENTS["social_insurance"]
    assert view["applicant_name"] == "张三丰"  # the handling department sees the applicant unmasked

    queue = client.get("/api/v1/cases/queue", headers=headers).json()
    entry = next(e for e in queue["entries"] if e["tracking_no"] == joint.branches["social_insurance"])
    assert (entry["branch"], entry["parent_tracking_no"]) == ("social_insurance", joint.number)


def test_the_lead_department_sees_the_whole_form_and_every_branch(client: TestClient, officers) -> None:
    joint = open_joint_case(client, officers)
    view = client.get(f"/api/v1/cases/{joint.number}", headers=officers.headers(LEAD_INTAKE)).json()
    assert {"shareholders", "seal_engraving", "tax_registration", "social_insurance"} <= set(view["form"])
    assert {line["branch"]: line["tracking_no"] for line in view["branches"]} == joint.branches
    assert (view["branch"], view["parent_tracking_no"]) == (None, None)


def test_a_single_case_has_no_branches(client: TestClient) -> None:
    receipt = submit(client, "physician-practice-registration")
    status = client.get(f"/api/v1/applications/{receipt['tracking_no']}",
                        headers={"X-Query-Code": receipt["query_code"]}).json()
    assert (status["branch"], status["parent_tracking_no"], status["branches"]) == (None, None, [])
