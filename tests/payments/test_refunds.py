"""Refunds (issue 12, item 6) against the real mock gateways over real sockets: a case withdrawn, refused at
intake or denied gets its fee back in full, once; an approver may refund part of an order, never more than is
left; the worker's job sends each refund under one request number however often it retries, so a refund retried
after a timeout refunds once (the mock's ledger shows one refund)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import FixedClock, business_date
from hub.db import unit_of_work
from hub.payments import reconciliation, refunds
from hub.payments.models import CaseFee, PaymentOrder
from hub.settings import Settings
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
    refunds_of,
)

clock = reconcile_support.clock_fixture
pay_settings = reconcile_support.pay_settings_fixture
app = reconcile_support.app_fixture


def paid_case(client: TestClient, mocks: RunningMocks, settings: Settings, factory: sessionmaker[Session],
              clock: FixedClock, gateway: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A fee case whose order is paid at the gateway, the hub learning it from the query job."""
    receipt = fee_case(client)
    order = new_order(client, receipt, gateway)
    MockGateway(mocks, gateway).pay(order["order_no"], at=clock.now())
    reconciliation.query_pending(factory, gateways=gateways_for(settings), settings=settings,
                                 now=clock.now() + timedelta(seconds=61))
    assert order_row(factory, order["order_no"]).state == "paid"
    return receipt, order


def _send(factory: sessionmaker[Session], settings: Settings, now: datetime) -> int:
    return refunds.send_due(factory, gateways=gateways_for(settings), now=now)


def _withdraw(client: TestClient, receipt: dict[str, Any]) -> None:
    response = client.post(f"/api/v1/applications/{receipt['tracking_no']}/withdraw",
                           headers={"X-Query-Code": receipt["query_code"]}, json={"reason": "不办了"})
    assert response.status_code == 200, response.text


