"""The outbox relay: publishes committed events with confirms, then marks them sent.

A crash after publishing but before marking sends the same events again (consumers deduplicate
by message id); a crash before publishing loses nothing, because the rows are still unsent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.db import unit_of_work
from hub.outbox.models import OutboxMessage

SOURCE = "hub"
log = logging.getLogger("hub.outbox.relay")


@dataclass(frozen=True)
class OutgoingEvent:
    message_id: str
    routing_key: str
    event_type: str
    correlation_id: str | None
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)


PublishBatch = Callable[[Sequence[OutgoingEvent]], None]


def envelope_of(row: OutboxMessage) -> dict[str, Any]:
    name, _, version = row.type.rpartition(".v")
    return {
        "message_id": str(row.message_id),
        "type": name,
        "version": int(version),
        "source": SOURCE,
        "region": row.region_code,
        "occurred_at": row.occurred_at.isoformat(),
        "correlation_id": row.correlation_id,
        "payload": row.payload,
    }


def to_event(row: OutboxMessage) -> OutgoingEvent:
    body = json.dumps(envelope_of(row), ensure_ascii=False, separators=(",", ":")).encode()
    return OutgoingEvent(
        message_id=str(row.message_id), routing_key=row.routing_key, event_type=row.type,
        correlation_id=row.correlation_id, body=body, headers={"x-hub-region": row.region_code},
    )


def relay_once(factory: sessionmaker[Session], publish: PublishBatch, *, now: datetime, batch: int = 500) -> int:
    """Publish one batch of unsent events; returns how many were published."""
    with unit_of_work(factory) as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.sent_at.is_(None)).order_by(OutboxMessage.id)
            .limit(batch).with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0
        try:
            publish([to_event(r) for r in rows])
        except Exception as exc:  # the broker is down or refused: keep the rows, note why, try later
            for row in rows:
                row.attempts += 1
                row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            log.warning("outbox publish failed; %d events stay queued: %s", len(rows), type(exc).__name__)
            return 0
        for row in rows:
            row.sent_at = now
            row.attempts += 1
            row.last_error = None
        return len(rows)


def backlog(session: Session) -> dict[str, Any]:
    unsent = session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_(None))) or 0
    oldest = session.scalar(select(func.min(OutboxMessage.occurred_at)).where(OutboxMessage.sent_at.is_(None)))
    return {"unsent": unsent, "oldest_unsent": oldest.isoformat() if oldest else None}
