"""Cases and events built in memory for the rules' unit tests (the rules are pure over CaseFacts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from hub.supervision.rules import CaseFacts, Step, Withdrawal, evaluate
from hub.supervision.rules.base import Rule
from workflow.calendar import WorkingCalendar
from workflow.registry import get_definition

STANDARD = "standard.v1"
# Tuesday 10 March 2026, 10:00 China time.
T0 = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
FLOW = [("submit", "submitted", "applicant"), ("accept", "under_review", "officer"),
        ("review", "pending_decision", "officer"), ("grant", "granted", "officer"),
        ("complete", "completed", "officer")]


def case(**changes: Any) -> SimpleNamespace:
    values: dict[str, Any] = dict(
        id=1, tracking_no="210100-20260310-0001", origin="hub", item_id=7, department_id=7,
        parent_id=None, receiving_department_id=None, applicant_id_number="210102199003071234", submitted_at=T0,
        accepted_on=date(2026, 3, 10), completed_at=None, decided_at=None, suspensions=[],
        working_days_used=None, workflow_id=STANDARD)
    values.update(changes)
    return SimpleNamespace(**values)


def steps(*spec: tuple[str, str] | tuple[str, str, dict[str, Any]], start: datetime = T0,
          every: timedelta = timedelta(hours=1)) -> list[Step]:
    """Chained steps: (action, to_state[, overrides]); officers "o1", department 7, an opinion each."""
    made: list[Step] = []
    previous: str | None = None
    state: str | None = None
    for index, entry in enumerate(spec, start=1):
        action, to_state = entry[0], entry[1]
        extra: dict[str, Any] = dict(entry[2]) if len(entry) > 2 else {}  # type: ignore[misc]
        values: dict[str, Any] = dict(
            seq=index, action=action, to_state=to_state, from_state=state,
            actor_type="applicant" if action in ("submit", "supplement", "withdraw") else "officer",
            actor_id="applicant" if action in ("submit", "supplement", "withdraw") else "o1",
            department_id=None if action == "submit" else 7, opinion=f"意见{index}",
            occurred_at=start + every * (index - 1), prev_hash=previous, hash=f"h{index}")
        values.update(extra)
        made.append(Step(**values))
        previous, state = values["hash"], to_state
    return made


def standard(upto: int = 5, **overrides: dict[str, Any]) -> list[Step]:
    """The standard flow's first ``upto`` steps; ``overrides`` by action name."""
    return steps(*[(a, s, overrides.get(a, {})) for a, s, _ in FLOW[:upto]])


class FakeLookups:
    def __init__(self, durations: Sequence[int] = (), decisions: int = 0,
                 withdrawals: Sequence[Withdrawal] = ()) -> None:
        self.durations, self.decisions, self.withdrawals = list(durations), decisions, list(withdrawals)
        self.asked: list[str] = []

    def completed_durations(self, *, item_id: int, exclude_case_id: int | None, limit: int,
                            submitted_since: datetime) -> Sequence[int]:
        self.asked.append("durations")
        return self.durations[:limit]

    def decisions_between(self, *, actor_id: str, department_id: int, start: datetime, end: datetime,
                          actions: Sequence[str], submitted_since: datetime) -> int:
        self.asked.append("decisions")
        return self.decisions

    def withdrawals_before(self, *, case_id: int, applicant_id_number: str, item_id: int,
                           since: datetime, until: datetime) -> Sequence[Withdrawal]:
        self.asked.append("withdrawals")
        return [w for w in self.withdrawals if since <= w.withdrawn_at <= until]


def facts(events: Sequence[Step], *, of: SimpleNamespace | None = None, today: date = date(2026, 3, 20),
          new_from: int = 1, lookups: Any = None, workflow_id: str = STANDARD,
          calendar: WorkingCalendar | None = None) -> CaseFacts:
    return CaseFacts(case=of or case(), steps=list(events), definition=get_definition(workflow_id),
                     calendar=calendar or WorkingCalendar(), today=today, now=T0, new_from=new_from,
                     lookups=lookups or FakeLookups())


def found(rule: Rule, case_facts: CaseFacts) -> list[Any]:
    return list(evaluate(case_facts, [rule]))