def _ledger_refunds(mocks: RunningMocks, gateway: str, order_no: str) -> list[dict[str, Any]]:
    return list(MockGateway(mocks, gateway).trade(order_no)["refunds"])


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_withdrawn_case_gets_its_fee_back_in_full_once(
        gateway: str, client: TestClient, mocks: RunningMocks, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    receipt, order = paid_case(client, mocks, pay_settings, session_factory, clock, gateway)
    _withdraw(client, receipt)
    [refund] = refunds_of(session_factory, order["order_no"])
    assert (refund.amount_fen, refund.state) == (2000, "requested")
    assert refund.refund_no.startswith(f"R{business_date(clock.now()):%Y%m%d}") and len(refund.refund_no) == 21
    assert order_row(session_factory, order["order_no"]).state == "refunding"
    # The hook is idempotent: asking again for the case adds nothing.
    with unit_of_work(session_factory) as session:
        case_id = order_row(session_factory, order["order_no"]).case_id
        from hub.cases.models import Case

        case = session.get(Case, case_id)
        assert case is not None and case.state == "withdrawn"
        assert refunds.refund_for_case(session, case=case, reason="again", now=clock.now()) == []

    assert _send(session_factory, pay_settings, clock.now()) >= 1
    [sent] = refunds_of(session_factory, order["order_no"])
    assert sent.state == "succeeded" and sent.attempts == 1
    row = order_row(session_factory, order["order_no"])
    assert (row.state, row.refunded_fen) == ("refunded", 2000)
    assert history(session_factory, order["order_no"])[-2:] == [("paid", "refunding", "refund"),
                                                               ("refunding", "refunded", "refund")]
    assert [(r["refund_no"], r["amount_fen"]) for r in _ledger_refunds(mocks, gateway, order["order_no"])] == \
        [(sent.refund_no, 2000)]
    with session_factory() as session:
        fee = session.get(CaseFee, row.case_id)
        assert fee is not None and fee.status == "refunded"


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_refund_retried_after_a_timeout_refunds_once(
        gateway: str, client: TestClient, mocks: RunningMocks, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    receipt, order = paid_case(client, mocks, pay_settings, session_factory, clock, gateway)
    _withdraw(client, receipt)
    mock = MockGateway(mocks, gateway)
    impatient = pay_settings.model_copy(update={"payments_timeout_s": 0.3})
    with gateway_faults(mock, slow_ms=1500):  # the gateway answers after the hub stopped waiting
        assert _send(session_factory, impatient, clock.now()) >= 1
    [refund] = refunds_of(session_factory, order["order_no"])
    assert (refund.state, refund.attempts) == ("unknown", 1)
    assert refund.next_attempt_at is not None and refund.next_attempt_at > clock.now()
    assert order_row(session_factory, order["order_no"]).state == "refunding"
    # Not sent again before its backoff.
    _send(session_factory, pay_settings, clock.now() + timedelta(seconds=1))
    assert [(r.state, r.attempts) for r in refunds_of(session_factory, order["order_no"])] == [("unknown", 1)]

    _send(session_factory, pay_settings, refund.next_attempt_at)
    [done] = refunds_of(session_factory, order["order_no"])
    assert done.state == "succeeded" and done.refund_no == refund.refund_no and done.attempts >= 2
    assert order_row(session_factory, order["order_no"]).state == "refunded"
    ledger = _ledger_refunds(mocks, gateway, order["order_no"])
    assert [(r["refund_no"], r["amount_fen"]) for r in ledger] == [(refund.refund_no, 2000)]


def test_a_gateway_that_is_down_is_asked_again_later(
        client: TestClient, mocks: RunningMocks, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    receipt, order = paid_case(client, mocks, pay_settings, session_factory, clock, "alipay")
    _withdraw(client, receipt)
    with gateway_faults(MockGateway(mocks, "alipay"), down=True):
        _send(session_factory, pay_settings, clock.now())
    [refund] = refunds_of(session_factory, order["order_no"])
    assert refund.state == "unknown" and refund.last_error and refund.next_attempt_at is not None
    assert _ledger_refunds(mocks, "alipay", order["order_no"]) == []
    _send(session_factory, pay_settings, refund.next_attempt_at)
    assert refunds_of(session_factory, order["order_no"])[0].state == "succeeded"
    assert len(_ledger_refunds(mocks, "alipay", order["order_no"])) == 1


def test_an_approver_refunds_part_of_an_order_never_more_than_is_left(
        client: TestClient, officers: Officers, mocks: RunningMocks, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    receipt, order = paid_case(client, mocks, pay_settings, session_factory, clock, "unionpay")
    url = f"/api/v1/payments/{order['order_no']}/refunds"
    approver = officers.headers("syhp_ga_approver")

    assert client.post(url, json={"amount_fen": 500, "reason": "部分退费"},
                       headers=officers.headers("syhp_ga_reviewer")).status_code == 403
    assert client.post(url, json={"amount_fen": 500, "reason": "部分退费"}).status_code == 401
    response = client.post(url, json={"amount_fen": 500, "reason": "部分退费"}, headers=approver)
    assert response.status_code == 201, response.text
    first = response.json()
    assert (first["amount_fen"], first["state"], first["order_no"]) == (500, "requested", order["order_no"])

    too_much = client.post(url, json={"amount_fen": 1501, "reason": "超额"}, headers=approver)
    assert too_much.status_code == 422, too_much.text
    assert too_much.json()["errors"][0]["field"] == "amount_fen"
    assert too_much.json()["code"] == "exceeds_refundable"
    zero = client.post(url, json={"amount_fen": 0, "reason": "零"}, headers=approver)
    assert zero.status_code == 422 and zero.json()["errors"][0]["field"] == "amount_fen"

    _send(session_factory, pay_settings, clock.now())
    row = order_row(session_factory, order["order_no"])
    assert (row.state, row.refunded_fen) == ("paid", 500)  # partly refunded: still paid
    # The case ends refused at intake: what is left (1500 fen) goes back.
    refused = client.post(f"/api/v1/cases/{receipt['tracking_no']}/actions",
                          json={"action": "refuse_intake", "opinion": "不属于本部门受理范围"},
                          headers=officers.headers("syhp_ga_intake"))
    assert refused.status_code == 200, refused.text
    assert [r.amount_fen for r in refunds_of(session_factory, order["order_no"])] == [500, 1500]
    _send(session_factory, pay_settings, clock.now())
    row = order_row(session_factory, order["order_no"])
    assert (row.state, row.refunded_fen) == ("refunded", 2000)
    assert sorted(r["amount_fen"] for r in _ledger_refunds(mocks, "unionpay", order["order_no"])) == [500, 1500]
    nothing_left = client.post(url, json={"amount_fen": 1, "reason": "再退"}, headers=approver)
    assert nothing_left.status_code == 409


def test_an_unpaid_case_ending_refunds_nothing(client: TestClient, pay_settings: Settings,
                                                session_factory: sessionmaker[Session]) -> None:
    receipt = fee_case(client)
    order = new_order(client, receipt, "alipay")
    _withdraw(client, receipt)
    assert refunds_of(session_factory, order["order_no"]) == []
    with session_factory() as session:
        assert session.scalar(select(PaymentOrder.state).where(PaymentOrder.order_no == order["order_no"])) \
            == "created"


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_payment_arriving_after_its_case_was_withdrawn_goes_straight_back(
        gateway: str, client: TestClient, mocks: RunningMocks, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    receipt = fee_case(client)
    order = new_order(client, receipt, gateway)
    _withdraw(client, receipt)  # the applicant withdraws while the cashier page is still open …
    MockGateway(mocks, gateway).pay(order["order_no"], at=clock.now())  # … and pays anyway
    clock.advance(seconds=61)
    reconciliation.query_pending(session_factory, gateways=gateways_for(pay_settings), settings=pay_settings,
                                 now=clock.now())
    assert [(r.amount_fen, r.state) for r in refunds_of(session_factory, order["order_no"])] == [(2000, "requested")]
    assert history(session_factory, order["order_no"])[-2:] == [("created", "paid", "query"),
                                                               ("paid", "refunding", "refund")]
    _send(session_factory, pay_settings, clock.now())
    assert order_row(session_factory, order["order_no"]).state == "refunded"
    assert len(_ledger_refunds(mocks, gateway, order["order_no"])) == 1


def test_a_refund_requested_in_this_process_wakes_the_refund_job(
        client: TestClient, mocks: RunningMocks, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    receipt, _ = paid_case(client, mocks, pay_settings, session_factory, clock, "alipay")
    woken = refunds.subscribe()
    try:
        woken.clear()
        _withdraw(client, receipt)  # the request's unit of work commits the refund row
        assert woken.is_set()
    finally:
        refunds.unsubscribe(woken)


def test_a_running_worker_sends_a_refund_as_soon_as_it_is_requested(
        client: TestClient, mocks: RunningMocks, pay_settings: Settings, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    from adapters.amqp import InProcessBus
    from hub.worker import Worker
    from tests.support import wait_until

    receipt, order = paid_case(client, mocks, pay_settings, session_factory, clock, "unionpay")
    quiet = pay_settings.model_copy(update={
        "supervision_scan_interval_s": 0, "supervision_metrics_rollup_interval_s": 0,
        "audit_checkpoint_interval_s": 0, "payments_refund_interval_s": 3600, "payments_reconcile_hour": -1})
    worker = Worker(settings=quiet, factory=session_factory, clock=clock, bus=InProcessBus(user="hub"),
                    consume_inbound=False)
    worker.start()
    try:
        _withdraw(client, receipt)  # woken by the commit, not by its hour-long interval
        assert wait_until(lambda: order_row(session_factory, order["order_no"]).state == "refunded", timeout=60)
    finally:
        worker.stop(timeout=10)
    assert len(_ledger_refunds(mocks, "unionpay", order["order_no"])) == 1
