"""The procedure and anomaly rules run on every new event, in the unit of work that records it: an
officer's action and a partner platform's record each raise their alert in the same transaction (no worker,
no outbox relay has run when the response comes back), and a submission alone raises nothing."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from hub.auth.models import Officer
from hub.cases.models import Case
from hub.outbox.models import OutboxMessage
from hub.supervision.models import Alert
from tests.conftest import Officers
from tests.support import PARTNER_SECRET, case_record, citizen_id, envelope, item_code, officer_of, person, step, submit

KEY = "physician-practice-registration"  # 沈阳 (210100), department 007


def alerts_of(session: Session, tracking_no: str) -> dict[str, Alert]:
    session.expire_all()
    case_id = session.scalar(select(Case.id).where(Case.tracking_no == tracking_no))
    return {a.rule: a for a in session.scalars(select(Alert).where(Alert.case_id == case_id))}


def raised_messages(session: Session, tracking_no: str) -> list[dict[str, Any]]:
    return [m.payload for m in session.scalars(select(OutboxMessage).where(
        OutboxMessage.correlation_id == tracking_no, OutboxMessage.type == "alert.raised.v1"))]


def act(client: TestClient, officers: Officers, number: str, username: str, action: str,
        opinion: str | None = None) -> None:
    body: dict[str, Any] = {"action": action}
    if opinion:
        body["opinion"] = opinion
    response = client.post(f"/api/v1/cases/{number}/actions", json=body, headers=officers.headers(username))
    assert response.status_code == 200, response.text


def someone() -> dict[str, Any]:
    """An applicant of this test alone (the withdraw-and-resubmit rule looks at the applicant's other cases)."""
    draw = uuid.uuid4().int
    return person(id_number=citizen_id(seq=draw % 900 + 100, born=date(1985, 5, 1 + draw // 900 % 28)))


def test_a_submission_alone_raises_nothing(client: TestClient, session: Session) -> None:
    number = submit(client, KEY, someone())["tracking_no"]
    assert alerts_of(session, number) == {}


def test_the_same_officer_reviewing_and_granting_raises_separation_of_duties(
        client: TestClient, officers: Officers, session: Session) -> None:
    both = officer_of(KEY, "reviewer")
    session.execute(update(Officer).where(Officer.username == both).values(roles=["reviewer", "approver"]))
    session.commit()
    try:
        number = submit(client, KEY, someone())["tracking_no"]
        act(client, officers, number, officer_of(KEY, "intake"), "accept")
        act(client, officers, number, both, "review", "材料齐全，符合条件")
        assert "procedure.separation_of_duties" not in alerts_of(session, number)
        act(client, officers, number, both, "grant", "准予注册")
        alert = alerts_of(session, number)["procedure.separation_of_duties"]
    finally:
        session.execute(update(Officer).where(Officer.username == both).values(roles=["reviewer"]))
        session.commit()
    assert (alert.kind, alert.level, alert.status) == ("procedure", "red", "open")
    assert alert.detail["review_seq"] < alert.detail["decision_seq"]
    assert [p["rule"] for p in raised_messages(session, number)] == ["procedure.separation_of_duties"]


def test_review_and_grant_by_different_officers_raise_nothing(
        client: TestClient, officers: Officers, session: Session) -> None:
    number = submit(client, KEY, someone())["tracking_no"]
    act(client, officers, number, officer_of(KEY, "intake"), "accept")
    act(client, officers, number, officer_of(KEY, "reviewer"), "review", "材料齐全")
    act(client, officers, number, officer_of(KEY, "approver"), "grant", "准予注册")
    act(client, officers, number, officer_of(KEY, "intake"), "complete")
    assert alerts_of(session, number) == {}


def push(client: TestClient, *records: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/api/v1/exchange/records", json={"records": list(records)},
                           auth=("shenyang", PARTNER_SECRET))
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def skipping_record(client: TestClient) -> dict[str, Any]:
    """Submitted on 9 March 2026 and granted the next day, with no acceptance or review step."""
    payload = case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}", steps=2)
    payload["steps"][1] = step(2, "grant", "granted")
    payload["state"] = "granted"
    del payload["accepted_at"]
    return payload


def test_a_partner_record_without_acceptance_raises_its_alert_and_still_gets_a_deadline(
        client: TestClient, session: Session) -> None:
    result = push(client, envelope(skipping_record(client)))[0]
    assert result["status"] == "applied", result
    alert = alerts_of(session, result["tracking_no"])["procedure.skipped_step"]
    assert (alert.kind, alert.level) == ("procedure", "red")
    assert alert.detail["no_acceptance"] is True
    assert alert.detail["steps"][0]["missing"] == ["accept", "review"]
    case = session.scalars(select(Case).where(Case.tracking_no == result["tracking_no"])).one()
    # The deadline counts from the submission (2026-03-09), as if accepted that day.
    assert case.accepted_on is not None and case.accepted_on.isoformat() == "2026-03-09"
    assert case.deadline is not None
    assert "procedure.skipped_step" in [p["rule"] for p in raised_messages(session, result["tracking_no"])]


def test_a_partner_event_skipping_acceptance_raises_its_alert(client: TestClient, session: Session) -> None:
    payload = case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}", steps=1)
    number = push(client, envelope(payload))[0]["tracking_no"]
    assert alerts_of(session, number) == {}
    event = {"external_id": payload["external_id"], "step": step(2, "review", "pending_decision")}
    assert push(client, envelope(event, record_type="case-event"))[0]["status"] == "applied"
    assert "procedure.skipped_step" in alerts_of(session, number)
    case = session.scalars(select(Case).where(Case.tracking_no == number)).one()
    assert case.deadline is not None


def test_a_partner_record_in_the_standard_flow_raises_no_procedure_alert(client: TestClient, session: Session) -> None:
    payload = case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}", steps=5)
    payload["steps"][2]["officer"] = "李审核"  # review and decision by different officers
    # Step 5 falls on Saturday 14 March: an officer of its own, so that other tests' completions by the default
    # officer at that hour are not a batch of decisions back-filled on a non-working day (anomaly.backfilled_batch).
    for later in payload["steps"][3:]:
        later["officer"] = f"王决定{uuid.uuid4().hex[:6]}"
    payload["result"] = {"at": "2026-03-14T10:00:00+08:00", "outcome": "granted"}
    result = push(client, envelope(payload))[0]
    assert result["status"] == "applied", result
    assert alerts_of(session, result["tracking_no"]) == {}


def test_withdrawing_an_accepted_case_and_resubmitting_raises_an_anomaly_at_acceptance(
        client: TestClient, officers: Officers, session: Session) -> None:
    applicant = someone()
    first = submit(client, KEY, applicant)
    act(client, officers, first["tracking_no"], officer_of(KEY, "intake"), "accept")
    response = client.post(f"/api/v1/applications/{first['tracking_no']}/withdraw", json={"reason": "重新申报"},
                           headers={"X-Query-Code": first["query_code"]})
    assert response.status_code == 200, response.text
    again = submit(client, KEY, applicant)["tracking_no"]
    assert alerts_of(session, again) == {}
    act(client, officers, again, officer_of(KEY, "intake"), "accept")
    alert = alerts_of(session, again)["anomaly.withdraw_resubmit"]
    assert alert.detail == {"withdrawn": [first["tracking_no"]]}


def test_withdrawing_before_acceptance_and_resubmitting_is_no_anomaly(
        client: TestClient, officers: Officers, session: Session) -> None:
    applicant = someone()
    first = submit(client, KEY, applicant)
    client.post(f"/api/v1/applications/{first['tracking_no']}/withdraw", json={"reason": "填错了"},
                headers={"X-Query-Code": first["query_code"]})
    again = submit(client, KEY, applicant)["tracking_no"]
    act(client, officers, again, officer_of(KEY, "intake"), "accept")
    assert alerts_of(session, again) == {}


def test_the_alert_commits_with_the_partner_record_or_not_at_all(
        client: TestClient, session_factory: sessionmaker[Session], session: Session) -> None:
    from hub.exchange.service import ingest
    from tests.conftest import START

    def apply(document: dict[str, Any], *, commit: bool) -> None:
        with session_factory() as work:
            result = ingest(work, envelope=document, authenticated_source="shenyang", now=START,
                            audit_key="test-audit-key")
            assert result.outcome == "applied"
            # Before the commit the alert is not there: the commit itself raises it, in its transaction.
            assert work.scalar(select(func.count()).select_from(Alert).join(Case, Case.id == Alert.case_id)
                               .where(Case.external_id == document["payload"]["external_id"])) == 0
            if commit:
                work.commit()
            else:
                work.rollback()  # the unit of work fails: neither the case nor its alert stays

    rolled_back, committed = skipping_record(client), skipping_record(client)
    apply(envelope(rolled_back), commit=False)
    apply(envelope(committed), commit=True)
    session.expire_all()
    assert session.scalar(select(Case.id).where(Case.external_id == rolled_back["external_id"])) is None
    number = session.scalar(select(Case.tracking_no).where(Case.external_id == committed["external_id"]))
    assert "procedure.skipped_step" in alerts_of(session, number)


def test_the_lookups_read_the_items_history_and_an_officers_decisions(
        client: TestClient, officers: Officers, session: Session) -> None:
    from datetime import timedelta

    from hub.cases.models import CaseEvent
    from hub.supervision.realtime import SqlLookups
    from tests.conftest import START

    number = submit(client, KEY, someone())["tracking_no"]
    act(client, officers, number, officer_of(KEY, "intake"), "accept")
    act(client, officers, number, officer_of(KEY, "reviewer"), "review", "材料齐全")
    act(client, officers, number, officer_of(KEY, "approver"), "grant", "准予注册")
    act(client, officers, number, officer_of(KEY, "intake"), "complete")
    session.expire_all()
    case = session.scalars(select(Case).where(Case.tracking_no == number)).one()
    grant = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.action == "grant")).one()
    lookups = SqlLookups(session)
    around = {"start": START - timedelta(minutes=5), "end": START + timedelta(minutes=5),
              "actions": ("grant", "deny", "complete"), "submitted_since": START - timedelta(days=1)}
    assert lookups.decisions_between(actor_id=grant.actor_id, department_id=case.department_id, **around) >= 1
    assert lookups.decisions_between(actor_id="nobody", department_id=case.department_id, **around) == 0
    case.working_days_used = 4
    session.flush()
    history = lookups.completed_durations(item_id=case.item_id, exclude_case_id=None, limit=500,
                                          submitted_since=START - timedelta(days=1))
    assert 4 in history
    assert 4 not in lookups.completed_durations(item_id=case.item_id, exclude_case_id=case.id, limit=500,
                                                submitted_since=START - timedelta(days=1)) or history.count(4) > 1
    session.rollback()


