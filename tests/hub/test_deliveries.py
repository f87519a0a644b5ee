"""Outbound deliveries: national result reporting and legacy case pushes, over real sockets to the mocks.

Time is the FixedClock: the delivery schedule (next_attempt_at) and the circuit breaker both read it,
so backoff and breaker reset are tested by moving the clock, never by sleeping.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from adapters.resilience import ResiliencePolicy, exponential_backoff_s
from hub.cases.models import Case
from hub.clock import FixedClock
from hub.db import unit_of_work
from hub.deliveries import service as deliveries
from hub.deliveries.clients import DeliveryClients
from hub.deliveries.models import Delivery
from hub.exchange import partners as partners_service
from hub.exchange.models import Partner
from hub.outbox.alerts import ALERT_TYPE
from hub.outbox.models import OutboxMessage
from hub.supervision.models import Alert
from mocks.legacy_department import LegacyMock, start_legacy
from mocks.national import NationalMock, start_national
from tests.support import PARTNER_SECRET, PROCESS_KEYS, case_record, envelope, item_code, officer_of, step, submit

KEY = "physician-practice-registration"  # 沈阳市卫健委 (210100-007): national reporting, legacy system
NOT_REPORTED = "food-business-licence"  # 和平区市场监管局 (210102-001): no national reporting, no legacy system
OTHER_DEPARTMENT = "teacher-qualification-senior"  # 沈阳市教育局 (210100-008)
# Quick immediate retries, no sleeping; a breaker that stays closed unless a test wants it open.
POLICY = ResiliencePolicy(timeout_s=2.0, attempts=3, backoff_initial_s=0.001, backoff_max_s=0.002,
                          breaker_failures=50, breaker_reset_s=60.0, max_concurrency=4)
SCHEDULE = deliveries.DeliveryPolicy(max_attempts=3, backoff_initial_s=30.0, backoff_max_s=3600.0, jitter=0.2)


@pytest.fixture(scope="module")
def national() -> Iterator[NationalMock]:
    mock = start_national()
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def legacy() -> Iterator[LegacyMock]:
    mock = start_legacy(hub_url=None)
    yield mock
    mock.stop()


def _point(factory: sessionmaker[Session], national: str | None, legacy: str | None) -> None:
    with unit_of_work(factory) as session:
        session.get(Partner, "national-results").endpoint = national  # type: ignore[union-attr]
        session.get(Partner, "legacy-sy-wj").endpoint = legacy  # type: ignore[union-attr]


@pytest.fixture
def partners(session_factory: sessionmaker[Session], national: NationalMock, legacy: LegacyMock) -> Iterator[None]:
    """Partners pointed at the mocks, mocks healthy and empty; unsent deliveries left by other tests removed
    (parking them as failed would put them in "retry all failed" and in the recent-failures list)."""
    _point(session_factory, national.wsdl_url, legacy.wsdl_url)
    with unit_of_work(session_factory) as session:
        session.execute(delete(Delivery).where(Delivery.status != "sent"))
    for mock in (national, legacy):
        mock.server.recover()
        mock.server.faults.reset_counts()
    national.state.clear()
    yield
    _point(session_factory, None, None)
    for mock in (national, legacy):
        mock.server.recover()


@pytest.fixture
def clients(clock: FixedClock) -> DeliveryClients:
    return DeliveryClients(POLICY, clock=lambda: clock.now().timestamp(), sleep=lambda _: None)


def decide(client: TestClient, officers, number: str, key: str = KEY) -> None:
    for role, action, opinion in (("intake", "accept", None), ("reviewer", "review", "材料齐全"),
                                  ("approver", "grant", "准予许可"), ("approver", "complete", None)):
        response = client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": opinion},
                               headers=officers.headers(officer_of(key, role)))
        assert response.status_code == 200, response.text


def of_case(session: Session, number: str, kind: str | None = None) -> list[Delivery]:
    session.expire_all()
    query = select(Delivery).join(Case, Case.id == Delivery.case_id).where(Case.tracking_no == number)
    if kind:
        query = query.where(Delivery.kind == kind)
    return list(session.scalars(query.order_by(Delivery.id)))


def run(session: Session, clock: FixedClock, clients: DeliveryClients) -> deliveries.RunReport:
    report = deliveries.run_due(session, now=clock.now(), clients=clients, policy=SCHEDULE, rng=random.Random(7))
    session.commit()
    return report


def received_cases(mock: NationalMock) -> list[str]:
    return [r["caseNumber"] for r in mock.received()]


# --- creation -------------------------------------------------------------------------------------


def test_completing_a_nationally_reported_case_creates_a_delivery(client: TestClient, officers, session: Session,
                                                                  clock: FixedClock, partners: None) -> None:
    number = submit(client, KEY)["tracking_no"]
    assert of_case(session, number, "national_result") == []
    clock.advance(days=1)
    decide(client, officers, number)
    [delivery] = of_case(session, number, "national_result")
    assert (delivery.partner_code, delivery.status, delivery.attempts) == ("national-results", "pending", 0)
    assert delivery.next_attempt_at == clock.now()  # due at once, written with the completion


def test_other_items_owe_nothing_to_the_national_system(client: TestClient, officers, session: Session,
                                                        partners: None) -> None:
    number = submit(client, NOT_REPORTED)["tracking_no"]
    decide(client, officers, number, NOT_REPORTED)
    assert of_case(session, number) == []


# --- national forwarding ----------------------------------------------------------------------------


def test_run_due_reports_the_result_to_the_national_system(client: TestClient, officers, session: Session,
                                                           clock: FixedClock, clients: DeliveryClients,
                                                           national: NationalMock, partners: None) -> None:
    number = submit(client, KEY)["tracking_no"]
    decide(client, officers, number)
    [delivery] = of_case(session, number, "national_result")
    report = run(session, clock, clients)
    assert delivery.id in report.sent
    [got] = [r for r in national.received() if r["caseNumber"] == number]
    assert got["messageId"] == str(delivery.message_id)
    assert (got["itemNationalCode"], got["region"], got["result"]) == ("000114016000", "210100", "granted")
    assert got["departmentCreditCode"] == "11210100035341606A"
    assert got["exchange"] == {"client": "ln-approval-hub", "service": "national-results.SubmitResult",
                               "onBehalfOf": "210100007", "case": number}
    assert "applicantName" not in got and "idNumber" not in json.dumps(got)  # no personal data leaves
    [delivery] = of_case(session, number, "national_result")
    assert (delivery.status, delivery.receipt, delivery.attempts) == ("sent", got["receiptId"], 1)
    assert run(session, clock, clients).total == 0  # nothing twice


def test_a_failing_national_system_is_retried_with_backoff_then_given_up_then_retried_by_hand(
        client: TestClient, officers, session: Session, clock: FixedClock, clients: DeliveryClients,
        national: NationalMock, partners: None) -> None:
    number = submit(client, KEY)["tracking_no"]
    decide(client, officers, number)
    [delivery] = of_case(session, number, "national_result")
    national.server.faults.update({"error_rate": 1.0, "error": "soap_fault"})

    started = clock.now()
    assert delivery.id in run(session, clock, clients).failed
    [delivery] = of_case(session, number, "national_result")
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "SOAP Server fault" in (delivery.last_error or "")
    assert started + timedelta(seconds=30) <= delivery.next_attempt_at <= started + timedelta(seconds=36)
    assert national.server.faults.requests_total() == POLICY.attempts  # quick retries inside one attempt

    assert run(session, clock, clients).total == 0  # not due yet: no call at all
    assert national.server.faults.requests_total() == POLICY.attempts

    clock.advance(seconds=40)
    run(session, clock, clients)
    [delivery] = of_case(session, number, "national_result")
    assert delivery.attempts == 2
    assert clock.now() + timedelta(seconds=60) <= delivery.next_attempt_at <= clock.now() + timedelta(seconds=72)

    clock.advance(seconds=80)
    run(session, clock, clients)
    [delivery] = of_case(session, number, "national_result")
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)  # gave up

    report = deliveries.status(session)
    [failure] = [f for f in report.failures if f.id == delivery.id]
    assert failure.gave_up and failure.tracking_no == number and "SOAP Server fault" in (failure.last_error or "")
    assert report.count(partner="national-results", kind="national_result", status="failed") >= 1
    clock.advance(hours=2)
    assert delivery.id not in run(session, clock, clients).failed  # given up: not retried on its own
    assert number not in received_cases(national)

    national.server.recover()
    assert deliveries.retry(session, now=clock.now(), ids=[delivery.id]) == 1
    session.commit()
    assert delivery.id in run(session, clock, clients).sent
    assert number in received_cases(national)
    [delivery] = of_case(session, number, "national_result")
    assert (delivery.status, delivery.last_error) == ("sent", None)


def test_retry_of_every_failed_delivery(client: TestClient, officers, session: Session, clock: FixedClock,
                                        clients: DeliveryClients, national: NationalMock, partners: None) -> None:
    number = submit(client, KEY)["tracking_no"]
    decide(client, officers, number)
    national.server.faults.update({"error_rate": 1.0, "error": "http_5xx", "error_status": 500})
    run(session, clock, clients)
    [delivery] = of_case(session, number, "national_result")
    assert delivery.status == "failed" and "HTTP 500" in (delivery.last_error or "")
    national.server.recover()
    assert deliveries.retry(session, now=clock.now(), ids=[]) == 0
    assert deliveries.retry(session, now=clock.now()) >= 1  # every failed one, the parked ones included
    session.commit()
    run(session, clock, clients)
    assert of_case(session, number, "national_result")[0].status == "sent"


def test_the_breaker_opens_after_repeated_failures_and_closes_after_recovery(
        client: TestClient, officers, session: Session, clock: FixedClock, national: NationalMock,
        partners: None) -> None:
    policy = ResiliencePolicy(timeout_s=2.0, attempts=1, backoff_initial_s=0.001, backoff_max_s=0.002,
                              breaker_failures=2, breaker_reset_s=60.0, max_concurrency=4)
    clients = DeliveryClients(policy, clock=lambda: clock.now().timestamp(), sleep=lambda _: None)
    numbers = [submit(client, KEY)["tracking_no"] for _ in range(3)]
    for number in numbers:
        decide(client, officers, number)
    national.server.faults.update({"error_rate": 1.0, "error": "http_5xx", "error_status": 503})

    run(session, clock, clients)
    assert national.server.faults.requests_total() == 2  # the third failed fast: breaker open, no network
    assert clients.status()["national-results"]["breaker"] == "open"
    third = of_case(session, numbers[2], "national_result")[0]
    assert third.attempts == 0 and "circuit breaker open" in (third.last_error or "")

    clock.advance(seconds=40)
    run(session, clock, clients)
    assert national.server.faults.requests_total() == 2  # still open: nothing went out
    assert {of_case(session, n, "national_result")[0].attempts for n in numbers} == {0, 1}

    national.server.recover()
    clock.advance(minutes=5)  # past the reset time: a trial call is let through and succeeds
    report = run(session, clock, clients)
    assert {of_case(session, n, "national_result")[0].status for n in numbers} == {"sent"}
    assert clients.status()["national-results"]["breaker"] == "closed"
    assert set(numbers) <= set(received_cases(national))
    assert len(report.sent) >= 3


def test_a_partner_without_endpoint_parks_its_deliveries_until_the_endpoint_is_set(
        client: TestClient, officers, session: Session, clock: FixedClock, clients: DeliveryClients,
        session_factory: sessionmaker[Session], national: NationalMock, partners: None) -> None:
    number = submit(client, KEY)["tracking_no"]
    decide(client, officers, number)
    _point(session_factory, None, None)
    run(session, clock, clients)
    [delivery] = of_case(session, number, "national_result")
    # Kept, with the reason and what to do, but not on a timer: nothing changes until the endpoint is set.
    assert delivery.status == "failed" and delivery.attempts == 0 and delivery.next_attempt_at is None
    assert "no endpoint configured" in (delivery.last_error or "")
    assert "hub partners endpoint national-results" in (delivery.last_error or "")
    parked_at = delivery.updated_at
    clock.advance(hours=1)
    assert deliveries.due_count(session, now=clock.now()) == 0
    run(session, clock, clients)
    session.refresh(delivery)
    assert delivery.updated_at == parked_at  # no worker tick touched it

    with unit_of_work(session_factory) as other:
        partners_service.set_endpoint(other, code="national-results", endpoint=national.wsdl_url)
    session.refresh(delivery)
    assert delivery.status == "pending" and delivery.next_attempt_at == parked_at
    run(session, clock, clients)
    session.refresh(delivery)
    assert delivery.status == "sent" and delivery.attempts == 1
    assert number in received_cases(national)


def test_setting_an_endpoint_releases_only_deliveries_parked_for_want_of_one(
        client: TestClient, officers, session: Session, clock: FixedClock, clients: DeliveryClients,
        session_factory: sessionmaker[Session], national: NationalMock, partners: None) -> None:
    number = submit(client, KEY)["tracking_no"]
    decide(client, officers, number)
    [delivery] = of_case(session, number, "national_result")
    given_up = "国家平台拒收 (refused for good)"
    delivery.status, delivery.last_error, delivery.next_attempt_at = "failed", given_up, None
    session.commit()
    with unit_of_work(session_factory) as other:
        partners_service.set_endpoint(other, code="national-results", endpoint=national.wsdl_url)
    session.refresh(delivery)
    assert (delivery.status, delivery.last_error, delivery.next_attempt_at) == ("failed", given_up, None)


# --- legacy push ------------------------------------------------------------------------------------


def test_a_new_case_of_a_legacy_department_is_pushed_to_its_system(client: TestClient, session: Session,
                                                                   clock: FixedClock, clients: DeliveryClients,
                                                                   legacy: LegacyMock, partners: None) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]
    [delivery] = of_case(session, number)
    assert (delivery.partner_code, delivery.kind, delivery.status) == ("legacy-sy-wj", "legacy_case", "pending")
    assert delivery.id in run(session, clock, clients).sent
    # By the delivery's message id: the mock lives for the module, and the other backend's run of this test
    # pushed a case under the same first tracking number.
    [pushed] = [c for c in legacy.received() if c["messageId"] == str(delivery.message_id)]
    assert pushed["trackingNo"] == number
    assert (pushed["department"], pushed["itemCode"], pushed["state"]) == ("210100007", receipt["item_code"],
                                                                           "submitted")
    assert pushed["applicant"]["name"] == "张三丰" and len(pushed["applicant"]["idNumber"]) == 18
    assert json.loads(pushed["formJson"]) == session.scalar(select(Case.form_data).where(Case.tracking_no == number))
    assert pushed["exchange"]["case"] == number
    assert of_case(session, number)[0].receipt == pushed["ackId"]


def test_a_case_that_cannot_be_serialised_fails_alone_with_its_reason_and_an_alert(
        client: TestClient, session: Session, session_factory: sessionmaker[Session], clock: FixedClock,
        clients: DeliveryClients, legacy: LegacyMock, partners: None) -> None:
    good, bad = submit(client, KEY)["tracking_no"], submit(client, KEY)["tracking_no"]
    # Stored before the entrance rules existed: a control character XML 1.0 cannot carry.
    with unit_of_work(session_factory) as spoil:
        real_name = spoil.scalar(select(Case.applicant_name).where(Case.tracking_no == bad))
        spoil.execute(update(Case).where(Case.tracking_no == bad).values(applicant_name="张\x01三"))
    try:
        report = run(session, clock, clients)
        [sent], [failed] = of_case(session, good), of_case(session, bad)
        assert sent.id in report.sent and failed.id in report.failed
        assert good in [c["trackingNo"] for c in legacy.received()]
        assert bad not in [c["trackingNo"] for c in legacy.received()]
        assert failed.status == "failed" and failed.next_attempt_at is None  # retrying cannot help
        assert "unserialisable case, field applicant.name: rule xml_characters" in (failed.last_error or "")
        [alert] = session.scalars(select(OutboxMessage.payload).where(
            OutboxMessage.type == ALERT_TYPE, OutboxMessage.correlation_id == bad)).all()
        assert (alert["channel"], alert["field"]) == ("delivery.legacy_case", "applicant.name")
        assert "张" not in json.dumps(alert, ensure_ascii=False)
    finally:
        with unit_of_work(session_factory) as fix:
            fix.execute(update(Case).where(Case.tracking_no == bad).values(applicant_name=real_name))


def test_only_departments_with_a_configured_legacy_system_get_pushes(client: TestClient, session: Session,
                                                                     session_factory: sessionmaker[Session],
                                                                     partners: None) -> None:
    assert of_case(session, submit(client, OTHER_DEPARTMENT)["tracking_no"]) == []
    _point(session_factory, None, None)  # the legacy partner without an endpoint: not configured
    assert of_case(session, submit(client, KEY)["tracking_no"]) == []


# --- the operator's commands --------------------------------------------------------------------------


def test_cli_status_retry_and_run(client: TestClient, officers, session: Session, settings,
                                  national: NationalMock, partners: None,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from hub.deliveries.cli import deliveries_app
    from hub.settings import get_settings

    number = submit(client, KEY)["tracking_no"]
    decide(client, officers, number)
    national.server.faults.update({"error_rate": 1.0})
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        failed = runner.invoke(deliveries_app, ["run"])
        assert failed.exit_code == 1, failed.output
        shown = runner.invoke(deliveries_app, ["status", "--json"])
        assert shown.exit_code == 0, shown.output
        report = json.loads(shown.output)
        [failure] = [f for f in report["failures"] if f["tracking_no"] == number and f["kind"] == "national_result"]
        assert "SOAP Server fault" in failure["last_error"] and not failure["gave_up"]
        assert runner.invoke(deliveries_app, ["retry"]).exit_code == 2
        national.server.recover()
        assert runner.invoke(deliveries_app, ["retry", str(failure["id"])]).exit_code == 0
        sent = runner.invoke(deliveries_app, ["run"])
        assert sent.exit_code == 0, sent.output
        assert number in received_cases(national)
        assert "national-results" in runner.invoke(deliveries_app, ["status"]).output
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("attempts", [0, 1, 2, 3, 9, 14])
def test_the_delivery_schedule_is_the_one_backoff_formula_with_its_own_numbers(attempts: int) -> None:
    """30 s doubling per failed attempt up to 6 h, then up to +20 % (the same jitter draw)."""
    policy = deliveries.DeliveryPolicy()
    expected = exponential_backoff_s(attempts, initial_s=30.0, max_s=6 * 3600.0, jitter_ratio=0.2,
                                     rng=random.Random(attempts))
    assert policy.delay(attempts, random.Random(attempts)) == timedelta(seconds=expected)
    base = min(6 * 3600.0, 30.0 * 2 ** max(0, attempts - 1))
    assert timedelta(seconds=base) <= policy.delay(attempts) <= timedelta(seconds=base * 1.2)


# --- a partner case completed by single events (issue 13: 129 of 550 national deliveries failed for good) ------


def partner_case_completed_by_events(client: TestClient) -> str:
    """A city platform's case: a record of its first three steps, then `grant` and `complete` as two single
    case-event messages (no record ever carries a `result` block). Returns its tracking number."""
    ext = f"SY-{uuid.uuid4().hex[:12]}"
    record = envelope(case_record(item_code(client, KEY), external_id=ext, steps=3))
    events = [envelope({"external_id": ext, "step": step(seq, action, state)}, record_type="case-event")
              for seq, action, state in ((4, "grant", "granted"), (5, "complete", "completed"))]
    results = []
    for document in (record, *events):
        response = client.post("/api/v1/exchange/records", json={"records": [document]},
                               auth=("shenyang", PARTNER_SECRET))
        assert response.status_code == 200, response.text
        results.append(response.json()["results"][0])
    assert [r["status"] for r in results] == ["applied", "applied", "applied"], results
    return str(results[0]["tracking_no"])


def test_a_partner_case_completed_by_single_events_carries_its_result_and_completion_time(
        client: TestClient, session: Session, partners: None) -> None:
    number = partner_case_completed_by_events(client)
    case = session.scalar(select(Case).where(Case.tracking_no == number))
    assert case is not None and case.state == "completed"
    assert case.result == "granted"
    assert case.decided_at == datetime.fromisoformat(step(4, "grant", "granted")["at"])
    assert case.completed_at == datetime.fromisoformat(step(5, "complete", "completed")["at"])


def test_a_partner_case_completed_by_single_events_is_reported_once_with_its_result(
        client: TestClient, session: Session, clock: FixedClock, clients: DeliveryClients,
        national: NationalMock, partners: None) -> None:
    number = partner_case_completed_by_events(client)
    [delivery] = of_case(session, number, "national_result")
    assert delivery.id in run(session, clock, clients).sent
    [got] = [r for r in national.received() if r["caseNumber"] == number]
    assert got["result"] == "granted"
    [delivery] = of_case(session, number, "national_result")
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, None)
    assert run(session, clock, clients).total == 0  # nothing twice
    assert received_cases(national).count(number) == 1


def hub_cli(session: Session, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`hub …` as an operator runs it, on the tests' database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=session.get_bind().url.render_as_string(hide_password=False),
               HUB_DATA_DIR=str(tmp_path), HUB_LOG_JSON="true", COLUMNS="200", NO_COLOR="1", **PROCESS_KEYS)
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_a_result_delivery_that_cannot_be_built_is_a_visible_failure_with_its_reason_retried_and_alerted(
        client: TestClient, session: Session, clock: FixedClock, clients: DeliveryClients,
        national: NationalMock, partners: None, tmp_path: Path) -> None:
    number = partner_case_completed_by_events(client)
    # A case as the old code left it (events applied, no result): its delivery cannot be built.
    session.execute(update(Case).where(Case.tracking_no == number).values(result=None, completed_at=None))
    session.commit()
    [delivery] = of_case(session, number, "national_result")
    report = run(session, clock, clients)
    assert delivery.id in report.failed
    [delivery] = of_case(session, number, "national_result")
    assert delivery.status == "failed" and delivery.attempts == 1
    assert "not reportable" in (delivery.last_error or "") and "内部错误" not in (delivery.last_error or "")
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > clock.now()  # not given up
    assert number not in received_cases(national)
    case_id = session.scalar(select(Case.id).where(Case.tracking_no == number))
    alerts = list(session.scalars(select(Alert).where(Alert.case_id == case_id,
                                                      Alert.rule == deliveries.NOT_REPORTABLE_RULE)))
    assert len(alerts) == 1 and alerts[0].detail["delivery_id"] == delivery.id

    shown = hub_cli(session, tmp_path, "deliveries", "status", "--json", "--recent", "1000")
    assert shown.returncode == 0, shown.stderr
    [failure] = [f for f in json.loads(shown.stdout)["failures"] if f["id"] == delivery.id]
    assert "not reportable" in failure["last_error"] and not failure["gave_up"]

    clock.advance(seconds=40)  # due again: still failing, the alert is not raised twice
    assert delivery.id in run(session, clock, clients).failed
    assert session.scalar(select(func.count()).select_from(Alert).where(
        Alert.case_id == case_id, Alert.rule == deliveries.NOT_REPORTABLE_RULE)) == 1

    # The case corrected (as a later record would), then retried by hand: reported once, with its result.
    session.execute(update(Case).where(Case.tracking_no == number).values(
        result="granted", completed_at=clock.now()))
    session.commit()
    assert deliveries.retry(session, now=clock.now(), ids=[delivery.id]) == 1  # `hub deliveries retry ID`
    session.commit()
    assert delivery.id in run(session, clock, clients).sent
    assert received_cases(national).count(number) == 1
