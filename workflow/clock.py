"""The law's clock: a case's deadlines recomputed from the facts recorded on it.

A deadline is never a running total: it is derived from what happened — the day the case was accepted,
its limits, the one extension, every suspension — so loading a holiday notice later recomputes it exactly
(hub: open cases are recomputed and each change recorded). Every limit is in whole working days
(Administrative Licensing Law Art. 82): the acceptance day itself is not counted, the N-th working day after
it is the deadline.

* Art. 42: decide within 20 working days of acceptance (an item may promise fewer), extendable once by 10
  with the approver's recorded reason. Joint / unified handling (Art. 26): 45, extendable by 15.
* Art. 32: one supplement notice, within 5 working days of receipt; otherwise the application counts as
  accepted on the day the materials were received.
* Art. 45: hearings, tendering, auction, testing, inspection, quarantine, appraisal and expert review are
  not counted; the applicant is told their declared length.
* A suspension counts the working days in (started_on, ended_on]: the day the clock stops is still counted,
  the day it resumes is not, matching ``workflow.timelimits.extend_for_suspension``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Any, Literal

from workflow.calendar import WorkingCalendar

Handling = Literal["single", "joint"]

# Art. 42 / Art. 26: (decision limit, the one extension) in working days.
LAW_LIMITS: Mapping[Handling, tuple[int, int]] = {"single": (20, 10), "joint": (45, 15)}
LEGAL_BASIS_EXTENSION = "《中华人民共和国行政许可法》第四十二条"
LEGAL_BASIS_SPECIAL = "《中华人民共和国行政许可法》第四十五条"
LEGAL_BASIS_NOTICE = "《中华人民共和国行政许可法》第三十二条"
INTAKE_NOTICE_DAYS = 5  # Art. 32

SUPPLEMENT = "supplement"
# Art. 45: the special procedures whose time is not counted, with the names applicants read.
SPECIAL_PROCEDURES: Mapping[str, str] = {
    "hearing": "听证",
    "tendering": "招标",
    "auction": "拍卖",
    "testing": "检验",
    "inspection": "检测",
    "quarantine": "检疫",
    "appraisal": "鉴定",
    "expert_review": "专家评审",
}

# An application received after this time of a working day counts as received on the next working day
# (the documented rule for applications submitted outside working hours, docs/time-rules.md).
END_OF_WORKING_DAY = time(17, 0)


def received_on(calendar: WorkingCalendar, local: datetime) -> date:
    """The working day an application submitted at ``local`` (China Standard Time) counts as received.

    Online applications are taken at any hour, but the law's days are working days (Art. 82): one
    submitted on a working day before 17:00 is received that day; after 17:00, on a weekend or a holiday,
    on the next working day. Its intake period (Art. 32) runs from that day."""
    day = local.date()
    if calendar.is_working_day(day) and local.time() < END_OF_WORKING_DAY:
        return day
    return calendar.add_working_days(day, 1)


def intake_deadline(calendar: WorkingCalendar, received: date) -> date:
    """Last day for the intake decision or the one supplement notice (Art. 32)."""
    return calendar.add_working_days(received, INTAKE_NOTICE_DAYS)


@dataclass(frozen=True)
class Suspension:
    """One stop of the clock: a supplement notice (补正) or an Art. 45 special procedure."""

    kind: str  # SUPPLEMENT or a key of SPECIAL_PROCEDURES
    started_on: date
    reason: str = ""
    declared_days: int | None = None  # Art. 45: the length the applicant was told
    ended_on: date | None = None

    def __post_init__(self) -> None:
        if self.kind != SUPPLEMENT and self.kind not in SPECIAL_PROCEDURES:
            raise ValueError(f"unknown suspension kind {self.kind!r}")
        if self.ended_on is not None and self.ended_on < self.started_on:
            raise ValueError(f"suspension ends {self.ended_on} before it starts {self.started_on}")

    @property
    def is_open(self) -> bool:
        return self.ended_on is None

    def working_days(self, calendar: WorkingCalendar, today: date) -> int:
        """Working days not counted: in (started_on, ended_on], or up to ``today`` while still open."""
        end = self.ended_on if self.ended_on is not None else max(today, self.started_on)
        return calendar.working_days_between(self.started_on, end)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "reason": self.reason, "declared_days": self.declared_days,
            "started_on": self.started_on.isoformat(),
            "ended_on": self.ended_on.isoformat() if self.ended_on else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Suspension:
        ended = data.get("ended_on")
        return cls(kind=data["kind"], reason=data.get("reason") or "", declared_days=data.get("declared_days"),
                   started_on=date.fromisoformat(data["started_on"]),
                   ended_on=date.fromisoformat(ended) if ended else None)


@dataclass(frozen=True)
class ClockFacts:
    """What a case's deadlines are computed from; stored on the case (hub/cases/models.py)."""

    statutory_limit_days: int
    promised_limit_days: int
    accepted_on: date | None = None
    extension_days: int = 0
    suspensions: tuple[Suspension, ...] = field(default=())
    stopped_on: date | None = None  # the day the case was decided or ended: its clock counts no further

    def __post_init__(self) -> None:
        if self.promised_limit_days > self.statutory_limit_days:
            raise ValueError("the promised limit cannot exceed the statutory limit")
        if min(self.promised_limit_days, self.statutory_limit_days, self.extension_days) < 0:
            raise ValueError("limits and extensions are whole working days, never negative")

    # --- recorded changes (each returns new facts) ---------------------------------------------

    def accept(self, on: date) -> ClockFacts:
        if self.accepted_on is not None:
            raise ValueError("the clock has started already")
        return replace(self, accepted_on=on)

    def extend(self, days: int) -> ClockFacts:
        """Art. 42: once per case, at most the law's extension for its handling."""
        if self.extension_days:
            raise ValueError("the time limit has been extended once already (Art. 42)")
        if days <= 0:
            raise ValueError("an extension is at least one working day")
        return replace(self, extension_days=days)

    def suspend(self, suspension: Suspension) -> ClockFacts:
        if self.open_suspension is not None:
            raise ValueError("the clock is suspended already")
        return replace(self, suspensions=(*self.suspensions, suspension))

    def resume(self, on: date) -> ClockFacts:
        current = self.open_suspension
        if current is None:
            raise ValueError("the clock is not suspended")
        closed = replace(current, ended_on=max(on, current.started_on))
        return replace(self, suspensions=(*self.suspensions[:-1], closed))

    def stop(self, on: date) -> ClockFacts:
        facts = self.resume(on) if self.open_suspension is not None else self
        return replace(facts, stopped_on=on)

    # --- what is derived -------------------------------------------------------------------------

    @property
    def open_suspension(self) -> Suspension | None:
        last = self.suspensions[-1] if self.suspensions else None
        return last if last is not None and last.is_open else None

    def days_suspended(self, calendar: WorkingCalendar, today: date) -> int:
        end = self._counted_until(today)
        return sum(s.working_days(calendar, end) for s in self.suspensions)

    def statutory_deadline(self, calendar: WorkingCalendar, today: date) -> date | None:
        return self._deadline(calendar, today, self.statutory_limit_days + self.extension_days)

    def promised_deadline(self, calendar: WorkingCalendar, today: date) -> date | None:
        """The item's promise (承诺时限); Art. 42's extension moves the statutory deadline only."""
        return self._deadline(calendar, today, self.promised_limit_days)

    def working_days_used(self, calendar: WorkingCalendar, today: date) -> int:
        if self.accepted_on is None:
            return 0
        end = self._counted_until(today)
        elapsed = calendar.working_days_between(self.accepted_on, max(end, self.accepted_on))
        return max(0, elapsed - self.days_suspended(calendar, today))

    def days_remaining(self, calendar: WorkingCalendar, today: date) -> int | None:
        """Working days left before the statutory deadline (negative when overdue); None before acceptance."""
        if self.accepted_on is None:
            return None
        limit = self.statutory_limit_days + self.extension_days
        return limit - self.working_days_used(calendar, today)

    def _deadline(self, calendar: WorkingCalendar, today: date, limit: int) -> date | None:
        if self.accepted_on is None:
            return None
        return calendar.add_working_days(self.accepted_on, limit + self.days_suspended(calendar, today))

    def _counted_until(self, today: date) -> date:
        return min(today, self.stopped_on) if self.stopped_on is not None else today
