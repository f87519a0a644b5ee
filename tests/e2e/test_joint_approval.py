"""Issue 9's "Done when": an enterprise-establishment case runs end to end over HTTP with four departments
acting in parallel — one intake by the lead department (market supervision), synchronous pre-review by
registration, seal engraving (public security), tax/invoice (tax) and social insurance (human resources),
ONE merged supplement notice when two departments ask (the whole case's clock stops until the applicant
supplements, Art. 32), an Art. 45 special procedure on one branch (its time is not counted: the branch's and
the parent's deadlines move), an Art. 42 extension (joint handling: 15 working days, Art. 26), and the join:
all granted → the lead department completes; one branch denies → the case is denied with that department's
reasons.

Officers find their branch cases in their own work queue and act on them with the actions their view
offers, as a department's front end would; the applicant follows every department side by side through the
status query, the public through the disclosure (personal data masked).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from fastapi.testclient import TestClient

from hub.calendar.service import load_calendar
from hub.clock import FixedClock
from hub.seed.service import read_seed
from tests.conftest import DEMO_PASSWORD
from tests.support import person, submit

KEY = "enterprise-establishment"
LEAD = "210100001"
BRANCHES = {"registration": "210100001", "seal_engraving": "210100002", "tax_invoice": "210100011",
            "social_insurance": "210100009"}
DEPARTMENT_NAMES = {"210100001": "沈阳市市场监督管理局", "210100002": "沈阳市公安局",
                    "210100011": "国家税务总局沈阳市税务局", "210100009": "沈阳市人力资源和社会保障局"}
ROLE_ORDER = ("intake", "reviewer", "approver")
APPLICANT_NAME = "张三丰"


def officers_of(department: str) -> dict[str, str]:
    """role → username of the department's demo officers."""
    found: dict[str, str] = {}
    for row in read_seed("officers"):
        if row["region"] + row["department"] == department:
            for role in row["roles"]:
                found.setdefault(role, row["username"])
    return found


