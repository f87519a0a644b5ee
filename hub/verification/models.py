"""Verification results stored on a case, and the personal-data access log of registry look-ups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base


class CaseVerification(Base):
    """One registry check of a case's applicant: what was checked, where, when, and the outcome.

    ``outcome`` is ``verified`` | ``failed`` | ``pending`` (to be re-verified by the worker) |
    ``not_configured`` | ``manual`` (a registry could not know the applicant; an officer verified the
    uploaded material instead, see ``ManualVerification``). ``detail`` is for officers and never contains
    the identifier or the name; ``answer`` is what the registry said about the subject in one word
    (``not_found``, ``deceased``, ``name_mismatch``, ``revoked``…), kept when an officer takes over.
    """

    __tablename__ = "case_verifications"
    __table_args__ = (UniqueConstraint("case_id", "check_key"),)  # also a case's checks: no index of case_id alone

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    check_key: Mapped[str] = mapped_column(String(48))  # e.g. population.applicant
    registry_name: Mapped[str] = mapped_column("registry", String(16))  # `registry` is taken by SQLAlchemy
    subject: Mapped[str] = mapped_column(String(32))  # applicant | legal_representative
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    checked_at: Mapped[datetime | None]
    answer: Mapped[str | None] = mapped_column(String(24))

    manual: Mapped[ManualVerification | None] = relationship(lazy="select", uselist=False,
                                                             back_populates="verification")


class ManualVerification(Base):
    """An officer's verification of an applicant whom the registry cannot know (out of the province):
    who, when, which uploaded materials were inspected (id, key and SHA-256 at the time) and why.

    One per check; the check's outcome becomes ``manual``. The same facts are in the case event of seq
    ``event_seq`` (the audit chain) and in the personal-data access log."""

    __tablename__ = "manual_verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    verification_id: Mapped[int] = mapped_column(ForeignKey("case_verifications.id"), unique=True)
    check_key: Mapped[str] = mapped_column(String(48))
    registry_outcome: Mapped[str] = mapped_column(String(16))  # the check's outcome before: failed | pending | …
    registry_answer: Mapped[str | None] = mapped_column(String(24))
    officer: Mapped[str] = mapped_column(String(64))
    officer_name: Mapped[str] = mapped_column(String(64))
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    recorded_at: Mapped[datetime]
    event_seq: Mapped[int] = mapped_column(Integer)

    verification: Mapped[CaseVerification] = relationship(back_populates="manual")


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
