"""Writes events into the outbox inside the caller's transaction; a relay publishes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hub.outbox.models import OutboxMessage


def enqueue(
    session: Session,
    *,
    event_type: str,
    region_code: str,
    payload: dict[str, Any],
    occurred_at: datetime,
    correlation_id: str | None = None,
) -> OutboxMessage:
    message = OutboxMessage(
        type=event_type,
        routing_key=event_type,
        region_code=region_code,
        correlation_id=correlation_id,
        payload=payload,
        occurred_at=occurred_at,
    )
    session.add(message)
    return message
