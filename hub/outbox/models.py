from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base
from hub.outbox import wake


class OutboxMessage(Base):
    """An event written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    # What the relay reads (the unsent rows by id, their count, the oldest): the unsent rows only, so the index
    # stays as small as the backlog and a row marked sent leaves it instead of adding an entry (migration 0020).
    __table_args__ = (
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL"), sqlite_where=text("sent_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(64))
    routing_key: Mapped[str] = mapped_column(String(128))
    region_code: Mapped[str] = mapped_column(String(6))
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


# Every process that can write outbox rows has loaded this model: register the hooks that wake the relay.
wake.install()
