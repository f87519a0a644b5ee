"""The payment tables (issue 12). Amounts are integers in fen. Every order state change writes one row of
``payment_order_events`` (the full history) in the same transaction."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base

if TYPE_CHECKING:
    from hub.cases.models import Case


class CaseFee(Base):
    """What a case owes (the assessment from its item's fee rules, hub/payments/fees.py) and where it stands.

    ``status``: due, paid, waived (an officer's recorded reason), exempt (the applicant falls under an
    exemption), refunded; ``source`` "hub" for the hub's own assessment, "partner" when a partner record
    reported the fee (stored as reported in ``reported``)."""

    __tablename__ = "case_fees"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    amount_fen: Mapped[int] = mapped_column(Integer)
    due: Mapped[str] = mapped_column(String(24))  # before_acceptance | before_completion
    basis: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    source: Mapped[str] = mapped_column(String(16), default="hub")
    exemption: Mapped[str | None] = mapped_column(Text)
    waived_reason: Mapped[str | None] = mapped_column(Text)
    waived_by: Mapped[str | None] = mapped_column(String(64))
    waived_at: Mapped[datetime | None]
    paid_fen: Mapped[int] = mapped_column(Integer, default=0)
    reported: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    assessed_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    # (fees) The case, so that a partner's new case and the fee its record reports are written in the same
    # flush, the case first (hub/exchange/service.py writes a batch's new cases at one flush, ids unknown before).
    case: Mapped[Case] = relationship(lazy="select")


class PaymentOrder(Base):
    """One attempt to collect a case's fee through one gateway, under the hub's own order number.

    ``state``: created, pending, paid, failed, closed, refunding, refunded (docs/payments.md)."""

    __tablename__ = "payment_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    region_code: Mapped[str] = mapped_column(String(6))
    gateway: Mapped[str] = mapped_column(String(16))
    amount_fen: Mapped[int] = mapped_column(Integer)
    refunded_fen: Mapped[int] = mapped_column(Integer, default=0)
    subject: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), index=True)
    gateway_trade_no: Mapped[str | None] = mapped_column(String(64))
    checkout: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # adapters.payments.base.Checkout as stored
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    notified_at: Mapped[datetime | None]  # the last verified notification applied
    last_queried_at: Mapped[datetime | None]
    query_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # reconcile (migration 0018): when the query job asks the gateway next about this open order; NULL until
    # the first query (due ``payments_query_after_s`` after creation or the last notification), then set with
    # backoff after every query. Indexed: an idle query job costs one index probe.
    next_query_at: Mapped[datetime | None] = mapped_column(index=True)


class PaymentOrderEvent(Base):
    """The full history of an order: every state change, with what caused it."""

    __tablename__ = "payment_order_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("payment_orders.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))  # api, notification, query, statement, refund, case, system
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[datetime]


class PaymentNotification(Base):
    """The inbox of gateway notifications: each verified one stored once under its gateway's unique id, then
    applied. A notification whose signature fails is never stored here (an attacker's notify id must not take
    the place of the real one): it is counted and logged without personal data."""

    __tablename__ = "payment_notifications"
    __table_args__ = (UniqueConstraint("gateway", "notify_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway: Mapped[str] = mapped_column(String(16))
    notify_id: Mapped[str] = mapped_column(String(128))
    order_no: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # payment | refund
    outcome: Mapped[str] = mapped_column(String(16))  # applied, stale (out of order), rejected
    reason: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # buyer identifiers masked
    received_at: Mapped[datetime]


class PaymentRefund(Base):
    """A refund request under the hub's request number, reused on every retry so the gateway refunds once.

    ``state``: requested (to send), processing, succeeded, failed, unknown (ask again)."""

    __tablename__ = "payment_refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("payment_orders.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    gateway_refund_no: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    requested_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class ReconciliationReport(Base):
    """One gateway's daily reconciliation (对账): the hub's orders and refunds against the gateway's statement,
    every difference listed. Run again for the same day, it replaces the earlier report."""

    __tablename__ = "reconciliation_reports"
    __table_args__ = (UniqueConstraint("gateway", "business_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway: Mapped[str] = mapped_column(String(16))
    business_date: Mapped[date]
    status: Mapped[str] = mapped_column(String(16))  # matched | differences | failed
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    differences: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]


# reconcile (migration 0018): the daily reconciliation reads one gateway's orders paid in one business day.
Index("ix_payment_orders_gateway_paid_at", PaymentOrder.gateway, PaymentOrder.paid_at)
