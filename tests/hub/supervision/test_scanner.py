"""The time-limit scanner as `hub worker` runs it (Worker.supervise on an injected clock), over cases created and
acted on over HTTP: yellow and red on exactly the right working days around a weekend and a holiday (Qingming),
Art. 32's intake period, per joint branch and for the parent, completion closing the yellow alerts, a suspension
holding the colour, deduplication, two workers on PostgreSQL, and the escalation of an unresolved red alert.

The item: 医师执业注册 of 沈阳市卫健委 (region 210100 under the province 210000; statutory 20, promised 5 working
days; steps after intake review 10, decision 6, completion 4 — the review step's share of 5 days is 3).
Accepted on Wednesday 2026-04-01: working days 04-02 (1), 04-03 (2), [04-04..04-06 weekend and Qingming],
04-07 (3), 04-08 (4), 04-09 (5, the promised deadline), 04-10 (6).
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import InProcessBus
from hub.cases.models import Case
from hub.clock import FixedClock
from hub.db import unit_of_work
from hub.outbox.models import OutboxMessage
from hub.settings import Settings
from hub.supervision import scanner
from hub.supervision.findings import Finding
from hub.supervision.models import Alert
from hub.supervision.service import raise_findings
from hub.worker import Worker
from tests.conftest import Officers
from tests.hub.test_joint_cases import LEAD_INTAKE, joint_item  # noqa: F401  (the seed's item made joint)
from tests.support import PARTNER_SECRET, case_record, citizen_id, company, envelope, item_code, person, step, submit

KEY = "physician-practice-registration"
INTAKE, REVIEWER, APPROVER = "sy_wj_intake", "sy_wj_reviewer", "sy_wj_approver"
CHINA = timedelta(hours=8)


def china(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC) - CHINA


@pytest.fixture
def supervisor(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[Worker]:
    """A worker, not started: the tests call its periodic job as its loop would, on their own clock."""
    worker = Worker(settings=settings, factory=session_factory, clock=FixedClock(china(date(2026, 4, 1))),
                    bus=InProcessBus(user="hub"), consume_inbound=False)
    yield worker
    worker.stop(timeout=5)


def run_on(worker: Worker, day: date) -> None:
    """The supervision job on ``day`` (10:00 China time), until its batches are done."""
    assert isinstance(worker.clock, FixedClock)
    worker.clock.set(china(day))
    while worker.supervise():
        pass


def on(clock: FixedClock, officers: Officers, day: date, hour: int = 10) -> None:
    clock.set(china(day, hour))
    officers._tokens.clear()


def act(client: TestClient, officers: Officers, number: str, who: str, action: str, opinion: str = "同意",
        data: dict[str, Any] | None = None) -> None:
    body: dict[str, Any] = {"action": action, "opinion": opinion}
    if data is not None:
        body["data"] = data
    response = client.post(f"/api/v1/cases/{number}/actions", json=body, headers=officers.headers(who))
    assert response.status_code == 200, response.text


_APPLICANTS = itertools.count(500)


def submitted(client: TestClient) -> dict[str, Any]:
    """A submission of an applicant of its own: another test's withdrawal by the shared default applicant would
    otherwise make this case's acceptance an anomaly.withdraw_resubmit."""
    return submit(client, KEY, person(id_number=citizen_id(seq=next(_APPLICANTS) % 1000)))


def accepted_on(client: TestClient, officers: Officers, clock: FixedClock, day: date) -> str:
    on(clock, officers, day)
    number = str(submitted(client)["tracking_no"])
    act(client, officers, number, INTAKE, "accept")
    return number


def alerts(factory: sessionmaker[Session], number: str) -> dict[str, Alert]:
    with factory() as session:
        rows = session.scalars(select(Alert).join(Case, Case.id == Alert.case_id)
                               .where(Case.tracking_no == number).order_by(Alert.id)).all()
        for row in rows:
            session.expunge(row)
        return {row.rule: row for row in rows}


