"""A case as a process: its state, its clock and, for a joint case, its branches — advanced one action
at a time.

``advance`` is the one way a case moves, single or joint: it checks the action with
``workflow.machine.apply`` (state, actor, role, once-per-step, opinion), applies the transition's clock
effect to the case's ``ClockFacts`` (workflow/clock.py computes every deadline from them), and for a
joint case does what the action triggers, in order, each recorded as a ``Move``:

* acceptance opens one branch per entry of the parallel block (Administrative Licensing Law Art. 26:
  一口收件、分送相关、同步预审、限时办结); every branch counts from the parent's acceptance;
* when no open branch can still ask for materials and one or more did, the parent issues ONE merged
  supplement notice (Art. 32, 一次性告知) and every clock stops until the applicant supplements;
* when every branch has ended the parent joins exactly once — all granted → granted, any denied →
  denied with every denying department's reasons;
* the applicant's withdrawal of the parent withdraws every open branch.

Clock actions, for any definition: ``extend`` (Art. 42: once, by the law's extension for the handling,
with the approver's reason), ``start_special_procedure`` / ``end_special_procedure`` (Art. 45: hearing,
testing, expert review... are not counted; the applicant is told their declared length). While a
branch has a special procedure open its parent's clock stops too, so no branch's deadline passes its
parent's.

Pure: no I/O; the hub stores what comes back (one event per Move, the new clock facts per row).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from workflow.calendar import WorkingCalendar
from workflow.clock import (
    LAW_LIMITS,
    LEGAL_BASIS_EXTENSION,
    LEGAL_BASIS_NOTICE,
    LEGAL_BASIS_SPECIAL,
    SPECIAL_PROCEDURES,
    SUPPLEMENT,
    ClockFacts,
    Handling,
    Suspension,
)
from workflow.definition import (
    REQUEST_SUPPLEMENT_ACTION,
    SUPPLEMENT_ACTION,
    WITHDRAW_ACTION,
    ParallelBlock,
    Transition,
    WorkflowDefinition,
)
from workflow.errors import (
    ActionNotAvailable,
    ActorNotAllowed,
    ClockError,
    OpinionRequired,
    RoleNotAllowed,
    UnknownBranch,
)
from workflow.machine import apply
from workflow.registry import get_definition

__all__ = [
    "CLOCK_ACTIONS",
    "CLOCK_ACTION_LABELS",
    "CLOCK_ACTION_ROLES",
    "Move",
    "Outcome",
    "Process",
    "advance",
    "available_actions",
    "handling_of",
    "start",
]

EXTEND = "extend"
START_SPECIAL = "start_special_procedure"
END_SPECIAL = "end_special_procedure"
# Actions on the clock that every definition accepts; they never change the state.
CLOCK_ACTIONS: frozenset[str] = frozenset({EXTEND, START_SPECIAL, END_SPECIAL})
CLOCK_ACTION_LABELS: Mapping[str, str] = {
    EXTEND: "延长办理期限",
    START_SPECIAL: "启动特别程序",
    END_SPECIAL: "结束特别程序",
}
# Art. 42: the extension is the agency head's (approver's) decision; Art. 45 procedures are arranged by
# the reviewer or the approver.
CLOCK_ACTION_ROLES: Mapping[str, frozenset[str]] = {
    EXTEND: frozenset({"approver"}),
    START_SPECIAL: frozenset({"reviewer", "approver"}),
    END_SPECIAL: frozenset({"reviewer", "approver"}),
}
CALLER_ACTORS = frozenset({"officer", "applicant"})
SYSTEM = "system"


@dataclass(frozen=True)
class Process:
    """Where a case stands: state, clock facts, once-per-step actions taken and, for a joint parent,
    its branches (branch name → the branch's own process)."""

    workflow_id: str
    state: str
    clock: ClockFacts
    taken: frozenset[tuple[str, str]] = frozenset()
    branches: Mapping[str, Process] = field(default_factory=dict)
    result: str | None = None  # "granted" / "denied" / the terminal state reached otherwise
    # What the case's latest request or refusal said: a branch's pending supplement request (for the
    # merged notice) or its denial reasons (for the join). The hub fills it from the branch's events.
    note: str | None = None

    @property
    def definition(self) -> WorkflowDefinition:
        return get_definition(self.workflow_id)

    @property
    def is_terminal(self) -> bool:
        return self.definition.is_terminal(self.state)

    def to_json(self) -> dict[str, Any]:
        clock = self.clock
        return {
            "workflow_id": self.workflow_id,
            "state": self.state,
            "clock": {
                "statutory_limit_days": clock.statutory_limit_days,
                "promised_limit_days": clock.promised_limit_days,
                "accepted_on": _iso(clock.accepted_on),
                "extension_days": clock.extension_days,
                "suspensions": [s.to_json() for s in clock.suspensions],
                "stopped_on": _iso(clock.stopped_on),
            },
            "taken": sorted([step, action] for step, action in self.taken),
            "branches": {name: branch.to_json() for name, branch in self.branches.items()},
            "result": self.result,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Process:
        clock = data["clock"]
        return cls(
            workflow_id=data["workflow_id"],
            state=data["state"],
            clock=ClockFacts(
                statutory_limit_days=clock["statutory_limit_days"],
                promised_limit_days=clock["promised_limit_days"],
                accepted_on=_day(clock.get("accepted_on")),
                extension_days=clock.get("extension_days", 0),
                suspensions=tuple(Suspension.from_json(s) for s in clock.get("suspensions", ())),
                stopped_on=_day(clock.get("stopped_on")),
            ),
            taken=frozenset((step, action) for step, action in data.get("taken", ())),
            branches={name: cls.from_json(b) for name, b in (data.get("branches") or {}).items()},
            result=data.get("result"),
            note=data.get("note"),
        )


@dataclass(frozen=True)
class Move:
    """One recorded step: the hub appends one event per Move to the case it names (``branch`` None:
    the parent or single case)."""

    branch: str | None
    action: str
    step: str | None
    from_state: str
    to_state: str
    actor: str  # "officer" | "applicant" | "system"
    opinion: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    process: Process
    moves: tuple[Move, ...]  # the action itself, then what it triggered (notice, join, cascade...)
    opened: tuple[str, ...] = ()  # branches opened by this action: the hub creates their child cases
    joined: str | None = None  # "granted" / "denied" when the join fired in this action
    notice: Mapping[str, str] | None = None  # merged supplement notice: branch -> its request


def handling_of(definition: WorkflowDefinition) -> Handling:
    """"joint" for a parallel definition or a branch's (their limits are Art. 42's joint ones)."""
    return "joint" if definition.parallel is not None or definition.initial_clock == "running" else "single"


def start(workflow_id: str, *, statutory_limit_days: int, promised_limit_days: int) -> Process:
    """A new case of ``workflow_id`` before intake; the limits are capped by the law's (Art. 42:
    20 working days, 45 for joint handling) and the promise by the statutory limit."""
    definition = get_definition(workflow_id)
    if definition.initial_clock != "idle":
        raise ValueError(f"{workflow_id} is a branch workflow: its cases are opened by the parent's acceptance")
    statutory = min(statutory_limit_days, LAW_LIMITS[handling_of(definition)][0])
    clock = ClockFacts(statutory_limit_days=statutory, promised_limit_days=min(promised_limit_days, statutory))
    return Process(workflow_id=workflow_id, state=definition.initial_state, clock=clock)


def advance(
    process: Process,
    action: str,
    *,
    actor: str,
    roles: Collection[str] = (),
    opinion: str | None = None,
    today: date,
    calendar: WorkingCalendar,
    branch: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> Outcome:
    """Take ``action`` on the case (``branch`` None) or on one of its branches; raises the workflow
    errors (ActionNotAvailable, RoleNotAllowed, OncePerStep, OpinionRequired, ClockError...)."""
    if actor not in CALLER_ACTORS:
        # System actions are the engine's own; a caller asking for one is a bug, not a refusal.
        raise ValueError(f"actor must be one of {sorted(CALLER_ACTORS)}, got {actor!r}")
    run = _Run(process, today, calendar)
    request = _Request(action, actor, frozenset(roles), _clean(opinion), dict(data or {}))
    if branch is None:
        run.act_on_parent(request)
    else:
        run.act_on_branch(branch, request)
    return Outcome(
        process=run.process, moves=tuple(run.moves), opened=tuple(run.opened), joined=run.joined,
        notice=run.notice,
    )


def available_actions(
    process: Process, *, actor: str, roles: Collection[str] = (), branch: str | None = None
) -> list[str]:
    """The actions ``advance`` would take from this actor now (given a required opinion and valid
    ``data``), sorted: the definition's transitions and the clock actions, for the case or a branch."""
    target = process
    if branch is not None:
        block = process.definition.parallel
        if block is None or branch not in process.branches:
            raise UnknownBranch(branch)
        target = process.branches[branch]
        if process.state != block.state:
            return []
    definition = target.definition
    if definition.is_terminal(target.state):
        return []
    roles = frozenset(roles)
    joint_parent = branch is None and bool(_open_branches(process))
    special = None if joint_parent else _open_special(target.clock)
    actions = {
        t.action for t in definition.available_actions(target.state, actor, taken=target.taken)
        if actor != "officer" or not t.roles.isdisjoint(roles)
    }
    if special is not None:
        actions &= {WITHDRAW_ACTION} if actor == "applicant" else set()
    if actor == "officer":
        actions |= _clock_actions(target.clock, roles, special=special, joint_parent=joint_parent)
    return sorted(actions)


def _clock_actions(
    clock: ClockFacts, roles: frozenset[str], *, special: Suspension | None, joint_parent: bool
) -> set[str]:
    if clock.accepted_on is None or clock.stopped_on is not None:
        return set()
    allowed = {action for action, needed in CLOCK_ACTION_ROLES.items() if not needed.isdisjoint(roles)}
    if special is not None:
        return allowed & {END_SPECIAL}
    possible = set()
    if not clock.extension_days:
        possible.add(EXTEND)
    if not joint_parent and clock.open_suspension is None:
        possible.add(START_SPECIAL)
    return allowed & possible


# --- internals -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    action: str
    actor: str
    roles: frozenset[str]
    opinion: str | None
    data: dict[str, Any]


class _Run:
    """One call of ``advance``: the process as it changes and the moves recorded so far."""

    def __init__(self, process: Process, today: date, calendar: WorkingCalendar) -> None:
        self.process = process
        self.today = today
        self.calendar = calendar
        self.moves: list[Move] = []
        self.opened: list[str] = []
        self.joined: str | None = None
        self.notice: dict[str, str] | None = None

    # --- the parent or single case -------------------------------------------------------------

    def act_on_parent(self, request: _Request) -> None:
        parent = self.process
        definition = parent.definition
        block = definition.parallel
        branches_open = block is not None and bool(_open_branches(parent))
        if request.action in CLOCK_ACTIONS:
            if branches_open and request.action != EXTEND:
                # The departments run their own procedures on their branches; the parent's clock
                # follows them (see _start_special_on_branch).
                _check_officer(parent, definition, request)
                raise ClockError(
                    "并联审批期间，特别程序由各部门在其分支办理", rule="branches_open", legal_basis=LEGAL_BASIS_SPECIAL
                )
            self.process = self._clock_action(
                None, parent, definition, request, handling_of(definition), guard=not branches_open
            )
            return
        if not branches_open:
            # An open special procedure of a joint parent is its branches', not its own.
            _guard_special(parent, request)
        transition = apply(
            definition, parent.state, request.action, actor=request.actor, roles=request.roles,
            opinion=request.opinion, taken=parent.taken,
        )
        parent = self._take(None, parent, definition, transition, request.actor, request.opinion, request.data)
        self.process = parent
        if block is not None:
            self._after_parent_transition(block, transition)
            self._check_joint(block)

    def _after_parent_transition(self, block: ParallelBlock, transition: Transition) -> None:
        definition = self.process.definition
        notify = definition.transition_for(block.state, block.notify_supplement)
        if transition.target == block.state and not self.process.branches:
            self._open_branches(block)
        elif transition.source == notify.target and transition.target == block.state:
            self._resume_branches(block)
        elif transition.target in definition.terminal_states:
            self._withdraw_branches()

    def _open_branches(self, block: ParallelBlock) -> None:
        parent = self.process
        accepted = parent.clock.accepted_on
        branches: dict[str, Process] = {}
        for spec in block.branches:
            child_definition = get_definition(spec.workflow_id)
            # Every branch counts from the parent's acceptance, within the parent's limits.
            clock = ClockFacts(
                statutory_limit_days=parent.clock.statutory_limit_days,
                promised_limit_days=min(spec.time_allocation_days, parent.clock.promised_limit_days),
                accepted_on=accepted,
            )
            branches[spec.name] = Process(spec.workflow_id, child_definition.initial_state, clock)
            self.opened.append(spec.name)
        self.process = replace(parent, branches=branches)

    def _resume_branches(self, block: ParallelBlock) -> None:
        """The applicant supplemented: every branch's clock runs again, the branches that asked go
        back to pre-review (once per step: they cannot ask again), and the parent's clock stops again
        at once if a branch is still in a special procedure."""
        for name, child in _open_branches(self.process).items():
            definition = child.definition
            before = self._deadlines(child.clock)
            clock = child.clock
            open_suspension = clock.open_suspension
            if open_suspension is not None and open_suspension.kind == SUPPLEMENT:
                clock = clock.resume(self.today)
            if _is_waiting(child):
                transition = definition.transition_for(child.state, SUPPLEMENT_ACTION)
                moved = replace(child, clock=clock, note=None)
                self._set_branch(name, replace(moved, state=transition.target))
                self.moves.append(Move(
                    name, SUPPLEMENT_ACTION, transition.step, child.state, transition.target, SYSTEM, None,
                    self._clock_data(before, clock),
                ))
            elif clock != child.clock:
                self._set_branch(name, replace(child, clock=clock))
                self.moves.append(Move(
                    name, SUPPLEMENT_ACTION, None, child.state, child.state, SYSTEM, None,
                    self._clock_data(before, clock),
                ))
        in_procedure = [
            (name, special) for name, child in _open_branches(self.process).items()
            if (special := _open_special(child.clock)) is not None
        ]
        if in_procedure:
            self._suspend_parent_for(block, *in_procedure[0])

    def _withdraw_branches(self) -> None:
        for name, child in _open_branches(self.process).items():
            definition = child.definition
            transition = definition.transition_for(child.state, WITHDRAW_ACTION)
            self._set_branch(name, self._take(name, child, definition, transition, SYSTEM, None, {}))

    # --- a branch ------------------------------------------------------------------------------

    def act_on_branch(self, name: str, request: _Request) -> None:
        parent = self.process
        parent_definition = parent.definition
        block = parent_definition.parallel
        if block is None or name not in parent.branches:
            raise UnknownBranch(name)
        child = parent.branches[name]
        definition = child.definition
        label = CLOCK_ACTION_LABELS.get(request.action) or definition.action_label(request.action)
        if definition.is_terminal(child.state):
            raise ActionNotAvailable(
                child.state, request.action, state_label=definition.states[child.state], action_label=label
            )
        if parent.state != block.state:
            # Waiting for the applicant's supplement (every clock stopped) or already joined.
            raise ActionNotAvailable(
                parent.state, request.action, state_label=parent_definition.states[parent.state],
                action_label=label,
            )
        if request.action in CLOCK_ACTIONS:
            updated = self._clock_action(name, child, definition, request, "joint", guard=True)
            self._set_branch(name, updated)
            self._follow_branch_clock(block, name, child, updated)
        else:
            _guard_special(child, request)
            transition = apply(
                definition, child.state, request.action, actor=request.actor, roles=request.roles,
                opinion=request.opinion, taken=child.taken,
            )
            self._set_branch(
                name, self._take(name, child, definition, transition, request.actor, request.opinion, request.data)
            )
        self._check_joint(block)

    def _follow_branch_clock(self, block: ParallelBlock, name: str, before: Process, after: Process) -> None:
        """The parent's clock after a branch's clock action: extended with it (a branch never outlasts
        the joint case), stopped while any branch has a special procedure open."""
        parent = self.process
        if after.clock.extension_days and not parent.clock.extension_days:
            old = self._deadlines(parent.clock)
            clock = parent.clock.extend(after.clock.extension_days)
            self.process = replace(parent, clock=clock)
            self.moves.append(Move(
                None, EXTEND, None, parent.state, parent.state, SYSTEM, None,
                {"branch": name, "days": after.clock.extension_days, "legal_basis": LEGAL_BASIS_EXTENSION,
                 **self._clock_data(old, clock)},
            ))
        started = _open_special(after.clock)
        if started is not None and _open_special(before.clock) is None:
            self._suspend_parent_for(block, name, started)
        elif started is None and _open_special(before.clock) is not None:
            self._resume_parent_after(name)

    def _suspend_parent_for(self, block: ParallelBlock, name: str, special: Suspension) -> None:
        parent = self.process
        if parent.clock.open_suspension is not None:
            return  # stopped already, by another branch's procedure
        label = block.branch(name).label
        old = self._deadlines(parent.clock)
        clock = parent.clock.suspend(Suspension(
            special.kind, self.today, reason=f"{label}：{special.reason}", declared_days=special.declared_days,
        ))
        self.process = replace(parent, clock=clock)
        self.moves.append(Move(
            None, START_SPECIAL, None, parent.state, parent.state, SYSTEM, None,
            {"branch": name, "kind": special.kind, "declared_days": special.declared_days,
             "legal_basis": LEGAL_BASIS_SPECIAL, **self._clock_data(old, clock)},
        ))

    def _resume_parent_after(self, name: str) -> None:
        parent = self.process
        if any(_open_special(child.clock) for child in _open_branches(parent).values()):
            return  # another branch's procedure still runs
        # The parent's open suspension is its branches' procedure: branches cannot act while the
        # parent waits for a supplement.
        current = parent.clock.open_suspension
        if current is None:
            return
        old = self._deadlines(parent.clock)
        clock = parent.clock.resume(self.today)
        self.process = replace(parent, clock=clock)
        self.moves.append(Move(
            None, END_SPECIAL, None, parent.state, parent.state, SYSTEM, None,
            {"branch": name, "kind": current.kind, "legal_basis": LEGAL_BASIS_SPECIAL,
             **self._clock_data(old, clock)},
        ))

    # --- what a joint case does by itself ------------------------------------------------------

    def _check_joint(self, block: ParallelBlock) -> None:
        parent = self.process
        if parent.state != block.state or not parent.branches:
            return
        branches = parent.branches
        if all(child.is_terminal for child in branches.values()):
            self._join(block)
            return
        open_branches = _open_branches(parent)
        waiting = [name for name, child in open_branches.items() if _is_waiting(child)]
        if waiting and not any(_may_ask(child) for child in open_branches.values()):
            self._notify(block, waiting)

    def _join(self, block: ParallelBlock) -> None:
        """Every branch has ended: the parent's one join (it leaves the parallel state, so it cannot
        fire again)."""
        parent = self.process
        results = {name: child.result for name, child in parent.branches.items()}
        denials = {
            name: parent.branches[name].note or "" for name, result in results.items() if result != "granted"
        }
        if denials:
            action, joined = block.join_denied, "denied"
            opinion = "；".join(f"{block.branch(name).label}：{reason}" for name, reason in denials.items())
        else:
            action, joined = block.join_granted, "granted"
            opinion = "各部门均准予许可"
        definition = parent.definition
        transition = definition.transition_for(parent.state, action)
        data: dict[str, Any] = {"results": results}
        if denials:
            data["reasons"] = denials
        self.process = self._take(None, parent, definition, transition, SYSTEM, opinion, data)
        self.process = replace(self.process, result=joined)
        self.joined = joined

    def _notify(self, block: ParallelBlock, waiting: list[str]) -> None:
        """One merged notice (Art. 32) with every department's request; every clock stops."""
        parent = self.process
        notice = {name: parent.branches[name].note or "" for name in waiting}
        opinion = "；".join(f"{block.branch(name).label}：{request}" for name, request in notice.items())
        definition = parent.definition
        transition = definition.transition_for(parent.state, block.notify_supplement)
        self.process = self._take(
            None, parent, definition, transition, SYSTEM, opinion, {"kind": SUPPLEMENT, "notice": notice},
        )
        for name, child in _open_branches(self.process).items():
            if child.clock.open_suspension is not None:
                continue  # in a special procedure: its clock is stopped already
            old = self._deadlines(child.clock)
            clock = child.clock.suspend(Suspension(SUPPLEMENT, self.today, reason=opinion))
            self._set_branch(name, replace(child, clock=clock))
            self.moves.append(Move(
                name, block.notify_supplement, None, child.state, child.state, SYSTEM, None,
                {"kind": SUPPLEMENT, "legal_basis": LEGAL_BASIS_NOTICE, **self._clock_data(old, clock)},
            ))
        self.notice = notice

    # --- one transition or clock action on one process -----------------------------------------

    def _take(
        self, branch: str | None, process: Process, definition: WorkflowDefinition, transition: Transition,
        actor: str, opinion: str | None, data: Mapping[str, Any],
    ) -> Process:
        old = self._deadlines(process.clock)
        clock = self._clock_effect(process.clock, transition, opinion, data)
        taken = process.taken | {(transition.step, transition.action)} if transition.once_per_step else process.taken
        result = process.result
        if transition.action in _DECISIONS:
            result = _DECISIONS[transition.action]
        if transition.target in definition.terminal_states:
            result = result or transition.target
        note = process.note
        if transition.action in _NOTED:
            note = opinion
        elif transition.action == SUPPLEMENT_ACTION:
            note = None
        recorded = dict(data)
        if clock != process.clock:
            recorded.update(self._clock_data(old, clock))
        self.moves.append(Move(
            branch, transition.action, transition.step, process.state, transition.target, actor, opinion, recorded,
        ))
        return replace(process, state=transition.target, clock=clock, taken=taken, result=result, note=note)

    def _clock_effect(
        self, clock: ClockFacts, transition: Transition, opinion: str | None, data: Mapping[str, Any]
    ) -> ClockFacts:
        today = self.today
        if transition.clock == "start":
            return clock.accept(_accepted_on(data, today))
        if transition.clock == "suspend":
            if clock.open_suspension is not None:
                # The merged notice while a branch's special procedure holds the parent's clock: one
                # suspension ends where the next begins, so no day is counted twice.
                clock = clock.resume(today)
            return clock.suspend(Suspension(SUPPLEMENT, today, reason=opinion or ""))
        if transition.clock == "resume":
            return clock.resume(today) if clock.open_suspension is not None else clock
        if transition.clock == "stop":
            return clock.stop(today)
        return clock

    def _clock_action(
        self, branch: str | None, process: Process, definition: WorkflowDefinition, request: _Request,
        handling: Handling, *, guard: bool,
    ) -> Process:
        """``guard``: refuse while the process's own special procedure is open (a joint parent's
        open procedure is its branches')."""
        action = request.action
        _check_officer(process, definition, request)
        clock = process.clock
        if definition.is_terminal(process.state) or clock.stopped_on is not None:
            raise ClockError("办件已经办结，办理期限不再计算", rule="clock_stopped")
        if clock.accepted_on is None:
            raise ClockError("办件尚未受理，办理期限尚未起算", rule="clock_not_started")
        if guard:
            _guard_special(process, request)
        old = self._deadlines(clock)
        if action == EXTEND:
            clock, data = self._extend(clock, request, handling)
        elif action == START_SPECIAL:
            clock, data = self._start_special(clock, request)
        else:
            clock, data = self._end_special(clock, request)
        self.moves.append(Move(
            branch, action, None, process.state, process.state, request.actor, request.opinion,
            {**data, **self._clock_data(old, clock)},
        ))
        return replace(process, clock=clock)

    def _extend(self, clock: ClockFacts, request: _Request, handling: Handling) -> tuple[ClockFacts, dict[str, Any]]:
        if clock.extension_days:
            raise ClockError(
                "办理期限已经延长过一次，不能再次延长", rule="already_extended", legal_basis=LEGAL_BASIS_EXTENSION
            )
        _require_opinion(request)
        days = LAW_LIMITS[handling][1]
        return clock.extend(days), {"days": days, "legal_basis": LEGAL_BASIS_EXTENSION}

    def _start_special(self, clock: ClockFacts, request: _Request) -> tuple[ClockFacts, dict[str, Any]]:
        if clock.open_suspension is not None:
            raise ClockError("办理期限暂停计算期间不能启动特别程序", rule="clock_suspended")
        reason = _require_opinion(request)
        kind = request.data.get("kind")
        if not isinstance(kind, str) or kind not in SPECIAL_PROCEDURES:
            names = "、".join(SPECIAL_PROCEDURES.values())
            raise ClockError(
                f"特别程序种类「{kind}」无效，只能是{names}之一", rule="unknown_kind", field="data.kind",
                legal_basis=LEGAL_BASIS_SPECIAL,
            )
        declared = request.data.get("declared_days")
        if not isinstance(declared, int) or isinstance(declared, bool) or declared <= 0:
            raise ClockError(
                f"须书面告知申请人特别程序所需时间：declared_days 应为正整数（工作日），收到「{declared}」",
                rule="declared_days", field="data.declared_days", legal_basis=LEGAL_BASIS_SPECIAL,
            )
        suspension = Suspension(kind, self.today, reason=reason, declared_days=declared)
        return clock.suspend(suspension), {
            "kind": kind, "kind_label": SPECIAL_PROCEDURES[kind], "declared_days": declared,
            "legal_basis": LEGAL_BASIS_SPECIAL,
        }

    def _end_special(self, clock: ClockFacts, request: _Request) -> tuple[ClockFacts, dict[str, Any]]:
        current = _open_special(clock)
        if current is None:
            raise ClockError("没有进行中的特别程序", rule="no_special_procedure", legal_basis=LEGAL_BASIS_SPECIAL)
        result = request.data.get("result")
        if not isinstance(result, str) or not result.strip():
            raise ClockError(
                "结束特别程序须填写特别程序结果（data.result）", rule="result_required", field="data.result",
                legal_basis=LEGAL_BASIS_SPECIAL,
            )
        return clock.resume(self.today), {
            "kind": current.kind, "kind_label": SPECIAL_PROCEDURES[current.kind], "result": result.strip(),
            "started_on": current.started_on.isoformat(),
            "days_suspended": self.calendar.working_days_between(current.started_on, self.today),
            "legal_basis": LEGAL_BASIS_SPECIAL,
        }

    # --- helpers ---------------------------------------------------------------------------------

    def _set_branch(self, name: str, child: Process) -> None:
        branches = dict(self.process.branches)
        branches[name] = child
        self.process = replace(self.process, branches=branches)

    def _deadlines(self, clock: ClockFacts) -> dict[str, str | None]:
        return {
            "statutory_deadline": _iso(clock.statutory_deadline(self.calendar, self.today)),
            "promised_deadline": _iso(clock.promised_deadline(self.calendar, self.today)),
        }

    def _clock_data(self, old: dict[str, str | None], clock: ClockFacts) -> dict[str, Any]:
        # Every clock change records the deadlines before and after it.
        return {"old": old, "new": self._deadlines(clock)}


# Actions whose opinion decides the case, and those whose opinion the case keeps as its note.
_DECISIONS: Mapping[str, str] = {"grant": "granted", "deny": "denied"}
_NOTED = frozenset({REQUEST_SUPPLEMENT_ACTION, "deny"})


def _check_officer(process: Process, definition: WorkflowDefinition, request: _Request) -> None:
    """A clock action is an officer's, of the roles CLOCK_ACTION_ROLES names."""
    label = CLOCK_ACTION_LABELS[request.action]
    if request.actor != "officer":
        raise ActorNotAllowed(
            process.state, request.action, request.actor, state_label=definition.states[process.state],
            action_label=label,
        )
    required = CLOCK_ACTION_ROLES[request.action]
    if required.isdisjoint(request.roles):
        raise RoleNotAllowed(request.action, required, action_label=label)


def _require_opinion(request: _Request) -> str:
    """The reason a clock action must be recorded with (Art. 42, Art. 45); already stripped."""
    if request.opinion is None:
        raise OpinionRequired(request.action, action_label=CLOCK_ACTION_LABELS[request.action])
    return request.opinion


def _guard_special(process: Process, request: _Request) -> None:
    """Art. 45: while a special procedure runs the case waits for it — only its end, or the
    applicant's withdrawal, may happen."""
    special = _open_special(process.clock)
    if special is None or request.action == END_SPECIAL:
        return
    if request.actor == "applicant" and request.action == WITHDRAW_ACTION:
        return
    raise ClockError(
        f"特别程序（{SPECIAL_PROCEDURES[special.kind]}）进行中，只能结束特别程序或由申请人撤回申请",
        rule="special_procedure_open", legal_basis=LEGAL_BASIS_SPECIAL,
    )


def _open_special(clock: ClockFacts) -> Suspension | None:
    current = clock.open_suspension
    return current if current is not None and current.kind != SUPPLEMENT else None


def _open_branches(process: Process) -> dict[str, Process]:
    return {name: child for name, child in process.branches.items() if not child.is_terminal}


def _is_waiting(child: Process) -> bool:
    """The branch asked for materials and waits for the merged notice's answer."""
    return any(
        t.source == child.state and t.action == SUPPLEMENT_ACTION and t.actor == SYSTEM
        for t in child.definition.transitions
    )


def _may_ask(child: Process) -> bool:
    """The branch can still ask for materials in its current step (its pre-review, once)."""
    return any(
        t.source == child.state and t.action == REQUEST_SUPPLEMENT_ACTION and not t.used_up(child.taken)
        for t in child.definition.transitions
    )


def _accepted_on(data: Mapping[str, Any], today: date) -> date:
    """The acceptance day: today, or the day the materials were received when the hub says so
    (Art. 32: a notice not given within 5 working days → accepted on the day of receipt)."""
    given = data.get("accepted_on")
    if given is None:
        return today
    try:
        day = given if isinstance(given, date) else date.fromisoformat(given)
    except (TypeError, ValueError):
        day = None
    if day is None or day > today:
        raise ClockError(
            f"受理日期「{given}」无效：应为不晚于今天的日期", rule="accepted_on", field="data.accepted_on",
            legal_basis=LEGAL_BASIS_NOTICE,
        )
    return day


def _clean(opinion: str | None) -> str | None:
    return opinion.strip() or None if opinion else None


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None
