"""Electronic supervision (电子监察): alerts with their accountability workflow, applicant ratings, and the
per-region thresholds the rules read."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base

if TYPE_CHECKING:
    from hub.cases.models import Case


class Alert(Base):
    """One finding of a rule on a case: raised once per (case, rule, level), then explained by the department,
    ruled on by a supervisor, escalated when a red one is left unresolved."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("case_id", "rule", "level"),)  # also a case's alerts: no index of case_id alone

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    rule: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # time | procedure | anomaly
    level: Mapped[str] = mapped_column(String(8))  # yellow | red
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | explained | accepted | accountability | closed
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    # The supervising region the alert currently sits with: the case's region, one level up after escalation.
    supervisor_region_code: Mapped[str] = mapped_column(String(6), index=True)
    escalations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    message: Mapped[str] = mapped_column(Text)  # Chinese, what the department reads
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the rule's facts (event seqs, dates, ...)
    raised_at: Mapped[datetime] = mapped_column(index=True)
    raised_on: Mapped[date]  # business day, for the escalation's working days
    closed_at: Mapped[datetime | None]
    explanation: Mapped[str | None] = mapped_column(Text)
    correction: Mapped[str | None] = mapped_column(Text)
    explained_by: Mapped[str | None] = mapped_column(String(64))
    explained_at: Mapped[datetime | None]
    ruling: Mapped[str | None] = mapped_column(String(16))  # accepted | accountability
    ruled_by: Mapped[str | None] = mapped_column(String(64))
    ruled_at: Mapped[datetime | None]
    accountability: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # 责任追究: measure, person, date
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # every step, who and when


class Rating(Base):
    """An applicant's rating of a completed case (好差评): five levels, one per case and service event."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("case_id", "service_event"),)  # also a case's ratings (no case_id index)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    service_event: Mapped[str] = mapped_column(String(32), default="completion")
    level: Mapped[int] = mapped_column(Integer)  # 5 非常满意 … 1 非常不满意
    comment: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # applicant | partner
    rated_at: Mapped[datetime] = mapped_column(index=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    # A rating of 不满意 or worse opens a follow-up for the department (within 15 working days).
    follow_up_status: Mapped[str | None] = mapped_column(String(16), index=True)  # open | done
    follow_up_due_on: Mapped[date | None]
    follow_up_note: Mapped[str | None] = mapped_column(Text)
    followed_up_by: Mapped[str | None] = mapped_column(String(64))
    followed_up_at: Mapped[datetime | None]

    # Lets a partner record's new case and its rating go to the database in one flush (hub/exchange/service.py).
    case: Mapped[Case] = relationship(lazy="select")


class SupervisionThreshold(Base):
    """Colour thresholds per region (cities differ); a region without a row takes its nearest ancestor's."""

    __tablename__ = "supervision_thresholds"

    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    yellow_used_percent: Mapped[int] = mapped_column(Integer, default=80)  # yellow at >= this share of the limit used
    yellow_days_left: Mapped[int] = mapped_column(Integer, default=1)
    red_escalation_days: Mapped[int] = mapped_column(Integer, default=3)
    updated_at: Mapped[datetime]


# --- performance metrics' daily roll-up (issue 10, part metrics; hub/supervision/rollup.py) -------------------


class MetricsDaily(Base):
    """The additive case figures of one business day and one department × region × item × channel, for the
    days up to ``MetricsRollup.rolled_until`` that are not dirty: the performance metrics sum these instead of
    reading every case of a long period. Each figure is counted on the day of its own event (received by
    ``submitted_at``, accepted by ``accepted_on``, completed by ``completed_at``), applications only."""

    __tablename__ = "metrics_daily"

    day: Mapped[date] = mapped_column(primary_key=True)
    department_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    item_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    received: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer)
    on_time: Mapped[int] = mapped_column(Integer)
    overtime: Mapped[int] = mapped_column(Integer)
    days_cases: Mapped[int] = mapped_column(Integer)
    days_sum: Mapped[int] = mapped_column(Integer)
    promised_statutory: Mapped[int] = mapped_column(Integer)
    promised_sum: Mapped[int] = mapped_column(Integer)
    actual_statutory: Mapped[int] = mapped_column(Integer)
    actual_sum: Mapped[int] = mapped_column(Integer)
    online: Mapped[int] = mapped_column(Integer)
    window: Mapped[int] = mapped_column(Integer)


class MetricsDirtyDay(Base):
    """A rolled-up day whose figures a later write changed (a partner record with past dates, a correction):
    marked by the database trigger on ``cases`` (migration 0015) in the writer's transaction, read live by the
    metrics until the roll-up recomputes the day. One row per marking write (append-only: concurrent writers
    back-dating one day never wait on each other); the roll-up deletes the marks it read, by id."""

    __tablename__ = "metrics_dirty_days"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(index=True)


class MetricsRollup(Base):
    """The one row saying how far the roll-up goes: every day up to ``rolled_until`` is in ``metrics_daily``
    (unless dirty); later days are read from the cases. None: nothing rolled up yet."""

    __tablename__ = "metrics_rollup"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rolled_until: Mapped[date | None]
    updated_at: Mapped[datetime | None]