def row(factory: sessionmaker[Session], number: str) -> Case:
    with factory() as session:
        case = session.scalars(select(Case).where(Case.tracking_no == number)).one()
        session.expunge(case)
        return case


def messages(factory: sessionmaker[Session], number: str, event_type: str) -> list[dict[str, Any]]:
    with factory() as session:
        return [dict(m.payload) for m in session.scalars(select(OutboxMessage).where(
            OutboxMessage.correlation_id == number, OutboxMessage.type == event_type).order_by(OutboxMessage.id))]


# --- exact days ---------------------------------------------------------------------------------------------


def test_yellow_then_red_on_the_right_working_days_around_qingming(
    client: TestClient, officers: Officers, clock: FixedClock, supervisor: Worker,
    session_factory: sessionmaker[Session],
) -> None:
    number = accepted_on(client, officers, clock, date(2026, 4, 1))
    assert row(session_factory, number).colour_due_on == date(2026, 4, 1)  # the clock started: read today
    run_on(supervisor, date(2026, 4, 1))
    case = row(session_factory, number)
    assert (case.colour, case.colour_due_on) == (None, date(2026, 4, 3))  # the review step's yellow day
    assert alerts(session_factory, number) == {}

    run_on(supervisor, date(2026, 4, 3))  # 2 of the review step's 3 days used: 80 % of 3 rounds up to 3, 1 left
    assert set(alerts(session_factory, number)) == {"time.step_due.review"}
    case = row(session_factory, number)
    assert (case.colour, case.colour_due_on) == ("yellow", date(2026, 4, 8))

    for day in (date(2026, 4, 4), date(2026, 4, 5), date(2026, 4, 6), date(2026, 4, 7)):
        run_on(supervisor, day)  # a weekend, Qingming, and the 3rd working day: nothing changes
        assert set(alerts(session_factory, number)) == {"time.step_due.review"}, day

    run_on(supervisor, date(2026, 4, 8))  # 4 of 5 used (80 %, 1 left); the review step's 3 are past
    found = alerts(session_factory, number)
    assert {rule: a.level for rule, a in found.items()} == {
        "time.step_due.review": "yellow", "time.case_due": "yellow", "time.step_overdue.review": "red"}
    assert found["time.case_due"].detail == {"working_days_used": 4, "limit_days": 5}
    assert "剩余1个工作日" in found["time.case_due"].message
    assert (row(session_factory, number).colour, row(session_factory, number).colour_due_on) == (
        "red", date(2026, 4, 10))

    run_on(supervisor, date(2026, 4, 9))  # the promised deadline itself is still in time
    assert "time.case_overdue" not in alerts(session_factory, number)
    run_on(supervisor, date(2026, 4, 10))
    overdue = alerts(session_factory, number)["time.case_overdue"]
    assert (overdue.level, overdue.kind, overdue.status, overdue.raised_on) == ("red", "time", "open",
                                                                                date(2026, 4, 10))
    assert overdue.supervisor_region_code == "210100"
    # Next: the statutory limit (20 working days).
    assert row(session_factory, number).colour_due_on is not None
    raised = messages(session_factory, number, "alert.raised.v1")
    assert [m["rule"] for m in raised] == ["time.step_due.review", "time.case_due", "time.step_overdue.review",
                                           "time.case_overdue"]
    assert raised[-1]["department"] == "210100007" and raised[-1]["level"] == "red"


