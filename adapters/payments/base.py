"""The one interface every payment gateway adapter implements, and the values it speaks in.

The hub never sees a gateway's own parameter names: it creates an order (``create``), hands a gateway's HTTP
notification body to ``parse_notification`` (which verifies the signature, the merchant and the app before it
returns anything), asks ``query`` when no notification came, ``refund``s by a request number it reuses on every
retry, and reads a day's ``statement`` for reconciliation. Amounts are integers in fen everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import ClassVar, Literal, Protocol

GatewayName = Literal["alipay", "unionpay"]

# What a gateway says of a trade, in the hub's words:
#   pending    created at the gateway, the buyer has not paid (Alipay WAIT_BUYER_PAY, a query's "trade does not
#              exist" before the buyer acted, UnionPay origRespCode 05 …)
#   paid       money received (Alipay TRADE_SUCCESS / TRADE_FINISHED, UnionPay respCode 00/A6 of the payment)
#   closed     closed unpaid (Alipay TRADE_CLOSED without payment, an expired or cancelled UnionPay order)
#   failed     the gateway refused the payment for good
#   unknown    no definite answer (UnionPay 03/04/05 and the like): ask again later, never decide on it
TradeStatus = Literal["pending", "paid", "closed", "failed", "unknown"]
RefundStatus = Literal["succeeded", "processing", "failed", "unknown"]


@dataclass(frozen=True)
class OrderRequest:
    order_no: str  # the hub's order number: Alipay out_trade_no, UnionPay orderId (8–32 of [0-9A-Za-z])
    amount_fen: int
    subject: str  # shown on the cashier page; no personal data
    created_at: datetime  # UnionPay txnTime (China Standard Time on the wire)
    expires_at: datetime
    notify_url: str  # the hub's back-end notification endpoint for this gateway
    return_url: str  # the browser's way back (display only: never marks an order paid)


@dataclass(frozen=True)
class Checkout:
    """Where the applicant's browser goes to pay: a GET of ``url``, or a form POST of ``fields`` to it."""

    url: str
    method: Literal["GET", "POST"] = "GET"
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TradeState:
    """A trade as the gateway reports it (a verified notification, a query, a statement line)."""

    order_no: str
    status: TradeStatus
    amount_fen: int | None = None  # what the gateway says was (or is to be) paid
    gateway_trade_no: str | None = None
    paid_at: datetime | None = None
    merchant_id: str | None = None
    app_id: str | None = None
    code: str = ""  # the gateway's own status code (trade_status, respCode), for the history
    message: str = ""


@dataclass(frozen=True)
class Notification:
    """A verified back-end notification: the signature checked with the gateway's key, the merchant and the app
    checked against the configured ones. ``notify_id`` is the gateway's unique id of this notification (the same
    on every resend): the hub stores each once under (gateway, notify_id)."""

    gateway: GatewayName
    notify_id: str
    kind: Literal["payment", "refund"]
    trade: TradeState
    refund_no: str | None = None
    refund_fen: int | None = None
    params: dict[str, str] = field(default_factory=dict)  # as received, buyer identifiers masked


@dataclass(frozen=True)
class Acknowledgement:
    """What the hub answers a notification with, once its outcome is committed."""

    status_code: int
    body: str
    media_type: str = "text/plain"


@dataclass(frozen=True)
class RefundRequest:
    order_no: str
    refund_no: str  # the hub's request number, reused on every retry: the gateway refunds it once
    amount_fen: int
    order_amount_fen: int
    reason: str
    gateway_trade_no: str | None = None
    order_created_at: datetime | None = None


@dataclass(frozen=True)
class RefundResult:
    refund_no: str
    status: RefundStatus
    refunded_fen: int | None = None  # this request's amount as the gateway confirms it
    gateway_refund_no: str | None = None
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class StatementLine:
    """One line of a gateway's daily statement (对账单)."""

    order_no: str
    kind: Literal["payment", "refund"]
    amount_fen: int
    occurred_at: datetime
    gateway_trade_no: str | None = None
    refund_no: str | None = None


class PaymentGateway(Protocol):
    name: GatewayName

    def create(self, request: OrderRequest) -> Checkout: ...

    def parse_notification(self, *, body: bytes, content_type: str) -> Notification:
        """Raises NotificationRejected (forged, malformed, another merchant or app) — never returns unverified."""
        ...

    def acknowledgement(self, *, accepted: bool) -> Acknowledgement: ...

    def query(self, *, order_no: str, created_at: datetime) -> TradeState: ...

    def refund(self, request: RefundRequest) -> RefundResult: ...

    def statement(self, *, day: date) -> list[StatementLine]: ...


class PaymentGatewayError(Exception):
    """Base of gateway failures. Messages are for officers: Chinese first, English in brackets; never personal
    data, never a key."""

    retryable: ClassVar[bool] = False

    def __init__(self, gateway: str, message: str, *, rule: str = "gateway_error") -> None:
        super().__init__(message)
        self.gateway = gateway
        self.message = message
        self.rule = rule


class GatewayUnavailable(PaymentGatewayError):
    """Down, timed out, 5xx, or an answer whose signature does not verify: try again later."""

    retryable = True


class GatewayRefused(PaymentGatewayError):
    """A definite refusal (bad request, insufficient refundable amount, unknown order for a refund)."""


class NotificationRejected(PaymentGatewayError):
    """A notification that must change nothing: forged or missing signature, malformed, another merchant or
    app. ``rule`` names why: signature_invalid, malformed, merchant_mismatch, app_mismatch."""
