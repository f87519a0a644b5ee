"""Writes events into the outbox inside the caller's transaction; a relay publishes them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hub.db import built
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
    outbox_message = message(event_type=event_type, region_code=region_code, payload=payload,
                             occurred_at=occurred_at, correlation_id=correlation_id)
    session.add(outbox_message)
    return outbox_message


def message(
    *, event_type: str, region_code: str, payload: dict[str, Any], occurred_at: datetime,
    correlation_id: str | None = None,
) -> OutboxMessage:
    """The outbox row for an event, complete (no column left to a default) and not yet added: `enqueue`
    adds it to the session; the submission writes it in its own statement (hub/cases/writes.py), whose
    INSERT into the outbox wakes the relay like any other (hub/outbox/wake.py)."""
    return built(OutboxMessage, **message_row(event_type=event_type, region_code=region_code, payload=payload,
                                              occurred_at=occurred_at, correlation_id=correlation_id))


def message_row(
    *, event_type: str, region_code: str, payload: dict[str, Any], occurred_at: datetime,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """A new outbox row's values by column, in the columns' order, as plain values (issue 8, part plain): what
    ``message`` builds its ``OutboxMessage`` from, and what a batch writer sends as is in one statement (hub/db.py
    ``insert_rows``; a batch of partner records publishes every case it changes)."""
    return {"message_id": uuid.uuid4(), "type": event_type, "routing_key": event_type, "region_code": region_code,
            "correlation_id": correlation_id, "payload": payload, "occurred_at": occurred_at, "sent_at": None,
            "attempts": 0, "last_error": None}


_COLUMNS = tuple(column for column in OutboxMessage.__table__.columns if not column.primary_key)


def row(outbox_message: OutboxMessage) -> dict[str, Any]:
    """A complete new message (``message``) as its row's values, for a batch written in one statement
    (hub/db.py ``insert_rows``) rather than as objects of the ORM's flush."""
    return {column.name: getattr(outbox_message, column.key) for column in _COLUMNS}
