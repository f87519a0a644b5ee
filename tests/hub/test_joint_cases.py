"""Joint approval (联合审批, Administrative Licensing Law Art. 26) over HTTP: the lead department's intake opens
one child case per co-department; each department sees and acts on its own branch only; the join fires once;
any denial denies the whole with every department's reasons; supplement requests go out as one merged notice
(Art. 32) that stops every clock; the applicant's withdrawal withdraws every open branch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub import refcache
from hub.audit.service import verify
from hub.auth.models import Officer
from hub.cases import service
from hub.cases.models import Case, CaseEvent
from hub.clock import FixedClock
from hub.db import unit_of_work
from hub.outbox.models import OutboxMessage
from hub.settings import DEV_AUDIT_KEY
from hub.supervision.models import Alert
from tests.conftest import Officers
from tests.support import company, submit

KEY = "enterprise-establishment"  # 沈阳市市场监管局 leads; 公安, 税务, 人社 take part
SINGLE = "physician-practice-registration"  # a single-department item (沈阳市卫健委)
WORKFLOW = "enterprise-establishment.v1"
BRANCHES = {  # branch -> (department key, the department's officers' prefix)
    "registration": ("210100001", "sy_scjg"),
    "seal_engraving": ("210100002", "sy_ga"),
    "tax_invoice": ("210100011", "sy_sw"),
    "social_insurance": ("210100009", "sy_rs"),
}
LEAD_INTAKE, LEAD_APPROVER = "sy_scjg_intake", "sy_scjg_approver"


@pytest.fixture(scope="module", autouse=True)
def joint_item(engine: Engine) -> None:
    """The seed's enterprise-establishment item as a joint item: its definition and its branches' departments
    (what hub/seed/data/items.json holds once the catalogue part lands; a no-op then)."""
    with engine.begin() as connection:
        row = connection.execute(text("SELECT guide, workflow_id FROM items WHERE key = :key"), {"key": KEY}).one()
        guide = row.guide if isinstance(row.guide, dict) else __import__("json").loads(row.guide)
        wanted = {name: department for name, (department, _) in BRANCHES.items()}
        if row.workflow_id == WORKFLOW and guide.get("branches") == wanted:
            return
        guide["branches"] = wanted
        connection.execute(
            text("UPDATE items SET workflow_id = :workflow, guide = :guide WHERE key = :key"),
            {"workflow": WORKFLOW, "guide": __import__("json").dumps(guide, ensure_ascii=False), "key": KEY},
        )
    refcache.invalidate(engine, [refcache.ITEMS])


# --- helpers ----------------------------------------------------------------------------------------


def act(client: TestClient, officers: Officers, username: str, number: str, action: str,
        opinion: str | None = "同意") -> Any:
    return client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": opinion},
                       headers=officers.headers(username))


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


def officer(branch: str, role: str) -> str:
    return f"{BRANCHES[branch][1]}_{role}"


def applicant_post(client: TestClient, receipt: dict[str, Any], what: str, body: dict[str, Any]) -> Any:
    return client.post(f"/api/v1/applications/{receipt['tracking_no']}/{what}", json=body,
                       headers={"X-Query-Code": receipt["query_code"]})


def status(client: TestClient, receipt: dict[str, Any]) -> dict[str, Any]:
    return ok(client.get(f"/api/v1/applications/{receipt['tracking_no']}",
                         headers={"X-Query-Code": receipt["query_code"]}))


def children(session_factory: sessionmaker[Session], number: str) -> dict[str, Case]:
    with session_factory() as session:
        parent = session.scalars(select(Case).where(Case.tracking_no == number)).one()
        rows = session.scalars(select(Case).where(Case.parent_id == parent.id)).all()
        for row in rows:
            session.expunge(row)
        return {str(row.branch): row for row in rows}


def events(session_factory: sessionmaker[Session], number: str) -> list[CaseEvent]:
    with session_factory() as session:
        rows = list(session.scalars(select(CaseEvent).join(Case, Case.id == CaseEvent.case_id)
                                    .where(Case.tracking_no == number).order_by(CaseEvent.seq)).unique())
        for row in rows:
            session.expunge(row)
        return rows


@pytest.fixture
def accepted(client: TestClient, officers: Officers,
             session_factory: sessionmaker[Session]) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """A joint case accepted by the lead department: (the applicant's receipt, branch -> branch case number)."""
    receipt = submit(client, KEY, applicant=company())
    ok(act(client, officers, LEAD_INTAKE, receipt["tracking_no"], "accept"))
    yield receipt, {name: row.tracking_no for name, row in children(session_factory, receipt["tracking_no"]).items()}


def through_review(client: TestClient, officers: Officers, branch: str, number: str) -> None:
    ok(act(client, officers, officer(branch, "reviewer"), number, "pass_pre_review"))
    ok(act(client, officers, officer(branch, "reviewer"), number, "review", "审核通过"))


def decide(client: TestClient, officers: Officers, branch: str, number: str, action: str,
           opinion: str = "准予") -> dict[str, Any]:
    through_review(client, officers, branch, number)
    return ok(act(client, officers, officer(branch, "approver"), number, action, opinion))


def assert_chains_verify(session_factory: sessionmaker[Session], *numbers: str) -> None:
    """Every event of each case sealed over its row as the action left it (hub/audit/service.py)."""
    with session_factory() as session:
        for number in numbers:
            checked, findings = verify(session, key=DEV_AUDIT_KEY, tracking_no=number)
            assert checked >= 1 and findings == [], (number, findings)


def queue(client: TestClient, officers: Officers, username: str) -> set[str]:
    body = ok(client.get("/api/v1/cases/queue", params={"limit": 500}, headers=officers.headers(username)))
    return {entry["tracking_no"] for entry in body["entries"]}


def parent_state(client: TestClient, officers: Officers, number: str) -> str:
    return str(ok(client.get(f"/api/v1/cases/{number}", headers=officers.headers(LEAD_INTAKE)))["state"])


# --- intake opens the branches ----------------------------------------------------------------------


def test_intake_opens_one_child_case_per_department(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session],
) -> None:
    receipt = submit(client, KEY, applicant=company())
    number = receipt["tracking_no"]
    assert receipt["state"] == "submitted"
    answer = ok(act(client, officers, LEAD_INTAKE, number, "accept"))
    assert answer["state"] == "in_branches"
    rows = children(session_factory, number)
    assert set(rows) == set(BRANCHES)
    with session_factory() as session:
        parent = session.scalars(select(Case).where(Case.tracking_no == number)).one()
        assert parent.workflow_id == WORKFLOW
        for name, row in rows.items():
            assert row.parent_id == parent.id
            assert row.department_id != parent.department_id or name == "registration"
            department = session.get(Case, row.id).department  # type: ignore[union-attr]
            assert department.key == BRANCHES[name][0]
            assert row.workflow_id == "joint-branch.v1"
            assert row.state == "pre_review"
            assert row.tracking_no != number and row.tracking_no.startswith("210100")
            assert row.accepted_on == parent.accepted_on
            assert row.applicant_id_number == parent.applicant_id_number
        # Each branch sees its part of the form only: the police do not get the tax registration.
        assert "seal_engraving" in rows["seal_engraving"].form_data
        assert "tax_registration" not in rows["seal_engraving"].form_data
        assert "social_insurance" not in rows["tax_invoice"].form_data
    first = events(session_factory, rows["tax_invoice"].tracking_no)[0]
    assert (first.action, first.actor_type, first.actor_id) == ("open_branch", "officer", LEAD_INTAKE)
    assert first.data["parent_tracking_no"] == number
    with session_factory() as session:
        opened = [m.payload for m in session.scalars(select(OutboxMessage).where(
            OutboxMessage.type == "case.branch_opened.v1",
            OutboxMessage.correlation_id.in_([row.tracking_no for row in rows.values()])))]
    assert sorted(p["branch"] for p in opened) == sorted(BRANCHES)
    assert {p["parent_tracking_no"] for p in opened} == {number}