def test_a_case_finding_again_what_it_has_raised_reads_no_alerts_and_raises_nothing_new(
        client: TestClient, session: Session) -> None:
    """A case evaluated again finds its old alerts again: the raise's ON CONFLICT DO NOTHING drops them (the
    alert stays one, with one message), with no query for the case's alerts first and none reading back the
    alerts just raised."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    payload = skipping_record(client)
    number = push(client, envelope(payload))[0]["tracking_no"]
    first = alerts_of(session, number)["procedure.skipped_step"]
    payload = {**payload, "record_version": 2, "state": "completed",
               "steps": [*payload["steps"], step(3, "complete", "completed")]}
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        assert push(client, envelope(payload))[0]["status"] == "applied"
    finally:
        event.remove(Engine, "before_cursor_execute", note)
    assert [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM alerts" in s] == []
    again = alerts_of(session, number)
    assert again["procedure.skipped_step"].id == first.id
    assert [p["rule"] for p in raised_messages(session, number)].count("procedure.skipped_step") == 1


def test_the_lookups_of_every_kind_are_answered_as_alone_and_on_postgresql_by_one_statement(
        client: TestClient, officers: Officers, session: Session) -> None:
    """``SqlLookups.load`` (pass 2 of the hook) answers a unit of work's questions of every kind as the methods
    answer each alone; on PostgreSQL the three kinds are one statement, not one each."""
    from datetime import timedelta

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from hub.cases.models import CaseEvent
    from hub.supervision.realtime import SqlLookups
    from tests.conftest import START

    applicant = someone()
    withdrawn = submit(client, KEY, applicant)
    act(client, officers, withdrawn["tracking_no"], officer_of(KEY, "intake"), "accept")
    response = client.post(f"/api/v1/applications/{withdrawn['tracking_no']}/withdraw", json={"reason": "重新申报"},
                           headers={"X-Query-Code": withdrawn["query_code"]})
    assert response.status_code == 200, response.text
    number = submit(client, KEY, applicant)["tracking_no"]
    act(client, officers, number, officer_of(KEY, "intake"), "accept")
    act(client, officers, number, officer_of(KEY, "reviewer"), "review", "材料齐全")
    act(client, officers, number, officer_of(KEY, "approver"), "grant", "准予注册")
    session.expire_all()
    case = session.scalars(select(Case).where(Case.tracking_no == number)).one()
    grant = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.action == "grant")).one()
    decisions = {"actor_id": grant.actor_id, "department_id": case.department_id,
                 "start": grant.occurred_at - timedelta(minutes=30), "end": grant.occurred_at + timedelta(minutes=30),
                 "actions": ("grant", "deny", "complete"), "submitted_since": START - timedelta(days=180)}
    withdrawals = {"case_id": case.id, "applicant_id_number": case.applicant_id_number, "item_id": case.item_id,
                   "since": case.submitted_at - timedelta(days=30), "until": case.submitted_at}
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    together = SqlLookups(session)
    event.listen(Engine, "before_cursor_execute", note)
    try:
        together.load([("decisions_between", decisions), ("withdrawals_before", withdrawals),
                       ("case_fee", {"case_id": case.id})])
    finally:
        event.remove(Engine, "before_cursor_execute", note)
    alone = SqlLookups(session)
    assert together.decisions_between(**decisions) == alone.decisions_between(**decisions) >= 1
    assert [w.tracking_no for w in together.withdrawals_before(**withdrawals)] == [withdrawn["tracking_no"]]
    assert together.withdrawals_before(**withdrawals) == alone.withdrawals_before(**withdrawals)
    assert together.case_fee(case_id=case.id) == alone.case_fee(case_id=case.id)
    if session.get_bind().dialect.name == "postgresql":
        assert len(statements) == 1, statements
