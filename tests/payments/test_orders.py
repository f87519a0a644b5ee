"""Payment orders over HTTP (issue 12, item 2): POST /api/v1/payments creates one order per case and gateway
(returned again while open), with the amount the case owes, the hub's order number and where the applicant
pays; GET shows it with its full history; errors name the field and the rule; every change publishes
``payment.<event>.v1`` as the served contracts describe it. The hub's gateways are the real adapters,
configured from the real mock gateways' ``/_keys``; the pay page leads to the mock's cashier over sockets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.app import create_app
from hub.clock import FixedClock, business_date
from hub.outbox.relay import envelope_of
from hub.settings import Settings
from tests.contracts.test_event_schemas import Contracts
from tests.payments.orders_support import FREE_ITEM, create_order, events_of, fee_case, history_of, order_row
from tests.payments.wire_support import Browser, configured, forms, landed_gateways, mock_gateway
from tests.support import submit

GATEWAYS = landed_gateways()
ORDER_NO = re.compile(r"^P\d{8}\d{12}$")


@pytest.fixture(scope="module")
def gateway_urls() -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        yield {name: stack.enter_context(mock_gateway(name)).url for name in GATEWAYS}


@pytest.fixture
def clock() -> FixedClock:
    """Now: the mocks keep real time (an order's expiry is checked at their cashier)."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def app(settings: Settings, clock: FixedClock, engine: Engine, gateway_urls: dict[str, str], tmp_path: Path) -> Any:
    return create_app(configured(settings, gateway_urls, tmp_path / "payments"), clock=clock, engine=engine)


@pytest.fixture(params=GATEWAYS)
def gateway(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_an_order_is_created_for_the_fee_with_its_number_amount_and_pay_url(
        client: TestClient, gateway: str, clock: FixedClock, session_factory: sessionmaker[Session]) -> None:
    receipt = fee_case(client)
    response = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": gateway})
    assert response.status_code == 201, response.text
    order = response.json()
    assert ORDER_NO.match(order["order_no"])
    assert order["order_no"][1:9] == f"{business_date(clock.now()):%Y%m%d}"  # the CST date
    assert (order["tracking_no"], order["gateway"], order["amount_fen"], order["state"]) == \
        (receipt["tracking_no"], gateway, 2000, "created")
    assert order["pay_url"].endswith(f"/api/v1/payments/{order['order_no']}/pay")
    # The gateway's checkout carries the hub's callback addresses; the browser's return names the order.
    checkout = unquote(json.dumps(order_row(session_factory, order["order_no"]).checkout))
    assert f"/api/v1/payments/notify/{gateway}" in checkout
    assert f"/api/v1/payments/return/{gateway}?order_no={order['order_no']}" in checkout
    assert history_of(session_factory, order["order_no"]) == [(None, "created", "api")]


def test_the_open_order_of_a_case_and_gateway_is_returned_again(client: TestClient, gateway: str) -> None:
    receipt = fee_case(client)
    first = create_order(client, receipt, gateway)
    again = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": gateway})
    assert again.status_code == 200, again.text
    assert again.json()["order_no"] == first["order_no"]


def test_an_expired_order_is_closed_and_a_new_one_created(
        client: TestClient, gateway: str, clock: FixedClock, session_factory: sessionmaker[Session]) -> None:
    receipt = fee_case(client)
    first = create_order(client, receipt, gateway)
    clock.advance(seconds=1801)
    second = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": gateway})
    assert second.status_code == 201, second.text
    assert second.json()["order_no"] != first["order_no"]
    assert order_row(session_factory, first["order_no"]).state == "closed"
    assert history_of(session_factory, first["order_no"])[-1] == ("created", "closed", "system")
    assert [e.type for e in events_of(session_factory, receipt["tracking_no"])] == \
        ["payment.created.v1", "payment.closed.v1", "payment.created.v1"]
    # The expired order's page says so instead of sending the browser to the cashier.
    page = client.get(f"/api/v1/payments/{first['order_no']}/pay", follow_redirects=False)
    assert page.status_code == 409 and "已关闭" in page.text


def test_a_case_without_a_fee_is_refused_with_no_fee_due(client: TestClient, gateway: str) -> None:
    receipt = submit(client, FREE_ITEM)
    response = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": gateway})
    assert response.status_code == 409, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "no_fee_due" and problem["title"] == "无需缴费"


def test_a_waived_fee_is_not_due_any_more(
        client: TestClient, gateway: str, session_factory: sessionmaker[Session]) -> None:
    from hub.db import unit_of_work
    from hub.payments.models import CaseFee

    receipt = fee_case(client)
    order = create_order(client, receipt, gateway)
    with unit_of_work(session_factory) as session:
        fee = session.get(CaseFee, order_row(session_factory, order["order_no"]).case_id)
        assert fee is not None
        fee.status = "waived"
    response = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": gateway})
    assert response.status_code == 409 and response.json()["code"] == "no_fee_due"


def test_a_withdrawn_case_is_not_charged(client: TestClient, gateway: str) -> None:
    receipt = fee_case(client)
    withdrawn = client.post(f"/api/v1/applications/{receipt['tracking_no']}/withdraw", json={"reason": "不再办理"},
                            headers={"X-Query-Code": receipt["query_code"]})
    assert withdrawn.status_code == 200, withdrawn.text
    response = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": gateway})
    assert response.status_code == 409 and response.json()["code"] == "no_fee_due"


def test_a_gateway_not_configured_is_refused_naming_the_gateway(
        settings: Settings, clock: FixedClock, engine: Engine) -> None:
    with TestClient(create_app(settings, clock=clock, engine=engine)) as client:  # no gateway configured
        receipt = fee_case(client)
        for name in ("alipay", "unionpay"):
            response = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": name})
            assert response.status_code == 422, response.text
            assert response.json()["code"] == "gateway_not_configured"
            assert response.json()["errors"][0]["field"] == "gateway"


def test_bad_input_names_the_field_and_rule(client: TestClient, gateway: str) -> None:
    receipt = fee_case(client)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**_credentials(receipt), "gateway": "paypal"}, "gateway"),
        ({"tracking_no": "123", "query_code": receipt["query_code"], "gateway": gateway}, "tracking_no"),
        ({"tracking_no": receipt["tracking_no"], "gateway": gateway}, "query_code"),
        ({**_credentials(receipt), "gateway": gateway, "amount_fen": 1}, "amount_fen"),  # the hub sets it
    ]
    for body, field in cases:
        response = client.post("/api/v1/payments", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field


def test_a_wrong_query_code_is_404_like_an_unknown_case(
        client: TestClient, gateway: str, session_factory: sessionmaker[Session]) -> None:
    receipt = fee_case(client)
    response = client.post("/api/v1/payments", json={"tracking_no": receipt["tracking_no"], "query_code": "WRONG1",
                                                     "gateway": gateway})
    assert response.status_code == 404, response.text
    assert events_of(session_factory, receipt["tracking_no"]) == []


def test_an_order_is_shown_with_its_history_to_the_applicant_only(client: TestClient, gateway: str) -> None:
    receipt = fee_case(client)
    order = create_order(client, receipt, gateway)
    shown = client.get(f"/api/v1/payments/{order['order_no']}", params={"query_code": receipt["query_code"]})
    assert shown.status_code == 200, shown.text
    assert shown.json()["state"] == "created" and shown.json()["amount_fen"] == 2000
    assert [(h["from_state"], h["to_state"], h["source"]) for h in shown.json()["history"]] == \
        [(None, "created", "api")]
    wrong = client.get(f"/api/v1/payments/{order['order_no']}", params={"query_code": "WRONG1"})
    unknown = client.get("/api/v1/payments/P20260311000000000000", params={"query_code": receipt["query_code"]})
    assert wrong.status_code == unknown.status_code == 404
    assert client.get("/api/v1/payments/not-a-number!", params={"query_code": "1234"}).status_code == 422


def test_the_pay_page_sends_the_browser_to_the_gateways_cashier(
        client: TestClient, gateway: str, gateway_urls: dict[str, str]) -> None:
    order = create_order(client, fee_case(client), gateway)
    page = client.get(f"/api/v1/payments/{order['order_no']}/pay", follow_redirects=False)
    browser = Browser()
    if page.status_code == 303:  # a GET checkout
        assert page.headers["location"].startswith(gateway_urls[gateway])
        cashier = browser.http.get(page.headers["location"])
    else:  # a POST checkout: an auto-submitting form, signed fields and all
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
        assert "document.getElementById" in page.text and "20.00 元" in page.text
        action, fields = forms(page.text)["checkout"]
        assert action.startswith(gateway_urls[gateway])
        cashier = browser.http.post(action, data=fields)
    assert cashier.status_code == 200, cashier.text
    assert "收银台" in cashier.text and order["order_no"] in cashier.text and "20.00" in cashier.text
    assert {"pay", "cancel"} <= set(forms(cashier.text))


def test_order_events_match_the_served_payment_event_schema(
        client: TestClient, gateway: str, session_factory: sessionmaker[Session]) -> None:
    receipt = fee_case(client)
    create_order(client, receipt, gateway)
    contracts = Contracts(client)
    declared = set(client.get("/schemas/payment-event.v1.json").json()["properties"])
    rows = events_of(session_factory, receipt["tracking_no"])
    assert [row.type for row in rows] == ["payment.created.v1"]
    for row in rows:
        assert contracts.errors(row.routing_key, envelope_of(row)) == []
        assert set(row.payload) <= declared
        assert (row.payload["amount_fen"], row.payload["state"], row.payload["gateway"]) == (2000, "created", gateway)
        assert row.correlation_id == receipt["tracking_no"]


def _credentials(receipt: dict[str, Any]) -> dict[str, str]:
    return {"tracking_no": receipt["tracking_no"], "query_code": receipt["query_code"]}
