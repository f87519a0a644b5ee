"""The worker's query of open orders, and the daily reconciliation (对账) with each gateway's statement.

* ``query_pending`` (job ``payments-query``): an order still created or pending that has heard nothing from its
  gateway for ``payments_query_after_s`` is queried through the adapter; the answer goes through
  ``hub.payments.service.apply_trade`` (source ``query``) like a notification, so a payment made while the hub
  was down, or whose notification was lost, is found. No definite answer (unknown, the gateway unavailable) →
  asked again later with backoff from ``payments_query_interval_s``. An order past its expiry that the gateway
  still reports unpaid is closed.
* ``reconcile``: one gateway, one business day (China time): the hub's orders paid and refunds completed that
  day against the gateway's ``statement(day=)``. Every difference is listed — ``missing_at_hub`` (paid at the
  gateway, not at the hub: applied through apply_trade with source ``statement`` and listed as corrected),
  ``missing_at_gateway``, ``amount_differs``, ``refund_differs`` — in a ``ReconciliationReport`` that replaces
  the day's earlier one. ``reconcile_due`` (job ``payments-reconcile``) runs it for yesterday from
  ``payments_reconcile_hour`` on, once per day and gateway (a failed run is tried again later).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from adapters.payments.base import GatewayUnavailable, PaymentGatewayError, StatementLine, TradeState
from adapters.resilience import exponential_backoff_s
from hub.clock import CHINA_TZ, business_date
from hub.db import unit_of_work
from hub.payments.models import PaymentOrder, PaymentRefund, ReconciliationReport
from hub.payments.refunds import GatewayRegistry
from hub.settings import Settings

log = logging.getLogger("hub.payments.reconciliation")

OPEN_ORDER_STATES = ("created", "pending")
PAID_ORDER_STATES = ("paid", "refunding", "refunded")  # states of an order whose money was received
QUERY_BACKOFF_MAX_S = 3600.0
FAILED_RERUN_AFTER = timedelta(minutes=15)  # a failed daily reconciliation is tried again after this


# --- the query job ------------------------------------------------------------------------------------------------


@dataclass
class QueryReport:
    queried: list[str] = field(default_factory=list)  # order numbers asked
    changed: list[str] = field(default_factory=list)  # whose state the answer changed
    closed: list[str] = field(default_factory=list)  # closed as expired and unpaid
    unanswered: list[str] = field(default_factory=list)  # unknown or the gateway unavailable: asked again later

    def as_dict(self) -> dict[str, list[str]]:
        return {"queried": self.queried, "changed": self.changed, "closed": self.closed,
                "unanswered": self.unanswered}


def due_for_query(*, now: datetime, after_s: float) -> Any:
    """The SQL condition of the open orders to ask about now: never asked and silent for ``after_s`` since
    their creation or last notification, or asked before and due again."""
    silent_since = now - timedelta(seconds=after_s)
    return and_(
        PaymentOrder.state.in_(OPEN_ORDER_STATES),
        or_(
            PaymentOrder.next_query_at <= now,
            and_(PaymentOrder.next_query_at.is_(None), PaymentOrder.created_at <= silent_since,
                 or_(PaymentOrder.notified_at.is_(None), PaymentOrder.notified_at <= silent_since)),
        ),
    )


def query_pending(factory: sessionmaker[Session], *, gateways: GatewayRegistry, settings: Settings,
                  now: datetime, batch: int = 20, max_batches: int = 10,
                  report: QueryReport | None = None) -> int:
    """Ask the gateways about the open orders due (one committed transaction per batch; rows locked with SKIP
    LOCKED on PostgreSQL); returns how many were asked."""
    report = report if report is not None else QueryReport()
    asked = 0
    for _ in range(max_batches):
        with unit_of_work(factory) as session:
            orders = session.scalars(
                select(PaymentOrder).where(due_for_query(now=now, after_s=settings.payments_query_after_s))
                .order_by(PaymentOrder.id).limit(batch).with_for_update(skip_locked=True)).all()
            for order in orders:
                query_one(session, order=order, gateways=gateways, settings=settings, now=now, report=report)
            asked += len(orders)
        if len(orders) < batch:
            break
    return asked


def query_one(session: Session, *, order: PaymentOrder, gateways: GatewayRegistry, settings: Settings,
              now: datetime, report: QueryReport) -> None:
    from hub.payments import service  # the orders' module: the one place a gateway's word changes an order

    report.queried.append(order.order_no)
    order.query_attempts = (order.query_attempts or 0) + 1
    order.last_queried_at = now
    try:
        trade = gateways.get(order.gateway).query(order_no=order.order_no, created_at=order.created_at)
    except GatewayUnavailable as exc:
        log.warning("query of %s: gateway unavailable (%s)", order.order_no, exc.rule)
        trade = None
    except PaymentGatewayError as exc:
        log.warning("query of %s refused: %s %s", order.order_no, exc.rule, exc.message)
        trade = None
    except Exception:  # an adapter's bug must not stop the other orders' queries: asked again later
        log.exception("query of %s: unexpected error", order.order_no)
        trade = None
    if trade is not None and trade.status != "unknown":
        try:
            if service.apply_trade(session, order=order, trade=trade, source="query", now=now,
                                   identity=gateways.identity(order.gateway)):
                report.changed.append(order.order_no)
        except service.TradeMismatch as exc:  # a verified answer that does not fit: changes nothing, kept asking
            log.warning("query of %s does not fit the order: %s", order.order_no, exc.rule)
            trade = None
    if trade is None or trade.status == "unknown":
        report.unanswered.append(order.order_no)
    if order.state in OPEN_ORDER_STATES and order.expires_at <= now and (trade is None or trade.status in (
            "pending", "closed")):
        # The gateway says unpaid (or closed) after the order expired: nobody can pay it any more.
        service.transition(session, order=order, to_state="closed", source="query",
                           detail={"reason": "expired", "gateway_status": trade.status if trade else None},
                           now=now)
        report.closed.append(order.order_no)
    if order.state in OPEN_ORDER_STATES:
        order.next_query_at = now + timedelta(seconds=exponential_backoff_s(
            order.query_attempts, initial_s=settings.payments_query_interval_s, max_s=QUERY_BACKOFF_MAX_S))
    else:
        order.next_query_at = None


# --- the daily reconciliation -----------------------------------------------------------------------------------


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The business day as UTC instants [start, end): midnight to midnight in China."""
    start = datetime.combine(day, time(0), tzinfo=CHINA_TZ)
    return start, start + timedelta(days=1)


