"""What a procedure or anomaly rule reads about one case: ``CaseFacts``.

The rules are pure: everything they need is here, read by the real-time hook (hub/supervision/realtime.py)
with one query for the events of every case touched in a unit of work. What only a few rules need and only
on some events — the item's history for "too fast", an officer's other decisions for "back-filled batch",
the applicant's withdrawn cases for "withdraw and resubmit" — comes through ``Lookups``, asked lazily.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any, Protocol

from workflow.calendar import WorkingCalendar
from workflow.definition import WorkflowDefinition


@dataclass(frozen=True)
class Step:
    """One event of the case as the rules see it (a plain copy of a ``case_events`` row)."""

    seq: int
    action: str
    to_state: str
    actor_type: str
    actor_id: str
    occurred_at: datetime
    from_state: str | None = None
    step: str | None = None
    department_id: int | None = None
    opinion: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str | None = None
    hash: str | None = None

    @property
    def by_person(self) -> bool:
        """Taken by a person (an officer of the hub or of a partner platform), not the engine or applicant."""
        return self.actor_type in ("officer", "partner")


class JsonText(Mapping[str, Any]):
    """A JSON object kept as its text until read (a ``Step``'s ``data`` as the real-time hook reads it from the
    database: no rule reads an event's data today, and parsing every row's was a third of reading the steps)."""

    __slots__ = ("_parsed", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._parsed: dict[str, Any] | None = None

    def _value(self) -> dict[str, Any]:
        if self._parsed is None:
            parsed = json.loads(self.text)
            self._parsed = parsed if isinstance(parsed, dict) else {}
        return self._parsed

    def __getitem__(self, key: str) -> Any:
        return self._value()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._value())

    def __len__(self) -> int:
        return len(self._value())

    def __eq__(self, other: object) -> bool:
        return self._value() == (other._value() if isinstance(other, JsonText) else other)

    __hash__ = None  # type: ignore[assignment]  # as a dict's

    def __repr__(self) -> str:
        return repr(self._value())


@dataclass(frozen=True)
class Withdrawal:
    """An earlier case of the same applicant and item that the applicant withdrew."""

    tracking_no: str
    withdrawn_at: datetime


@dataclass(frozen=True)
class FeeFacts:
    """The case's fee as the hub stores it (hub/payments/fees.py, ``case_fees``): the hub's assessment, or
    what a partner platform reported (``source`` "partner"; ``status`` "due" for its "unpaid")."""

    status: str  # due, paid, waived, exempt, refunded
    amount_fen: int
    paid_fen: int
    due: str
    source: str


class Lookups(Protocol):
    """The few reads beyond the case's own events; each asked only when a rule needs it."""

    def completed_durations(self, *, item_id: int, exclude_case_id: int | None, limit: int,
                            submitted_since: datetime) -> Sequence[int]:
        """Working days used by the item's latest completed cases submitted since ``submitted_since``."""
        ...

    def decisions_between(self, *, actor_id: str, department_id: int, start: datetime, end: datetime,
                          actions: Sequence[str], submitted_since: datetime) -> int:
        """How many decisions ``actor_id`` recorded (occurred_at) in [start, end] on the department's cases
        submitted since ``submitted_since`` (bounded by indexed columns: cases.department_id, submitted_at)."""
        ...

    def withdrawals_before(self, *, case_id: int, applicant_id_number: str, item_id: int,
                           since: datetime, until: datetime) -> Sequence[Withdrawal]:
        """The applicant's other cases of the item withdrawn in [since, until] after their acceptance."""
        ...

    def case_fee(self, *, case_id: int) -> FeeFacts | None:
        """The case's fee row, None when none is stored (no fee, or a platform that reported no payment)."""
        ...


class NoLookups:
    """Lookups that find nothing (a rule evaluated without a database)."""

    def completed_durations(self, *, item_id: int, exclude_case_id: int | None, limit: int,
                            submitted_since: datetime) -> Sequence[int]:
        return ()

    def decisions_between(self, *, actor_id: str, department_id: int, start: datetime, end: datetime,
                          actions: Sequence[str], submitted_since: datetime) -> int:
        return 0

    def withdrawals_before(self, *, case_id: int, applicant_id_number: str, item_id: int,
                           since: datetime, until: datetime) -> Sequence[Withdrawal]:
        return ()

    def case_fee(self, *, case_id: int) -> FeeFacts | None:
        return None


@dataclass(frozen=True)
class CaseFacts:
    """One case, its events in order, the definition it is checked against and the day.

    ``case``: the ``Case`` row (its clock columns: accepted_on, suspensions, completed_at …).
    ``definition``: the case's own (workflow.registry.get_definition(case.workflow_id)); for a partner
    platform's case the province's model of its item (hub/supervision/realtime.py ``definition_for``).
    ``new_from``: the first seq appended in this unit of work — rules that ask ``lookups`` do so only when
    the event they look at is new, so re-evaluating a case costs no more queries.
    ``thresholds``: the region's colour thresholds when the caller has them (the time rules' business)."""

    case: Any
    steps: Sequence[Step]
    definition: WorkflowDefinition
    calendar: WorkingCalendar
    today: date
    now: datetime
    new_from: int = 1
    lookups: Lookups = field(default_factory=NoLookups)
    thresholds: Any = None

    @cached_property
    def deviations(self) -> list[Any]:
        """The replay of the events through the definition (hub/supervision/rules/replay.py), once per case."""
        from hub.supervision.rules.replay import replay

        return replay(self.definition, self.steps)

    def is_new(self, step: Step) -> bool:
        return step.seq >= self.new_from

    def first(self, *actions: str) -> Step | None:
        return next((s for s in self.steps if s.action in actions), None)

    @property
    def is_partner(self) -> bool:
        return getattr(self.case, "origin", "hub") == "partner"
