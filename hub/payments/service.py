"""Payment orders (issue 12, part orders): creating one for a case's fee, the one place an order's state changes
(``transition``), the one place a gateway's word changes an order (``apply_trade``), and the notification inbox
(``receive_notification``). Services flush, never commit: the caller's unit of work commits.

States (docs/payments.md): created → pending → paid → refunding → refunded; created|pending → closed|failed.
A gateway's definite word that money was received wins over the hub's own closing (closed|failed → paid): the
money moved, reconciliation and the refund job settle the rest. Nothing ever goes back from paid on a
gateway's word: an older "pending" or "closed" arriving after "paid" is stale.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.payments.base import Notification, OrderRequest, PaymentGatewayError, TradeState
from hub.cases.models import Case
from hub.catalog.models import Item
from hub.clock import CHINA_TZ
from hub.db import begin_for_savepoints, built
from hub.errors import FieldError, HubError, NotFound
from hub.outbox import service as outbox
from hub.payments import fees, refunds
from hub.payments.gateways import GatewayIdentity, Gateways
from hub.payments.models import CaseFee, PaymentNotification, PaymentOrder, PaymentOrderEvent
from hub.settings import Settings

log = logging.getLogger("hub.payments")

STATES = ("created", "pending", "paid", "failed", "closed", "refunding", "refunded")
OPEN_STATES = ("created", "pending")
# The states an order may move to from each state (``transition`` refuses any other move).
MOVES: dict[str, frozenset[str]] = {
    "created": frozenset({"pending", "paid", "failed", "closed"}),
    "pending": frozenset({"paid", "failed", "closed"}),
    "closed": frozenset({"paid"}),  # the gateway took the money after the hub closed the order
    "failed": frozenset({"paid"}),
    "paid": frozenset({"refunding", "refunded"}),
    "refunding": frozenset({"paid", "refunded"}),  # a refund that failed for good leaves it paid
    "refunded": frozenset({"refunding"}),  # a further partial refund
}
# States that publish `payment.<state>.v1` (pending is history only).
EVENT_STATES = frozenset({"created", "paid", "failed", "closed", "refunding", "refunded"})
# Who may say an order is paid: never the browser's return.
PAYING_SOURCES = frozenset({"notification", "query", "statement"})
Source = Literal["api", "notification", "query", "statement", "refund", "case", "system"]


def event_type(state: str) -> str:
    return f"payment.{state}.v1"


# --- orders ------------------------------------------------------------------------------------------


def new_order_no(now: datetime) -> str:
    """``P`` + the CST date + 12 random digits (UnionPay's orderId rule: 8–32 of [0-9A-Za-z])."""
    return f"P{now.astimezone(CHINA_TZ):%Y%m%d}{secrets.randbelow(10**12):012d}"


def create_order(session: Session, *, case: Case, gateway: str, gateways: Gateways, settings: Settings,
                 now: datetime) -> tuple[PaymentOrder, bool]:
    """The case's open order through ``gateway``, or a new one for what the case owes; (order, created?).

    One open unexpired order per case and gateway: asking again returns it. 409 ``no_fee_due`` when nothing
    is owed (no fee, exempt, waived, paid). The case row is locked (PostgreSQL) so two requests at once make
    one order."""
    adapter = gateways.get(gateway)  # 422 gateway_not_configured before anything else
    _lock_case(session, case)
    amount = _amount_due(session, case=case, now=now)
    if amount is None:
        raise HubError(detail="该办件无需缴费（无收费、免收、已减免、已缴清或办件已终止）(no fee is due for this case)",
                       title="无需缴费", status=409, type_slug="no-fee-due",
                       errors=[FieldError(field="tracking_no", rule="no_fee_due",
                                          message="该办件无需缴费 (no fee is due for this case)")])
    for order in _open_orders(session, case_id=case.id, gateway=gateway):
        if order.expires_at > now and order.amount_fen == amount:
            return order, False
        transition(session, order=order, to_state="closed", source="system",
                   detail={"reason": "expired" if order.expires_at <= now else "amount_changed"}, now=now)
    order_no = new_order_no(now)
    expires_at = now + timedelta(seconds=settings.payments_order_ttl_s)
    item = session.get(Item, case.item_id)
    subject = (item.name if item is not None else "行政事业性收费")[:128]
    base = (settings.payments_public_url or settings.public_base_url).rstrip("/")
    request = OrderRequest(
        order_no=order_no, amount_fen=amount, subject=subject, created_at=now, expires_at=expires_at,
        notify_url=f"{base}/api/v1/payments/notify/{gateway}",
        return_url=f"{base}/api/v1/payments/return/{gateway}?order_no={order_no}",
    )
    try:
        checkout = adapter.create(request)
    except PaymentGatewayError as exc:
        raise GatewayProblem(exc) from exc
    order = built(
        PaymentOrder, order_no=order_no, case_id=case.id, region_code=case.region_code, gateway=gateway,
        amount_fen=amount, refunded_fen=0, subject=subject, state="created", gateway_trade_no=None,
        checkout=asdict(checkout), created_at=now, updated_at=now, expires_at=expires_at, paid_at=None,
        notified_at=None, last_queried_at=None, query_attempts=0,
    )
    session.add(order)
    session.flush()
    _record(session, order=order, case=case, from_state=None, to_state="created", source="api",
            detail={"amount_fen": amount}, now=now)
    return order, True


class GatewayProblem(HubError):
    """The gateway could not be reached or refused to create the trade: 503, try again (the problem names
    the gateway, never a key or personal data)."""

    def __init__(self, error: PaymentGatewayError) -> None:
        super().__init__(detail=f"支付机构暂不可用，请稍后重试 ({error.gateway}: {error.rule})",
                         title="支付机构暂不可用", status=503, type_slug="gateway-unavailable")


def order_by_no(session: Session, order_no: str, *, lock: bool = False) -> PaymentOrder | None:
    """The order of a number; ``lock``: SELECT … FOR UPDATE (PostgreSQL), so two processes applying words of
    one order take turns (SQLite has one writer anyway)."""
    statement = select(PaymentOrder).where(PaymentOrder.order_no == order_no)
    if lock:
        statement = statement.with_for_update()
        return session.scalars(statement.execution_options(populate_existing=True)).one_or_none()
    return session.scalars(statement).one_or_none()


def history(session: Session, order: PaymentOrder) -> list[PaymentOrderEvent]:
    return list(session.scalars(select(PaymentOrderEvent).where(PaymentOrderEvent.order_id == order.id)
                                .order_by(PaymentOrderEvent.id)))


def case_of(session: Session, order: PaymentOrder) -> Case:
    case = session.get(Case, order.case_id)
    if case is None:  # a foreign key: cannot happen
        raise NotFound("办件不存在 (case not found)")
    return case


def transition(session: Session, *, order: PaymentOrder, to_state: str, source: str, detail: dict[str, Any],
               now: datetime) -> None:
    """THE one place ``order.state`` changes: the move is checked against ``MOVES``, one history row is
    written, and ``payment.<state>.v1`` goes to the outbox (pending: history only)."""
    if to_state not in MOVES.get(order.state, frozenset()):
        raise ValueError(f"payment order {order.order_no}: {order.state} → {to_state} is not a move")
    if to_state == "paid" and order.state != "refunding" and source not in PAYING_SOURCES:
        raise ValueError(f"payment order {order.order_no}: only a gateway's verified word marks it paid")
    from_state = order.state
    order.state = to_state
    order.updated_at = now
    _record(session, order=order, case=case_of(session, order), from_state=from_state, to_state=to_state,
            source=source, detail=detail, now=now)


def _record(session: Session, *, order: PaymentOrder, case: Case, from_state: str | None, to_state: str,
            source: str, detail: dict[str, Any], now: datetime) -> None:
    session.add(built(PaymentOrderEvent, order_id=order.id, from_state=from_state, to_state=to_state,
                      source=source, detail=detail, occurred_at=now))
    if to_state not in EVENT_STATES:
        return
    message = outbox.message(event_type=event_type(to_state), region_code=order.region_code, payload={},
                             occurred_at=now, correlation_id=case.tracking_no)
    message.payload = {
        "event_id": str(message.message_id), "type": event_type(to_state), "occurred_at": now.isoformat(),
        "order_no": order.order_no, "tracking_no": case.tracking_no, "gateway": order.gateway,
        "amount_fen": order.amount_fen, "refunded_fen": order.refunded_fen, "state": to_state,
        "region_code": order.region_code,
    }
    session.add(message)


# --- a gateway's word --------------------------------------------------------------------------------


class TradeMismatch(Exception):
    """A gateway's (verified) word that does not fit the order: another order, amount, merchant or app.
    Nothing is changed; ``rule`` names the check."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def apply_trade(session: Session, *, order: PaymentOrder, trade: TradeState, source: str, now: datetime,
                identity: GatewayIdentity | None = None) -> bool:
    """THE one place a gateway's word (a verified notification, a query, a statement line) changes an order;
    True when it changed it. Raises ``TradeMismatch`` (changing nothing) for another order number, another
    amount, or a merchant/app other than ``identity``'s. A stale or out-of-order word (pending after paid, a
    second paid …) changes nothing and answers False. Lock the order first (``order_by_no(lock=True)``)."""
    _check(order, trade, identity or GatewayIdentity())
    if source not in PAYING_SOURCES:
        raise ValueError(f"{source!r} is not a gateway's word (notification, query, statement)")
    detail = {"code": trade.code, "message": trade.message[:200]} if trade.code or trade.message else {}
    if trade.status == "paid":
        if order.state not in ("created", "pending", "closed", "failed"):
            return False  # already paid (or refunding/refunded): the same money, told again
        order.paid_at = trade.paid_at or now
        if trade.gateway_trade_no:
            order.gateway_trade_no = trade.gateway_trade_no
        transition(session, order=order, to_state="paid", source=source,
                   detail={**detail, "gateway_trade_no": trade.gateway_trade_no}, now=now)
        _mark_fee_paid(session, case_id=order.case_id, amount_fen=order.amount_fen, now=now)
        refunds.on_order_paid(session, order=order, now=now)  # reconcile: paid after its case ended → back
        return True
    if trade.status in ("pending", "closed", "failed") and order.state in OPEN_STATES \
            and trade.status != order.state:
        if trade.gateway_trade_no and not order.gateway_trade_no:
            order.gateway_trade_no = trade.gateway_trade_no
        transition(session, order=order, to_state=trade.status, source=source, detail=detail, now=now)
        return True
    return False  # unknown, or stale (nothing goes back from paid, closed or failed on a non-paying word)


def _check(order: PaymentOrder, trade: TradeState, identity: GatewayIdentity) -> None:
    if trade.order_no != order.order_no:
        raise TradeMismatch("order_mismatch", "订单号不符 (the trade names another order)")
    if trade.amount_fen is not None and trade.amount_fen != order.amount_fen:
        raise TradeMismatch("amount_mismatch", f"金额不符 (gateway {trade.amount_fen} fen, order "
                                               f"{order.amount_fen} fen)")
    if identity.merchant_id and trade.merchant_id and trade.merchant_id != identity.merchant_id:
        raise TradeMismatch("merchant_mismatch", "商户号不符 (another merchant)")
    if identity.app_id and trade.app_id and trade.app_id != identity.app_id:
        raise TradeMismatch("app_mismatch", "应用号不符 (another app)")


# --- the notification inbox ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationOutcome:
    outcome: str  # applied | stale | rejected
    reason: str | None = None
    duplicate: bool = False  # the same (gateway, notify_id) was stored before: answered as then

    @property
    def accepted(self) -> bool:
        """Whether the gateway is told it was received (so it stops resending): applied and stale words
        are; rejected ones are not."""
        return self.outcome != "rejected"


def receive_notification(session: Session, *, notification: Notification, now: datetime,
                         gateways: Gateways | None = None) -> NotificationOutcome:
    """Store a verified notification once under (gateway, notify_id), then apply it to its order.

    The insert comes first, in a savepoint: a unique violation means it is stored already (a resend, or
    the same notification handled at this moment by another process, whose commit the insert waited for) —
    answered as its stored outcome, nothing changed. Then the order is locked and the word applied; a word
    that does not fit its order (unknown order, amount, merchant, app) is kept as ``rejected`` with the reason.
    """
    stored = _store(session, notification, now)
    if stored is None:
        previous = session.scalars(select(PaymentNotification).where(
            PaymentNotification.gateway == notification.gateway,
            PaymentNotification.notify_id == notification.notify_id)).one()
        return NotificationOutcome(previous.outcome, previous.reason, duplicate=True)
    outcome = _apply_notification(session, notification, now,
                                  gateways.identity(notification.gateway) if gateways else GatewayIdentity())
    stored.outcome, stored.reason = outcome.outcome, outcome.reason
    session.flush()
    return outcome


def _store(session: Session, notification: Notification, now: datetime) -> PaymentNotification | None:
    row = built(PaymentNotification, gateway=notification.gateway, notify_id=notification.notify_id[:128],
                order_no=notification.trade.order_no[:64], kind=notification.kind, outcome="received",
                reason=None, params=dict(notification.params), received_at=now)
    begin_for_savepoints(session)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None
    return row


def _apply_notification(session: Session, notification: Notification, now: datetime,
                        identity: GatewayIdentity) -> NotificationOutcome:
    order = order_by_no(session, notification.trade.order_no, lock=True)
    if order is None or order.gateway != notification.gateway:
        # Logged without personal data: the gateway, its notify id and the number it named.
        log.warning("payment notification for an unknown order",
                    extra={"gateway": notification.gateway, "notify_id": notification.notify_id,
                           "order_no": notification.trade.order_no[:64]})
        return NotificationOutcome("rejected", "unknown_order")
    if notification.kind == "refund":
        # A refund's outcome is confirmed by the refund job's query (hub/payments/refunds.py): stored, told.
        order.notified_at = now
        return NotificationOutcome("stale", "refund_confirmed_by_query")
    try:
        changed = apply_trade(session, order=order, trade=notification.trade, source="notification", now=now,
                              identity=identity)
    except TradeMismatch as exc:
        log.warning("payment notification does not fit its order",
                    extra={"gateway": notification.gateway, "notify_id": notification.notify_id,
                           "order_no": order.order_no, "rule": exc.rule})
        return NotificationOutcome("rejected", exc.rule)
    order.notified_at = now
    return NotificationOutcome("applied" if changed else "stale", None if changed else f"state_{order.state}")


# --- fees (part fees: hub/payments/fees.py) -----------------------------------------------------------


def _lock_case(session: Session, case: Case) -> None:
    session.execute(select(Case.id).where(Case.id == case.id).with_for_update())


def _amount_due(session: Session, *, case: Case, now: datetime) -> int | None:
    """What the case still owes in fen, None when nothing (no fee, exempt, waived, paid; a denied, refused or
    withdrawn case is never charged: ``fees.owed``)."""
    fee = _assess(session, case=case, now=now)
    if fee is None or not fees.owed(case, fee):
        return None
    amount = fee.amount_fen - (fee.paid_fen or 0)
    return amount if amount > 0 else None


def _assess(session: Session, *, case: Case, now: datetime) -> CaseFee | None:
    return fees.assess(session, case=case, now=now)


def _mark_fee_paid(session: Session, *, case_id: int, amount_fen: int, now: datetime) -> None:
    fees.mark_paid(session, case_id=case_id, amount_fen=amount_fen, now=now)


def _open_orders(session: Session, *, case_id: int, gateway: str) -> list[PaymentOrder]:
    return list(session.scalars(select(PaymentOrder).where(
        PaymentOrder.case_id == case_id, PaymentOrder.gateway == gateway,
        PaymentOrder.state.in_(OPEN_STATES)).order_by(PaymentOrder.id)))