class Desk:
    """The officers' and the applicant's side of the counter: signs officers in (again after the test
    moves the clock past their tokens' lifetime) and acts as whoever the case's view offers the action to."""

    def __init__(self, client: TestClient, clock: FixedClock) -> None:
        self.client = client
        self.clock = clock
        self._tokens: dict[str, str] = {}

    def advance(self, days: int) -> None:
        self.clock.advance(days=days)
        self._tokens.clear()  # bearer tokens live 30 minutes

    def headers(self, username: str) -> dict[str, str]:
        if username not in self._tokens:
            response = self.client.post("/api/v1/auth/token",
                                        data={"username": username, "password": DEMO_PASSWORD})
            assert response.status_code == 200, response.text
            self._tokens[username] = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._tokens[username]}"}

    def view(self, username: str, number: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/cases/{number}", headers=self.headers(username))
        assert response.status_code == 200, (username, number, response.text)
        return dict(response.json())

    def post(self, username: str, number: str, action: str, opinion: str | None = "符合条件",
             data: dict[str, Any] | None = None) -> Any:
        body: dict[str, Any] = {"action": action, "opinion": opinion}
        if data is not None:
            body["data"] = data
        return self.client.post(f"/api/v1/cases/{number}/actions", json=body, headers=self.headers(username))

    def act(self, department: str, number: str, action: str, opinion: str | None = "符合条件",
            data: dict[str, Any] | None = None, *, role: str | None = None) -> dict[str, Any]:
        """``action`` on case ``number`` by the department's officer whose view offers it (or, for the
        law's clock actions, by the officer of ``role``)."""
        staff = officers_of(department)
        if role is None:
            offered = [staff[r] for r in ROLE_ORDER if r in staff
                       and action in self.view(staff[r], number)["available_actions"]]
            assert offered, f"no officer of {department} is offered {action} on {number}"
            username = offered[0]
        else:
            username = staff[role]
        response = self.post(username, number, action, opinion, data)
        assert response.status_code == 200, (department, number, action, response.text)
        return dict(response.json())

    def status(self, number: str, query_code: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/applications/{number}", headers={"X-Query-Code": query_code})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def disclosure(self, number: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/transparency/cases/{number}")
        assert response.status_code == 200, response.text
        return dict(response.json())


def open_joint_case(desk: Desk) -> tuple[dict[str, Any], str, dict[str, str]]:
    """Submit, accept at the lead department's window; returns the receipt, the parent's joint state and
    branch name → the branch case's own tracking number, as each department finds it in its queue."""
    receipt = submit(desk.client, KEY, applicant=person(name=APPLICANT_NAME))
    assert receipt["state"] == "submitted"
    accepted = desk.act(LEAD, receipt["tracking_no"], "accept", role="intake")
    joint_state = accepted["state"]
    parent = desk.view(officers_of(LEAD)["intake"], receipt["tracking_no"])
    numbers = {b["branch"]: b["tracking_no"] for b in parent["branches"]}
    assert set(numbers) == set(BRANCHES)
    assert {b["branch"]: b["department"] for b in parent["branches"]} == BRANCHES
    assert len(set(numbers.values()) | {receipt["tracking_no"]}) == 5  # each branch its own number
    for branch, department in BRANCHES.items():
        queued = set()
        for username in officers_of(department).values():
            response = desk.client.get("/api/v1/cases/queue", headers=desk.headers(username))
            assert response.status_code == 200, response.text
            queued |= {e["tracking_no"] for e in response.json()["entries"]}
        assert numbers[branch] in queued, (branch, department)
        view = desk.view(officers_of(department)["intake"], numbers[branch])
        assert view["parent_tracking_no"] == receipt["tracking_no"]
        assert view["branch"] == branch
    return receipt, joint_state, numbers


def test_enterprise_establishment_runs_end_to_end_with_four_departments_in_parallel(
        client: TestClient, clock: FixedClock, session) -> None:
    desk = Desk(client, clock)
    calendar = load_calendar(session)
    receipt, joint_state, numbers = open_joint_case(desk)
    parent_no, code = receipt["tracking_no"], receipt["query_code"]

    # Each department sees only its part of the consolidated form.
    seal_form = desk.view(officers_of(BRANCHES["seal_engraving"])["intake"], numbers["seal_engraving"])["form"]
    assert "seal_engraving" in seal_form and "tax_registration" not in seal_form and "shareholders" not in seal_form
    tax_form = desk.view(officers_of(BRANCHES["tax_invoice"])["intake"], numbers["tax_invoice"])["form"]
    assert "tax_registration" in tax_form and "seal_engraving" not in tax_form

    # Synchronous pre-review, interleaved: two departments ask for more, two pass.
    seal_request = "请补充印章刻制的印模样式及法定代表人签字确认"
    social_request = "请补充拟参保职工花名册"
    desk.act(BRANCHES["seal_engraving"], numbers["seal_engraving"], "request_supplement", seal_request)
    desk.act(BRANCHES["registration"], numbers["registration"], "pass_pre_review")
    status = desk.status(parent_no, code)
    assert not [s for s in status["steps"] if s["action"] == "notify_supplement"]  # others still pre-reviewing
    desk.act(BRANCHES["tax_invoice"], numbers["tax_invoice"], "pass_pre_review")
    desk.act(BRANCHES["social_insurance"], numbers["social_insurance"], "request_supplement", social_request)

    # ONE merged notice to the applicant, listing both departments' requests; the whole case's clock stops.
    status = desk.status(parent_no, code)
    notices = [s for s in status["steps"] if s["action"] == "notify_supplement"]
    assert len(notices) == 1
    assert seal_request in json.dumps(status, ensure_ascii=False)
    assert social_request in json.dumps(status, ensure_ascii=False)
    assert status["state"] != joint_state and "supplement" in status["applicant_actions"]
    assert status["suspended"] is True
    progress = {b["branch"]: b for b in status["branches"]}
    assert all(progress[b]["suspended"] for b in BRANCHES), progress
    assert {b: progress[b]["department_name"] for b in BRANCHES} == {
        b: DEPARTMENT_NAMES[d] for b, d in BRANCHES.items()}

    # The applicant supplements once: every clock runs again; the two branches pre-review again.
    response = client.post(f"/api/v1/applications/{parent_no}/supplement", json={"note": "已补充印模及职工花名册"},
                           headers={"X-Query-Code": code})
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["state"] == joint_state and status["suspended"] is False
    desk.act(BRANCHES["seal_engraving"], numbers["seal_engraving"], "pass_pre_review")
    desk.act(BRANCHES["social_insurance"], numbers["social_insurance"], "pass_pre_review")

    # Art. 45: an inspection on the tax branch stops its clock and the parent's; nothing else moves it meanwhile.
    tax = BRANCHES["tax_invoice"]
    tax_before = desk.view(officers_of(tax)["reviewer"], numbers["tax_invoice"])
    lead_before = desk.view(officers_of(LEAD)["intake"], parent_no)
    desk.act(tax, numbers["tax_invoice"], "start_special_procedure", "发票申领前实地核查经营场所",
             {"kind": "inspection", "declared_days": 3}, role="reviewer")
    refused = desk.post(officers_of(tax)["reviewer"], numbers["tax_invoice"], "review")
    assert refused.status_code == 409, refused.text
    desk.advance(days=2)  # Wednesday → Friday: two working days not counted
    desk.act(tax, numbers["tax_invoice"], "end_special_procedure", "核查完毕", {"result": "经营场所属实"},
             role="reviewer")
    tax_after = desk.view(officers_of(tax)["reviewer"], numbers["tax_invoice"])
    lead_after = desk.view(officers_of(LEAD)["intake"], parent_no)
    assert tax_after["deadline"] == calendar.add_working_days(_day(tax_before["deadline"]), 2).isoformat()
    assert lead_after["deadline"] == calendar.add_working_days(_day(lead_before["deadline"]), 2).isoformat()
    assert lead_after["statutory_deadline"] == calendar.add_working_days(
        _day(lead_before["statutory_deadline"]), 2).isoformat()
    assert tax_after["state"] == tax_before["state"]  # clock actions do not move the case

    # Art. 42 (joint handling, Art. 26): the lead approver extends the whole case once, by 15 working days.
    desk.act(LEAD, parent_no, "extend", "四部门联办，涉税事项需延长办理期限", role="approver")
    extended = desk.view(officers_of(LEAD)["intake"], parent_no)
    assert extended["statutory_deadline"] == calendar.add_working_days(
        _day(lead_after["statutory_deadline"]), 15).isoformat()
    again = desk.post(officers_of(LEAD)["approver"], parent_no, "extend", "再次延长")
    assert again.status_code in (409, 422), again.text

    # Every department reviews and grants, interleaved; the join fires on the last grant only.
    for action in ("review", "grant"):
        for branch, department in BRANCHES.items():
            assert desk.status(parent_no, code)["state"] == joint_state
            desk.act(department, numbers[branch], action)
    status = desk.status(parent_no, code)
    assert status["state"] == "granted"
    assert [s["action"] for s in status["steps"]].count("join_granted") == 1
    assert {b["branch"]: b["state"] for b in status["branches"]} == dict.fromkeys(BRANCHES, "granted")

    # The lead department completes (办结) and issues the combined result.
    desk.act(LEAD, parent_no, "complete", "四证合一，联办结果已送达")
    status = desk.status(parent_no, code)
    assert (status["state"], status["result"]) == ("completed", "granted")
    for branch, department in BRANCHES.items():  # a finished case accepts no further action
        view = desk.view(officers_of(department)["approver"], numbers[branch])
        assert view["available_actions"] == []

    # The public sees each department's progress side by side, the applicant masked.
    public = desk.disclosure(parent_no)
    assert {b["branch"]: b["department_name"] for b in public["branches"]} == {
        b: DEPARTMENT_NAMES[d] for b, d in BRANCHES.items()}
    assert public["applicant_name"] == "张**"
    text = json.dumps(public, ensure_ascii=False)
    assert APPLICANT_NAME not in text and "刘思远" not in text and "13812345678" not in text


def test_one_department_denying_denies_the_joint_case_with_its_reasons(
        client: TestClient, clock: FixedClock) -> None:
    desk = Desk(client, clock)
    receipt, joint_state, numbers = open_joint_case(desk)
    parent_no, code = receipt["tracking_no"], receipt["query_code"]
    reason = "拟刻制印章的名称与拟登记企业名称不一致"

    for branch, department in BRANCHES.items():
        desk.act(department, numbers[branch], "pass_pre_review")
    for branch, department in BRANCHES.items():
        desk.act(department, numbers[branch], "review")
    for branch in ("registration", "tax_invoice", "social_insurance"):
        desk.act(BRANCHES[branch], numbers[branch], "grant")
    assert desk.status(parent_no, code)["state"] == joint_state  # the join waits for every branch
    desk.act(BRANCHES["seal_engraving"], numbers["seal_engraving"], "deny", reason)

    status = desk.status(parent_no, code)
    assert (status["state"], status["result"]) == ("denied", "denied")
    joins = [s for s in status["steps"] if s["action"] == "join_denied"]
    assert len(joins) == 1
    assert reason in json.dumps(status, ensure_ascii=False)
    progress = {b["branch"]: b for b in status["branches"]}
    assert progress["seal_engraving"]["state"] == "denied"
    assert progress["seal_engraving"]["department_name"] == "沈阳市公安局"

    desk.act(LEAD, parent_no, "complete", "联办不予许可，已告知申请人理由")
    status = desk.status(parent_no, code)
    assert (status["state"], status["result"]) == ("completed", "denied")
    public = desk.disclosure(parent_no)
    assert public["result_code"] == "denied"
    assert {b["branch"]: b["state"] for b in public["branches"]}["seal_engraving"] == "denied"


def _day(value: str) -> date:
    return date.fromisoformat(value)