def reconcile(session: Session, *, gateway: str, day: date, gateways: GatewayRegistry,
              now: datetime) -> ReconciliationReport:
    """Compare the hub's payments and refunds of ``day`` with the gateway's statement, correct what the
    gateway proves the hub missed, and store (replace) the day's report; flushes, never commits."""
    adapter = gateways.get(gateway)  # a gateway not configured: 422 naming `gateway`
    try:
        lines = adapter.statement(day=day)
    except PaymentGatewayError as exc:
        log.warning("statement of %s for %s unavailable: %s", gateway, day, exc.message)
        return _store(session, gateway=gateway, day=day, now=now, status="failed", differences=[],
                      summary={"error": f"{exc.rule}: {exc.message}"})
    payments = {line.order_no: line for line in lines if line.kind == "payment"}
    refund_lines = [line for line in lines if line.kind == "refund"]
    differences = _payment_differences(session, gateway=gateway, day=day, lines=payments, now=now)
    refund_differences, hub_refunds = _refund_differences(session, gateway=gateway, day=day, lines=refund_lines)
    differences += refund_differences
    hub_paid = _hub_paid(session, gateway=gateway, day=day)
    summary = {
        "gateway_payments": len(payments), "gateway_paid_fen": sum(line.amount_fen for line in payments.values()),
        "gateway_refunds": len(refund_lines), "gateway_refunded_fen": sum(line.amount_fen for line in refund_lines),
        "hub_payments": len(hub_paid), "hub_paid_fen": sum(order.amount_fen for order in hub_paid),
        "hub_refunds": len(hub_refunds), "hub_refunded_fen": sum(refund.amount_fen for refund, _ in hub_refunds),
        "differences": len(differences), "corrected": sum(1 for d in differences if d.get("corrected")),
    }
    return _store(session, gateway=gateway, day=day, now=now, summary=summary, differences=differences,
                  status="differences" if differences else "matched")