def test_intake_not_decided_within_five_working_days(
    client: TestClient, officers: Officers, clock: FixedClock, supervisor: Worker,
    session_factory: sessionmaker[Session],
) -> None:
    # Friday 04-03 at 16:00: received that day; 04-07 (1), 04-08 (2), 04-09 (3), 04-10 (4), 04-13 (5).
    on(clock, officers, date(2026, 4, 3), hour=16)
    number = str(submitted(client)["tracking_no"])
    run_on(supervisor, date(2026, 4, 3))
    assert row(session_factory, number).colour_due_on == date(2026, 4, 10)
    run_on(supervisor, date(2026, 4, 9))
    assert alerts(session_factory, number) == {}
    run_on(supervisor, date(2026, 4, 10))
    assert set(alerts(session_factory, number)) == {"time.intake_due"}
    run_on(supervisor, date(2026, 4, 13))  # the intake deadline, still in time
    assert set(alerts(session_factory, number)) == {"time.intake_due"}
    run_on(supervisor, date(2026, 4, 14))
    found = alerts(session_factory, number)
    assert found["time.intake_overdue"].level == "red" and "第三十二条" in found["time.intake_overdue"].message
    assert row(session_factory, number).colour == "red"
    # Accepted late (dated the day of receipt, Art. 32): the intake's yellow closes, its red stays.
    on(clock, officers, date(2026, 4, 14))
    act(client, officers, number, INTAKE, "accept")
    run_on(supervisor, date(2026, 4, 14))
    found = alerts(session_factory, number)
    assert found["time.intake_due"].status == "closed" and found["time.intake_overdue"].status == "open"


# --- joint case: each branch and the parent --------------------------------------------------------------


def test_a_branch_and_its_parent_are_judged_each_on_its_own_limit(
    client: TestClient, officers: Officers, clock: FixedClock, supervisor: Worker,
    session_factory: sessionmaker[Session],
) -> None:
    # 企业开办 promises 1 working day for the whole and for each branch: accepted 04-01, due 04-02, red 04-03.
    on(clock, officers, date(2026, 4, 1))
    parent_no = submit(client, "enterprise-establishment", applicant=company())["tracking_no"]
    act(client, officers, parent_no, LEAD_INTAKE, "accept")
    with session_factory() as session:
        parent = session.scalars(select(Case).where(Case.tracking_no == parent_no)).one()
        branches = {str(c.branch): c.tracking_no for c in session.scalars(select(Case).where(
            Case.parent_id == parent.id))}
    run_on(supervisor, date(2026, 4, 1))
    # 1 working day left from the start: yellow at once, the parent and every branch each on its own row.
    assert {rule for rule in alerts(session_factory, parent_no)} == {"time.case_due"}
    assert {rule for rule in alerts(session_factory, branches["seal_engraving"])} >= {"time.case_due"}
    # The seal branch (公安) is decided in time; the registration branch is not.
    on(clock, officers, date(2026, 4, 2))
    seal = branches["seal_engraving"]
    act(client, officers, seal, "sy_ga_reviewer", "pass_pre_review")
    act(client, officers, seal, "sy_ga_reviewer", "review", "审核通过")
    act(client, officers, seal, "sy_ga_approver", "grant", "准予")
    run_on(supervisor, date(2026, 4, 2))
    run_on(supervisor, date(2026, 4, 3))
    seal_alerts = alerts(session_factory, seal)
    assert "time.case_overdue" not in seal_alerts and seal_alerts["time.case_due"].status == "closed"
    registration = alerts(session_factory, branches["registration"])["time.case_overdue"]
    assert registration.level == "red" and registration.status == "open"
    assert alerts(session_factory, parent_no)["time.case_overdue"].level == "red"
    # Each answers to its own department: the branch's is 公安 / 市场监管, the parent's the lead's.
    assert registration.department_id == row(session_factory, branches["registration"]).department_id
    assert row(session_factory, seal).department_id != row(session_factory, parent_no).department_id
    assert row(session_factory, seal).on_time is True


# --- completion, suspension, deduplication ----------------------------------------------------------------


