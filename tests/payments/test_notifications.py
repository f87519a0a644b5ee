"""Gateway notifications over real sockets (issue 12, item 5): the real mock gateway pays, signs and sends (and
resends) its notifications to the hub running under uvicorn, whose real adapter verifies them; the hub stores
each once under the gateway's notify id, applies it, commits — and only then acknowledges. Forged, wrong
amount, wrong merchant or app, unknown order, duplicate and out-of-order notifications change nothing wrongly; a
browser return never marks paid; a failing commit is never acknowledged; two deliveries of one notification at
once (two PostgreSQL connections) apply it once. Every test runs for each gateway whose adapter and mock are
in the tree."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hub.app import create_app
from hub.clock import FixedClock
from hub.outbox.relay import envelope_of
from hub.payments import service
from hub.payments.models import CaseFee, PaymentNotification, PaymentOrder
from hub.settings import Settings
from tests.contracts.test_event_schemas import Contracts
from tests.payments.orders_support import FEE_ITEM, events_of, history_of, inbox_of, order_row
from tests.payments.wire_support import Browser, Mock, configured, landed_gateways, mock_gateway, wait_for
from tests.servers import serving
from tests.support import submit

GATEWAYS = landed_gateways()
ACK = {"alipay": "success", "unionpay": None}  # UnionPay: HTTP 200 is the acknowledgement


@pytest.fixture(scope="module")
def gateway_urls() -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        yield {name: stack.enter_context(mock_gateway(name)).url for name in GATEWAYS}


@pytest.fixture
def clock() -> FixedClock:
    """Now: the mocks keep real time (an order's expiry is checked at their cashier)."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@dataclass
class Hub:
    app: Any
    url: str
    api: httpx.Client
    settings: Settings


@pytest.fixture
def hub(settings: Settings, clock: FixedClock, engine: Engine, gateway_urls: dict[str, str],
        tmp_path: Path) -> Iterator[Hub]:
    pay_settings = configured(settings, gateway_urls, tmp_path / "payments")
    app = create_app(pay_settings, clock=clock, engine=engine)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30, trust_env=False) as api:
        # The gateways call back (and browsers return) to this hub's own address.
        app.state.settings = pay_settings.model_copy(update={"payments_public_url": url})
        yield Hub(app, url, api, app.state.settings)


@pytest.fixture(params=GATEWAYS)
def gateway(request: pytest.FixtureRequest, gateway_urls: dict[str, str]) -> Iterator[str]:
    mock = Mock(gateway_urls[request.param])
    mock.clear()
    yield str(request.param)
    mock.clear()


@pytest.fixture
def mock(gateway: str, gateway_urls: dict[str, str]) -> Mock:
    return Mock(gateway_urls[gateway])


def new_order(hub: Hub, gateway: str) -> dict[str, Any]:
    receipt = submit(hub.api, FEE_ITEM)  # type: ignore[arg-type]
    response = hub.api.post("/api/v1/payments", json={"tracking_no": receipt["tracking_no"],
                                                      "query_code": receipt["query_code"], "gateway": gateway})
    assert response.status_code == 201, response.text
    return {**response.json(), "query_code": receipt["query_code"]}


def pay(order: dict[str, Any]) -> httpx.Response:
    """The applicant pays at the gateway's cashier; the gateway's 303 back to the hub (not followed)."""
    browser = Browser()
    return browser.press(browser.cashier(order["pay_url"]), "pay")


def answered(mock: Mock, order_no: str, *, attempts: int = 1) -> list[dict[str, Any]] | None:
    """The order's notifications once each was answered ``attempts`` times (or acknowledged)."""
    records = mock.notifications(order_no)
    done = records and all(r["acknowledged"] or len(r["attempts"]) >= attempts for r in records)
    return records if done else None


def acknowledged(mock: Mock, order_no: str, count: int = 1) -> list[dict[str, Any]] | None:
    records = mock.notifications(order_no)
    return records if len(records) >= count and all(r["acknowledged"] for r in records) else None