def _hub_paid(session: Session, *, gateway: str, day: date) -> list[PaymentOrder]:
    start, end = day_bounds(day)
    return list(session.scalars(select(PaymentOrder).where(
        PaymentOrder.gateway == gateway, PaymentOrder.paid_at >= start, PaymentOrder.paid_at < end,
        PaymentOrder.state.in_(PAID_ORDER_STATES)).order_by(PaymentOrder.id)))


def _payment_differences(session: Session, *, gateway: str, day: date, lines: dict[str, StatementLine],
                         now: datetime) -> list[dict[str, Any]]:
    from hub.payments import service

    differences: list[dict[str, Any]] = []
    hub_paid = {order.order_no: order for order in _hub_paid(session, gateway=gateway, day=day)}
    others = [order_no for order_no in lines if order_no not in hub_paid]
    elsewhere = {order.order_no: order for order in session.scalars(select(PaymentOrder).where(
        PaymentOrder.order_no.in_(others)).with_for_update())} if others else {}
    for order_no, line in sorted(lines.items()):
        order = hub_paid.get(order_no)
        if order is not None:
            if order.amount_fen != line.amount_fen:
                differences.append(_difference("amount_differs", order_no=order_no, hub=order.amount_fen,
                                               gateway=line.amount_fen, hub_state=order.state))
            continue
        known = elsewhere.get(order_no)
        if known is None or known.gateway != gateway:
            differences.append(_difference("missing_at_hub", order_no=order_no, hub=None, gateway=line.amount_fen,
                                           hub_state=None, note="unknown order"))
            continue
        if known.state in PAID_ORDER_STATES:  # paid at the hub too, on another business day (near midnight)
            differences.append(_difference(
                "business_date_differs", order_no=order_no, hub=known.amount_fen, gateway=line.amount_fen,
                hub_state=known.state, note=f"hub paid_at {known.paid_at.isoformat() if known.paid_at else None}"))
            continue
        before = known.state
        trade = TradeState(order_no=order_no, status="paid", amount_fen=line.amount_fen,
                           gateway_trade_no=line.gateway_trade_no, paid_at=line.occurred_at, code="statement")
        try:
            service.apply_trade(session, order=known, trade=trade, source="statement", now=now)
        except service.TradeMismatch as exc:  # e.g. another amount: listed, never applied
            differences.append(_difference("amount_differs", order_no=order_no, hub=known.amount_fen,
                                           gateway=line.amount_fen, hub_state=before, note=exc.rule))
            continue
        corrected = known.state in PAID_ORDER_STATES
        differences.append(_difference("missing_at_hub", order_no=order_no, hub=known.amount_fen,
                                       gateway=line.amount_fen, hub_state=before, corrected=corrected,
                                       note=f"now {known.state}"))
    for order_no, order in sorted(hub_paid.items()):
        if order_no not in lines:
            differences.append(_difference("missing_at_gateway", order_no=order_no, hub=order.amount_fen,
                                           gateway=None, hub_state=order.state))
    return differences


def _refund_differences(session: Session, *, gateway: str, day: date, lines: list[StatementLine],
                        ) -> tuple[list[dict[str, Any]], list[tuple[PaymentRefund, PaymentOrder]]]:
    start, end = day_bounds(day)
    hub_refunds = [(refund, order) for refund, order in session.execute(
        select(PaymentRefund, PaymentOrder).join(PaymentOrder, PaymentOrder.id == PaymentRefund.order_id)
        .where(PaymentOrder.gateway == gateway, PaymentRefund.state == "succeeded",
               PaymentRefund.completed_at >= start, PaymentRefund.completed_at < end)
        .order_by(PaymentRefund.id))]
    by_no = {refund.refund_no: (refund, order) for refund, order in hub_refunds}
    differences: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line in lines:
        match = by_no.get(line.refund_no or "")
        if match is None:  # a statement without request numbers: the order's one refund of that amount
            match = next(((r, o) for r, o in hub_refunds if o.order_no == line.order_no
                          and r.amount_fen == line.amount_fen and r.refund_no not in seen), None)
        if match is None:
            known = session.scalar(select(PaymentRefund).where(PaymentRefund.refund_no == line.refund_no)) \
                if line.refund_no else None
            differences.append(_difference(
                "refund_differs", order_no=line.order_no, refund_no=line.refund_no, hub=None,
                gateway=line.amount_fen, hub_state=known.state if known else None,
                note="missing at the hub" if known is None else f"hub refund {known.state} on another day"))
            continue
        refund, order = match
        seen.add(refund.refund_no)
        if refund.amount_fen != line.amount_fen:
            differences.append(_difference("refund_differs", order_no=order.order_no, refund_no=refund.refund_no,
                                           hub=refund.amount_fen, gateway=line.amount_fen, hub_state=refund.state,
                                           note="amount differs"))
    for refund, order in hub_refunds:
        if refund.refund_no not in seen:
            differences.append(_difference("refund_differs", order_no=order.order_no, refund_no=refund.refund_no,
                                           hub=refund.amount_fen, gateway=None, hub_state=refund.state,
                                           note="missing at the gateway"))
    return differences, hub_refunds


