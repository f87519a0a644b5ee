"""Issue 10's "Done when", end to end: electronic supervision (电子监察) over HTTP, AMQP and the worker's scanner.

* An overdue case turns yellow and then red on exactly the right working days (the hub's clock is injected and
  moved day by day; the time-limit scanner runs as ``hub worker`` runs it, no sleeping), the department
  explains, the county supervisor records accountability (责任追究, Administrative Licensing Law Art. 60,
  Art. 71–77), and a red alert left unresolved for the region's escalation period escalates one level up,
  to the city's supervisor.
* A city platform's case record that jumps from submission to grant without acceptance raises a procedure
  alert when it arrives over AMQP — through the in-process bus on every backend, and through RabbitMQ (the
  vhost of HUB_TEST_AMQP_URL) on PostgreSQL — and still gets a deadline from its submission.
* The same officer reviewing and granting raises a separation-of-duties alert; different officers raise none.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import InProcessBus, make_bus
from adapters.amqp.messages import OutboundMessage
from adapters.amqp.topology import INBOUND_EXCHANGE
from hub.auth.models import Officer
from hub.auth.service import hash_password
from hub.cases.models import Case
from hub.clock import CHINA_TZ, FixedClock
from hub.db import unit_of_work
from hub.org.service import get_department
from hub.settings import Settings
from hub.worker import Worker
from tests.conftest import DEMO_PASSWORD
from tests.support import PARTNER_SECRET, envelope, item_code, officer_of, person, submit, wait_until

# Heping district (210102) market supervision: promised 5 working days, statutory 10.
KEY = "food-business-licence"
COUNTY, CITY = "210102", "210100"
COUNTY_SUPERVISOR, CITY_SUPERVISOR = "syhp_yshj_supervisor", "sy_yshj_supervisor"
PARTNER_ITEM = "physician-practice-registration"  # Shenyang's, reported by the Shenyang city platform

# The case-level time rules of the scanner (hub/supervision/scanner.py): yellow while close, red when overdue.
CASE_TIME_RULES = {"time.case_due", "time.case_overdue"}


def at(day: date, hour: int = 10) -> datetime:
    """``hour`` o'clock China time on ``day``, as the hub's clock gives it."""
    return datetime.combine(day, time(hour), CHINA_TZ).astimezone(UTC)


class Desk:
    """Officers and supervisors at their screens: signs them in again whenever the clock has moved past their
    tokens' lifetime, and reads and answers alerts over HTTP."""

    def __init__(self, client: TestClient, clock: FixedClock) -> None:
        self.client, self.clock = client, clock
        self._tokens: dict[str, str] = {}

    def on(self, day: date) -> None:
        self.clock.set(at(day))
        self._tokens.clear()  # bearer tokens live 30 minutes

    def headers(self, username: str) -> dict[str, str]:
        if username not in self._tokens:
            response = self.client.post("/api/v1/auth/token", data={"username": username, "password": DEMO_PASSWORD})
            assert response.status_code == 200, response.text
            self._tokens[username] = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._tokens[username]}"}

    def act(self, username: str, number: str, action: str, opinion: str = "符合条件") -> dict[str, Any]:
        response = self.client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": opinion},
                                    headers=self.headers(username))
        assert response.status_code == 200, (username, action, response.text)
        return dict(response.json())

    def alerts(self, username: str, number: str, **filters: str) -> list[dict[str, Any]]:
        response = self.client.get("/api/v1/supervision/alerts", params={"case": number, **filters},
                                   headers=self.headers(username))
        assert response.status_code == 200, response.text
        return list(response.json()["alerts"])

    def post(self, username: str, alert_id: int, what: str, body: dict[str, Any]) -> Any:
        return self.client.post(f"/api/v1/supervision/alerts/{alert_id}/{what}", json=body,
                                headers=self.headers(username))


def run_scanner(worker: Worker) -> None:
    """One tick of the worker's supervision jobs (time-limit scan, escalation) at the clock's time, until
    they report nothing left — what ``hub worker`` does every minute."""
    jobs = [job for job in worker.jobs if job.name.startswith("supervision")]
    assert jobs, f"hub worker runs no supervision job: {[job.name for job in worker.jobs]}"
    for job in jobs:
        while job.run():
            pass


@pytest.fixture
def scanning_worker(settings: Settings, session_factory: sessionmaker[Session], clock: FixedClock
                    ) -> Iterator[Worker]:
    """The worker as ``hub worker`` builds it, on the test's clock; its jobs are run by hand (not started)."""
    worker = Worker(settings=settings, factory=session_factory, clock=clock, bus=InProcessBus(user="hub"),
                    consume_inbound=False)
    yield worker
    worker.stop(timeout=5)


