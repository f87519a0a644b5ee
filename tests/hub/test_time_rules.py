"""The law's clock over HTTP and SOAP: Art. 42 extension, Art. 45 special procedures, Art. 32 at intake, the
after-hours rule, a holiday notice recomputing open deadlines, partner records' special procedures.

The item: 医师执业注册 of 沈阳市卫健委 (statutory 20, promised 5 working days). START is Wednesday 2026-03-11
10:00 China time: accepted that day, the promise falls on 03-18 and the statutory deadline on 04-09 (Qingming,
04-06, is not counted).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.audit.service import verify
from hub.cases.models import Case, CaseEvent
from hub.clock import FixedClock
from hub.outbox.models import OutboxMessage
from hub.settings import DEV_AUDIT_KEY
from tests.conftest import Officers
from tests.hub.test_legacy_soap import RawClient, hub_url, raw, raw_fault, raw_values  # noqa: F401
from tests.support import PARTNER_SECRET, case_record, envelope, item_code, submit

KEY = "physician-practice-registration"
INTAKE, REVIEWER, APPROVER = "sy_wj_intake", "sy_wj_reviewer", "sy_wj_approver"
CHINA = timedelta(hours=8)


def china(*args: int) -> datetime:
    """A China Standard Time wall-clock moment as the UTC instant the hub's clock holds."""
    return datetime(*args, tzinfo=UTC) - CHINA  # type: ignore[misc]


def move(clock: FixedClock, officers: Officers, moment: datetime) -> None:
    """Move the hub's clock; officers sign in again (their tokens are short-lived on that clock)."""
    clock.set(moment)
    officers._tokens.clear()