def _difference(kind: str, *, order_no: str, hub: int | None, gateway: int | None, hub_state: str | None,
                refund_no: str | None = None, corrected: bool = False, note: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "order_no": order_no, "refund_no": refund_no, "hub_amount_fen": hub,
            "gateway_amount_fen": gateway, "hub_state": hub_state, "corrected": corrected, "note": note}


def _store(session: Session, *, gateway: str, day: date, now: datetime, status: str, summary: dict[str, Any],
           differences: list[dict[str, Any]]) -> ReconciliationReport:
    report = session.scalar(select(ReconciliationReport).where(
        ReconciliationReport.gateway == gateway, ReconciliationReport.business_date == day).with_for_update())
    if report is None:
        report = ReconciliationReport(gateway=gateway, business_date=day)
        session.add(report)
    report.status, report.summary, report.differences, report.created_at = status, summary, differences, now
    session.flush()
    log.info("reconciliation %s %s: %s (%d differences)", gateway, day, status, len(differences))
    return report


def report_view(report: ReconciliationReport) -> dict[str, Any]:
    return {"gateway": report.gateway, "business_date": report.business_date.isoformat(), "status": report.status,
            "summary": report.summary, "differences": report.differences, "created_at": report.created_at}


def reports(session: Session, *, gateway: str | None = None, day: date | None = None,
            limit: int = 31) -> list[ReconciliationReport]:
    query = select(ReconciliationReport)
    if gateway is not None:
        query = query.where(ReconciliationReport.gateway == gateway)
    if day is not None:
        query = query.where(ReconciliationReport.business_date == day)
    return list(session.scalars(query.order_by(ReconciliationReport.business_date.desc(),
                                               ReconciliationReport.gateway).limit(limit)))


def latest_per_gateway(session: Session) -> dict[str, ReconciliationReport]:
    latest = select(ReconciliationReport.gateway, func.max(ReconciliationReport.business_date).label("day")) \
        .group_by(ReconciliationReport.gateway).subquery()
    rows = session.scalars(select(ReconciliationReport).join(latest, and_(
        ReconciliationReport.gateway == latest.c.gateway, ReconciliationReport.business_date == latest.c.day)))
    return {row.gateway: row for row in rows}


def reconcile_due(factory: sessionmaker[Session], *, gateways: GatewayRegistry, settings: Settings,
                  now: datetime) -> int:
    """The daily job: from ``payments_reconcile_hour`` (China time) on, yesterday for every configured gateway
    that has no report for it yet (or a failed one older than FAILED_RERUN_AFTER); returns the reports made."""
    hour = settings.payments_reconcile_hour
    if hour < 0 or now.astimezone(CHINA_TZ).hour < hour:
        return 0
    day = business_date(now) - timedelta(days=1)
    made = 0
    for gateway in gateways.names():
        with factory() as session:
            existing = session.scalar(select(ReconciliationReport).where(
                ReconciliationReport.gateway == gateway, ReconciliationReport.business_date == day))
        if existing is not None and (existing.status != "failed" or existing.created_at > now - FAILED_RERUN_AFTER):
            continue
        try:
            with unit_of_work(factory) as session:
                reconcile(session, gateway=gateway, day=day, gateways=gateways, now=now)
        except IntegrityError:  # another worker stored the day's report first
            log.info("reconciliation %s %s: done by another worker", gateway, day)
            continue
        made += 1
    return made
