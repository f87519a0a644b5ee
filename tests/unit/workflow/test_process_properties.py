"""Property tests: random valid action sequences through single (standard.v1) and joint
(enterprise-establishment.v1) cases, checking the invariants the law's clock and the joint flow rest on:

* the clock never runs backwards: no deadline moves earlier, used days never decrease;
* suspended days are never counted as used (recounted here day by day from the suspensions);
* the join fires exactly once, and only when every branch has ended, with the right result;
* a completed / terminal case accepts no further action;
* every branch's deadlines are within its parent's;
* what ``available_actions`` offers is exactly what ``advance`` accepts;
* each Move continues from the state the previous one left its case in;
* ``to_json`` / ``from_json`` round-trip through JSON text at every step;
* a single case's deadlines are those the hub computed before (compute_deadline at acceptance,
  extend_for_suspension at each resumption).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from workflow.calendar import WorkingCalendar
from workflow.clock import SPECIAL_PROCEDURES, ClockFacts
from workflow.errors import WorkflowError
from workflow.machine import apply
from workflow.process import CLOCK_ACTIONS, Outcome, Process, advance, available_actions, start
from workflow.registry import get_definition
from workflow.timelimits import compute_deadline, extend_for_suspension

CALENDAR = WorkingCalendar()
ALL_ROLES = frozenset({"intake", "reviewer", "approver"})
ACTORS = (("officer", ALL_ROLES), ("applicant", frozenset()))
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JOINT_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=100)

UNIVERSE = sorted(
    {t.action for wid in ("standard.v1", "enterprise-establishment.v1", "joint-branch.v1")
     for t in get_definition(wid).transitions}
    | CLOCK_ACTIONS
)
Candidate = tuple[str | None, str, str]  # (branch, actor, action)


@dataclass
class Observed:
    """What one run has seen so far."""

    deadlines: dict[str | None, tuple[date | None, date | None, int]] = field(default_factory=dict)
    joins: int = 0


def _candidates(process: Process) -> list[Candidate]:
    found: list[Candidate] = []
    for branch in (None, *process.branches):
        for actor, roles in ACTORS:
            found += [(branch, actor, a) for a in available_actions(process, actor=actor, roles=roles, branch=branch)]
    return found


def _payload(data: st.DataObject, action: str) -> dict[str, Any]:
    if action == "start_special_procedure":
        return {"kind": data.draw(st.sampled_from(sorted(SPECIAL_PROCEDURES))),
                "declared_days": data.draw(st.integers(1, 30))}
    if action == "end_special_procedure":
        return {"result": "结论"}
    return {}


def _take(process: Process, candidate: Candidate, today: date, payload: dict[str, Any]) -> Outcome:
    branch, actor, action = candidate
    roles = ALL_ROLES if actor == "officer" else frozenset()
    return advance(process, action, actor=actor, roles=roles, opinion="意见", today=today, calendar=CALENDAR,
                   branch=branch, data=payload)


def _cases(process: Process) -> dict[str | None, Process]:
    return {None: process, **process.branches}


def _recount_used(clock: ClockFacts, today: date) -> int:
    """Working days used, counted day by day: a day in a suspension (started, ended] is not counted."""
    if clock.accepted_on is None:
        return 0
    end = min(today, clock.stopped_on) if clock.stopped_on is not None else today
    used = 0
    day = clock.accepted_on + timedelta(days=1)
    while day <= end:
        suspended = any(
            s.started_on < day <= (s.ended_on if s.ended_on is not None else end) for s in clock.suspensions
        )
        if CALENDAR.is_working_day(day) and not suspended:
            used += 1
        day += timedelta(days=1)
    return used


def _check_clock(clock: ClockFacts, today: date, used: int) -> None:
    # Suspensions follow one another, only the last may be open.
    for earlier, later in zip(clock.suspensions, clock.suspensions[1:], strict=False):
        assert earlier.ended_on is not None
        assert earlier.ended_on <= later.started_on
    assert used == _recount_used(clock, today)
    remaining = clock.days_remaining(CALENDAR, today)
    if clock.accepted_on is None:
        assert remaining is None
    else:
        assert remaining == clock.statutory_limit_days + clock.extension_days - used


def _check_moves(before: Process, outcome: Outcome) -> None:
    """Moves continue from the state the previous move left their case in."""
    process = outcome.process
    states = {name: case.state for name, case in _cases(before).items()}
    for name in outcome.opened:  # opened by the action: the hub creates them in their initial state
        assert name not in states
        states[name] = process.branches[name].definition.initial_state
    for move in outcome.moves:
        assert move.from_state == states.get(move.branch, move.from_state)
        states[move.branch] = move.to_state
    assert states == {name: case.state for name, case in _cases(process).items()}


def _check_join(outcome: Outcome, observed: Observed) -> None:
    """The join fires exactly once, when every branch has ended, with the result of their results."""
    process = outcome.process
    joins = [m for m in outcome.moves if m.action in ("join_granted", "join_denied")]
    assert len(joins) == (1 if outcome.joined else 0)
    observed.joins += len(joins)
    assert observed.joins <= 1
    if outcome.joined:
        assert all(child.is_terminal for child in process.branches.values())
        all_granted = all(child.result == "granted" for child in process.branches.values())
        assert outcome.joined == ("granted" if all_granted else "denied")
        assert process.result == outcome.joined


def _check_step(before: Process, outcome: Outcome, today: date, observed: Observed) -> None:
    process = outcome.process
    _check_moves(before, outcome)
    _check_join(outcome, observed)
    seen: dict[str | None, tuple[date | None, date | None, int]] = {}
    for name, case in _cases(process).items():
        clock = case.clock
        now = (
            clock.statutory_deadline(CALENDAR, today), clock.promised_deadline(CALENDAR, today),
            clock.working_days_used(CALENDAR, today),
        )
        _check_clock(clock, today, now[2])
        # The clock never runs backwards.
        previous = observed.deadlines.get(name)
        if previous is not None:
            for old, new in zip(previous, now, strict=True):
                if old is not None:
                    assert new is not None and new >= old
        seen[name] = now
    observed.deadlines.update(seen)
    # Every branch's deadlines are within its parent's.
    parent_statutory, parent_promised, _ = seen[None]
    for name in process.branches:
        statutory, promised, _ = seen[name]
        assert statutory is not None and parent_statutory is not None and statutory <= parent_statutory
        assert promised is not None and parent_promised is not None and promised <= parent_promised
    # The state serialises after every step.
    assert Process.from_json(json.loads(json.dumps(process.to_json()))) == process


def _check_refusal(process: Process, data: st.DataObject, today: date, offered: list[Candidate]) -> None:
    """Something not on offer is refused with a workflow error (never another exception)."""
    branch = data.draw(st.sampled_from((None, *process.branches)))
    actor = data.draw(st.sampled_from(("officer", "applicant")))
    action = data.draw(st.sampled_from(UNIVERSE))
    if (branch, actor, action) in offered:
        return
    payload = {"kind": "hearing", "declared_days": 3, "result": "结论"}
    try:
        _take(process, (branch, actor, action), today, payload)
    except WorkflowError:
        return
    raise AssertionError(f"{action} by {actor} on {branch} was accepted but not offered")


def _check_dead(process: Process, today: date) -> None:
    """A terminal case accepts nothing, on itself or on any branch."""
    assert _candidates(process) == []
    payload = {"kind": "hearing", "declared_days": 3, "result": "结论"}
    for branch in (None, *process.branches):
        for actor in ("officer", "applicant"):
            for action in UNIVERSE:
                try:
                    _take(process, (branch, actor, action), today, payload)
                except WorkflowError:
                    continue
                raise AssertionError(f"{action} accepted on a terminal case")


# Actions that end a case early: drawn now and then only, so that runs reach the join and completion.
RARE = frozenset({"withdraw", "refuse_intake"})


def _mostly_onwards(data: st.DataObject, offered: list[Candidate]) -> list[Candidate]:
    """Everything now and then; mostly no early end, often no new clock action either (ending an open
    special procedure stays on offer: nothing else may happen before it)."""
    mode = data.draw(st.integers(0, 19))
    if mode == 0:
        return offered
    leave_out = RARE if mode < 8 else RARE | (CLOCK_ACTIONS - {"end_special_procedure"})
    if mode % 4:
        leave_out |= {"deny"}  # mostly granted, so that every branch granting happens too
    return [c for c in offered if c[2] not in leave_out] or offered


def _run(data: st.DataObject, process: Process, steps: int) -> tuple[Process, Observed]:
    today = date(2026, 1, 5) + timedelta(days=data.draw(st.integers(0, 300)))
    observed = Observed()
    _check_step(process, Outcome(process, ()), today, observed)
    for _ in range(steps):
        offered = _candidates(process)
        if not offered:
            break
        today += timedelta(days=data.draw(st.integers(0, 4)))
        _check_refusal(process, data, today, offered)
        candidate = data.draw(st.sampled_from(_mostly_onwards(data, offered)))
        outcome = _take(process, candidate, today, _payload(data, candidate[2]))
        _check_step(process, outcome, today, observed)
        for move in outcome.moves:
            if move.actor == "system":
                event(f"system {move.action}")
        process = outcome.process
    if process.is_terminal:
        _check_dead(process, today)
    event(f"ended in {process.state}")
    return process, observed


limits = st.integers(0, 60).flatmap(lambda s: st.tuples(st.just(s), st.integers(0, 60)))


@JOINT_SETTINGS
@given(data=st.data(), limit=limits, steps=st.integers(1, 60))
def test_random_joint_cases_keep_every_invariant(data: st.DataObject, limit: tuple[int, int], steps: int) -> None:
    process = start("enterprise-establishment.v1", statutory_limit_days=limit[0], promised_limit_days=limit[1])
    process, observed = _run(data, process, steps)
    reached_join = process.state in {"granted", "denied"} or (process.state == "completed")
    assert observed.joins == (1 if reached_join else 0)


@PROPERTY_SETTINGS
@given(data=st.data(), limit=limits, steps=st.integers(1, 25))
def test_random_single_cases_keep_every_invariant(data: st.DataObject, limit: tuple[int, int], steps: int) -> None:
    process = start("standard.v1", statutory_limit_days=limit[0], promised_limit_days=limit[1])
    _, observed = _run(data, process, steps)
    assert observed.joins == 0


@dataclass
class _Before:
    """The hub's clock before workflow.process: deadlines stored at acceptance, pushed back at each
    resumption (hub/cases/service.py _start_clock / _resume_clock)."""

    statutory: date | None = None
    promised: date | None = None
    since: date | None = None


@PROPERTY_SETTINGS
@given(data=st.data(), steps=st.integers(1, 25))
def test_single_cases_keep_the_deadlines_the_hub_computed_before(data: st.DataObject, steps: int) -> None:
    definition = get_definition("standard.v1")
    process = start("standard.v1", statutory_limit_days=20, promised_limit_days=12)
    today = date(2026, 1, 5) + timedelta(days=data.draw(st.integers(0, 300)))
    before = _Before()
    for _ in range(steps):
        offered = [c for c in _candidates(process) if c[2] not in CLOCK_ACTIONS]
        if not offered:
            break
        today += timedelta(days=data.draw(st.integers(0, 4)))
        _, actor, action = data.draw(st.sampled_from(offered))
        roles = ALL_ROLES if actor == "officer" else frozenset()
        transition = apply(definition, process.state, action, actor=actor, roles=roles, opinion="意见",
                           taken=process.taken)
        outcome = _take(process, (None, actor, action), today, {})
        process = outcome.process
        assert (process.state, outcome.moves[0].step) == (transition.target, transition.step)
        if transition.clock == "start":
            before.statutory = compute_deadline(CALENDAR, today, 20)
            before.promised = compute_deadline(CALENDAR, today, 12)
        elif transition.clock == "suspend":
            before.since = today
        elif transition.clock == "resume" and before.since is not None:
            assert before.statutory is not None and before.promised is not None
            before.statutory = extend_for_suspension(CALENDAR, before.statutory, before.since, today)
            before.promised = extend_for_suspension(CALENDAR, before.promised, before.since, today)
            before.since = None
        if before.since is None and process.clock.stopped_on is None:
            assert process.clock.statutory_deadline(CALENDAR, today) == before.statutory
            assert process.clock.promised_deadline(CALENDAR, today) == before.promised
