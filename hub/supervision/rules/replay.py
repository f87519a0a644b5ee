"""Replay a case's events through its workflow definition — the engine that runs the hub's own cases.

Each event that moves the case is checked with ``workflow.machine.apply`` (the action exists from the state
the replay has reached, once-per-step actions are not repeated, a required opinion is given) — exactly
what ``workflow.process.advance`` checks before the hub records an officer's action. A partner platform's
case never went through that check: its steps are replayed against the province's model for its item, and
what the engine would have refused is a ``Deviation``. The replay then follows the event's own ``to_state``
so that one skipped step is reported once, not as a cascade.

Events that do not move the case are not replayed: clock actions (extend, special procedures — the engine
keeps the state), records without a transition (a manual verification, a partner's ``update_record``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from hub.supervision.rules.facts import Step
from workflow.definition import WorkflowDefinition
from workflow.errors import ActionNotAvailable, OncePerStep, OpinionRequired, UnknownState, WorkflowError
from workflow.machine import ACTORS, apply
from workflow.process import CLOCK_ACTIONS

SKIPPED = "skipped"  # the action is reachable from here, but only through steps the case never took
OUT_OF_ORDER = "out_of_order"  # the action belongs to a step the case already left, or leads elsewhere
REPEATED = "repeated"  # a once-per-step action taken again in the same step
NO_OPINION = "no_opinion"  # an action that must state its opinion (reasons) without one


@dataclass(frozen=True)
class Deviation:
    seq: int
    kind: str
    action: str
    state: str  # where the replay stood
    missing: tuple[str, ...] = ()  # SKIPPED: the actions of the shortest way the case should have gone


def replay(definition: WorkflowDefinition, steps: Sequence[Step]) -> list[Deviation]:
    """What the engine would have refused, event by event (the first event opens the case in its state).

    Remembered per process by what the replay reads of each step (seq, action, target state, whether it states
    an opinion): partner platforms report the same few flows over and over, and the real-time hook replays
    every touched case's whole history on each of its records."""
    if not steps:
        return []
    key = (id(definition), tuple((s.seq, s.action, s.to_state, bool(s.opinion and s.opinion.strip())) for s in steps))
    known = _replayed.get(key)
    if known is not None and known[0] is definition:  # the id of a definition still alive: the same one
        return list(known[1])
    deviations = _replay(definition, steps)
    if len(_replayed) >= _REPLAYED_MAX:
        oldest = next(iter(_replayed), None)  # a bound, not an LRU
        if oldest is not None:
            _replayed.pop(oldest, None)
    _replayed[key] = (definition, tuple(deviations))
    return deviations


# What ``replay`` remembers: (id of the definition, the steps as it reads them) → (that definition, deviations).
# Deviations are frozen: cases of the same history share them.
_Key = tuple[int, tuple[tuple[int, str, str, bool], ...]]
_replayed: dict[_Key, tuple[WorkflowDefinition, tuple[Deviation, ...]]] = {}
_REPLAYED_MAX = 4096


def _replay(definition: WorkflowDefinition, steps: Sequence[Step]) -> list[Deviation]:
    deviations: list[Deviation] = []
    state = steps[0].to_state
    taken: set[tuple[str, str]] = set()
    actions = {t.action for t in definition.transitions}
    for event in steps[1:]:
        if event.action in CLOCK_ACTIONS or (event.action not in actions and event.to_state == state):
            continue
        deviation = _check(definition, state, event, taken)
        if deviation is not None:
            deviations.append(deviation)
        else:
            transition = definition.transition_for(state, event.action)
            if transition.once_per_step:
                taken.add((transition.step, transition.action))
        state = event.to_state
    return deviations


def _check(definition: WorkflowDefinition, state: str, event: Step, taken: set[tuple[str, str]]) -> Deviation | None:
    try:
        transition = definition.transition_for(state, event.action)
    except (ActionNotAvailable, UnknownState):
        missing = way_to(definition, state, event.action)
        kind = SKIPPED if missing else OUT_OF_ORDER
        return Deviation(event.seq, kind, event.action, state, missing)
    if transition.target != event.to_state:
        return Deviation(event.seq, OUT_OF_ORDER, event.action, state)
    if transition.actor not in ACTORS:
        return None  # the engine's own move (a joint case's merged notice or join): recorded by the engine
    try:
        apply(definition, state, event.action, actor=transition.actor, roles=transition.roles,
              opinion=event.opinion, taken=taken)
    except OncePerStep:
        return Deviation(event.seq, REPEATED, event.action, state)
    except OpinionRequired:
        return Deviation(event.seq, NO_OPINION, event.action, state)
    except WorkflowError:
        return Deviation(event.seq, OUT_OF_ORDER, event.action, state)
    return None


def way_to(definition: WorkflowDefinition, state: str, action: str) -> tuple[str, ...]:
    """The shortest run of actions from ``state`` to a state where ``action`` is possible (forward only:
    no withdrawal or refusal on the way); () when there is none — the action lies behind."""
    if state not in definition.states:
        return ()
    sources = {t.source for t in definition.transitions if t.action == action}
    seen = {state}
    queue: deque[tuple[str, tuple[str, ...]]] = deque([(state, ())])
    while queue:
        current, path = queue.popleft()
        if current in sources and path:
            return path
        for t in definition.transitions:
            if t.source == current and t.target not in seen and t.target not in definition.terminal_states:
                seen.add(t.target)
                queue.append((t.target, (*path, t.action)))
    return ()
