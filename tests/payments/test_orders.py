"""Payment orders over HTTP (issue 12, item 2): POST /api/v1/payments creates one order per case and gateway
(returned again while open), with the amount the case owes, the hub's order number and where the applicant
pays; GET shows it with its full history; errors name the field and the rule; every change publishes
``payment.<event>.v1`` as the served contracts describe it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import FixedClock
from hub.outbox.relay import envelope_of
from tests.contracts.test_event_schemas import Contracts
from tests.payments.orders_support import (
    FEE_ITEM,
    FREE_ITEM,
    SigningGateway,
    create_order,
    events_of,
    fee_case,
    history_of,
    install_gateway,
    order_row,
)
from tests.support import submit

ORDER_NO = re.compile(r"^P\d{8}\d{12}$")


@pytest.fixture
def gateway(app: Any) -> SigningGateway:
    return install_gateway(app)


def test_an_order_is_created_for_the_fee_with_its_number_amount_and_pay_url(
        client: TestClient, gateway: SigningGateway, session_factory: sessionmaker[Session]) -> None:
    receipt = fee_case(client)
    response = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": "alipay"})
    assert response.status_code == 201, response.text
    order = response.json()
    assert ORDER_NO.match(order["order_no"]) and order["order_no"][1:9] == "20260311"  # the CST date
    assert (order["tracking_no"], order["gateway"], order["amount_fen"], order["state"]) == \
        (receipt["tracking_no"], "alipay", 2000, "created")
    assert order["pay_url"].endswith(f"/api/v1/payments/{order['order_no']}/pay")
    # The gateway was asked with the hub's callback addresses; the browser's return names the order.
    request = gateway.created[-1]
    assert request.notify_url.endswith("/api/v1/payments/notify/alipay")
    assert request.return_url.endswith(f"/api/v1/payments/return/alipay?order_no={order['order_no']}")
    assert history_of(session_factory, order["order_no"]) == [(None, "created", "api")]


def test_the_open_order_of_a_case_and_gateway_is_returned_again(client: TestClient, gateway: SigningGateway) -> None:
    receipt = fee_case(client)
    first = create_order(client, receipt)
    again = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": "alipay"})
    assert again.status_code == 200, again.text
    assert again.json()["order_no"] == first["order_no"]
    assert len(gateway.created) == 1


def test_an_expired_order_is_closed_and_a_new_one_created(
        client: TestClient, gateway: SigningGateway, clock: FixedClock,
        session_factory: sessionmaker[Session]) -> None:
    receipt = fee_case(client)
    first = create_order(client, receipt)
    clock.advance(seconds=1801)
    second = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": "alipay"})
    assert second.status_code == 201, second.text
    assert second.json()["order_no"] != first["order_no"]
    assert order_row(session_factory, first["order_no"]).state == "closed"
    assert history_of(session_factory, first["order_no"])[-1] == ("created", "closed", "system")
    # The expired order's page says so instead of sending the browser to the cashier.
    page = client.get(f"/api/v1/payments/{first['order_no']}/pay", follow_redirects=False)
    assert page.status_code == 409 and "已关闭" in page.text


def test_a_case_without_a_fee_is_refused_with_no_fee_due(client: TestClient, gateway: SigningGateway) -> None:
    receipt = submit(client, FREE_ITEM)
    response = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": "alipay"})
    assert response.status_code == 409, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "no_fee_due" and problem["title"] == "无需缴费"


def test_a_gateway_not_configured_is_refused_naming_the_gateway(client: TestClient, gateway: SigningGateway) -> None:
    receipt = fee_case(client)
    response = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": "unionpay"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "gateway"
    assert response.json()["code"] == "gateway_not_configured"


def test_the_hub_offers_no_gateway_by_default(client: TestClient) -> None:
    receipt = fee_case(client)
    response = client.post("/api/v1/payments", json={**_credentials(receipt), "gateway": "alipay"})
    assert response.status_code == 422 and response.json()["code"] == "gateway_not_configured"


def test_bad_input_names_the_field_and_rule(client: TestClient, gateway: SigningGateway) -> None:
    receipt = fee_case(client)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**_credentials(receipt), "gateway": "paypal"}, "gateway"),
        ({"tracking_no": "123", "query_code": receipt["query_code"], "gateway": "alipay"}, "tracking_no"),
        ({"tracking_no": receipt["tracking_no"], "gateway": "alipay"}, "query_code"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/payments", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field


def test_a_wrong_query_code_is_404_like_an_unknown_case(client: TestClient, gateway: SigningGateway) -> None:
    receipt = fee_case(client)
    response = client.post("/api/v1/payments", json={"tracking_no": receipt["tracking_no"], "query_code": "WRONG1",
                                                     "gateway": "alipay"})
    assert response.status_code == 404, response.text
    assert not gateway.created


def test_an_order_is_shown_with_its_history_to_the_applicant_only(
        client: TestClient, gateway: SigningGateway) -> None:
    receipt = fee_case(client)
    order = create_order(client, receipt)
    shown = client.get(f"/api/v1/payments/{order['order_no']}", params={"query_code": receipt["query_code"]})
    assert shown.status_code == 200, shown.text
    assert shown.json()["state"] == "created" and shown.json()["amount_fen"] == 2000
    assert [(h["from_state"], h["to_state"], h["source"]) for h in shown.json()["history"]] == \
        [(None, "created", "api")]
    wrong = client.get(f"/api/v1/payments/{order['order_no']}", params={"query_code": "WRONG1"})
    unknown = client.get("/api/v1/payments/P20260311000000000000", params={"query_code": receipt["query_code"]})
    assert wrong.status_code == unknown.status_code == 404
    assert client.get("/api/v1/payments/not-a-number!", params={"query_code": "1234"}).status_code == 422


def test_the_pay_page_sends_the_browser_to_the_cashier(client: TestClient, gateway: SigningGateway) -> None:
    order = create_order(client, fee_case(client))
    page = client.get(f"/api/v1/payments/{order['order_no']}/pay", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("http://cashier.invalid/gateway.do?")
    assert f"out_trade_no={order['order_no']}" in page.headers["location"]


def test_a_post_checkout_is_an_auto_submitting_form(client: TestClient, gateway: SigningGateway) -> None:
    gateway.method = "POST"
    order = create_order(client, fee_case(client))
    page = client.get(f"/api/v1/payments/{order['order_no']}/pay")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'action="http://cashier.invalid/gateway.do"' in page.text and "document.getElementById" in page.text
    assert f'name="out_trade_no" value="{order["order_no"]}"' in page.text and "20.00 元" in page.text


def test_order_events_match_the_served_payment_event_schema(
        client: TestClient, gateway: SigningGateway, session_factory: sessionmaker[Session]) -> None:
    receipt = fee_case(client)
    create_order(client, receipt)
    contracts = Contracts(client)
    rows = events_of(session_factory, receipt["tracking_no"])
    assert [row.type for row in rows] == ["payment.created.v1"]
    for row in rows:
        assert contracts.errors(row.routing_key, envelope_of(row)) == []
        assert set(row.payload) <= set(client.get("/schemas/payment-event.v1.json").json()["properties"])
        assert row.payload["amount_fen"] == 2000 and row.payload["state"] == "created"
    assert FEE_ITEM  # the fee item of these tests: 2000 fen


def _credentials(receipt: dict[str, Any]) -> dict[str, str]:
    return {"tracking_no": receipt["tracking_no"], "query_code": receipt["query_code"]}
