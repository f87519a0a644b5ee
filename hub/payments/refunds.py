"""Refunds (退款): requested inside the transaction that decides them, sent later by the worker.

* ``request_refund`` records one refund of a paid order under a request number generated once (``R`` + CST date
  + 12 random digits); it refuses more than the order's refundable balance (paid, less what is refunded or
  already requested) with a problem naming ``amount_fen`` and the rule. The order moves paid → refunding.
* ``refund_for_case`` is the case hook: a root case denied, refused at intake or withdrawn gets every paid order
  refunded in full (what is left of it). It is idempotent: once requested, nothing is left to request.
* ``send_due`` is the worker's job: every refund requested (or whose outcome is unknown) and due is sent through
  its gateway with the SAME refund number on every attempt, so the gateway refunds it once however often the
  hub asks; an unavailable gateway (down, timeout, 5xx) is asked again later with exponential backoff. A
  success adds to the order's ``refunded_fen`` and moves it refunding → refunded once all is refunded (back to
  paid after a partial refund); a definite failure moves it back to paid with the error kept on the refund.

Order states only change through ``hub.payments.service.transition`` (the history row and the outbox event).
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from adapters.payments.base import (
    GatewayUnavailable,
    PaymentGateway,
    PaymentGatewayError,
    RefundRequest,
    RefundResult,
)
from adapters.resilience import exponential_backoff_s
from hub.cases.models import Case
from hub.clock import business_date
from hub.db import Write, on_commit, unit_of_work
from hub.errors import FieldError, HubError, ValidationFailed
from hub.payments.gateways import GatewayIdentity
from hub.payments.models import CaseFee, PaymentOrder, PaymentRefund

log = logging.getLogger("hub.payments.refunds")

# A root case ending in one of these owes the applicant his money back (the reason recorded on the refund).
REFUND_ON_CASE_STATES = {
    "denied": "不予许可，退还已缴费用 (case denied)",
    "intake_refused": "不予受理，退还已缴费用 (intake refused)",
    "withdrawn": "申请人撤回申请，退还已缴费用 (application withdrawn)",
}
REFUNDABLE_ORDER_STATES = ("paid", "refunding")
OPEN_REFUND_STATES = ("requested", "processing", "unknown")  # counted against the refundable balance
DUE_REFUND_STATES = OPEN_REFUND_STATES  # what send_due (re)sends: processing and unknown are asked again
REFUNDS_INSERTED: Write = ("insert", "payment_refunds")
_ERROR_MAX = 2000


@dataclass(frozen=True)
class RefundPolicy:
    """When an unanswered refund is asked again: initial·2^(attempts-1), capped, with a little jitter."""

    backoff_initial_s: float = 10.0
    backoff_max_s: float = 3600.0
    jitter: float = 0.1

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=exponential_backoff_s(max(1, attempts), initial_s=self.backoff_initial_s,
                                                       max_s=self.backoff_max_s, jitter_ratio=self.jitter))


DEFAULT_POLICY = RefundPolicy()


# --- requesting (inside the caller's transaction) -----------------------------------------------------------


def new_refund_no(now: datetime) -> str:
    """``R`` + the CST date + 12 random digits: 21 characters of [0-9A-Za-z], UnionPay's orderId rule too."""
    return f"R{business_date(now):%Y%m%d}{secrets.randbelow(10**12):012d}"


def refundable_fen(session: Session, order: PaymentOrder) -> int:
    """What may still be refunded: the amount paid, less what is refunded and what refunds in flight ask for."""
    if order.state not in REFUNDABLE_ORDER_STATES:
        return 0
    in_flight = session.scalar(select(func.coalesce(func.sum(PaymentRefund.amount_fen), 0)).where(
        PaymentRefund.order_id == order.id, PaymentRefund.state.in_(OPEN_REFUND_STATES))) or 0
    return max(0, order.amount_fen - (order.refunded_fen or 0) - int(in_flight))