def test_every_case_of_the_joint_case_keeps_a_valid_chain(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session],
    accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    receipt, numbers = accepted
    decide(client, officers, "seal_engraving", numbers["seal_engraving"], "grant")
    assert_chains_verify(session_factory, receipt["tracking_no"], *numbers.values())


# --- who sees what ----------------------------------------------------------------------------------


def test_each_department_sees_and_acts_on_its_own_branch_only(
    client: TestClient, officers: Officers, accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    receipt, numbers = accepted
    police = officers.headers(officer("seal_engraving", "reviewer"))
    assert client.get(f"/api/v1/cases/{numbers['seal_engraving']}", headers=police).status_code == 200
    own = ok(client.get(f"/api/v1/cases/{numbers['seal_engraving']}", headers=police))
    assert own["available_actions"] == ["pass_pre_review", "request_supplement"]
    # Another department's branch, and the parent, are answered like unknown numbers.
    for number in (numbers["tax_invoice"], receipt["tracking_no"]):
        assert client.get(f"/api/v1/cases/{number}", headers=police).status_code == 404
        assert act(client, officers, officer("seal_engraving", "reviewer"), number,
                   "pass_pre_review").status_code == 404
    assert ok(act(client, officers, officer("seal_engraving", "reviewer"), numbers["seal_engraving"],
                  "pass_pre_review"))["state"] == "under_review"


def test_the_lead_intake_officer_sees_the_parent_and_every_branch_but_acts_on_none(
    client: TestClient, officers: Officers, accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    receipt, numbers = accepted
    lead = officers.headers(LEAD_INTAKE)
    assert ok(client.get(f"/api/v1/cases/{receipt['tracking_no']}", headers=lead))["state"] == "in_branches"
    view = ok(client.get(f"/api/v1/cases/{numbers['tax_invoice']}", headers=lead))
    assert view["available_actions"] == []
    assert act(client, officers, LEAD_INTAKE, numbers["tax_invoice"], "pass_pre_review").status_code == 403
    # Another department's reviewer sees nothing of the lead's parent.
    other = officers.headers(officer("social_insurance", "intake"))
    assert client.get(f"/api/v1/cases/{receipt['tracking_no']}", headers=other).status_code == 404


def test_branch_cases_are_in_their_departments_queues(
    client: TestClient, officers: Officers, accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    receipt, numbers = accepted

    assert numbers["tax_invoice"] in queue(client, officers, officer("tax_invoice", "reviewer"))
    assert numbers["tax_invoice"] not in queue(client, officers, officer("seal_engraving", "reviewer"))
    # Nothing to decide yet for the approver.
    assert numbers["tax_invoice"] not in queue(client, officers, officer("tax_invoice", "approver"))
    through_review(client, officers, "tax_invoice", numbers["tax_invoice"])
    assert numbers["tax_invoice"] in queue(client, officers, officer("tax_invoice", "approver"))
    assert numbers["tax_invoice"] not in queue(client, officers, officer("tax_invoice", "reviewer"))
    # The parent waits for the branches: nobody of the lead department has anything to do on it.
    assert receipt["tracking_no"] not in queue(client, officers, LEAD_INTAKE)


# --- the join -----------------------------------------------------------------------------------------


def test_join_fires_once_when_every_branch_is_granted_then_the_lead_completes(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session],
    accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    receipt, numbers = accepted
    number = receipt["tracking_no"]
    names = list(BRANCHES)
    for name in names[:-1]:
        decide(client, officers, name, numbers[name], "grant")
        assert parent_state(client, officers, number) == "in_branches"
    last = decide(client, officers, names[-1], numbers[names[-1]], "grant")
    assert last["state"] == "granted"
    assert parent_state(client, officers, number) == "granted"
    joins = [e for e in events(session_factory, number) if e.action.startswith("join_")]
    assert [(e.action, e.actor_type) for e in joins] == [("join_granted", "system")]
    assert {entry["branch"] for entry in joins[0].data["branches"]} == set(BRANCHES)
    # A granted branch takes no second decision; the join does not fire again.
    again = act(client, officers, officer(names[0], "approver"), numbers[names[0]], "grant")
    assert again.status_code == 409
    assert again.json()["type"].endswith("action-not-available")
    assert [e.action for e in events(session_factory, number)].count("join_granted") == 1
    done = ok(act(client, officers, LEAD_APPROVER, number, "complete"))
    assert done["state"] == "completed"
    body = status(client, receipt)
    assert (body["state"], body["result"]) == ("completed", "granted")
    # Run as the law wants it, the joint case gives electronic supervision nothing to report: a branch opened by
    # the lead department's acceptance is not an action outside the branch department's scope.
    with session_factory() as session:
        ids = [session.scalars(select(Case.id).where(Case.tracking_no == n)).one() for n in (number, *numbers.values())]
        found = session.execute(select(Alert.rule).where(Alert.case_id.in_(ids), Alert.kind == "procedure")).all()
    assert found == []


def test_any_denial_denies_the_whole_case_with_every_departments_reasons(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session],
    accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    receipt, numbers = accepted
    number = receipt["tracking_no"]
    decide(client, officers, "seal_engraving", numbers["seal_engraving"], "deny", "法定代表人身份信息不符")
    decide(client, officers, "registration", numbers["registration"], "grant")
    decide(client, officers, "tax_invoice", numbers["tax_invoice"], "deny", "办税人员实名信息未通过验证")
    assert parent_state(client, officers, number) == "in_branches"  # social insurance still open
    decide(client, officers, "social_insurance", numbers["social_insurance"], "grant")
    body = status(client, receipt)
    assert (body["state"], body["result"]) == ("denied", "denied")
    (join,) = [step for step in body["steps"] if step["action"].startswith("join_")]
    assert join["action"] == "join_denied"
    assert "法定代表人身份信息不符" in join["opinion"] and "办税人员实名信息未通过验证" in join["opinion"]
    assert "公安" in join["opinion"] and "税务" in join["opinion"]
    (event,) = [e for e in events(session_factory, number) if e.action == "join_denied"]
    denied = {entry["branch"]: entry["reasons"] for entry in event.data["branches"] if entry["result"] == "denied"}
    assert {entry["department"] for entry in event.data["branches"]} == {key for key, _ in BRANCHES.values()}
    assert denied == {"seal_engraving": "法定代表人身份信息不符", "tax_invoice": "办税人员实名信息未通过验证"}
    assert ok(act(client, officers, LEAD_INTAKE, number, "complete"))["state"] == "completed"
    assert_chains_verify(session_factory, number, *numbers.values())


def test_two_departments_deciding_at_the_same_moment_make_exactly_one_join(
    backend: str, client: TestClient, officers: Officers, session_factory: sessionmaker[Session],
    clock: FixedClock, accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    """The last two branches granted at once, each in its own transaction: the parent is locked for every
    action on the joint case, so the second sees the first's grant and joins (neither misses the join)."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: two transactions never decide at the same moment")
    receipt, numbers = accepted
    decide(client, officers, "registration", numbers["registration"], "grant")
    decide(client, officers, "seal_engraving", numbers["seal_engraving"], "grant")
    last = ["tax_invoice", "social_insurance"]
    for name in last:
        through_review(client, officers, name, numbers[name])
    ready = threading.Barrier(len(last))
    errors: list[BaseException] = []

    def grant(name: str) -> None:
        try:
            with session_factory() as session:
                who = session.scalars(select(Officer).where(Officer.username == officer(name, "approver"))).one()
                case = service.case_for_officer(session, tracking_no=numbers[name], officer=who)
                ready.wait(timeout=10)
                service.act(session, case=case, actor=service.Actor.officer(who), action="grant", opinion="准予",
                            now=clock.now(), audit_key=DEV_AUDIT_KEY)
                session.commit()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=grant, args=(name,)) for name in last]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert [e.action for e in events(session_factory, receipt["tracking_no"])].count("join_granted") == 1
    assert status(client, receipt)["state"] == "granted"


def act_in_service(session_factory: sessionmaker[Session], clock: FixedClock, username: str, number: str,
                   action: str, opinion: str | None, data: dict[str, Any] | None = None) -> None:
    """An action with ``data`` (the time rules' actions), through the one service entry the API calls."""
    with session_factory() as session:
        who = session.scalars(select(Officer).where(Officer.username == username)).one()
        case = service.case_for_officer(session, tracking_no=number, officer=who)
        service.act(session, case=case, actor=service.Actor.officer(who), action=action, opinion=opinion,
                    now=clock.now(), audit_key=DEV_AUDIT_KEY, data=data)
        session.commit()


def test_a_special_procedure_on_one_branch_stops_the_parents_clock_too(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session], clock: FixedClock,
    accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    """Art. 45 on the police's branch: its clock and the joint case's stop (every branch's deadline stays
    within the parent's); both resume when it ends; each change is an event on its own case."""
    receipt, numbers = accepted
    number = receipt["tracking_no"]
    police = officer("seal_engraving", "reviewer")
    ok(act(client, officers, police, numbers["seal_engraving"], "pass_pre_review"))
    act_in_service(session_factory, clock, police, numbers["seal_engraving"], "start_special_procedure",
                   "印章样式须经专家评审", {"kind": "expert_review", "declared_days": 3})
    with session_factory() as session:
        parent = session.scalars(select(Case).where(Case.tracking_no == number)).one()
        branch = session.scalars(select(Case).where(Case.tracking_no == numbers["seal_engraving"])).one()
        assert parent.suspended_since is not None and branch.suspended_since is not None
        assert [s["kind"] for s in parent.suspensions] == ["expert_review"]
    parent_events = events(session_factory, number)
    assert (parent_events[-1].action, parent_events[-1].actor_type) == ("start_special_procedure", "system")
    assert "old" in parent_events[-1].data and "new" in parent_events[-1].data
    clock.advance(days=1)
    act_in_service(session_factory, clock, police, numbers["seal_engraving"], "end_special_procedure", None,
                   {"result": "评审通过"})
    with session_factory() as session:
        parent = session.scalars(select(Case).where(Case.tracking_no == number)).one()
        assert parent.suspended_since is None and parent.suspended_working_days == 1
    assert_chains_verify(session_factory, number, numbers["seal_engraving"])


# --- one merged supplement notice -------------------------------------------------------------------


def test_supplement_requests_of_several_departments_make_one_notice_and_stop_every_clock(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session], clock: FixedClock,
    accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    receipt, numbers = accepted
    number = receipt["tracking_no"]
    ok(act(client, officers, officer("seal_engraving", "reviewer"), numbers["seal_engraving"],
           "request_supplement", "请补充法定代表人身份证复印件"))
    ok(act(client, officers, officer("tax_invoice", "reviewer"), numbers["tax_invoice"], "pass_pre_review"))
    ok(act(client, officers, officer("social_insurance", "reviewer"), numbers["social_insurance"],
           "request_supplement", "请补充参保职工花名册"))
    assert parent_state(client, officers, number) == "in_branches"  # registration still in pre-review
    ok(act(client, officers, officer("registration", "reviewer"), numbers["registration"], "pass_pre_review"))
    body = status(client, receipt)
    assert body["state"] == "joint_supplement"
    assert body["suspended"] is True
    notices = [step for step in body["steps"] if step["action"] == "notify_supplement"]
    assert len(notices) == 1
    assert "请补充法定代表人身份证复印件" in notices[0]["opinion"]
    assert "请补充参保职工花名册" in notices[0]["opinion"]
    assert body["applicant_actions"] == ["supplement", "withdraw"]
    rows = children(session_factory, number)
    assert all(row.suspended_since is not None for row in rows.values())
    # Until the applicant answers, no department moves its branch on: nothing to do, nothing queued.
    tax = officer("tax_invoice", "reviewer")
    assert ok(client.get(f"/api/v1/cases/{numbers['tax_invoice']}",
                         headers=officers.headers(tax)))["available_actions"] == []
    assert numbers["tax_invoice"] not in queue(client, officers, tax)
    assert act(client, officers, tax, numbers["tax_invoice"], "review", "审核").status_code == 409
    before = {name: row.deadline for name, row in rows.items()}
    clock.advance(days=1)  # Thursday: one working day not counted (officers sign in again after this)
    answered = applicant_post(client, receipt, "supplement", {"note": "已按通知补齐材料"})
    assert answered.status_code == 200, answered.text
    assert answered.json()["state"] == "in_branches"
    assert answered.json()["suspended"] is False
    rows = children(session_factory, number)
    assert {name: row.state for name, row in rows.items()} == {
        "seal_engraving": "pre_review", "social_insurance": "pre_review",
        "tax_invoice": "under_review", "registration": "under_review"}
    assert all(row.suspended_since is None for row in rows.values())
    assert all(row.deadline is not None and before[name] is not None and row.deadline > before[name]
               for name, row in rows.items())
    # Once per step (Art. 32): the branch that asked may not ask again.
    again = act(client, Officers(client), officer("seal_engraving", "reviewer"), numbers["seal_engraving"],
                "request_supplement", "再补充一份")
    assert again.status_code == 409
    assert again.json()["type"].endswith("once-per-step")
    assert_chains_verify(session_factory, number, *numbers.values())


# --- withdrawal ---------------------------------------------------------------------------------------


def test_withdrawing_the_parent_withdraws_every_open_branch(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session],
    accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    receipt, numbers = accepted
    decide(client, officers, "seal_engraving", numbers["seal_engraving"], "grant")
    ok(act(client, officers, officer("tax_invoice", "reviewer"), numbers["tax_invoice"], "pass_pre_review"))
    answered = applicant_post(client, receipt, "withdraw", {"reason": "不再开办"})
    assert answered.status_code == 200, answered.text
    assert answered.json()["state"] == "withdrawn"
    rows = children(session_factory, receipt["tracking_no"])
    assert {name: row.state for name, row in rows.items()} == {
        "seal_engraving": "granted", "tax_invoice": "withdrawn", "registration": "withdrawn",
        "social_insurance": "withdrawn"}
    last = events(session_factory, numbers["tax_invoice"])[-1]
    assert (last.action, last.actor_type) == ("withdraw", "system")
    # A withdrawn branch takes no further step.
    assert act(client, officers, officer("tax_invoice", "reviewer"), numbers["tax_invoice"],
               "review", "审核").status_code == 409
    assert_chains_verify(session_factory, receipt["tracking_no"], *numbers.values())


def test_the_applicant_cannot_reach_a_branch_case(
    client: TestClient, accepted: tuple[dict[str, Any], dict[str, str]],
) -> None:
    receipt, numbers = accepted
    response = client.get(f"/api/v1/applications/{numbers['registration']}",
                          headers={"X-Query-Code": receipt["query_code"]})
    assert response.status_code == 404


# --- single cases -------------------------------------------------------------------------------------


def test_a_running_case_keeps_the_definition_it_started_with(
    client: TestClient, officers: Officers, engine: Engine, session_factory: sessionmaker[Session],
) -> None:
    receipt = submit(client, SINGLE)
    number = receipt["tracking_no"]
    with unit_of_work(session_factory) as session:
        assert session.scalars(select(Case.workflow_id).where(Case.tracking_no == number)).one() == "standard.v1"
    # The item moves on to another definition: the running case does not.
    with engine.begin() as connection:
        connection.execute(text("UPDATE items SET workflow_id = :w WHERE key = :k"), {"w": WORKFLOW, "k": SINGLE})
    refcache.invalidate(engine, [refcache.ITEMS])
    try:
        answer = ok(act(client, officers, "sy_wj_intake", number, "accept"))
        assert answer["state"] == "under_review"
    finally:
        with engine.begin() as connection:
            connection.execute(text("UPDATE items SET workflow_id = 'standard.v1' WHERE key = :k"), {"k": SINGLE})
        refcache.invalidate(engine, [refcache.ITEMS])
    assert children(session_factory, number) == {}
