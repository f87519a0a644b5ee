from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base

KINDS = ("national_result", "legacy_case")
STATUSES = ("pending", "sent", "failed")
# How a delivery parked for want of its partner's endpoint begins its ``last_error`` (hub/deliveries/service.py);
# setting the endpoint (hub/exchange/partners.py ``set_endpoint``) finds them by it.
NO_ENDPOINT_ERROR = "交换伙伴未配置接口地址"


class Delivery(Base):
    """One thing the hub owes one partner about one case, written in the transaction of the change.

    ``pending`` waits for its first send (or a manual retry); ``failed`` holds the last error and,
    while attempts remain, the time of the next automatic attempt (``next_attempt_at`` is null once
    the hub has given up); ``sent`` holds the partner's receipt. ``message_id`` is the exchange's
    message id, the same on every attempt, so the partner can recognise a repeat.
    """

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("partner_code", "case_id", "kind"),)  # also a partner's: no partner_code index

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_code: Mapped[str] = mapped_column(ForeignKey("partners.code"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(16), index=True)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    receipt: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
