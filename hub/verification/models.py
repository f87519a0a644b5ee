"""Verification results stored on a case, and the personal-data access log of registry look-ups."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base


class CaseVerification(Base):
    """One registry check of a case's applicant: what was checked, where, when, and the outcome.

    ``outcome`` is ``verified`` | ``failed`` | ``pending`` (to be re-verified by the worker) |
    ``not_configured``. ``detail`` is for officers and never contains the identifier or the name.
    """

    __tablename__ = "case_verifications"
    __table_args__ = (UniqueConstraint("case_id", "check_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    check_key: Mapped[str] = mapped_column(String(48))  # e.g. population.applicant
    registry_name: Mapped[str] = mapped_column("registry", String(16))  # `registry` is taken by SQLAlchemy
    subject: Mapped[str] = mapped_column(String(32))  # applicant | legal_representative
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    checked_at: Mapped[datetime | None]


class RegistryAccess(Base):
    """One registry look-up of personal data: who, for which case, why, when, where, and what came of it.

    The identifier looked up is kept only as a keyed hash (HMAC-SHA256), so a supervisor can search for
    a person without the log holding the number.
    """

    __tablename__ = "registry_access_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))  # officer | system | portal
    tracking_no: Mapped[str | None] = mapped_column(String(21), index=True)
    region_code: Mapped[str | None] = mapped_column(String(6), index=True)
    purpose: Mapped[str] = mapped_column(String(128))
    registry_name: Mapped[str] = mapped_column("registry", String(16), index=True)
    operation: Mapped[str] = mapped_column(String(32))
    subject_kind: Mapped[str] = mapped_column(String(24))  # citizen_id | credit_code
    subject_hash: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(24))
    message_id: Mapped[str] = mapped_column(String(36))
    duration_ms: Mapped[int] = mapped_column(Integer)