def request_refund(session: Session, *, order: PaymentOrder, amount_fen: int, reason: str,
                   now: datetime) -> PaymentRefund:
    """Record a refund of ``amount_fen`` of a paid order to be sent by the worker; flushes, never commits.

    Refuses (422, field ``amount_fen``) a non-positive amount and more than the refundable balance; 409 for an
    order that was never paid (nothing to refund)."""
    if order.state not in REFUNDABLE_ORDER_STATES:
        raise HubError(
            detail=f"支付订单 {order.order_no} 状态为 {order.state}，没有可退款项 (only a paid order can be refunded)",
            title="状态冲突", status=409, type_slug="not-refundable",
            errors=[FieldError("order_no", "not_refundable", f"订单状态 {order.state} 不可退款")])
    if amount_fen <= 0:
        raise ValidationFailed([FieldError("amount_fen", "positive", "退款金额须大于0分 (must be at least 1 fen)")])
    balance = refundable_fen(session, order)
    if amount_fen > balance:
        raise ValidationFailed([FieldError(
            "amount_fen", "exceeds_refundable",
            f"退款金额 {amount_fen} 分超过可退金额 {balance} 分 (more than the refundable balance)")])
    refund = PaymentRefund(refund_no=new_refund_no(now), order_id=order.id, amount_fen=amount_fen,
                           reason=reason, state="requested", attempts=0, next_attempt_at=now, requested_at=now)
    session.add(refund)
    if order.state == "paid":
        _transition(session, order=order, to_state="refunding", now=now,
                    detail={"refund_no": refund.refund_no, "amount_fen": amount_fen, "reason": reason})
    session.flush()
    return refund


def refund_for_case(session: Session, *, case: Case, reason: str, now: datetime) -> list[PaymentRefund]:
    """Refund in full every paid order of the case (what is left of each); a second call adds nothing."""
    orders = session.scalars(select(PaymentOrder).where(
        PaymentOrder.case_id == case.id, PaymentOrder.state.in_(REFUNDABLE_ORDER_STATES))
        .order_by(PaymentOrder.id)).all()
    refunds = []
    for order in orders:
        balance = refundable_fen(session, order)
        if balance > 0:
            refunds.append(request_refund(session, order=order, amount_fen=balance, reason=reason, now=now))
    return refunds


def on_case_state(session: Session, *, case: Case, now: datetime) -> list[PaymentRefund]:
    """The case service's hook, called where a root case's new state is recorded: refunds when it ended denied,
    refused at intake or withdrawn; nothing otherwise (and nothing for a case without orders: one indexed
    query, only for those three states)."""
    reason = REFUND_ON_CASE_STATES.get(case.state)
    if reason is None or case.id is None or case.parent_id is not None:
        return []
    return refund_for_case(session, case=case, reason=reason, now=now)


def on_order_paid(session: Session, *, order: PaymentOrder, now: datetime) -> list[PaymentRefund]:
    """The orders' hook, called where an order becomes paid: money that arrives after its case ended (denied,
    refused at intake, withdrawn while the order was open) goes straight back."""
    case = session.get(Case, order.case_id)
    return [] if case is None else on_case_state(session, case=case, now=now)


# --- sending (the worker's job) ---------------------------------------------------------------------------------


class GatewayRegistry(Protocol):
    """What the jobs need of the hub's gateway registry (hub.payments.gateways.Gateways)."""

    def get(self, name: str) -> PaymentGateway: ...

    def names(self) -> list[str]: ...

    def identity(self, name: str) -> GatewayIdentity: ...


