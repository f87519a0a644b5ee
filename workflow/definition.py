"""Workflow definitions: states, steps and transitions, loaded from JSON.

A definition is data (``workflow/definitions/*.json``), validated in two passes: the JSON Schema
(``schemas/workflow-definition.v1.json``) checks the shape, then ``_check_semantics`` checks what a
schema cannot express — references between states, steps and transitions, reachability, that the
time-limit clock is in one well-defined condition in every state, and that a parallel block (joint
handling, Administrative Licensing Law Art. 26) names real system transitions and resolvable branch
workflows. Every error names the JSON pointer of the offending field, so whoever edits a definition
knows where to look.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from workflow.errors import ActionNotAvailable, UnknownState

Clock = Literal["start", "suspend", "resume", "stop", "none"]
# "system": taken by the engine itself (join, merged supplement notice, a parent's cascade), never
# requested by a caller.
Actor = Literal["officer", "applicant", "system"]
# Condition of the statutory clock while a case sits in a state: not yet started (before
# acceptance), running, suspended (补正 during review, Art. 45 procedures), or stopped for good.
ClockStatus = Literal["idle", "running", "suspended", "stopped"]
# The clock when a case is created: a branch of a joint case counts from its parent's acceptance.
InitialClock = Literal["idle", "running"]
# Resolves a branch's workflow id to its definition (workflow.registry.get_definition by default).
Resolver = Callable[[str], "WorkflowDefinition"]

SCHEMA_RESOURCE = "workflow-definition.v1.json"
STANDARD_RESOURCE = "standard.v1.json"


class DefinitionError(ValueError):
    """A workflow definition is invalid; ``path`` is the JSON pointer of the offending field."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path or '/'}: {message}")


@dataclass(frozen=True)
class Step:
    name: str
    label: str
    # For the intake step: working days allowed from submission to the intake decision.
    # For the steps after acceptance: a weight, their share of the case's time limit.
    time_allocation_days: int


@dataclass(frozen=True)
class Transition:
    action: str
    label: str
    source: str
    target: str
    roles: frozenset[str]
    step: str
    requires_opinion: bool
    clock: Clock
    actor: Actor
    # At most once per step of a case (the one-time supplement notice of Art. 32); see machine.apply.
    once_per_step: bool = False
    legal_basis: str | None = None

    def used_up(self, taken: Collection[tuple[str, str]]) -> bool:
        """True when this action may be taken once per step and ``taken`` holds it for its step."""
        return self.once_per_step and (self.step, self.action) in taken


@dataclass(frozen=True)
class Branch:
    """One department's part of a joint case: a child case running ``workflow_id``."""

    name: str
    label: str
    workflow_id: str
    # Working days promised to the branch from the parent's acceptance (capped by the parent's).
    time_allocation_days: int
    # Top-level properties of the item's form the branch's department sees.
    form_part: tuple[str, ...]


@dataclass(frozen=True)
class ParallelBlock:
    """Joint handling: while the parent is in ``state`` its branches run at the same time; the
    other three fields are actions of the parent's system transitions from ``state``."""

    state: str
    branches: tuple[Branch, ...]
    join_granted: str
    join_denied: str
    notify_supplement: str

    def branch(self, name: str) -> Branch:
        for branch in self.branches:
            if branch.name == name:
                return branch
        raise KeyError(name)


@dataclass(frozen=True)
class WorkflowDefinition:
    id: str
    version: int
    initial_state: str
    states: Mapping[str, str]  # state -> Chinese label
    terminal_states: frozenset[str]
    steps: tuple[Step, ...]
    transitions: tuple[Transition, ...]
    parallel: ParallelBlock | None = None
    initial_clock: InitialClock = "idle"
    label: str | None = None

    @property
    def workflow_id(self) -> str:
        """The id cases store (items.workflow_id): the definition file's name without ``.json``."""
        return f"{self.id}.v{self.version}"

    # The generated hash would fail on the ``states`` mapping; (id, version) identifies a definition
    # and is consistent with equality, so definitions can key caches.
    def __hash__(self) -> int:
        return hash((self.id, self.version))

    def transition_for(self, state: str, action: str) -> Transition:
        self._require_state(state)
        for transition in self.transitions:
            if transition.source == state and transition.action == action:
                return transition
        raise ActionNotAvailable(
            state,
            action,
            state_label=self.states[state],
            action_label=self.action_label(action),
        )

    def available_actions(
        self, state: str, actor: str = "officer", *, taken: Collection[tuple[str, str]] = ()
    ) -> list[Transition]:
        """Transitions from ``state`` for this kind of actor, leaving out the once-per-step actions
        already ``taken`` — (step, action) pairs of what the case has recorded."""
        self._require_state(state)
        return [
            t for t in self.transitions
            if t.source == state and t.actor == actor and not t.used_up(taken)
        ]

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"workflow {self.id} v{self.version} has no step {name!r}")

    def is_terminal(self, state: str) -> bool:
        self._require_state(state)
        return state in self.terminal_states

    def action_label(self, action: str) -> str:
        """Chinese label of an action (the id itself when the definition has no such action)."""
        for transition in self.transitions:
            if transition.action == action:
                return transition.label
        return action

    def clock_status(self, state: str) -> ClockStatus:
        """Whether the time-limit clock runs while a case is in ``state``."""
        self._require_state(state)
        return _clock_statuses(self)[state]

    def _require_state(self, state: str) -> None:
        if state not in self.states:
            raise UnknownState(state)


