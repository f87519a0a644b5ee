"""Attempt counters and seen WS-Security nonces: in the database, so every process shares them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base


class AttemptCounter(Base):
    """Attempts of one (scope, key) in a fixed window: ``count`` since ``window_start``, until ``window_end``.

    Scopes: ``login.account`` (username), ``login.address`` (source address), ``query_code`` (tracking
    number). Rows whose window has ended are purged by ``service.purge_expired``."""

    __tablename__ = "attempt_counters"
    __table_args__ = (PrimaryKeyConstraint("scope", "key"),)

    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime] = mapped_column(index=True)
    count: Mapped[int] = mapped_column(Integer)


class SeenNonce(Base):
    """A WS-Security UsernameToken nonce already used by one username; kept while its Created is fresh."""

    __tablename__ = "wsse_nonces"
    __table_args__ = (PrimaryKeyConstraint("username", "nonce"),)

    username: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(index=True)