def test_the_decision_closes_the_yellow_alerts_and_records_the_working_days(
    client: TestClient, officers: Officers, clock: FixedClock, supervisor: Worker,
    session_factory: sessionmaker[Session],
) -> None:
    number = accepted_on(client, officers, clock, date(2026, 4, 1))
    run_on(supervisor, date(2026, 4, 3))
    assert alerts(session_factory, number)["time.step_due.review"].status == "open"
    on(clock, officers, date(2026, 4, 7))
    act(client, officers, number, REVIEWER, "review")
    act(client, officers, number, APPROVER, "grant")
    case = row(session_factory, number)
    assert (case.working_days_used, case.on_time, case.colour_due_on) == (3, True, date(2026, 4, 7))
    run_on(supervisor, date(2026, 4, 7))
    assert alerts(session_factory, number)["time.step_due.review"].status == "closed"
    assert [m["rule"] for m in messages(session_factory, number, "alert.closed.v1")] == ["time.step_due.review"]
    assert row(session_factory, number).colour_due_on is None  # decided: the scanner reads it no more
    act(client, officers, number, APPROVER, "complete")
    assert row(session_factory, number).working_days_used == 3  # the decision's day counts, not the completion's


def test_an_overdue_decision_is_not_on_time(
    client: TestClient, officers: Officers, clock: FixedClock, session_factory: sessionmaker[Session],
) -> None:
    number = accepted_on(client, officers, clock, date(2026, 4, 1))
    on(clock, officers, date(2026, 4, 10))
    act(client, officers, number, REVIEWER, "review")
    act(client, officers, number, APPROVER, "grant")
    case = row(session_factory, number)
    assert (case.working_days_used, case.on_time) == (6, False)


def test_a_suspension_holds_the_colour_and_the_resumption_reads_the_case_again(
    client: TestClient, officers: Officers, clock: FixedClock, supervisor: Worker,
    session_factory: sessionmaker[Session],
) -> None:
    on(clock, officers, date(2026, 4, 1))
    receipt = submitted(client)
    number = receipt["tracking_no"]
    act(client, officers, number, INTAKE, "accept")
    on(clock, officers, date(2026, 4, 2))
    act(client, officers, number, REVIEWER, "request_supplement", "请补充执业证明")
    run_on(supervisor, date(2026, 4, 2))
    assert row(session_factory, number).colour_due_on is None  # the clock stands still
    run_on(supervisor, date(2026, 4, 14))
    assert alerts(session_factory, number) == {}
    on(clock, officers, date(2026, 4, 14))
    supplemented = client.post(f"/api/v1/applications/{number}/supplement", json={"note": "已补充"},
                               headers={"X-Query-Code": receipt["query_code"]})
    assert supplemented.status_code == 200, supplemented.text
    assert row(session_factory, number).colour_due_on == date(2026, 4, 14)
    run_on(supervisor, date(2026, 4, 14))
    # 1 working day used (04-02); the 7 suspended (04-03 .. 04-14) move the review step's yellow day to 04-15.
    assert alerts(session_factory, number) == {}
    assert row(session_factory, number).colour_due_on == date(2026, 4, 15)


def test_the_same_finding_twice_is_one_alert_and_one_message(
    client: TestClient, officers: Officers, clock: FixedClock, supervisor: Worker,
    session_factory: sessionmaker[Session],
) -> None:
    number = accepted_on(client, officers, clock, date(2026, 4, 1))
    run_on(supervisor, date(2026, 4, 3))
    with unit_of_work(session_factory) as session:  # as if a clock change asked for another look today
        session.execute(update(Case).where(Case.tracking_no == number).values(colour_due_on=date(2026, 4, 3)))
    run_on(supervisor, date(2026, 4, 3))
    assert list(alerts(session_factory, number)) == ["time.step_due.review"]
    assert len(messages(session_factory, number, "alert.raised.v1")) == 1


# --- two workers --------------------------------------------------------------------------------------------