def test_a_payment_at_the_cashier_is_applied_from_the_notification(
        hub: Hub, gateway: str, mock: Mock, session_factory: sessionmaker[Session]) -> None:
    order = new_order(hub, gateway)
    pay(order)
    records = wait_for(lambda: acknowledged(mock, order["order_no"]), "the notification's acknowledgement")
    answer = records[0]["attempts"][-1]
    assert answer["status_code"] == 200 and (ACK[gateway] is None or answer["body"] == ACK[gateway])
    row = order_row(session_factory, order["order_no"])
    assert row.state == "paid" and row.paid_at is not None and row.gateway_trade_no
    assert history_of(session_factory, order["order_no"])[-1] == ("created", "paid", "notification")
    assert [(o, r) for _, o, r in inbox_of(session_factory, order["order_no"])] == [("applied", None)]
    events = events_of(session_factory, order["tracking_no"])
    assert [e.type for e in events] == ["payment.created.v1", "payment.paid.v1"]
    contracts = Contracts(hub.api)  # type: ignore[arg-type]
    for event in events:  # as the served AsyncAPI document and payment-event schema describe them
        assert contracts.errors(event.routing_key, envelope_of(event)) == []
    assert (events[1].payload["state"], events[1].payload["amount_fen"]) == ("paid", 2000)
    with session_factory() as session:
        fee = session.get(CaseFee, row.case_id)
        assert fee is not None and (fee.status, fee.paid_fen) == ("paid", 2000)
    shown = hub.api.get(f"/api/v1/payments/{order['order_no']}", params={"query_code": order["query_code"]})
    assert shown.status_code == 200 and shown.json()["state"] == "paid"


def test_a_forged_signature_is_refused_and_nothing_stored(
        hub: Hub, gateway: str, mock: Mock, session_factory: sessionmaker[Session]) -> None:
    order = new_order(hub, gateway)
    mock.faults(forge_signature=True)
    pay(order)
    records = wait_for(lambda: answered(mock, order["order_no"], attempts=2), "two refused deliveries")
    assert not any(r["acknowledged"] for r in records)
    _unchanged(session_factory, order)
    assert inbox_of(session_factory, order["order_no"]) == []  # a forger's notify id takes no place


@pytest.mark.parametrize("fault, rule", [("wrong_amount", "amount_mismatch"), ("wrong_merchant", None),
                                         ("wrong_app", None)])
def test_a_notification_about_another_amount_merchant_or_app_is_refused(
        hub: Hub, gateway: str, mock: Mock, session_factory: sessionmaker[Session], fault: str,
        rule: str | None) -> None:
    if fault == "wrong_app" and gateway == "unionpay":
        pytest.skip("UnionPay notifications name no app")
    order = new_order(hub, gateway)
    mock.faults(**{fault: True})
    pay(order)
    records = wait_for(lambda: answered(mock, order["order_no"], attempts=2), "two refused deliveries")
    assert not any(r["acknowledged"] for r in records)
    _unchanged(session_factory, order)
    # Verified but not fitting the order: kept as rejected with its reason. Another merchant or app: the
    # adapter refuses it before anything is stored.
    expected = [("rejected", rule)] if rule else []
    assert [(o, r) for _, o, r in inbox_of(session_factory, order["order_no"])] == expected


def test_a_notification_for_an_unknown_order_is_refused_and_kept_as_rejected(
        hub: Hub, gateway: str, mock: Mock, session_factory: sessionmaker[Session]) -> None:
    order = new_order(hub, gateway)
    cashier = Browser()
    page = cashier.cashier(order["pay_url"])
    with session_factory.begin() as session:  # the hub loses the order (restored from an old backup, say)
        session.execute(text("UPDATE payment_orders SET order_no = :new WHERE order_no = :old"),
                        {"new": "X" + order["order_no"][1:], "old": order["order_no"]})
    cashier.press(page, "pay")
    records = wait_for(lambda: answered(mock, order["order_no"], attempts=2), "two refused deliveries")
    assert not any(r["acknowledged"] for r in records)
    assert [(o, r) for _, o, r in inbox_of(session_factory, order["order_no"])] == [("rejected", "unknown_order")]
    assert order_row(session_factory, "X" + order["order_no"][1:]).state == "created"


