from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base


class Partner(Base):
    """A system that exchanges data with the hub: a city platform, a national or a legacy system."""

    __tablename__ = "partners"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(24))
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    record_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    endpoint: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    # Partner credentials (issue 11, lifecycle; hub/exchange/provisioning.py). The one secret a partner holds
    # is stored twice, hashed: ``secret_hash`` (argon2, REST) and ``amqp_password_hash`` (RabbitMQ's own
    # sha256 format), so `hub partners sync` can re-create its RabbitMQ user without knowing the secret.
    # ``amqp_username`` is the user the hub provisioned (the code in vhost "/", else "<vhost>.<code>"); None:
    # never provisioned by the hub — the consumer then knows the partner by a user named as its code.
    amqp_username: Mapped[str | None] = mapped_column(String(255), unique=True)
    amqp_password_hash: Mapped[str | None] = mapped_column(String(255))
    secret_rotated_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]


class InboxMessage(Base):
    """Every inbound message id the hub has applied: redelivery finds it here and changes nothing.

    Keyed by (sender, message id): a message id is unique only within its sender, so one partner's id
    can never make the hub drop another partner's message. ``partner_code`` is the authenticated sender.
    """

    __tablename__ = "inbox"

    partner_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    received_at: Mapped[datetime]


class PendingEvent(Base):
    """A partner's case step that arrived before its predecessor; applied once the gap is filled."""

    __tablename__ = "pending_events"
    __table_args__ = (UniqueConstraint("partner_code", "external_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_code: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    step: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]


class DeadLetter(Base):
    """A message the hub could not apply, kept with the reason for inspection and replay."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str | None] = mapped_column(String(64), index=True)
    routing_key: Mapped[str] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]]
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]
    replayed_at: Mapped[datetime | None]


class PartnerRejection(Base):
    """What a partner was told about one of its messages that never applied (hub/exchange/feedback.py).

    One row per (partner, message id, outcome): the key that stops a message sent again, or redelivered,
    from producing a second ``partner.rejected.v1`` event; and what ``GET /api/v1/exchange/records/{id}``
    answers for a message that is not in the inbox. A message without an id cannot be told apart from
    another (NULL never equals NULL), so each such one has its row and event."""

    __tablename__ = "partner_rejections"
    __table_args__ = (UniqueConstraint("partner_code", "message_id", "outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_code: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # rejected | dead_lettered
    routing_key: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)  # the outbox message that told the partner
    received_at: Mapped[datetime]