def load_definition(data: dict[str, Any], *, resolve: Resolver | None = None) -> WorkflowDefinition:
    """Validate a definition document and build the definition; raises ``DefinitionError``.

    ``resolve`` looks a parallel block's branch workflows up (default: the packaged definitions,
    ``workflow.registry.get_definition``); it raises ``KeyError`` for an unknown id."""
    _validate_schema(data)
    definition = _build(data)
    _check_semantics(definition)
    if definition.parallel is not None:
        _check_parallel(definition, definition.parallel, resolve or _registry_resolver())
    return definition


@cache
def standard_definition() -> WorkflowDefinition:
    text = resources.files("workflow.definitions").joinpath(STANDARD_RESOURCE).read_text("utf-8")
    return load_definition(json.loads(text))


@cache
def _schema_validator() -> Draft202012Validator:
    text = resources.files("schemas").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    # Formats are checked like everywhere else (the checker's packages are project dependencies).
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _validate_schema(data: object) -> None:
    error = best_match(_schema_validator().iter_errors(data))
    if error is not None:
        raise DefinitionError(_error_pointer(error), error.message)


def _error_pointer(error: ValidationError) -> str:
    parts = [str(part) for part in error.absolute_path]
    # Point at the missing or unexpected key itself rather than at the object holding it.
    if (error.validator == "required" and isinstance(error.instance, dict)
            and isinstance(error.validator_value, list)):
        missing = [key for key in error.validator_value if key not in error.instance]
        parts += missing[:1]
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        declared = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = [key for key in error.instance if key not in declared]
        parts += extra[:1]
    return _pointer(*parts)


