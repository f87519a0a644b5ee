from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.catalog.models import Item
from hub.db import Base
from hub.org.models import Department

if TYPE_CHECKING:
    from hub.verification.models import CaseVerification


# What the performance metrics filter and group a case by, and sum of a completed one (migration 0015).
METRICS_KEYS = ["parent_id", "region_code", "department_id", "item_id", "channel"]
METRICS_COMPLETED = ["accepted_on", "result", "on_time", "working_days_used", "statutory_limit_days",
                     "promised_limit_days"]


class Case(Base):
    """One case (办件), whether submitted to the hub or reported by a partner platform."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("origin_partner", "external_id"),
        # The performance metrics' days read from the cases (hub/supervision/metrics.py) as index-only scans on
        # PostgreSQL: each event's index carries what its figures are counted and grouped by (migration 0015).
        # Accepted and completed only index the cases that have the date (every query on them asks for a day or a
        # range): a new case, open, writes neither wide entry (migration 0020, docs/performance-postgresql.md).
        Index("ix_cases_submitted_at", "submitted_at", postgresql_include=[*METRICS_KEYS, "origin"]),
        Index("ix_cases_accepted_on", "accepted_on", postgresql_include=METRICS_KEYS,
              postgresql_where=text("accepted_on IS NOT NULL")),
        Index("ix_cases_completed_at", "completed_at", postgresql_include=[*METRICS_KEYS, *METRICS_COMPLETED],
              postgresql_where=text("completed_at IS NOT NULL")),
        # A joint case's branches by their parent; the other cases (nearly all) have none and no entry.
        Index("ix_cases_parent_id", "parent_id", postgresql_where=text("parent_id IS NOT NULL"),
              sqlite_where=text("parent_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tracking_no: Mapped[str] = mapped_column(String(21), unique=True)
    query_code_hash: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    # A joint case's child: the branch's name in the parent definition's parallel block.
    branch: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32), index=True)
    workflow_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(16), default="hub")
    origin_partner: Mapped[str | None] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(64))
    record_version: Mapped[int | None] = mapped_column(Integer)
    partner_event_seq: Mapped[int] = mapped_column(Integer, default=0)

    applicant_type: Mapped[str] = mapped_column(String(1))
    applicant_name: Mapped[str] = mapped_column(String(128))
    applicant_id_type: Mapped[str] = mapped_column(String(16))
    applicant_id_number: Mapped[str] = mapped_column(String(32), index=True)
    applicant_phone: Mapped[str | None] = mapped_column(String(20))
    applicant_region_code: Mapped[str | None] = mapped_column(String(6))
    form_data: Mapped[dict[str, Any]]

    submitted_at: Mapped[datetime]
    # The working day the application counts as received (outside working hours: the next one).
    received_on: Mapped[date | None]
    # The cross-region (通办) window that registered the application for another region's department.
    receiving_region_code: Mapped[str | None] = mapped_column(String(6))
    receiving_department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    intake_deadline: Mapped[date | None]
    accepted_on: Mapped[date | None]
    promised_limit_days: Mapped[int] = mapped_column(Integer)
    statutory_limit_days: Mapped[int] = mapped_column(Integer)
    deadline: Mapped[date | None]  # no query selects by it (the work queue orders by it): no index
    statutory_deadline: Mapped[date | None]
    step_deadlines: Mapped[dict[str, Any]] = mapped_column(default=dict)
    suspended_since: Mapped[date | None]
    suspended_working_days: Mapped[int] = mapped_column(Integer, default=0)
    # Every clock stop (supplement notice, Art. 45 special procedure): kind, reason, declared_days,
    # started_on, ended_on — what a deadline is recomputed from when a holiday notice is loaded.
    suspensions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    # Art. 42: the one extension granted, in working days (10, or 15 for joint handling).
    extension_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    decided_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(String(16))

    # Electronic supervision's time-limit colour (None, "yellow", "red") and the next day it may change: the
    # scanner reads only cases whose day has come (index), so its cost follows the cases changing colour.
    colour: Mapped[str | None] = mapped_column(String(8))
    colour_due_on: Mapped[date | None] = mapped_column(index=True)
    # Set when the clock stops (decision or end): working days used net of suspensions, and whether the case
    # kept its promised deadline — what the performance metrics aggregate in SQL.
    working_days_used: Mapped[int | None] = mapped_column(Integer)
    on_time: Mapped[bool | None]

    event_count: Mapped[int] = mapped_column(Integer, default=0)
    last_event_hash: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime]
    lock_version: Mapped[int] = mapped_column(Integer, default=1)

    item: Mapped[Item] = relationship(lazy="joined")
    department: Mapped[Department] = relationship(lazy="joined", foreign_keys=[department_id])
    # Kept on the case so a new submission's receipt reads them without another query.
    verifications: Mapped[list[CaseVerification]] = relationship(lazy="select")

    __mapper_args__ = {"version_id_col": lock_version}  # noqa: RUF012


class CaseEvent(Base):
    """An append-only, MAC-chained step of a case: what happened, who did it, and why."""

    __tablename__ = "case_events"
    __table_args__ = (
        # Also what reads a case's events (case_id = …): no index of case_id alone.
        UniqueConstraint("case_id", "seq"),
        # A person's decisions in a time window (the backfilled-batch rule, hub/supervision/realtime.py): without
        # it that look-up scanned the department's cases, a cost growing with the table (migration 0020).
        Index("ix_case_events_actor_id_occurred_at", "actor_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    step: Mapped[str | None] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str] = mapped_column(String(64))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    opinion: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256 with the audit key (hub/audit/service.py)
    # The case row's decisive fields as this event left them, covered by `hash`; None before migration 0007.
    case_row: Mapped[dict[str, Any] | None]

    department: Mapped[Department | None] = relationship(lazy="joined")
    # Lets a new case and its first event go to the database in one flush, without an UPDATE after.
    case: Mapped[Case] = relationship(lazy="select")


class Material(Base):
    __tablename__ = "materials"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    material_key: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    uploaded_at: Mapped[datetime]


class TrackingSequence(Base):
    """Per region and day, the last sequence number handed out for tracking numbers."""

    __tablename__ = "tracking_sequences"

    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)