def test_two_workers_scanning_at_once_never_raise_the_same_alert_twice(
    backend: str, client: TestClient, officers: Officers, clock: FixedClock,
    session_factory: sessionmaker[Session],
) -> None:
    if backend != "postgresql":
        pytest.skip("SKIP LOCKED and concurrent inserts: PostgreSQL")
    numbers = [accepted_on(client, officers, clock, date(2026, 4, 1)) for _ in range(3)]
    now = china(date(2026, 4, 3))
    first, second = session_factory(), session_factory()
    try:
        claimed = scanner.scan(first, now=now, batch=10_000)  # holds its batch, not committed yet
        assert claimed.scanned >= 3
        other = scanner.scan(second, now=now, batch=10_000)  # skips what the first holds
        assert other.raised == 0
        second.commit()
        first.commit()
        again = scanner.scan(second, now=now, batch=10_000)
        second.commit()
        assert again.raised == 0
    finally:
        first.close()
        second.close()
    for number in numbers:
        assert list(alerts(session_factory, number)) == ["time.step_due.review"]
        assert len(messages(session_factory, number, "alert.raised.v1")) == 1


def test_two_sessions_raising_the_same_finding_at_once_store_it_once(
    backend: str, client: TestClient, officers: Officers, clock: FixedClock,
    session_factory: sessionmaker[Session],
) -> None:
    if backend != "postgresql":
        pytest.skip("concurrent inserts on the unique index: PostgreSQL")
    number = accepted_on(client, officers, clock, date(2026, 4, 1))
    finding = Finding(rule="time.case_due", kind="time", level="yellow", message="即将到期")
    now = china(date(2026, 4, 8))
    results: dict[str, int] = {}

    def raise_in(name: str, session: Session, started: threading.Event | None = None) -> None:
        case = session.scalars(select(Case).where(Case.tracking_no == number)).one()
        if started is not None:
            started.set()
        results[name] = len(raise_findings(session, case=case, findings=[finding], now=now))

    first, second = session_factory(), session_factory()
    try:
        raise_in("first", first)  # inserted, not committed: the second waits on the unique index
        started = threading.Event()
        thread = threading.Thread(target=raise_in, args=("second", second, started))
        thread.start()
        assert started.wait(10)
        first.commit()
        thread.join(10)
        second.commit()
    finally:
        first.close()
        second.close()
    assert results == {"first": 1, "second": 0}
    with session_factory() as session:
        count = session.scalar(select(func.count()).select_from(Alert).join(Case, Case.id == Alert.case_id)
                               .where(Case.tracking_no == number))
    assert count == 1
    assert len(messages(session_factory, number, "alert.raised.v1")) == 1


# --- escalation ---------------------------------------------------------------------------------------------


def test_an_unresolved_red_alert_escalates_one_level_up_after_three_working_days(
    client: TestClient, officers: Officers, clock: FixedClock, supervisor: Worker,
    session_factory: sessionmaker[Session],
) -> None:
    number = accepted_on(client, officers, clock, date(2026, 4, 1))
    run_on(supervisor, date(2026, 4, 10))  # time.case_overdue raised on Friday 04-10
    assert alerts(session_factory, number)["time.case_overdue"].raised_on == date(2026, 4, 10)
    # 04-13 (1), 04-14 (2), 04-15 (3): still within its 3 working days; 04-16 (4): escalated.
    run_on(supervisor, date(2026, 4, 15))
    overdue = alerts(session_factory, number)["time.case_overdue"]
    assert (overdue.supervisor_region_code, overdue.escalations) == ("210100", 0)
    run_on(supervisor, date(2026, 4, 16))
    overdue = alerts(session_factory, number)["time.case_overdue"]
    assert (overdue.supervisor_region_code, overdue.escalations) == ("210000", 1)
    assert overdue.history[-1]["action"] == "escalated" and overdue.history[-1]["to_region"] == "210000"
    sent = [m for m in messages(session_factory, number, "alert.escalated.v1") if m["rule"] == "time.case_overdue"]
    assert len(sent) == 1 and sent[0]["supervisor_region"] == "210000" and sent[0]["from_region"] == "210100"
    # Another worker's pass the same day, and later days at the province: nobody above, nothing more.
    with unit_of_work(session_factory) as session:
        scanner.escalate_all(session, now=china(date(2026, 4, 16)))
        scanner.escalate_all(session, now=china(date(2026, 4, 30)))
    assert alerts(session_factory, number)["time.case_overdue"].escalations == 1