def act(client: TestClient, officers: Officers, tracking_no: str, who: str, action: str,
        opinion: str | None = None, data: dict[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {"action": action}
    if opinion is not None:
        body["opinion"] = opinion
    if data is not None:
        body["data"] = data
    return client.post(f"/api/v1/cases/{tracking_no}/actions", json=body, headers=officers.headers(who))


def view(client: TestClient, officers: Officers, tracking_no: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/cases/{tracking_no}", headers=officers.headers(INTAKE))
    assert response.status_code == 200, response.text
    return dict(response.json())


def accepted_case(client: TestClient, officers: Officers) -> str:
    tracking_no = str(submit(client, KEY)["tracking_no"])
    assert act(client, officers, tracking_no, INTAKE, "accept").status_code == 200
    return tracking_no


def events(session: Session, tracking_no: str, action: str) -> list[CaseEvent]:
    return list(session.scalars(select(CaseEvent).join(Case, Case.id == CaseEvent.case_id)
                                .where(Case.tracking_no == tracking_no, CaseEvent.action == action)
                                .order_by(CaseEvent.seq)))


# --- Art. 42: extend once ------------------------------------------------------------------------------


def test_extension_once_by_the_approver_with_a_reason_then_409(
    client: TestClient, officers: Officers, session: Session
) -> None:
    tracking_no = accepted_case(client, officers)
    before = view(client, officers, tracking_no)
    assert (before["statutory_deadline"], before["promised_deadline"]) == ("2026-04-09", "2026-03-18")
    assert (before["working_days_used"], before["days_suspended"], before["days_remaining"]) == (0, 0, 20)

    no_reason = act(client, officers, tracking_no, APPROVER, "extend")
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "opinion"
    assert act(client, officers, tracking_no, REVIEWER, "extend", "需要更多时间").status_code == 403

    response = act(client, officers, tracking_no, APPROVER, "extend", "涉及多部门核查，经负责人批准延长")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "under_review"  # the state does not move
    after = view(client, officers, tracking_no)
    assert after["statutory_deadline"] == "2026-04-23"  # + 10 working days
    assert after["promised_deadline"] == "2026-03-18"
    assert (after["extension_days"], after["days_remaining"]) == (10, 30)
    recorded = events(session, tracking_no, "extend")[0]
    assert recorded.opinion == "涉及多部门核查，经负责人批准延长"
    assert recorded.data["old"]["statutory_deadline"] == "2026-04-09"
    assert recorded.data["new"]["statutory_deadline"] == "2026-04-23"
    assert "第四十二条" in recorded.data["legal_basis"]

    again = act(client, officers, tracking_no, APPROVER, "extend", "再延长一次")
    assert again.status_code == 409
    problem = again.json()
    assert problem["type"].endswith("/already-extended")
    assert problem["errors"][0]["rule"] == "already_extended" and "第四十二条" in problem["detail"]


def test_no_extension_before_acceptance(client: TestClient, officers: Officers) -> None:
    tracking_no = str(submit(client, KEY)["tracking_no"])
    response = act(client, officers, tracking_no, APPROVER, "extend", "理由")
    assert response.status_code == 409
    assert response.json()["type"].endswith("/clock-not-started")


# --- Art. 45: special procedures ------------------------------------------------------------------------


def test_bad_special_procedure_data_is_named(client: TestClient, officers: Officers) -> None:
    tracking_no = accepted_case(client, officers)
    cases = [
        ({"kind": "public_notice", "declared_days": 5}, "data.kind", "special_procedure_kind"),
        ({"kind": "hearing", "declared_days": 0}, "data.declared_days", "working_days_1_365"),
        ({"kind": "hearing", "declared_days": "5"}, "data.declared_days", "working_days_1_365"),
        ({"kind": "hearing"}, "data.declared_days", "working_days_1_365"),
        ({"kind": "hearing", "declared_days": 5, "days": 3}, "data.days", "unknown_field"),
    ]
    for data, field, rule in cases:
        response = act(client, officers, tracking_no, REVIEWER, "start_special_procedure", "组织听证", data)
        assert response.status_code == 422, (data, response.text)
        assert {(e["field"], e["rule"]) for e in response.json()["errors"]} >= {(field, rule)}, data
    response = act(client, officers, tracking_no, REVIEWER, "start_special_procedure", None,
                   {"kind": "hearing", "declared_days": 5})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "opinion"


def test_special_procedure_stops_the_clock_and_moves_every_deadline_by_its_working_days(
    client: TestClient, officers: Officers, clock: FixedClock, session: Session
) -> None:
    tracking_no = accepted_case(client, officers)
    move(clock, officers, china(2026, 3, 12, 10))
    started = act(client, officers, tracking_no, REVIEWER, "start_special_procedure", "需组织专家评审",
                  {"kind": "expert_review", "declared_days": 5})
    assert started.status_code == 200, started.text

    move(clock, officers, china(2026, 3, 16, 10))
    during = act(client, officers, tracking_no, REVIEWER, "review", "审核通过")
    assert during.status_code == 409 and during.json()["type"].endswith("/special-procedure-open")
    assert "第四十五条" in during.json()["detail"]
    again = act(client, officers, tracking_no, APPROVER, "start_special_procedure", "再启动",
                {"kind": "testing", "declared_days": 3})
    assert again.status_code == 409
    mid = view(client, officers, tracking_no)
    assert mid["suspended"] is True and mid["days_suspended"] == 2 and mid["working_days_used"] == 1

    move(clock, officers, china(2026, 3, 17, 15))
    missing = act(client, officers, tracking_no, REVIEWER, "end_special_procedure", None, {})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "data.result"
    ended = act(client, officers, tracking_no, REVIEWER, "end_special_procedure", None, {"result": "专家评审通过"})
    assert ended.status_code == 200, ended.text
    after = view(client, officers, tracking_no)
    # (03-12, 03-17] = 13, 16, 17: three working days not counted.
    assert (after["promised_deadline"], after["statutory_deadline"]) == ("2026-03-23", "2026-04-14")
    assert after["days_suspended"] == 3 and after["suspended"] is False
    assert after["suspensions"][0] | {"reason": None} == {
        "kind": "expert_review", "reason": None, "declared_days": 5, "started_on": "2026-03-12",
        "ended_on": "2026-03-17"}
    end_event = events(session, tracking_no, "end_special_procedure")[0]
    assert end_event.data["days_suspended"] == 3 and end_event.data["result"] == "专家评审通过"
    assert end_event.data["new"]["promised_deadline"] == "2026-03-23"
    start_event = events(session, tracking_no, "start_special_procedure")[0]
    assert (start_event.data["kind"], start_event.data["declared_days"]) == ("expert_review", 5)
    assert start_event.data["old"]["promised_deadline"] == "2026-03-18"
    # The clock runs again: the review goes on.
    assert act(client, officers, tracking_no, REVIEWER, "review", "审核通过").status_code == 200
    no_procedure = act(client, officers, tracking_no, APPROVER, "end_special_procedure", None, {"result": "x"})
    assert no_procedure.status_code == 409


def test_the_applicant_sees_the_clock(client: TestClient, officers: Officers) -> None:
    receipt = submit(client, KEY)
    act(client, officers, receipt["tracking_no"], INTAKE, "accept")
    status = client.get(f"/api/v1/applications/{receipt['tracking_no']}",
                        headers={"X-Query-Code": receipt["query_code"]}).json()
    assert {k: status[k] for k in ("statutory_deadline", "promised_deadline", "working_days_used", "days_suspended",
                                   "days_remaining")} == {
        "statutory_deadline": "2026-04-09", "promised_deadline": "2026-03-18", "working_days_used": 0,
        "days_suspended": 0, "days_remaining": 20}


# --- Art. 32 and the after-hours rule ---------------------------------------------------------------------


def test_received_on_follows_the_after_hours_rule(client: TestClient, clock: FixedClock) -> None:
    moments = [(china(2026, 3, 11, 16, 59), "2026-03-11", "2026-03-18"),
               (china(2026, 3, 11, 17, 0), "2026-03-12", "2026-03-19"),
               (china(2026, 3, 14, 10, 0), "2026-03-16", "2026-03-23")]  # a Saturday
    for moment, received, deadline in moments:
        clock.set(moment)
        receipt = submit(client, KEY)
        assert (receipt["received_on"], receipt["intake_deadline"]) == (received, deadline), moment


def test_late_supplement_notice_is_refused_and_a_late_accept_counts_from_receipt(
    client: TestClient, officers: Officers, clock: FixedClock
) -> None:
    tracking_no = str(submit(client, KEY)["tracking_no"])  # received 03-11, intake deadline 03-18
    move(clock, officers, china(2026, 3, 19, 10))
    late = act(client, officers, tracking_no, INTAKE, "request_supplement", "请补充学历证明")
    assert late.status_code == 409
    problem = late.json()
    assert problem["type"].endswith("/intake-notice-late")
    assert "第三十二条" in problem["detail"] and "视为已" in problem["detail"] and "受理" in problem["detail"]
    assert problem["errors"][0] == {"field": "action", "rule": "intake_notice_period", "message": problem["detail"]}
    assert act(client, officers, tracking_no, INTAKE, "accept").status_code == 200
    after = view(client, officers, tracking_no)
    assert after["accepted_on"] == "2026-03-11"  # Art. 32: accepted on the day the materials arrived
    assert after["promised_deadline"] == "2026-03-18" and after["statutory_deadline"] == "2026-04-09"
    assert after["working_days_used"] == 6


def test_supplement_notice_within_the_period_is_taken(client: TestClient, officers: Officers,
                                                      clock: FixedClock) -> None:
    tracking_no = str(submit(client, KEY)["tracking_no"])
    move(clock, officers, china(2026, 3, 18, 16))
    assert act(client, officers, tracking_no, INTAKE, "request_supplement", "请补充学历证明").status_code == 200


# --- a holiday notice loaded later --------------------------------------------------------------------------

# 2003 is before the built-in table (2004-2026): Monday to Friday until its notice is loaded. (A year after the
# table would do as well, but the officers' tokens cannot be issued in the future.)
NOTICE_2003 = {
    "year": 2003, "source": "国务院办公厅关于2003年部分节假日安排的通知",
    "holidays": [{"name": "国庆节", "from": "2003-10-01", "to": "2003-10-07"}],
    "workdays": [{"name": "国庆节调休", "date": "2003-09-27"}, {"name": "国庆节调休", "date": "2003-09-28"}],
}


def test_holiday_notice_recomputes_open_deadlines_and_records_old_and_new(
    client: TestClient, officers: Officers, clock: FixedClock, session_factory: sessionmaker[Session]
) -> None:
    move(clock, officers, china(2003, 9, 22, 10))  # a Monday
    accepted = str(submit(client, KEY)["tracking_no"])
    assert act(client, officers, accepted, INTAKE, "accept").status_code == 200
    move(clock, officers, china(2003, 9, 23, 10))
    waiting = str(submit(client, KEY)["tracking_no"])
    before = view(client, officers, accepted)
    # Monday to Friday: Sep 23-26, 29 -> promise 09-29; ... Oct 1-3 counted -> statutory 10-20.
    assert (before["promised_deadline"], before["statutory_deadline"]) == ("2003-09-29", "2003-10-20")
    assert view(client, officers, waiting)["intake_deadline"] == "2003-09-30"

    response = client.post("/api/v1/calendar/notices", json=NOTICE_2003, headers=officers.headers("ln_admin"))
    assert response.status_code == 201, response.text
    assert {accepted, waiting} <= set(response.json()["recomputed"])

    after = view(client, officers, accepted)
    # The make-up weekend counts, Oct 1-7 does not: promise 09-27 (a Saturday), statutory 10-23.
    assert (after["promised_deadline"], after["statutory_deadline"]) == ("2003-09-27", "2003-10-23")
    assert view(client, officers, waiting)["intake_deadline"] == "2003-09-28"
    with session_factory() as session:
        recorded = events(session, accepted, "deadline_recomputed")
        assert len(recorded) == 1
        event = recorded[0]
        assert (event.actor_type, event.from_state, event.to_state) == ("system", "under_review", "under_review")
        assert (event.data["old"]["promised_deadline"], event.data["new"]["promised_deadline"]) == (
            "2003-09-29", "2003-09-27")
        assert (event.data["old"]["statutory_deadline"], event.data["new"]["statutory_deadline"]) == (
            "2003-10-20", "2003-10-23")
        intake = events(session, waiting, "deadline_recomputed")[0].data
        assert (intake["old"]["intake_deadline"], intake["new"]["intake_deadline"]) == ("2003-09-30", "2003-09-28")
        messages = session.scalars(select(OutboxMessage).where(
            OutboxMessage.type == "case.deadline_recomputed.v1",
            OutboxMessage.correlation_id == accepted)).all()
        assert len(messages) == 1
        # The recomputation is a recorded step: the case's chain still verifies.
        assert verify(session, key=DEV_AUDIT_KEY, tracking_no=accepted)[1] == []

    # Loading the same notice again changes nothing and records nothing.
    again = client.post("/api/v1/calendar/notices", json=NOTICE_2003, headers=officers.headers("ln_admin"))
    assert again.status_code == 201 and accepted not in again.json()["recomputed"]


# --- partner records ------------------------------------------------------------------------------------------


def push(client: TestClient, record: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/exchange/records", json={"records": [envelope(record)]},
                           auth=("shenyang", PARTNER_SECRET))
    assert response.status_code == 200, response.text
    return dict(response.json()["results"][0])


def test_partner_special_procedures_suspend_the_partner_case(client: TestClient, officers: Officers) -> None:
    code = item_code(client, KEY)
    plain = push(client, case_record(code, external_id=f"SY-{uuid.uuid4().hex[:12]}", steps=3))
    record = case_record(code, external_id=f"SY-{uuid.uuid4().hex[:12]}", steps=3)
    record["special_procedures"] = [{"kind": "专家评审", "reason": "技术评审", "start": "2026-03-10",
                                     "end": "2026-03-12", "result": "通过"}]
    suspended = push(client, record)
    assert plain["status"] == suspended["status"] == "applied"
    base = view(client, officers, plain["tracking_no"])
    moved = view(client, officers, suspended["tracking_no"])
    # Accepted Monday 03-09: promise 03-16, statutory 04-07; (03-10, 03-12] = two working days later.
    assert (base["promised_deadline"], base["statutory_deadline"], base["days_suspended"]) == (
        "2026-03-16", "2026-04-07", 0)
    assert (moved["promised_deadline"], moved["statutory_deadline"], moved["days_suspended"]) == (
        "2026-03-18", "2026-04-09", 2)
    assert moved["suspensions"][0]["kind"] == "expert_review"


def test_partner_procedure_of_no_art_45_kind_is_rejected_naming_the_field(client: TestClient) -> None:
    record = case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}", steps=3)
    record["special_procedures"] = [{"kind": "公示", "start": "2026-03-10", "end": "2026-03-12"}]
    result = push(client, record)
    assert result["status"] == "rejected"
    assert "payload.special_procedures.0.kind" in str(result)


# --- the department SOAP service ---------------------------------------------------------------------------------


def test_soap_clock_operations_and_get_case(client: TestClient, officers: Officers, raw: RawClient,  # noqa: F811
                                            clock: FixedClock) -> None:
    tracking_no = accepted_case(client, officers)
    status, payload = raw.post("StartSpecialProcedure", f"<d:trackingNo>{tracking_no}</d:trackingNo>"
                               "<d:kind>bogus</d:kind><d:declaredDays>5</d:declaredDays><d:reason>x</d:reason>",
                               username=REVIEWER)
    assert status == 500 and raw_fault(payload)["field"] == "kind"
    move(clock, officers, china(2026, 3, 12, 10))
    status, payload = raw.post("StartSpecialProcedure", f"<d:trackingNo>{tracking_no}</d:trackingNo>"
                               "<d:kind>testing</d:kind><d:declaredDays>5</d:declaredDays>"
                               "<d:reason>送检</d:reason>", username=REVIEWER)
    assert status == 200, raw_values(payload)
    assert raw_values(payload)["action"] == "start_special_procedure"
    status, payload = raw.post("GetCase", f"<d:trackingNo>{tracking_no}</d:trackingNo>", username=REVIEWER)
    detail = raw_values(payload)["case"][0]
    assert detail["suspended"] == "true" and detail["suspension"]["kind"] == "testing"
    move(clock, officers, china(2026, 3, 17, 10))
    status, payload = raw.post("EndSpecialProcedure", f"<d:trackingNo>{tracking_no}</d:trackingNo>"
                               "<d:result>检验合格</d:result>", username=REVIEWER)
    assert status == 200, raw_values(payload)
    assert raw_values(payload)["daysSuspended"] == "3"
    assert raw_values(payload)["promisedDeadline"] == "2026-03-23"

    status, payload = raw.post("ExtendTimeLimit", f"<d:trackingNo>{tracking_no}</d:trackingNo>"
                               "<d:reason>情况复杂</d:reason>", username=APPROVER)
    assert status == 200, raw_values(payload)
    assert raw_values(payload)["statutoryDeadline"] == "2026-04-28"  # 04-14 + 10 working days
    status, payload = raw.post("ExtendTimeLimit", f"<d:trackingNo>{tracking_no}</d:trackingNo>"
                               "<d:reason>再次延长</d:reason>", username=APPROVER)
    fault = raw_fault(payload)
    assert status == 500 and fault["code"] == "CONFLICT" and fault["rule"] == "already_extended"
    status, payload = raw.post("GetCase", f"<d:trackingNo>{tracking_no}</d:trackingNo>", username=INTAKE)
    detail = raw_values(payload)["case"][0]
    assert (detail["statutoryDeadline"], detail["promisedDeadline"], detail["extensionDays"]) == (
        "2026-04-28", "2026-03-23", "10")
    assert (detail["workingDaysUsed"], detail["daysSuspended"], detail["daysRemaining"]) == ("1", "3", "29")
    status, payload = raw.post("ExtendTimeLimit", f"<d:trackingNo>{tracking_no}</d:trackingNo>"
                               "<d:reason>x</d:reason>", username=REVIEWER)
    assert status == 500 and raw_fault(payload)["code"] == "FORBIDDEN"


def test_soap_clock_operation_is_applied_once_per_message_id(client: TestClient, officers: Officers,
                                                             raw: RawClient) -> None:  # noqa: F811
    tracking_no = accepted_case(client, officers)
    message_id = str(uuid.uuid4())
    fields = f"<d:trackingNo>{tracking_no}</d:trackingNo><d:reason>情况复杂</d:reason>"
    first = raw_values(raw.post("ExtendTimeLimit", fields, username=APPROVER, message_id=message_id)[1])
    second = raw_values(raw.post("ExtendTimeLimit", fields, username=APPROVER, message_id=message_id)[1])
    assert (first["duplicate"], second["duplicate"]) == ("false", "true")
    assert first["seq"] == second["seq"]