def case_time_alerts(desk: Desk, username: str, number: str) -> dict[str, dict[str, Any]]:
    """level → the case-level time alert of that level."""
    return {a["level"]: a for a in desk.alerts(username, number, kind="time") if a["rule"] in CASE_TIME_RULES}


def working_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_an_overdue_case_turns_yellow_then_red_is_explained_ruled_and_escalated(
        client: TestClient, clock: FixedClock, scanning_worker: Worker) -> None:
    desk = Desk(client, clock)
    accepted = date(2026, 3, 11)  # START's day, a Wednesday
    desk.on(accepted)
    intake = officer_of(KEY, "intake")
    ruled, left = (submit(client, KEY, applicant=person(name=name))["tracking_no"] for name in ("李四", "王五"))
    for number in (ruled, left):
        assert desk.act(intake, number, "accept")["state"] == "under_review"
    # Promised 5 working days from Wed 11 March: Thu 12 (1), Fri 13 (2), Mon 16 (3), Tue 17 (4 = 80 % used, one
    # left: yellow), Wed 18 (5: the deadline), Thu 19 overdue: red. Nobody acts on either case meanwhile.
    colour: dict[date, set[str]] = {}
    for day in working_days(date(2026, 3, 11), date(2026, 3, 19)):
        desk.on(day)
        run_scanner(scanning_worker)
        colour[day] = set(case_time_alerts(desk, COUNTY_SUPERVISOR, ruled))
        assert colour[day] == set(case_time_alerts(desk, COUNTY_SUPERVISOR, left)), day
    assert colour[date(2026, 3, 16)] == set(), "yellow too early"
    assert colour[date(2026, 3, 17)] == {"yellow"}
    assert colour[date(2026, 3, 18)] == {"yellow"}
    assert colour[date(2026, 3, 19)] == {"yellow", "red"}
    for day in (date(2026, 3, 14), date(2026, 3, 15)):  # the weekend counts nothing
        assert colour[day] == colour[date(2026, 3, 13)]

    red = case_time_alerts(desk, COUNTY_SUPERVISOR, ruled)["red"]
    assert red["status"] == "open" and red["supervisor_region_code"] == COUNTY
    assert red["raised_on"] == "2026-03-19"
    # The department sees its alert and explains it (情况说明, 整改情况).
    department = officer_of(KEY, "reviewer")
    assert red["id"] in [a["id"] for a in desk.alerts(department, ruled, level="red")]
    explained = desk.post(department, red["id"], "explanation", {
        "explanation": "审查人员请假，未及时移交", "correction": "已建立AB岗制度，当日完成审查"})
    assert explained.status_code == 200, explained.text
    assert explained.json()["status"] == "explained"
    # The county supervisor holds the reviewer accountable.
    ruling = desk.post(COUNTY_SUPERVISOR, red["id"], "ruling", {
        "ruling": "accountability", "opinion": "说明不成立",
        "accountability": {"measure": "诫勉谈话", "person": "王审查", "date": "2026-03-19"}})
    assert ruling.status_code == 200, ruling.text
    body = ruling.json()
    assert body["status"] == "accountability"
    assert body["accountability"] == {"measure": "诫勉谈话", "person": "王审查", "date": "2026-03-19"}
    assert [step["action"] for step in body["history"]] == ["raised", "explained", "ruled"]

    # The other red is left alone: after 3 working days (the default red_escalation_days) it goes to the city.
    # The weekend in between counts nothing.
    escalated_on = None
    for day in working_days(date(2026, 3, 20), date(2026, 3, 26)):
        desk.on(day)
        run_scanner(scanning_worker)
        alert = case_time_alerts(desk, CITY_SUPERVISOR, left).get("red")
        if alert is not None and alert["supervisor_region_code"] == CITY and escalated_on is None:
            escalated_on = day
            assert alert["escalations"] == 1
    # Raised Thu 19 March; Fri 20, Mon 23, Tue 24 are the three working days it had: on Wed 25 it goes up.
    assert escalated_on == date(2026, 3, 25)
    escalated = case_time_alerts(desk, CITY_SUPERVISOR, left)["red"]
    # Now the city rules on it, not the county; the ruled alert stays where it was.
    refused = desk.post(COUNTY_SUPERVISOR, escalated["id"], "ruling", {"ruling": "accepted"})
    assert refused.status_code in (403, 404, 409), refused.text
    accepted_ruling = desk.post(CITY_SUPERVISOR, escalated["id"], "ruling", {"ruling": "accepted",
                                                                           "opinion": "情况属实"})
    assert accepted_ruling.status_code == 200, accepted_ruling.text
    assert case_time_alerts(desk, COUNTY_SUPERVISOR, ruled)["red"]["supervisor_region_code"] == COUNTY


# --- separation of duties at the hub ---------------------------------------------------------------------

DUAL = "hp_scjg_dual_role"  # a small district office: one section chief both reviews and decides