def test_a_ruled_red_alert_does_not_escalate(
    client: TestClient, officers: Officers, clock: FixedClock, supervisor: Worker,
    session_factory: sessionmaker[Session],
) -> None:
    number = accepted_on(client, officers, clock, date(2026, 4, 1))
    run_on(supervisor, date(2026, 4, 10))
    with unit_of_work(session_factory) as session:
        session.execute(update(Alert).where(Alert.id.in_([a.id for a in alerts(session_factory, number).values()]))
                        .values(status="accepted", ruling="accepted"))
    run_on(supervisor, date(2026, 4, 20))
    assert {a.escalations for a in alerts(session_factory, number).values()} == {0}


# --- Art. 32: a partner's late supplement notice ---------------------------------------------------------------


def test_a_partner_record_with_a_supplement_notice_after_five_working_days_is_red(
    client: TestClient, supervisor: Worker, session_factory: sessionmaker[Session],
) -> None:
    # Submitted Monday 03-09 at 09:00: received that day, the notice was due by 03-16; given on 03-18.
    record = case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}", steps=1)
    record["steps"].append({**step(2, "request_supplement", "awaiting_supplement"),
                            "at": "2026-03-18T10:00:00+08:00", "opinion": "请补充执业证明"})
    record["state"] = "awaiting_supplement"
    response = client.post("/api/v1/exchange/records", json={"records": [envelope(record)]},
                           auth=("shenyang", PARTNER_SECRET))
    assert response.status_code == 200, response.text
    number = response.json()["results"][0]["tracking_no"]
    run_on(supervisor, date(2026, 3, 18))
    late = alerts(session_factory, number)["time.supplement_notice_late"]
    assert (late.level, late.kind) == ("red", "time")
    assert late.detail == {"notice_on": "2026-03-18", "received_on": "2026-03-09", "intake_deadline": "2026-03-16"}


def test_a_supplement_notice_within_five_working_days_is_not_flagged(
    client: TestClient, clock: FixedClock, officers: Officers, supervisor: Worker,
    session_factory: sessionmaker[Session],
) -> None:
    on(clock, officers, date(2026, 4, 1))
    number = str(submitted(client)["tracking_no"])
    on(clock, officers, date(2026, 4, 8))  # the 4th working day after receipt (Qingming not counted)
    act(client, officers, number, INTAKE, "request_supplement", "请补充执业证明")
    run_on(supervisor, date(2026, 4, 8))
    assert "time.supplement_notice_late" not in alerts(session_factory, number)
    assert row(session_factory, number).colour_due_on is None  # waiting for the applicant: no intake clock


def test_a_partner_case_left_at_intake_is_judged_like_the_hubs_own(
    client: TestClient, supervisor: Worker, session_factory: sessionmaker[Session],
) -> None:
    # Reported with its submission only (Monday 03-09 09:00): 03-10 (1) … 03-13 (4: yellow), 03-16 (5), red 03-17.
    record = case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}", steps=1)
    response = client.post("/api/v1/exchange/records", json={"records": [envelope(record)]},
                           auth=("shenyang", PARTNER_SECRET))
    assert response.status_code == 200, response.text
    number = response.json()["results"][0]["tracking_no"]
    run_on(supervisor, date(2026, 3, 12))
    assert alerts(session_factory, number) == {}
    run_on(supervisor, date(2026, 3, 13))
    assert set(alerts(session_factory, number)) == {"time.intake_due"}
    run_on(supervisor, date(2026, 3, 16))
    assert "time.intake_overdue" not in alerts(session_factory, number)
    run_on(supervisor, date(2026, 3, 17))
    assert alerts(session_factory, number)["time.intake_overdue"].level == "red"
