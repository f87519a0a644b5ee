from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base


class IdempotencyKey(Base):
    """The first answer to a request sent with an ``Idempotency-Key``, kept until the key expires.

    Neither the client's key nor the answer is stored in the clear: the row is found by a keyed digest
    of the key, and the answer (it holds the applicant's query code) is encrypted with a key derived
    from the client's key and the hub's secret, so the database alone cannot reproduce it."""

    __tablename__ = "idempotency_keys"
    # One row per key and operation: a concurrent duplicate fails on this constraint instead of
    # creating a second case.
    __table_args__ = (UniqueConstraint("scope", "key_digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))  # the operation, e.g. "POST /api/v1/applications"
    key_digest: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))  # keyed, so personal data cannot be guessed from it
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)  # base64(nonce | ciphertext | tag)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