@pytest.fixture
def dual_role_officer(session_factory: sessionmaker[Session], clock: FixedClock) -> str:
    """An officer of the item's department holding the reviewer and the approver roles (as small offices
    configure their accounts): the hub lets him do both, supervision flags it."""
    with unit_of_work(session_factory) as session:
        if session.scalar(select(Officer).where(Officer.username == DUAL)) is None:
            department = get_department(session, region_code=COUNTY, code="001")
            session.add(Officer(username=DUAL, password_hash=hash_password(DEMO_PASSWORD), name="赵科长",
                                region_code=COUNTY, department_id=department.id, roles=["reviewer", "approver"],
                                created_at=clock.now()))
    return DUAL


def test_the_same_officer_reviewing_and_granting_raises_a_separation_of_duties_alert(
        client: TestClient, clock: FixedClock, dual_role_officer: str) -> None:
    desk = Desk(client, clock)
    desk.on(date(2026, 3, 11))
    number = submit(client, KEY, applicant=person(name="钱七"))["tracking_no"]
    desk.act(officer_of(KEY, "intake"), number, "accept")
    desk.act(dual_role_officer, number, "review")
    desk.act(dual_role_officer, number, "grant")

    found = desk.alerts(COUNTY_SUPERVISOR, number, kind="procedure")
    assert [(a["rule"], a["level"]) for a in found] == [("procedure.separation_of_duties", "red")]
    assert found[0]["department"] == f"{COUNTY}001"
    assert [a["id"] for a in desk.alerts(officer_of(KEY, "reviewer"), number)] == [found[0]["id"]]


def test_different_officers_reviewing_and_granting_raise_no_procedure_alert(
        client: TestClient, clock: FixedClock) -> None:
    desk = Desk(client, clock)
    desk.on(date(2026, 3, 11))
    number = submit(client, KEY, applicant=person(name="孙八"))["tracking_no"]
    for role, action in (("intake", "accept"), ("reviewer", "review"), ("approver", "grant")):
        desk.act(officer_of(KEY, role), number, action)
    assert desk.alerts(COUNTY_SUPERVISOR, number) == []


# --- a city platform's record over AMQP -----------------------------------------------------------------


def skipped_acceptance_record(code: str, external_id: str) -> dict[str, Any]:
    """Submitted on Mon 9 March, granted on Tue 10 March with no acceptance and no review in between."""
    return {
        "external_id": external_id, "record_version": 1, "item_code": code, "region": CITY,
        "applicant": {"type": "1", "name": "赵六", "id_type": "citizen_id", "id_number": person()["id_number"]},
        "submitted_at": "2026-03-09T09:00:00+08:00", "state": "granted",
        "steps": [
            {"seq": 1, "action": "submit", "to_state": "submitted", "at": "2026-03-09T09:00:00+08:00",
             "officer": "网上申报", "opinion": "申请"},
            {"seq": 2, "action": "grant", "to_state": "granted", "at": "2026-03-10T10:00:00+08:00",
             "officer": "王科员", "opinion": "准予许可"},
        ],
    }


def publish_record(publish: Callable[[OutboundMessage], Any], record: dict[str, Any]) -> None:
    document = envelope(record, source="shenyang", region=CITY)
    publish(OutboundMessage(exchange=INBOUND_EXCHANGE, routing_key="shenyang.case-record.v1",
                            body=json.dumps(document).encode(), type="case-record",
                            message_id=str(document["message_id"]), user_id="shenyang"))


def reported_case(session_factory: sessionmaker[Session], external_id: str) -> Case | None:
    with session_factory() as session:
        return session.scalar(select(Case).where(Case.origin_partner == "shenyang", Case.external_id == external_id))


def check_procedure_alert(desk: Desk, session_factory: sessionmaker[Session], external_id: str) -> None:
    case = reported_case(session_factory, external_id)
    assert case is not None
    # The exchange still gives it a deadline, counted from its submission.
    assert case.deadline is not None
    found = {a["rule"]: a for a in desk.alerts(CITY_SUPERVISOR, case.tracking_no, kind="procedure")}
    assert "procedure.skipped_step" in found, found
    skipped = found["procedure.skipped_step"]
    assert skipped["level"] == "red" and skipped["status"] == "open"
    assert skipped["detail"].get("no_acceptance") is True
    # The province sees it too; the county below does not (the case is the city's).
    assert skipped["id"] in {a["id"] for a in desk.alerts("ln_yshj_supervisor", case.tracking_no)}
    assert desk.alerts(COUNTY_SUPERVISOR, case.tracking_no) == []