def test_a_duplicate_is_acknowledged_and_applied_once(
        hub: Hub, gateway: str, mock: Mock, session_factory: sessionmaker[Session]) -> None:
    order = new_order(hub, gateway)
    mock.faults(duplicate=True)
    pay(order)
    records = wait_for(lambda: acknowledged(mock, order["order_no"], count=2), "both deliveries acknowledged")
    assert len({r["notify_id"] for r in records}) == 1  # the same notification, twice at once
    assert [h[1] for h in history_of(session_factory, order["order_no"])] == ["created", "paid"]
    assert [(o, r) for _, o, r in inbox_of(session_factory, order["order_no"])] == [("applied", None)]
    assert [e.type for e in events_of(session_factory, order["tracking_no"])].count("payment.paid.v1") == 1


def test_an_older_word_after_the_payment_never_takes_it_back(
        hub: Hub, gateway: str, mock: Mock, session_factory: sessionmaker[Session]) -> None:
    order = new_order(hub, gateway)
    mock.faults(out_of_order=True)
    pay(order)
    records = wait_for(lambda: acknowledged(mock, order["order_no"], count=2), "both notifications acknowledged")
    assert {r["label"] for r in records} == {"normal", "out_of_order"}
    assert order_row(session_factory, order["order_no"]).state == "paid"
    assert [h[1] for h in history_of(session_factory, order["order_no"])] == ["created", "paid"]
    assert sorted(o for _, o, _ in inbox_of(session_factory, order["order_no"])) == ["applied", "stale"]