def _pointer(*parts: object) -> str:
    """RFC 6901 JSON pointer."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _build(data: dict[str, Any]) -> WorkflowDefinition:
    states = data["states"]
    return WorkflowDefinition(
        id=data["id"],
        version=data["version"],
        initial_state=data["initial_state"],
        states=MappingProxyType({name: state["label"] for name, state in states.items()}),
        terminal_states=frozenset(
            name for name, state in states.items() if state.get("terminal", False)
        ),
        steps=tuple(Step(s["name"], s["label"], s["time_allocation_days"]) for s in data["steps"]),
        transitions=tuple(_build_transition(t) for t in data["transitions"]),
        parallel=_build_parallel(data["parallel"]) if "parallel" in data else None,
        initial_clock=data.get("initial_clock", "idle"),
        label=data.get("label"),
    )


def _build_parallel(data: dict[str, Any]) -> ParallelBlock:
    return ParallelBlock(
        state=data["state"],
        branches=tuple(
            Branch(
                name=b["name"], label=b["label"], workflow_id=b["workflow_id"],
                time_allocation_days=b["time_allocation_days"], form_part=tuple(b["form_part"]),
            )
            for b in data["branches"]
        ),
        join_granted=data["join_granted"],
        join_denied=data["join_denied"],
        notify_supplement=data["notify_supplement"],
    )


def _build_transition(data: dict[str, Any]) -> Transition:
    # Defaults mirror the "default" keywords of the schema.
    return Transition(
        action=data["action"],
        label=data["label"],
        source=data["source"],
        target=data["target"],
        roles=frozenset(data.get("roles", ())),
        step=data["step"],
        requires_opinion=data.get("requires_opinion", False),
        clock=data["clock"],
        actor=data.get("actor", "officer"),
        once_per_step=data.get("once_per_step", False),
        legal_basis=data.get("legal_basis"),
    )


def _check_semantics(definition: WorkflowDefinition) -> None:
    _check_initial_state(definition)
    _check_steps(definition)
    for index, transition in enumerate(definition.transitions):
        _check_transition(definition, index, transition)
    _check_unique_actions(definition)
    _check_graph(definition)


def _check_initial_state(definition: WorkflowDefinition) -> None:
    if definition.initial_state not in definition.states:
        raise DefinitionError(
            "/initial_state", f"initial state {definition.initial_state!r} is not declared"
        )
    if definition.initial_state in definition.terminal_states:
        raise DefinitionError("/initial_state", "the initial state cannot be terminal")


def _check_steps(definition: WorkflowDefinition) -> None:
    seen: set[str] = set()
    for index, step in enumerate(definition.steps):
        if step.name in seen:
            raise DefinitionError(_pointer("steps", index, "name"), f"duplicate step {step.name!r}")
        seen.add(step.name)


def _check_transition(definition: WorkflowDefinition, index: int, transition: Transition) -> None:
    def fail(field: str, message: str) -> DefinitionError:
        return DefinitionError(_pointer("transitions", index, field), message)

    for field in ("source", "target"):
        state = getattr(transition, field)
        if state not in definition.states:
            raise fail(field, f"{field} state {state!r} is not declared in /states")
    if transition.source in definition.terminal_states:
        raise fail("source", f"terminal state {transition.source!r} cannot have transitions")
    if transition.target in definition.terminal_states and transition.clock != "stop":
        raise fail("clock", "a transition into a terminal state must stop the clock")
    if transition.step not in {step.name for step in definition.steps}:
        raise fail("step", f"step {transition.step!r} is not declared in /steps")
    if transition.actor == "officer" and not transition.roles:
        raise fail("roles", "an officer action must list the roles allowed to take it")
    if transition.actor == "applicant" and transition.roles:
        raise fail("roles", "an applicant action takes no officer roles")
    if transition.actor == "system" and transition.roles:
        raise fail("roles", "a system action takes no officer roles")


def _check_unique_actions(definition: WorkflowDefinition) -> None:
    # One transition per (state, action) keeps the machine deterministic; one label per action keeps
    # what officers see consistent wherever the action appears.
    seen: dict[tuple[str, str], int] = {}
    labels: dict[str, str] = {}
    for index, transition in enumerate(definition.transitions):
        key = (transition.source, transition.action)
        if key in seen:
            raise DefinitionError(
                _pointer("transitions", index, "action"),
                f"action {transition.action!r} from {transition.source!r} is already defined "
                f"at /transitions/{seen[key]}",
            )
        seen[key] = index
        label = labels.setdefault(transition.action, transition.label)
        if label != transition.label:
            raise DefinitionError(
                _pointer("transitions", index, "label"),
                f"action {transition.action!r} is labelled {label!r} elsewhere",
            )


def _check_graph(definition: WorkflowDefinition) -> None:
    statuses = _walk_clock(definition)
    for state in definition.states:
        if state in definition.terminal_states:
            continue
        if state not in statuses:
            raise DefinitionError(
                _pointer("states", state),
                f"state {state!r} is not reachable from the initial state",
            )
        if not any(t.source == state for t in definition.transitions):
            raise DefinitionError(
                _pointer("states", state),
                f"non-terminal state {state!r} has no way out; mark it terminal or add a way out",
            )


# Clock status after a transition, given the status before it; a missing entry is an error.
_CLOCK_EFFECTS: dict[tuple[ClockStatus, Clock], ClockStatus] = {
    ("idle", "start"): "running",
    ("running", "suspend"): "suspended",
    ("suspended", "resume"): "running",
    **{(status, "stop"): "stopped" for status in ("idle", "running", "suspended", "stopped")},
    **{(status, "none"): status for status in ("idle", "running", "suspended", "stopped")},
}


def _walk_clock(definition: WorkflowDefinition) -> dict[str, ClockStatus]:
    """Clock status of every state reachable from the initial state.

    Raises DefinitionError when a transition's clock effect is impossible (suspending a clock that
    is not running...) or when two paths reach a state with different clock statuses — then the
    state alone would not say whether time is counting.
    """
    statuses: dict[str, ClockStatus] = {definition.initial_state: definition.initial_clock}
    queue = deque([definition.initial_state])
    while queue:
        state = queue.popleft()
        for index, transition in enumerate(definition.transitions):
            if transition.source != state:
                continue
            after = _CLOCK_EFFECTS.get((statuses[state], transition.clock))
            where = _pointer("transitions", index, "clock")
            if after is None:
                raise DefinitionError(
                    where,
                    f"cannot {transition.clock} the clock: it is {statuses[state]} in {state!r}",
                )
            known = statuses.get(transition.target)
            if known is None:
                statuses[transition.target] = after
                queue.append(transition.target)
            elif known != after:
                raise DefinitionError(
                    where,
                    f"state {transition.target!r} would have the clock both {known} and {after}",
                )
    return statuses


@lru_cache(maxsize=64)
def _clock_statuses(definition: WorkflowDefinition) -> dict[str, ClockStatus]:
    statuses = _walk_clock(definition)
    # Unreachable terminal states are harmless; a case can only be there with its clock stopped.
    return {state: statuses.get(state, "stopped") for state in definition.states}


# --- parallel block (joint handling, Art. 26) ------------------------------------------------------

# The applicant's action that answers the merged notice (parent) and the system action that sends a
# branch back after it (branch); the officer action a branch asks with; the branch's cascade action.
SUPPLEMENT_ACTION = "supplement"
REQUEST_SUPPLEMENT_ACTION = "request_supplement"
WITHDRAW_ACTION = "withdraw"


def _registry_resolver() -> Resolver:
    # Imported here: the registry loads definitions through this module.
    from workflow.registry import get_definition

    return get_definition


def _check_parallel(definition: WorkflowDefinition, block: ParallelBlock, resolve: Resolver) -> None:
    state = block.state
    if state not in definition.states:
        raise DefinitionError("/parallel/state", f"parallel state {state!r} is not declared in /states")
    if state in definition.terminal_states:
        raise DefinitionError("/parallel/state", f"parallel state {state!r} cannot be terminal")
    if definition.clock_status(state) != "running":
        raise DefinitionError(
            "/parallel/state", f"the clock must be running in the parallel state {state!r}"
        )
    seen_actions: dict[str, str] = {}
    found: dict[str, Transition] = {}
    for field in ("join_granted", "join_denied", "notify_supplement"):
        action = getattr(block, field)
        if action in seen_actions:
            raise DefinitionError(
                _pointer("parallel", field), f"action {action!r} is already /parallel/{seen_actions[action]}"
            )
        seen_actions[action] = field
        found[field] = _system_transition(definition, state, action, field)
    _check_notify(definition, block, found["notify_supplement"])
    _check_branches(definition, block, resolve)


def _system_transition(definition: WorkflowDefinition, state: str, action: str, field: str) -> Transition:
    for transition in definition.transitions:
        if transition.source == state and transition.action == action and transition.actor == "system":
            return transition
    raise DefinitionError(
        _pointer("parallel", field), f"action {action!r} is not a system transition from {state!r}"
    )


def _check_notify(definition: WorkflowDefinition, block: ParallelBlock, notify: Transition) -> None:
    if notify.clock != "suspend":
        raise DefinitionError(
            "/parallel/notify_supplement", "the merged supplement notice must suspend the clock"
        )
    back = [
        t for t in definition.transitions
        if t.source == notify.target and t.action == SUPPLEMENT_ACTION and t.actor == "applicant"
        and t.target == block.state and t.clock == "resume"
    ]
    if not back:
        raise DefinitionError(
            "/parallel/notify_supplement",
            f"state {notify.target!r} needs the applicant's {SUPPLEMENT_ACTION!r} back to {block.state!r} "
            "resuming the clock",
        )


def _check_branches(definition: WorkflowDefinition, block: ParallelBlock, resolve: Resolver) -> None:
    names: set[str] = set()
    for index, branch in enumerate(block.branches):
        if branch.name in names:
            raise DefinitionError(
                _pointer("parallel", "branches", index, "name"), f"duplicate branch {branch.name!r}"
            )
        names.add(branch.name)
        where = _pointer("parallel", "branches", index, "workflow_id")
        if branch.workflow_id == definition.workflow_id:
            raise DefinitionError(where, "a branch cannot run its parent's own workflow")
        try:
            child = resolve(branch.workflow_id)
        except KeyError:
            raise DefinitionError(where, f"unknown workflow {branch.workflow_id!r}") from None
        _check_branch_definition(child, where)


def _check_branch_definition(child: WorkflowDefinition, where: str) -> None:
    if child.parallel is not None:
        raise DefinitionError(where, f"branch workflow {child.workflow_id!r} holds a parallel block itself")
    if child.initial_clock != "running":
        raise DefinitionError(
            where, f"branch workflow {child.workflow_id!r} must start with its clock running"
        )
    # The applicant's withdrawal of the parent ends every open branch (system withdraw).
    for state in child.states:
        if state in child.terminal_states:
            continue
        if not any(
            t.source == state and t.action == WITHDRAW_ACTION and t.actor == "system"
            and t.target in child.terminal_states
            for t in child.transitions
        ):
            raise DefinitionError(
                where,
                f"branch workflow {child.workflow_id!r} has no system {WITHDRAW_ACTION!r} "
                f"from state {state!r}",
            )