def send_due(factory: sessionmaker[Session], *, gateways: GatewayRegistry, now: datetime, batch: int = 20,
             max_batches: int = 10, policy: RefundPolicy = DEFAULT_POLICY) -> int:
    """Send the due refunds, one committed transaction per batch (rows locked with SKIP LOCKED on PostgreSQL,
    so several workers share them); returns how many were sent (whatever the answer)."""
    sent = 0
    for _ in range(max_batches):
        with unit_of_work(factory) as session:
            due = session.scalars(
                select(PaymentRefund)
                .where(PaymentRefund.state.in_(DUE_REFUND_STATES), PaymentRefund.next_attempt_at <= now)
                .order_by(PaymentRefund.next_attempt_at, PaymentRefund.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).all()
            for refund in due:
                send_one(session, refund=refund, gateways=gateways, now=now, policy=policy)
            sent += len(due)
        if len(due) < batch:
            break
    return sent


def send_one(session: Session, *, refund: PaymentRefund, gateways: GatewayRegistry, now: datetime,
             policy: RefundPolicy = DEFAULT_POLICY) -> None:
    """One attempt of one refund, its outcome recorded; flushes, never commits."""
    order = session.get(PaymentOrder, refund.order_id, with_for_update=True)
    assert order is not None  # a foreign key
    try:
        gateway = gateways.get(order.gateway)
    except HubError:  # the gateway is no longer configured here: keep the refund, ask again later
        _retry_later(refund, "支付渠道未配置 (gateway not configured in this process)", now=now, policy=policy,
                     count=False)
        return
    request = RefundRequest(order_no=order.order_no, refund_no=refund.refund_no, amount_fen=refund.amount_fen,
                            order_amount_fen=order.amount_fen, reason=refund.reason,
                            gateway_trade_no=order.gateway_trade_no, order_created_at=order.created_at)
    refund.attempts += 1
    try:
        result = gateway.refund(request)
    except GatewayUnavailable as exc:
        # It may have reached the gateway: the outcome is unknown until asked again with the same number.
        refund.state = "unknown"
        _retry_later(refund, f"{exc.rule}: {exc.message}", now=now, policy=policy, count=False)
        log.warning("refund %s of %s: gateway unavailable (attempt %d)", refund.refund_no, order.order_no,
                    refund.attempts)
        return
    except PaymentGatewayError as exc:  # a definite refusal
        _settle_failed(session, refund=refund, order=order, error=f"{exc.rule}: {exc.message}", now=now)
        return
    except Exception as exc:  # an adapter's bug must not stop the other refunds: the outcome stays unknown
        log.exception("refund %s of %s: unexpected error", refund.refund_no, order.order_no)
        refund.state = "unknown"
        _retry_later(refund, f"内部错误 (internal error: {type(exc).__name__})", now=now, policy=policy, count=False)
        return
    record_result(session, refund=refund, order=order, result=result, now=now, policy=policy)


def record_result(session: Session, *, refund: PaymentRefund, order: PaymentOrder, result: RefundResult,
                  now: datetime, policy: RefundPolicy = DEFAULT_POLICY) -> None:
    """What the gateway said of a refund (its answer to the request or to a repeat of it)."""
    if result.gateway_refund_no:
        refund.gateway_refund_no = result.gateway_refund_no[:64]
    if result.status == "succeeded":
        _settle_succeeded(session, refund=refund, order=order, now=now,
                          detail={"code": result.code} if result.code else {})
    elif result.status == "failed":
        _settle_failed(session, refund=refund, order=order, now=now,
                       error=f"{result.code}: {result.message}".strip(": "))
    else:  # processing, unknown: ask again with the same number
        refund.state = result.status
        _retry_later(refund, f"{result.code}: {result.message}".strip(": ") or result.status, now=now,
                     policy=policy, count=False)


def _settle_succeeded(session: Session, *, refund: PaymentRefund, order: PaymentOrder, now: datetime,
                      detail: dict[str, str]) -> None:
    if refund.state == "succeeded":
        return
    refund.state, refund.completed_at, refund.next_attempt_at, refund.last_error = "succeeded", now, None, None
    order.refunded_fen = (order.refunded_fen or 0) + refund.amount_fen
    log.info("refund %s of %s succeeded (%d fen)", refund.refund_no, order.order_no, refund.amount_fen)
    _after_refund(session, order=order, refund=refund, now=now, detail=detail)


def _settle_failed(session: Session, *, refund: PaymentRefund, order: PaymentOrder, error: str,
                   now: datetime) -> None:
    refund.state, refund.completed_at, refund.next_attempt_at = "failed", now, None
    refund.last_error = error[:_ERROR_MAX]
    log.warning("refund %s of %s failed: %s", refund.refund_no, order.order_no, error)
    _after_refund(session, order=order, refund=refund, now=now, detail={"error": error[:200]})


def _after_refund(session: Session, *, order: PaymentOrder, refund: PaymentRefund, now: datetime,
                  detail: dict[str, str]) -> None:
    """The order's state once a refund is settled: refunded when all is refunded; paid again when no other
    refund is in flight (a partial refund, or a failed one); refunding while others are."""
    session.flush()
    detail = {"refund_no": refund.refund_no, "refund_state": refund.state, "amount_fen": refund.amount_fen,
              "refunded_fen": order.refunded_fen, **detail}
    if order.refunded_fen >= order.amount_fen:
        if order.state != "refunded":
            _transition(session, order=order, to_state="refunded", now=now, detail=detail)
        _fee_refunded(session, order=order, now=now)
        return
    others = session.scalar(select(func.count()).select_from(PaymentRefund).where(
        PaymentRefund.order_id == order.id, PaymentRefund.state.in_(OPEN_REFUND_STATES),
        PaymentRefund.id != refund.id)) or 0
    if others == 0 and order.state == "refunding":
        _transition(session, order=order, to_state="paid", now=now, detail=detail)


def _fee_refunded(session: Session, *, order: PaymentOrder, now: datetime) -> None:
    """The case's fee is refunded once no order of the case holds money any more."""
    fee = session.get(CaseFee, order.case_id)
    if fee is None or fee.status != "paid":
        return
    holding = session.scalar(select(func.count()).select_from(PaymentOrder).where(
        PaymentOrder.case_id == order.case_id, PaymentOrder.state.in_(REFUNDABLE_ORDER_STATES))) or 0
    if holding == 0:
        fee.status, fee.updated_at = "refunded", now


def _retry_later(refund: PaymentRefund, error: str, *, now: datetime, policy: RefundPolicy, count: bool) -> None:
    if count:
        refund.attempts += 1
    refund.last_error = error[:_ERROR_MAX]
    refund.next_attempt_at = now + policy.delay(refund.attempts)


def _transition(session: Session, *, order: PaymentOrder, to_state: str, now: datetime,
                detail: dict[str, object]) -> None:
    from hub.payments import service  # the orders' module: the one place an order's state changes

    service.transition(session, order=order, to_state=to_state, source="refund", detail=detail, now=now)


# --- what the API and the CLI show ------------------------------------------------------------------------------


def refund_view(refund: PaymentRefund, order: PaymentOrder) -> dict[str, object]:
    return {
        "refund_no": refund.refund_no, "order_no": order.order_no, "gateway": order.gateway,
        "amount_fen": refund.amount_fen, "reason": refund.reason, "state": refund.state,
        "attempts": refund.attempts, "last_error": refund.last_error,
        "next_attempt_at": refund.next_attempt_at, "requested_at": refund.requested_at,
        "completed_at": refund.completed_at,
    }


def pending(session: Session, *, limit: int = 100) -> list[tuple[PaymentRefund, PaymentOrder]]:
    """Refunds not settled yet, oldest first."""
    rows = session.execute(
        select(PaymentRefund, PaymentOrder).join(PaymentOrder, PaymentOrder.id == PaymentRefund.order_id)
        .where(PaymentRefund.state.in_(OPEN_REFUND_STATES)).order_by(PaymentRefund.id).limit(limit)).all()
    return [(refund, order) for refund, order in rows]


# --- waking the job in this process -----------------------------------------------------------------------------

_wakes: set[threading.Event] = set()
_wakes_lock = threading.Lock()


def subscribe() -> threading.Event:
    """An event set after every commit in this process that requested refunds (the refund job waits on it; other
    processes' requests are found by its interval poll)."""
    event = threading.Event()
    with _wakes_lock:
        _wakes.add(event)
    if not _installed:
        _install()
    return event


def unsubscribe(event: threading.Event) -> None:
    with _wakes_lock:
        _wakes.discard(event)


def _woken(_session: Session, writes: frozenset[Write]) -> None:
    if REFUNDS_INSERTED in writes:
        with _wakes_lock:
            for event in _wakes:
                event.set()


_installed = False


def _install() -> None:
    global _installed
    on_commit(after=_woken)
    _installed = True
