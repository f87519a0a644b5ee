"""The query job and the daily reconciliation (issue 12, item 6), against the real mock gateways over real
sockets: a payment made while the hub was down (its notifications never arrive) is found by the query job AND by
reconciliation; every difference between the hub's books and a gateway's statement is listed; the reports are
served to supervisors and shown by `hub payments` run as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import CHINA_TZ, FixedClock, business_date
from hub.db import unit_of_work
from hub.payments import reconciliation
from hub.payments.models import PaymentRefund
from hub.settings import Settings
from hub.worker import Worker
from mocks.runner import RunningMocks
from tests.conftest import Officers
from tests.payments import reconcile_support
from tests.payments.orders_support import history_of as history
from tests.payments.orders_support import order_row
from tests.payments.reconcile_support import (
    GATEWAYS,
    MockGateway,
    fee_case,
    gateway_faults,
    gateways_for,
    new_order,
    settings_env,
    settle_order,
)
from tests.support import PROCESS_KEYS

ROOT = Path(__file__).resolve().parents[2]


clock = reconcile_support.clock_fixture
pay_settings = reconcile_support.pay_settings_fixture
app = reconcile_support.app_fixture


def _query(factory: sessionmaker[Session], settings: Settings, now: datetime,
           report: reconciliation.QueryReport | None = None) -> reconciliation.QueryReport:
    report = report or reconciliation.QueryReport()
    reconciliation.query_pending(factory, gateways=gateways_for(settings), settings=settings, now=now, report=report)
    return report


def _reconcile(factory: sessionmaker[Session], settings: Settings, gateway: str, day: date,
               now: datetime) -> dict[str, Any]:
    with unit_of_work(factory) as session:
        report = reconciliation.reconcile(session, gateway=gateway, day=day, gateways=gateways_for(settings),
                                          now=now)
        return reconciliation.report_view(report)


def _mine(view: dict[str, Any], *order_nos: str) -> list[tuple[str, str, bool]]:
    """The differences about these orders (other tests' orders share the day): (kind, order_no, corrected)."""
    return sorted((d["kind"], d["order_no"], d["corrected"]) for d in view["differences"] if d["order_no"] in order_nos)


# A business day of its own per test and gateway (the mock's ledger and the hub's database are shared by the
# session's tests): the payment's time is what puts it on the statement of that day.
def _day_at(offset_days: int, hour: int = 10) -> datetime:
    return datetime(2026, 1, 1, hour, tzinfo=CHINA_TZ) + timedelta(days=offset_days)


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_payment_made_while_the_hub_was_down_is_found_by_the_query_job(
        gateway: str, client: TestClient, mocks: RunningMocks, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    order = new_order(client, fee_case(client), gateway)
    MockGateway(mocks, gateway).pay(order["order_no"], at=clock.now() + timedelta(seconds=5))
    # The gateway's notifications go nowhere (the hub is "down"); before payments_query_after_s nobody asks.
    assert order["order_no"] not in _query(session_factory, pay_settings, clock.now()).queried
    assert order_row(session_factory, order["order_no"]).state == "created"

    report = _query(session_factory, pay_settings, clock.now() + timedelta(seconds=61))
    assert order["order_no"] in report.queried and order["order_no"] in report.changed
    row = order_row(session_factory, order["order_no"])
    assert row.state == "paid" and row.paid_at is not None and row.next_query_at is None
    assert history(session_factory, order["order_no"])[-1] == ("created", "paid", "query")
    # Asked again later, a paid order is not asked about any more.
    assert order["order_no"] not in _query(session_factory, pay_settings, clock.now() + timedelta(hours=1)).queried


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_gateway_without_an_answer_is_asked_again_later_with_backoff(
        gateway: str, client: TestClient, mocks: RunningMocks, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    order = new_order(client, fee_case(client), gateway)
    mock = MockGateway(mocks, gateway)
    later = clock.now() + timedelta(seconds=61)
    with gateway_faults(mock, down=True):
        report = _query(session_factory, pay_settings, later)
    assert order["order_no"] in report.unanswered
    row = order_row(session_factory, order["order_no"])
    assert row.state == "created" and row.query_attempts == 1 and row.next_query_at is not None
    assert row.next_query_at > later
    # Not due again before its backoff; due after it, and then the answer counts.
    assert order["order_no"] not in _query(session_factory, pay_settings, later + timedelta(seconds=1)).queried
    mock.pay(order["order_no"], at=later)
    report = _query(session_factory, pay_settings, row.next_query_at)
    assert order["order_no"] in report.changed
    assert order_row(session_factory, order["order_no"]).state == "paid"


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_an_expired_order_still_unpaid_at_the_gateway_is_closed(
        gateway: str, client: TestClient, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    order = new_order(client, fee_case(client), gateway)
    expired = clock.now() + timedelta(seconds=pay_settings.payments_order_ttl_s + 1)
    report = _query(session_factory, pay_settings, expired)
    assert order["order_no"] in report.closed
    assert order_row(session_factory, order["order_no"]).state == "closed"
    assert history(session_factory, order["order_no"])[-1][1:] == ("closed", "query")


@pytest.mark.parametrize(("gateway", "offset"), [("alipay", 0), ("unionpay", 1)])
def test_a_payment_made_while_the_hub_was_down_is_found_by_reconciliation(
        gateway: str, offset: int, client: TestClient, mocks: RunningMocks, pay_settings: Settings,
        clock: FixedClock, session_factory: sessionmaker[Session]) -> None:
    paid_at = _day_at(offset)
    order = new_order(client, fee_case(client), gateway)
    MockGateway(mocks, gateway).pay(order["order_no"], at=paid_at)

    view = _reconcile(session_factory, pay_settings, gateway, paid_at.date(), clock.now())
    assert view["status"] == "differences"
    assert _mine(view, order["order_no"]) == [("missing_at_hub", order["order_no"], True)]
    row = order_row(session_factory, order["order_no"])
    assert row.state == "paid" and row.paid_at == paid_at
    assert history(session_factory, order["order_no"])[-1] == ("created", "paid", "statement")

    # Run again for the same day: the report is replaced, and the hub's books now match the statement.
    again = _reconcile(session_factory, pay_settings, gateway, paid_at.date(), clock.now())
    assert _mine(again, order["order_no"]) == []
    with session_factory() as session:
        assert len(reconciliation.reports(session, gateway=gateway, day=paid_at.date())) == 1


@pytest.mark.parametrize(("gateway", "offset"), [("alipay", 10), ("unionpay", 11)])
def test_every_difference_with_the_statement_is_listed(
        gateway: str, offset: int, client: TestClient, mocks: RunningMocks, pay_settings: Settings,
        clock: FixedClock, session_factory: sessionmaker[Session]) -> None:
    day_at = _day_at(offset)
    mock = MockGateway(mocks, gateway)
    matched, hub_only, amount, refunded = (new_order(client, fee_case(client), gateway) for _ in range(4))
    for order in (matched, amount, refunded):
        mock.pay(order["order_no"], at=day_at)
    first = _reconcile(session_factory, pay_settings, gateway, day_at.date(), clock.now())
    assert {d["kind"] for d in first["differences"] if d["order_no"] in (matched["order_no"], amount["order_no"])} \
        == {"missing_at_hub"}  # learnt from the statement, as above
    # Now make the books differ behind the hub's back: an order paid at the hub alone, another amount, a refund
    # the gateway never made.
    settle_order(session_factory, hub_only["order_no"], state="paid", paid_at=day_at)
    settle_order(session_factory, amount["order_no"], amount_fen=1999)
    refund_row = order_row(session_factory, refunded["order_no"])
    with unit_of_work(session_factory) as session:
        session.add(PaymentRefund(refund_no=f"R{business_date(day_at):%Y%m%d}{offset:012d}", order_id=refund_row.id,
                                  amount_fen=500, reason="测试", state="succeeded", attempts=1,
                                  requested_at=day_at, completed_at=day_at + timedelta(minutes=5)))

    view = _reconcile(session_factory, pay_settings, gateway, day_at.date(), clock.now())
    mine = _mine(view, matched["order_no"], hub_only["order_no"], amount["order_no"], refunded["order_no"])
    assert mine == sorted([
        ("missing_at_gateway", hub_only["order_no"], False),
        ("amount_differs", amount["order_no"], False),
        ("refund_differs", refunded["order_no"], False),
    ])
    by_kind = {d["kind"]: d for d in view["differences"] if d["order_no"] in (amount["order_no"],)}
    assert (by_kind["amount_differs"]["hub_amount_fen"], by_kind["amount_differs"]["gateway_amount_fen"]) == \
        (1999, 2000)
    assert view["status"] == "differences" and view["summary"]["differences"] == len(view["differences"])


def test_the_reports_are_served_to_supervisors_and_administrators(
        client: TestClient, officers: Officers, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    day = _day_at(20).date()
    _reconcile(session_factory, pay_settings, "alipay", day, clock.now())
    for username in ("ln_yshj_supervisor", "ln_admin"):
        response = client.get("/api/v1/payments/reconciliations", params={"gateway": "alipay", "date": str(day)},
                              headers=officers.headers(username))
        assert response.status_code == 200, response.text
        reports = response.json()["reports"]
        assert [(r["gateway"], r["business_date"], r["status"]) for r in reports] == [("alipay", str(day), "matched")]
    refused = client.get("/api/v1/payments/reconciliations", headers=officers.headers("syhp_ga_approver"))
    assert refused.status_code == 403
    bad = client.get("/api/v1/payments/reconciliations", params={"date": "2026-13-01"},
                     headers=officers.headers("ln_admin"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "date"
    assert client.get("/api/v1/payments/reconciliations").status_code == 401


def test_the_daily_job_reconciles_yesterday_once_per_gateway_from_its_hour(
        pay_settings: Settings, session_factory: sessionmaker[Session]) -> None:
    gateways = gateways_for(pay_settings)
    before_hour = datetime(2026, 2, 2, 2, 59, tzinfo=CHINA_TZ)
    assert reconciliation.reconcile_due(session_factory, gateways=gateways, settings=pay_settings,
                                        now=before_hour) == 0
    at_hour = before_hour.replace(hour=3, minute=0)
    assert reconciliation.reconcile_due(session_factory, gateways=gateways, settings=pay_settings, now=at_hour) == 2
    assert reconciliation.reconcile_due(session_factory, gateways=gateways, settings=pay_settings,
                                        now=at_hour + timedelta(hours=1)) == 0  # once per day
    with session_factory() as session:
        assert {r.gateway for r in reconciliation.reports(session, day=date(2026, 2, 1))} == {"alipay", "unionpay"}


def test_the_worker_runs_the_payment_jobs_only_when_a_gateway_is_configured(
        settings: Settings, pay_settings: Settings, session_factory: sessionmaker[Session],
        clock: FixedClock) -> None:
    from adapters.amqp import InProcessBus

    with_gateways = Worker(settings=pay_settings, factory=session_factory, clock=clock, bus=InProcessBus())
    without = Worker(settings=settings, factory=session_factory, clock=clock, bus=InProcessBus())
    try:
        names = {job.name for job in with_gateways.jobs}
        assert {"payments-query", "payments-refunds", "payments-reconcile"} <= names
        assert not {job.name for job in without.jobs} & {"payments-query", "payments-refunds", "payments-reconcile"}
        # Idle, each waits its interval (no short spin).
        idle = {job.name: job.idle_seconds for job in with_gateways.jobs}
        assert idle["payments-query"] == pay_settings.payments_query_interval_s
        assert idle["payments-refunds"] == pay_settings.payments_refund_interval_s
    finally:
        with_gateways.stop(timeout=1)
        without.stop(timeout=1)


def _hub(*args: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **PROCESS_KEYS, **settings_env(settings), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False, cwd=ROOT)


def test_the_cli_reconciles_a_day_and_shows_the_status(
        client: TestClient, mocks: RunningMocks, pay_settings: Settings,
        session_factory: sessionmaker[Session]) -> None:
    paid_at = _day_at(30)
    order = new_order(client, fee_case(client), "unionpay")
    MockGateway(mocks, "unionpay").pay(order["order_no"], at=paid_at)

    done = _hub("payments", "reconcile", "--gateway", "unionpay", "--date", str(paid_at.date()), "--json",
                settings=pay_settings)
    assert done.returncode == 2, done.stderr  # differences found
    view = json.loads(done.stdout)
    assert _mine(view, order["order_no"]) == [("missing_at_hub", order["order_no"], True)]
    assert order_row(session_factory, order["order_no"]).state == "paid"

    status = _hub("payments", "status", "--json", settings=pay_settings)
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["gateways"] == ["alipay", "unionpay"]
    assert "unionpay" in document["last_reconciliation"]

    queried = _hub("payments", "query-pending", "--json", settings=pay_settings)
    assert queried.returncode == 0, queried.stderr
    assert set(json.loads(queried.stdout)) == {"queried", "changed", "closed", "unanswered"}

    refused = _hub("payments", "reconcile", "--gateway", "unionpay", "--date", "yesterday", settings=pay_settings)
    assert refused.returncode == 1 and "date" in refused.stderr