def test_a_browser_return_never_marks_paid(
        hub: Hub, gateway: str, mock: Mock, session_factory: sessionmaker[Session]) -> None:
    order = new_order(hub, gateway)
    mock.faults(lose_notifications=True)
    back = pay(order)
    location = back.headers["location"]
    assert location.startswith(f"{hub.url}/api/v1/payments/return/{gateway}")
    # The browser follows the gateway's redirect with the gateway's signed "paid" parameters.
    page = Browser().http.get(location)
    assert page.status_code == 200 and "支付结果以支付机构通知为准" in page.text
    assert 'data-state="created"' in page.text
    # Posted as a form (UnionPay's front URL is a form POST in production): the same page, nothing changed.
    path, _, query = location.partition("?")
    posted = Browser().http.post(path, content=query.encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert posted.status_code == 200 and 'data-state="created"' in posted.text
    _unchanged(session_factory, order)
    assert inbox_of(session_factory, order["order_no"]) == []


def test_a_failing_commit_is_never_acknowledged_and_the_resend_applies(
        hub: Hub, gateway: str, mock: Mock, engine: Engine, session_factory: sessionmaker[Session]) -> None:
    order = new_order(hub, gateway)
    working = hub.app.state.session_factory
    hub.app.state.session_factory = sessionmaker(engine, class_=FailingCommit, expire_on_commit=False)
    try:
        pay(order)
        records = wait_for(lambda: answered(mock, order["order_no"], attempts=1), "a first delivery")
        assert not records[0]["acknowledged"]
        _unchanged(session_factory, order)
        assert inbox_of(session_factory, order["order_no"]) == []
    finally:
        hub.app.state.session_factory = working
    # The gateway resends the same notification; this time the commit succeeds, and the answer follows it.
    wait_for(lambda: acknowledged(mock, order["order_no"]), "the resend's acknowledgement")
    assert order_row(session_factory, order["order_no"]).state == "paid"


@pytest.mark.parametrize("same_notify_id", [True, False], ids=["same-notification", "another-notification"])
def test_two_deliveries_at_once_on_two_connections_apply_once(
        backend: str, hub: Hub, gateway: str, mock: Mock, session_factory: sessionmaker[Session],
        same_notify_id: bool) -> None:
    """PostgreSQL, two connections (as two API processes would hold): the first holds its delivery uncommitted.
    The same notification: the second's insert waits on the inbox's unique index until the first commits, then
    answers as the stored outcome. Another notification of the same payment (another notify id): the second
    waits on the order's row lock (SELECT … FOR UPDATE), then finds it paid — stale. Either way: paid once."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer: two deliveries cannot overlap")
    order = new_order(hub, gateway)
    mock.faults(lose_notifications=True)  # the gateway's real notification, delivered by this test instead
    pay(order)
    record = wait_for(lambda: mock.notifications(order["order_no"]), "the recorded notification")[0]
    adapter = hub.app.state.payment_gateways.get(gateway)
    word = adapter.parse_notification(body=urlencode(record["form"]).encode(),
                                      content_type="application/x-www-form-urlencoded")
    other = word if same_notify_id else replace(word, notify_id=word.notify_id + "-again")
    now = datetime.now(UTC)
    first_applied, outcomes = threading.Event(), {}

    def second() -> None:
        first_applied.wait()
        with session_factory() as session:
            outcomes["second"] = service.receive_notification(session, notification=other, now=now)
            session.commit()

    thread = threading.Thread(target=second)
    thread.start()
    with session_factory() as session:
        outcomes["first"] = service.receive_notification(session, notification=word, now=now)
        first_applied.set()
        _wait_for_a_lock_wait(session_factory)
        session.commit()
    thread.join()
    assert (outcomes["first"].outcome, outcomes["first"].duplicate) == ("applied", False)
    expected = ("applied", True) if same_notify_id else ("stale", False)
    assert (outcomes["second"].outcome, outcomes["second"].duplicate) == expected
    assert [h[1] for h in history_of(session_factory, order["order_no"])] == ["created", "paid"]
    assert [e.type for e in events_of(session_factory, order["tracking_no"])].count("payment.paid.v1") == 1
    with session_factory() as session:
        assert len(session.scalars(select(PaymentNotification).where(
            PaymentNotification.order_no == order["order_no"])).all()) == (1 if same_notify_id else 2)


def test_the_service_checks_the_merchant_and_app_itself(
        hub: Hub, gateway: str, mock: Mock, session_factory: sessionmaker[Session]) -> None:
    """Defence in depth: a query's or statement's word naming another merchant or app changes nothing."""
    order = new_order(hub, gateway)
    mock.faults(lose_notifications=True)
    pay(order)
    record = wait_for(lambda: mock.notifications(order["order_no"]), "the recorded notification")[0]
    word = hub.app.state.payment_gateways.get(gateway).parse_notification(
        body=urlencode(record["form"]).encode(), content_type="application/x-www-form-urlencoded")
    identity = hub.app.state.payment_gateways.identity(gateway)
    cases = [(replace(word.trade, merchant_id="other"), "merchant_mismatch"),
             (replace(word.trade, app_id="other"), "app_mismatch" if identity.app_id else None),
             (replace(word.trade, amount_fen=1), "amount_mismatch")]
    for trade, rule in cases:
        with session_factory() as session:
            row = service.order_by_no(session, order["order_no"], lock=True)
            assert row is not None
            if rule is None:
                continue
            with pytest.raises(service.TradeMismatch) as raised:
                service.apply_trade(session, order=row, trade=trade, source="query", now=row.created_at,
                                    identity=identity)
            assert raised.value.rule == rule
            with pytest.raises(ValueError):  # and never from anything but a gateway's word
                service.apply_trade(session, order=row, trade=word.trade, source="api", now=row.created_at)
            session.rollback()
    _unchanged(session_factory, order)


def test_a_notification_to_a_gateway_not_offered_is_a_problem_not_a_500(client: Any) -> None:
    """The default hub offers no gateway: 404 naming it; a name that is no gateway at all: 422 naming the field."""
    body, form = b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}
    missing = client.post("/api/v1/payments/notify/alipay", content=body, headers=form)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    unknown = client.post("/api/v1/payments/notify/paypal", content=body, headers=form)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "gateway"


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
