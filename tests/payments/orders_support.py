"""What the order and notification tests share: a fee case, its order, and what the hub stored about it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.outbox.models import OutboxMessage
from hub.payments.models import PaymentNotification, PaymentOrder, PaymentOrderEvent
from tests.support import submit

FEE_ITEM = "id-card-renewal"  # 2000 fen (工本费), due before completion
FREE_ITEM = "physician-practice-registration"  # no fee


def fee_case(client: TestClient) -> dict[str, Any]:
    return submit(client, FEE_ITEM)


def create_order(client: TestClient, receipt: dict[str, Any], gateway: str) -> dict[str, Any]:
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
    """(notify id, outcome, reason) of the order's stored notifications."""
    with factory() as session:
        return [(n.notify_id, n.outcome, n.reason) for n in session.scalars(
            select(PaymentNotification).where(PaymentNotification.order_no == order_no)
            .order_by(PaymentNotification.id))]
