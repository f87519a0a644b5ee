"""Gateway notifications over HTTP (issue 12, item 5): verified, stored once under the gateway's notify id,
applied, committed — and only then acknowledged. Forged, wrong amount, wrong merchant or app, unknown order,
duplicate and out-of-order notifications change nothing wrongly; a browser return never marks paid; two
deliveries of one notification at once apply it once; a failing commit is never acknowledged."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hub.payments import service
from hub.payments.models import CaseFee, PaymentNotification, PaymentOrder
from tests.payments.orders_support import (
    FORM,
    SigningGateway,
    create_order,
    events_of,
    fee_case,
    history_of,
    inbox_of,
    install_gateway,
    notification,
    order_row,
    post_notification,
)


@pytest.fixture
def gateway(app: Any) -> SigningGateway:
    return install_gateway(app)


@pytest.fixture
def order(client: TestClient, gateway: SigningGateway) -> dict[str, Any]:
    receipt = fee_case(client)
    return {**create_order(client, receipt), "query_code": receipt["query_code"]}


def test_a_verified_notification_marks_the_order_and_the_fee_paid(
        client: TestClient, order: dict[str, Any], session_factory: sessionmaker[Session]) -> None:
    assert post_notification(client, notification(order["order_no"])) == "success"
    row = order_row(session_factory, order["order_no"])
    assert row.state == "paid" and row.paid_at is not None and row.notified_at is not None
    assert row.gateway_trade_no and row.gateway_trade_no.endswith(order["order_no"][-4:])
    assert history_of(session_factory, order["order_no"])[-1] == ("created", "paid", "notification")
    assert inbox_of(session_factory, order["order_no"]) == [("n1", "applied", None)]
    assert [e.type for e in events_of(session_factory, order["tracking_no"])] == \
        ["payment.created.v1", "payment.paid.v1"]
    with session_factory() as session:
        fee = session.get(CaseFee, row.case_id)
        assert fee is not None and (fee.status, fee.paid_fen) == ("paid", 2000)
    shown = client.get(f"/api/v1/payments/{order['order_no']}", params={"query_code": order["query_code"]})
    assert shown.status_code == 200 and shown.json()["state"] == "paid"


def test_a_forged_signature_is_refused_and_nothing_stored(
        client: TestClient, order: dict[str, Any], session_factory: sessionmaker[Session]) -> None:
    assert post_notification(client, notification(order["order_no"], signer="forger")) == "failure"
    unsigned = notification(order["order_no"]).replace(b"&sign=", b"&nosign=")
    assert post_notification(client, unsigned) == "failure"
    _unchanged(session_factory, order)
    # The forger's notify id did not take the place of the real one: the real notification still applies.
    assert post_notification(client, notification(order["order_no"])) == "success"
    assert order_row(session_factory, order["order_no"]).state == "paid"


def test_a_wrong_amount_is_refused_and_kept_as_rejected(
        client: TestClient, order: dict[str, Any], session_factory: sessionmaker[Session]) -> None:
    assert post_notification(client, notification(order["order_no"], amount_fen=2001, notify_id="w1")) == "failure"
    assert order_row(session_factory, order["order_no"]).state == "created"
    assert inbox_of(session_factory, order["order_no"]) == [("w1", "rejected", "amount_mismatch")]
    # Resent (the same notify id): the same answer, still nothing changed.
    assert post_notification(client, notification(order["order_no"], amount_fen=2001, notify_id="w1")) == "failure"
    assert history_of(session_factory, order["order_no"]) == [(None, "created", "api")]


def test_another_merchant_or_app_is_refused(
        client: TestClient, order: dict[str, Any], session_factory: sessionmaker[Session]) -> None:
    assert post_notification(client, notification(order["order_no"], seller_id="2088999999999999")) == "failure"
    assert post_notification(client, notification(order["order_no"], app_id="2026999999999999")) == "failure"
    _unchanged(session_factory, order)


def test_the_service_refuses_another_merchant_or_app_itself(
        order: dict[str, Any], session_factory: sessionmaker[Session], gateway: SigningGateway,
        app: Any) -> None:
    """Defence in depth: even a word the adapter let through is checked against the configured identity."""
    from dataclasses import replace

    word = gateway.parse_notification(body=notification(order["order_no"]), content_type="")
    for trade, rule in ((replace(word.trade, merchant_id="other"), "merchant_mismatch"),
                        (replace(word.trade, app_id="other"), "app_mismatch")):
        with session_factory() as session:
            row = service.order_by_no(session, order["order_no"], lock=True)
            assert row is not None
            with pytest.raises(service.TradeMismatch) as raised:
                service.apply_trade(session, order=row, trade=trade, source="query", now=row.created_at,
                                    identity=app.state.payment_gateways.identity("alipay"))
            assert raised.value.rule == rule
            session.rollback()
    _unchanged(session_factory, order)


def test_an_unknown_order_is_refused_and_kept_as_rejected(
        client: TestClient, order: dict[str, Any], session_factory: sessionmaker[Session]) -> None:
    unknown = "P20260311999999999999"
    assert post_notification(client, notification(unknown, notify_id="u1")) == "failure"
    assert inbox_of(session_factory, unknown) == [("u1", "rejected", "unknown_order")]
    _unchanged(session_factory, order)


def test_a_duplicate_is_acknowledged_and_applied_once(
        client: TestClient, order: dict[str, Any], session_factory: sessionmaker[Session]) -> None:
    body = notification(order["order_no"])
    assert [post_notification(client, body) for _ in range(3)] == ["success"] * 3
    assert [h for h in history_of(session_factory, order["order_no"]) if h[1] == "paid"] == \
        [("created", "paid", "notification")]
    assert inbox_of(session_factory, order["order_no"]) == [("n1", "applied", None)]
    assert [e.type for e in events_of(session_factory, order["tracking_no"])].count("payment.paid.v1") == 1


def test_out_of_order_words_never_take_a_paid_order_back(
        client: TestClient, order: dict[str, Any], session_factory: sessionmaker[Session]) -> None:
    number = order["order_no"]
    assert post_notification(client, notification(number, status="WAIT_BUYER_PAY", notify_id="a")) == "success"
    assert post_notification(client, notification(number, notify_id="b")) == "success"
    # Older words arriving late, under other notify ids: acknowledged (so not resent), stale, nothing changed.
    assert post_notification(client, notification(number, status="WAIT_BUYER_PAY", notify_id="c")) == "success"
    assert post_notification(client, notification(number, status="TRADE_CLOSED", notify_id="d")) == "success"
    assert order_row(session_factory, number).state == "paid"
    assert history_of(session_factory, number) == [
        (None, "created", "api"), ("created", "pending", "notification"), ("pending", "paid", "notification")]
    assert [(n, o) for n, o, _ in inbox_of(session_factory, number)] == \
        [("a", "applied"), ("b", "applied"), ("c", "stale"), ("d", "stale")]


def test_a_payment_after_the_hub_closed_the_order_is_still_recorded(
        client: TestClient, order: dict[str, Any], session_factory: sessionmaker[Session], clock: Any) -> None:
    """The money moved: the gateway's verified word wins over the hub's own expiry (refunded by reconcile)."""
    clock.advance(seconds=1801)
    create_order(client, order)  # closes the expired order, opens another
    assert order_row(session_factory, order["order_no"]).state == "closed"
    assert post_notification(client, notification(order["order_no"])) == "success"
    assert order_row(session_factory, order["order_no"]).state == "paid"


def test_a_browser_return_never_marks_paid(
        client: TestClient, order: dict[str, Any], session_factory: sessionmaker[Session]) -> None:
    number = order["order_no"]
    # What a gateway appends to the return URL, signed and saying "paid": shown, never applied.
    signed = notification(number).decode()
    page = client.get(f"/api/v1/payments/return/alipay?order_no={number}&{signed}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "支付结果以支付机构通知为准" in page.text and 'data-state="created"' in page.text
    posted = client.post(f"/api/v1/payments/return/alipay?order_no={number}", content=signed.encode(), headers=FORM)
    assert posted.status_code == 200 and 'data-state="created"' in posted.text
    _unchanged(session_factory, order)
    # After the gateway's notification the same page shows it paid.
    post_notification(client, notification(number))
    assert 'data-state="paid"' in client.get(f"/api/v1/payments/return/alipay?out_trade_no={number}").text


def test_a_failing_commit_is_never_acknowledged(
        client: TestClient, app: Any, order: dict[str, Any], engine: Any,
        session_factory: sessionmaker[Session]) -> None:
    working = app.state.session_factory
    app.state.session_factory = sessionmaker(engine, class_=FailingCommit, expire_on_commit=False)
    try:
        assert post_notification(client, notification(order["order_no"])) == "failure"
    finally:
        app.state.session_factory = working
    _unchanged(session_factory, order)
    # The gateway resends; this time the commit succeeds and the answer follows it.
    assert post_notification(client, notification(order["order_no"])) == "success"
    assert order_row(session_factory, order["order_no"]).state == "paid"


def test_two_deliveries_at_once_over_http_apply_once(
        client: TestClient, order: dict[str, Any], session_factory: sessionmaker[Session]) -> None:
    body = notification(order["order_no"], notify_id="same")
    barrier = threading.Barrier(2)
    answers: list[str] = []

    def deliver() -> None:
        barrier.wait()
        answers.append(post_notification(client, body))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == ["success", "success"]
    assert [h[1] for h in history_of(session_factory, order["order_no"])].count("paid") == 1
    assert [e.type for e in events_of(session_factory, order["tracking_no"])].count("payment.paid.v1") == 1


def test_a_second_process_waits_for_the_first_and_applies_nothing(
        backend: str, order: dict[str, Any], gateway: SigningGateway,
        session_factory: sessionmaker[Session]) -> None:
    """PostgreSQL, two connections: the first holds the stored notification uncommitted; the second's insert
    waits on the unique index until the first commits, then answers as the stored outcome."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer: deliveries cannot overlap")
    word = gateway.parse_notification(body=notification(order["order_no"], notify_id="race"), content_type="")
    first_applied, outcomes = threading.Event(), {}

    def second() -> None:
        first_applied.wait()
        with session_factory() as session:
            outcomes["second"] = service.receive_notification(session, notification=word, now=_now(order))
            session.commit()

    thread = threading.Thread(target=second)
    thread.start()
    with session_factory() as session:
        outcomes["first"] = service.receive_notification(session, notification=word, now=_now(order))
        first_applied.set()
        _wait_for_a_lock_wait(session_factory)
        session.commit()
    thread.join()
    assert outcomes["first"].outcome == "applied" and not outcomes["first"].duplicate
    assert outcomes["second"].outcome == "applied" and outcomes["second"].duplicate
    assert [h[1] for h in history_of(session_factory, order["order_no"])].count("paid") == 1
    with session_factory() as session:
        assert session.scalar(select(PaymentNotification.id).where(
            PaymentNotification.notify_id == f"{order['order_no']}-race"))


class FailingCommit(Session):
    """A session whose COMMIT fails (a lost connection, a full disk) after everything was flushed."""

    def commit(self) -> None:
        raise OperationalError("COMMIT", {}, Exception("simulated: the server went away"))


def _unchanged(factory: sessionmaker[Session], order: dict[str, Any]) -> None:
    row = order_row(factory, order["order_no"])
    assert (row.state, row.paid_at) == ("created", None)
    assert history_of(factory, order["order_no"]) == [(None, "created", "api")]
    assert [e.type for e in events_of(factory, order["tracking_no"])] == ["payment.created.v1"]
    with factory() as session:
        fee = session.scalar(select(CaseFee).join(PaymentOrder, PaymentOrder.case_id == CaseFee.case_id)
                             .where(PaymentOrder.order_no == order["order_no"]))
        assert fee is not None and fee.status == "due"


def _wait_for_a_lock_wait(factory: sessionmaker[Session]) -> None:
    deadline = time.monotonic() + 60
    with factory() as session:
        while not session.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
            assert time.monotonic() < deadline, "the second delivery never waited for the first"
            session.rollback()
            time.sleep(0.02)


def _now(order: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(order["created_at"])