def test_a_reported_case_without_acceptance_raises_a_procedure_alert_through_the_bus(
        client: TestClient, clock: FixedClock, settings: Settings, session_factory: sessionmaker[Session]) -> None:
    desk = Desk(client, clock)
    desk.on(date(2026, 3, 11))
    bus = InProcessBus(user="hub", retry_initial_s=0.01, retry_max_s=0.02)
    worker = Worker(settings=settings, factory=session_factory, clock=clock, bus=bus)
    worker.start()
    try:
        external_id = f"SUP-{uuid.uuid4().hex[:10]}"
        publish_record(bus.as_user("shenyang").publish,
                       skipped_acceptance_record(item_code(client, PARTNER_ITEM), external_id))
        assert wait_until(lambda: reported_case(session_factory, external_id) is not None)
    finally:
        worker.stop(timeout=5)
    check_procedure_alert(desk, session_factory, external_id)


# RabbitMQ: the vhost of HUB_TEST_AMQP_URL (each engineer's own), the Shenyang platform's user provisioned in it.


@contextmanager
def shenyang_on_rabbitmq(amqp_url: str) -> Iterator[str]:
    """The Shenyang platform's AMQP URL in the vhost of ``amqp_url``, its user provisioned there as ``hub
    partners sync`` does; deleted afterwards only if this test created it (other suites share the user)."""
    import httpx

    from adapters.amqp import delete_partner_user, provision_partner_user

    management = os.environ.get("HUB_TEST_RABBITMQ_MANAGEMENT_URL")
    if not management:
        pytest.fail("HUB_TEST_RABBITMQ_MANAGEMENT_URL is unset: the RabbitMQ variant needs the management API")
    parts = urlsplit(amqp_url)
    admin, password = unquote(parts.username or ""), unquote(parts.password or "")
    vhost = unquote(parts.path.lstrip("/")) or "/"
    with httpx.Client(base_url=management.rstrip("/"), auth=(admin, password), timeout=60, trust_env=False) as api:
        created = api.get("/api/users/shenyang").status_code == 404
    provision_partner_user(management, admin, password, vhost, "shenyang", PARTNER_SECRET)
    netloc = f"shenyang:{quote(PARTNER_SECRET, safe='')}@{parts.hostname}:{parts.port or 5672}"
    try:
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        if created:
            delete_partner_user(management, admin, password, "shenyang")


@contextmanager
def alert_events(amqp_url: str) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """A subscriber's queue on the hub's events exchange for ``alert.raised.v1``; yields a function returning
    the payloads received so far."""
    import pika

    from adapters.amqp.topology import EVENTS_EXCHANGE

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="alert.raised.v1")
    received: list[dict[str, Any]] = []

    def drain() -> list[dict[str, Any]]:
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return received
            document = json.loads(body)
            received.append(dict(document.get("payload", document)))

    try:
        yield drain
    finally:
        connection.close()


def test_a_reported_case_without_acceptance_raises_a_procedure_alert_through_rabbitmq(
        backend: str, client: TestClient, clock: FixedClock, settings: Settings,
        session_factory: sessionmaker[Session]) -> None:
    if backend != "postgresql":
        pytest.skip("RabbitMQ end to end runs with PostgreSQL, as in production")
    amqp_url = os.environ.get("HUB_TEST_AMQP_URL")
    if not amqp_url:
        pytest.fail("HUB_TEST_AMQP_URL is unset: the RabbitMQ variant needs a broker (see .testenv)")
    desk = Desk(client, clock)
    desk.on(date(2026, 3, 11))
    worker = Worker(settings=settings.model_copy(update={"amqp_url": amqp_url}), factory=session_factory,
                    clock=clock)  # declares the hub's topology in the vhost, as every worker does at start
    worker.start()
    try:
        with shenyang_on_rabbitmq(amqp_url) as partner_url, alert_events(amqp_url) as received:
            external_id = f"SUP-MQ-{uuid.uuid4().hex[:10]}"
            partner = make_bus(partner_url, connection_name="shenyang-platform-test")
            try:
                publish_record(partner.publish, skipped_acceptance_record(item_code(client, PARTNER_ITEM),
                                                                          external_id))
            finally:
                partner.close()
            assert wait_until(lambda: reported_case(session_factory, external_id) is not None, timeout=30)
            case = reported_case(session_factory, external_id)
            assert case is not None
            # The alert leaves the hub too: alert.raised.v1 on the events exchange, no personal data in it.
            assert wait_until(lambda: any(p.get("tracking_no") == case.tracking_no
                                          and p.get("rule") == "procedure.skipped_step" for p in received()),
                              timeout=30)
            raised = next(p for p in received() if p.get("tracking_no") == case.tracking_no
                          and p.get("rule") == "procedure.skipped_step")
            assert raised["level"] == "red" and raised["kind"] == "procedure"
            assert "赵六" not in json.dumps(raised, ensure_ascii=False)
    finally:
        worker.stop(timeout=10)
    check_procedure_alert(desk, session_factory, external_id)
