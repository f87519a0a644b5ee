"""What the order and notification tests share: a fee case, the hub's payment gateways, and a gateway that
signs its notifications as an Alipay-style gateway does (RSA2 over the sorted parameters, keys generated at
run time).

``SigningGateway`` stands in for the alipay part's adapter until it is merged: it implements the same
``PaymentGateway`` interface and is what the hub calls; the tests sign notifications with its key pair (or a
forger's) and POST them to the hub over HTTP, as the gateway would."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adapters.payments import signing
from adapters.payments.base import (
    Acknowledgement,
    Checkout,
    Notification,
    NotificationRejected,
    OrderRequest,
    RefundRequest,
    RefundResult,
    StatementLine,
    TradeState,
)
from hub.outbox.models import OutboxMessage
from hub.payments.gateways import GatewayIdentity, Gateways
from hub.payments.models import PaymentNotification, PaymentOrder, PaymentOrderEvent
from tests.support import submit

FEE_ITEM = "id-card-renewal"  # 2000 fen (工本费), due before completion
FREE_ITEM = "physician-practice-registration"  # no fee
APP_ID, SELLER_ID = "2026000000000001", "2088000000000001"
STATUSES = {"WAIT_BUYER_PAY": "pending", "TRADE_SUCCESS": "paid", "TRADE_FINISHED": "paid",
            "TRADE_CLOSED": "closed"}

_KEYS: dict[str, signing.KeyPair] = {}


def keys(name: str) -> signing.KeyPair:
    """One key pair per name per test run (RSA generation is slow on a loaded machine)."""
    if name not in _KEYS:
        _KEYS[name] = signing.generate_key_pair(name)
    return _KEYS[name]


class SigningGateway:
    """An Alipay-style gateway in the test process: checkout by GET (or POST), notifications verified with
    the gateway's public key, app and seller checked."""

    name = "alipay"

    def __init__(self, *, method: str = "GET") -> None:
        self.method = method
        self.created: list[OrderRequest] = []

    def create(self, request: OrderRequest) -> Checkout:
        self.created.append(request)
        params = {"out_trade_no": request.order_no, "total_amount": yuan(request.amount_fen),
                  "notify_url": request.notify_url, "return_url": request.return_url}
        if self.method == "POST":
            return Checkout(url="http://cashier.invalid/gateway.do", method="POST", fields=params)
        return Checkout(url="http://cashier.invalid/gateway.do?" + urlencode(params))

    def parse_notification(self, *, body: bytes, content_type: str) -> Notification:
        params = dict(parse_qsl(body.decode("utf-8")))
        signature = params.get("sign", "")
        base = signing.sorted_string(params, exclude=frozenset({"sign", "sign_type"}))
        if not signature or not signing.verify(keys("gateway").public_key, base, signature):
            raise NotificationRejected(self.name, "签名无效 (signature invalid)", rule="signature_invalid")
        if params.get("app_id") != APP_ID:
            raise NotificationRejected(self.name, "应用号不符", rule="app_mismatch")
        if params.get("seller_id") != SELLER_ID:
            raise NotificationRejected(self.name, "商户号不符", rule="merchant_mismatch")
        trade = TradeState(
            order_no=params["out_trade_no"], status=STATUSES.get(params["trade_status"], "unknown"),  # type: ignore[arg-type]
            amount_fen=int(Decimal(params["total_amount"]) * 100), gateway_trade_no=params.get("trade_no"),
            merchant_id=params["seller_id"], app_id=params["app_id"], code=params["trade_status"],
        )
        return Notification(gateway="alipay", notify_id=params["notify_id"], kind="payment", trade=trade,
                            params={k: v for k, v in params.items() if k not in ("sign", "buyer_logon_id")})

    def acknowledgement(self, *, accepted: bool) -> Acknowledgement:
        return Acknowledgement(200, "success" if accepted else "failure")

    def query(self, *, order_no: str, created_at: datetime) -> TradeState:
        raise NotImplementedError

    def refund(self, request: RefundRequest) -> RefundResult:
        raise NotImplementedError

    def statement(self, *, day: date) -> list[StatementLine]:
        raise NotImplementedError


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def notification(order_no: str, *, amount_fen: int = 2000, status: str = "TRADE_SUCCESS", notify_id: str = "n1",
                 signer: str = "gateway", app_id: str = APP_ID, seller_id: str = SELLER_ID) -> bytes:
    """A notification form body as the gateway sends it, signed with ``signer``'s key."""
    params = {"notify_id": notify_id, "notify_type": "trade_status_sync", "app_id": app_id,
              "seller_id": seller_id, "out_trade_no": order_no, "trade_no": "2026113022001400001" + order_no[-4:],
              "trade_status": status, "total_amount": yuan(amount_fen), "buyer_logon_id": "138****5678",
              "sign_type": "RSA2"}
    params["sign"] = signing.sign(keys(signer).private_key,
                                  signing.sorted_string(params, exclude=frozenset({"sign", "sign_type"})))
    return urlencode(params).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post_notification(client: TestClient, body: bytes) -> str:
    response = client.post("/api/v1/payments/notify/alipay", content=body, headers=FORM)
    assert response.status_code == 200, response.text
    return response.text


def install_gateway(app: Any) -> SigningGateway:
    """The app's gateways: this double as ``alipay``, with its seller and app as the configured ones."""
    double = SigningGateway()
    app.state.payment_gateways = Gateways({"alipay": double},
                                          {"alipay": GatewayIdentity(merchant_id=SELLER_ID, app_id=APP_ID)})
    return double


def fee_case(client: TestClient) -> dict[str, Any]:
    return submit(client, FEE_ITEM)


def create_order(client: TestClient, receipt: dict[str, Any], gateway: str = "alipay") -> dict[str, Any]:
    response = client.post("/api/v1/payments", json={"tracking_no": receipt["tracking_no"],
                                                     "query_code": receipt["query_code"], "gateway": gateway})
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def order_row(factory: sessionmaker[Session], order_no: str) -> PaymentOrder:
    with factory() as session:
        order = session.scalars(select(PaymentOrder).where(PaymentOrder.order_no == order_no)).one()
        session.expunge(order)
        return order


def history_of(factory: sessionmaker[Session], order_no: str) -> list[tuple[str | None, str, str]]:
    with factory() as session:
        order = session.scalars(select(PaymentOrder).where(PaymentOrder.order_no == order_no)).one()
        return [(e.from_state, e.to_state, e.source) for e in session.scalars(
            select(PaymentOrderEvent).where(PaymentOrderEvent.order_id == order.id).order_by(PaymentOrderEvent.id))]


def events_of(factory: sessionmaker[Session], tracking_no: str) -> list[OutboxMessage]:
    with factory() as session:
        rows = list(session.scalars(select(OutboxMessage).where(
            OutboxMessage.correlation_id == tracking_no, OutboxMessage.type.like("payment.%"))
            .order_by(OutboxMessage.id)))
        session.expunge_all()
        return rows


def inbox_of(factory: sessionmaker[Session], order_no: str) -> list[tuple[str, str, str | None]]:
    with factory() as session:
        return [(n.notify_id, n.outcome, n.reason) for n in session.scalars(
            select(PaymentNotification).where(PaymentNotification.order_no == order_no)
            .order_by(PaymentNotification.id))]
