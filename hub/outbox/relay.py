"""The outbox relay: publishes committed events with confirms, then marks them sent.

A crash after publishing but before marking sends the same events again (consumers deduplicate
by message id); a crash before publishing loses nothing, because the rows are still unsent.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Integer, any_, bindparam, func, select, update
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
    return _event(row.message_id, row.type, row.routing_key, row.region_code, row.correlation_id, row.payload,
                  row.occurred_at)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _event(message_id: uuid.UUID, event_type: str, routing_key: str, region_code: str, correlation_id: str | None,
           payload: Any, occurred_at: datetime) -> OutgoingEvent:
    """The event of one outbox row's columns: the envelope of ``envelope_of``, built without an ORM object."""
    name, _, version = event_type.rpartition(".v")
    mid = str(message_id)
    body = _dumps({"message_id": mid, "type": name, "version": int(version), "source": SOURCE,
                   "region": region_code, "occurred_at": occurred_at.isoformat(), "correlation_id": correlation_id,
                   "payload": payload}).encode()
    return OutgoingEvent(message_id=mid, routing_key=routing_key, event_type=event_type,
                         correlation_id=correlation_id, body=body, headers={"x-hub-region": region_code})


_O = OutboxMessage
# Plain columns, the id first: no ORM identity map, no attribute instrumentation, no flush of dirty objects.
_UNSENT = (select(_O.id, _O.message_id, _O.type, _O.routing_key, _O.region_code, _O.correlation_id, _O.payload,
                  _O.occurred_at)
           .where(_O.sent_at.is_(None)).order_by(_O.id).limit(bindparam("batch")).with_for_update(skip_locked=True))


def _marked(session: Session, ids: list[int], **values: Any) -> None:
    """One UPDATE for the whole batch (``id = ANY(:ids)`` on PostgreSQL: one statement text whatever the count)."""
    where = (_O.id == any_(bindparam("ids", ids, type_=ARRAY(Integer())))
             if session.get_bind().dialect.name == "postgresql" else _O.id.in_(ids))
    session.execute(update(_O).where(where).values(attempts=_O.attempts + 1, **values),
                    execution_options={"synchronize_session": False})


def relay_once(factory: sessionmaker[Session], publish: PublishBatch, *, now: datetime, batch: int = 500) -> int:
    """Publish one batch of unsent events; returns how many were published."""
    with unit_of_work(factory) as session:
        rows = session.execute(_UNSENT, {"batch": batch}).all()
        if not rows:
            return 0
        ids = [row[0] for row in rows]
        try:
            publish([_event(*row[1:]) for row in rows])
        except Exception as exc:  # the broker is down or refused: keep the rows, note why, try later
            _marked(session, ids, last_error=f"{type(exc).__name__}: {exc}"[:1000])
            log.warning("outbox publish failed; %d events stay queued: %s", len(rows), type(exc).__name__)
            return 0
        _marked(session, ids, sent_at=now, last_error=None)
        return len(rows)


def backlog(session: Session) -> dict[str, Any]:
    unsent = session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_(None))) or 0
    oldest = session.scalar(select(func.min(OutboxMessage.occurred_at)).where(OutboxMessage.sent_at.is_(None)))
    return {"unsent": unsent, "oldest_unsent": oldest.isoformat() if oldest else None}
