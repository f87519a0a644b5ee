"""Edges of the engine's building blocks, pinned exactly: definition errors' pointers and messages, the
refusals' attributes and texts, the calendar at a year's end, and step allocation without weights.

Each test fixes a boundary or a message a person or the hub reads; loaded with ``load_definition``
directly (not through the registry's cache) so that every check runs."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date, datetime
from importlib import resources
from typing import Any

import pytest

from workflow.calendar import WorkingCalendar
from workflow.definition import DefinitionError, ParallelBlock, load_definition, standard_definition
from workflow.errors import (
    ActorNotAllowed,
    OncePerStep,
    OpinionRequired,
    RoleNotAllowed,
    UnknownState,
)
from workflow.machine import apply
from workflow.registry import UnknownDefinition, get_definition
from workflow.timelimits import allocate_step_deadlines, compute_intake_deadline, extend_for_suspension

Document = dict[str, Any]
CALENDAR = WorkingCalendar()
WHOLE_DAY = "must be a datetime.date (whole day), got"


def _document(name: str) -> Document:
    text = resources.files("workflow.definitions").joinpath(f"{name}.json").read_text("utf-8")
    return json.loads(text)


def _standard() -> Document:
    return copy.deepcopy(_document("standard.v1"))


def _index(document: Document, source: str, action: str) -> int:
    for index, transition in enumerate(document["transitions"]):
        if (transition["source"], transition["action"]) == (source, action):
            return index
    raise AssertionError(f"no {action} from {source}")


def _error(document: Document) -> tuple[str, str, str]:
    with pytest.raises(DefinitionError) as raised:
        load_definition(document, resolve=get_definition)
    return raised.value.path, raised.value.message, str(raised.value)


# --- definition errors: pointer and message ----------------------------------------------------


def test_definition_error_text_names_the_pointer_or_the_root() -> None:
    assert str(DefinitionError("", "broken")) == "/: broken"
    assert str(DefinitionError("/states/x", "broken")) == "/states/x: broken"


def test_schema_errors_carry_the_validators_message() -> None:
    document = _standard()
    document["initial_clock"] = "paused"
    assert _error(document)[:2] == ("/initial_clock", "'paused' is not one of ['idle', 'running']")


def test_missing_keys_point_at_the_first_missing_one() -> None:
    document = _standard()
    del document["steps"][0]["name"]
    del document["steps"][0]["label"]
    assert _error(document)[0] == "/steps/0/name"


def test_unexpected_keys_point_at_the_first_one_escaped() -> None:
    document = _standard()
    document["a/b~c"] = 1
    document["zz"] = 2
    assert _error(document)[0] == "/a~1b~0c"


@pytest.mark.parametrize(
    ("field", "value"),
    [("actor", {"officer": 1}), ("label", {"a": 1})],
)
def test_a_wrong_type_points_at_the_field_not_into_it(field: str, value: object) -> None:
    document = _standard()
    document["transitions"][0][field] = value
    assert _error(document)[0] == f"/transitions/0/{field}"


@pytest.mark.parametrize(
    ("edit", "pointer", "message"),
    [
        (lambda d: d.update(initial_state="nowhere"), "/initial_state", "initial state 'nowhere' is not declared"),
        (lambda d: d.update(initial_state="completed"), "/initial_state", "the initial state cannot be terminal"),
        (lambda d: d["steps"].append(dict(d["steps"][0])), "/steps/4/name", "duplicate step 'intake'"),
        (lambda d: d["transitions"][0].update(source="nowhere"), "/transitions/0/source",
         "source state 'nowhere' is not declared in /states"),
        (lambda d: d["transitions"][0].update(target="nowhere"), "/transitions/0/target",
         "target state 'nowhere' is not declared in /states"),
        (lambda d: d["transitions"][9].update(source="completed"), "/transitions/9/source",
         "terminal state 'completed' cannot have transitions"),
        (lambda d: d["transitions"][1].update(clock="none"), "/transitions/1/clock",
         "a transition into a terminal state must stop the clock"),
        (lambda d: d["transitions"][0].update(step="nowhere"), "/transitions/0/step",
         "step 'nowhere' is not declared in /steps"),
        (lambda d: d["transitions"][0].update(roles=[]), "/transitions/0/roles",
         "an officer action must list the roles allowed to take it"),
        (lambda d: d["transitions"][3].update(roles=["intake"]), "/transitions/3/roles",
         "an applicant action takes no officer roles"),
        (lambda d: d["transitions"].append(dict(d["transitions"][0])), "/transitions/16/action",
         "action 'accept' from 'submitted' is already defined at /transitions/0"),
        (lambda d: d["transitions"].append(dict(d["transitions"][6], source="under_review", target="denied",
                                                 action="deny", label="驳回")),
         "/transitions/16/label", "action 'deny' is labelled '不予批准' elsewhere"),
    ],
)
def test_semantic_errors_point_and_explain(edit: Callable[[Document], object], pointer: str, message: str) -> None:
    document = _standard()
    edit(document)
    path, text, full = _error(document)
    assert (path, text) == (pointer, message)
    assert full == f"{pointer}: {message}"


def test_duplicate_action_names_the_first_definition() -> None:
    document = _standard()
    document["transitions"].append(dict(document["transitions"][7]))
    assert _error(document)[1] == "action 'grant' from 'pending_decision' is already defined at /transitions/7"


def test_unreachable_and_dead_end_states() -> None:
    document = _standard()
    document["states"]["limbo"] = {"label": "悬置"}
    assert _error(document)[:2] == ("/states/limbo", "state 'limbo' is not reachable from the initial state")
    document = _standard()
    document["states"]["limbo"] = {"label": "悬置"}
    document["transitions"].append({"action": "park", "label": "挂起", "source": "pending_decision",
                                    "target": "limbo", "step": "decision", "roles": ["approver"], "clock": "none"})
    assert _error(document)[:2] == (
        "/states/limbo", "non-terminal state 'limbo' has no way out; mark it terminal or add a way out"
    )


def test_impossible_and_ambiguous_clocks() -> None:
    document = _standard()
    document["transitions"][_index(document, "under_review", "request_supplement")]["clock"] = "resume"
    index = _index(document, "under_review", "request_supplement")
    assert _error(document)[:2] == (
        f"/transitions/{index}/clock", "cannot resume the clock: it is running in 'under_review'"
    )
    document = _standard()
    # A second way into pending_decision that leaves the clock suspended.
    document["transitions"].append({"action": "fast_track", "label": "快速通道", "source": "review_supplement",
                                    "target": "pending_decision", "step": "review", "roles": ["reviewer"],
                                    "clock": "none"})
    assert _error(document)[:2] == (
        "/transitions/16/clock", "state 'pending_decision' would have the clock both running and suspended"
    )


def test_terminal_states_default_to_open() -> None:
    definition = load_definition(_standard())
    assert definition.terminal_states == {"completed", "intake_refused", "withdrawn"}
    assert hash(definition) == hash(("standard", 1))


def test_lookups_name_what_is_missing() -> None:
    definition = standard_definition()
    with pytest.raises(KeyError) as step:
        definition.step("nowhere")
    assert step.value.args == ("workflow standard v1 has no step 'nowhere'",)
    with pytest.raises(UnknownState) as state:
        definition.transition_for("nowhere", "accept")
    assert (state.value.state, str(state.value)) == ("nowhere", "流程中没有状态「nowhere」")
    block = get_definition("enterprise-establishment.v1").parallel
    assert isinstance(block, ParallelBlock)
    with pytest.raises(KeyError) as branch:
        block.branch("bank")
    assert branch.value.args == ("bank",)
    with pytest.raises(UnknownDefinition) as unknown:
        get_definition("nope.v1")
    assert unknown.value.args == ("nope.v1",)


def test_parallel_block_builds_tuples() -> None:
    definition = load_definition(_document("enterprise-establishment.v1"), resolve=get_definition)
    assert definition.parallel is not None
    assert all(isinstance(b.form_part, tuple) for b in definition.parallel.branches)
    assert definition.parallel.branches[1].form_part == (
        "enterprise_name", "domicile", "legal_representative", "seal_engraving"
    )


def test_branch_withdraw_check_skips_terminal_states_wherever_they_are_listed() -> None:
    branch = copy.deepcopy(_document("joint-branch.v1"))
    # Terminal states first: the check must go on past them to the open ones.
    states = branch["states"]
    branch["states"] = {name: states[name] for name in ("granted", "denied", "withdrawn", "pre_review",
                                                        "awaiting_supplement", "under_review", "pending_decision")}
    del branch["transitions"][_index(branch, "under_review", "withdraw")]
    child = load_definition(branch)
    with pytest.raises(DefinitionError) as raised:
        load_definition(_document("enterprise-establishment.v1"), resolve=lambda _: child)
    assert raised.value.message == (
        "branch workflow 'joint-branch.v1' has no system 'withdraw' from state 'under_review'"
    )


# --- refusals: attributes and texts --------------------------------------------------------------


def test_machine_refusals_carry_the_labels() -> None:
    definition = standard_definition()
    with pytest.raises(ValueError) as actor:
        apply(definition, "submitted", "accept", actor="robot", roles=(), opinion=None)
    assert str(actor.value) == "actor must be one of ['applicant', 'officer'], got 'robot'"
    with pytest.raises(ActorNotAllowed) as wrong:
        apply(definition, "submitted", "accept", actor="applicant", roles=(), opinion=None)
    assert (wrong.value.state, wrong.value.action, wrong.value.actor) == ("submitted", "accept", "applicant")
    assert (wrong.value.state_label, wrong.value.action_label) == ("待受理", "受理")
    assert str(wrong.value) == "当前状态「待受理」下，申请人不能执行「受理」"
    with pytest.raises(RoleNotAllowed) as role:
        apply(definition, "pending_decision", "grant", actor="officer", roles={"intake"}, opinion="x")
    assert str(role.value) == "执行「批准」需要审批人员角色"
    with pytest.raises(OpinionRequired) as opinion:
        apply(definition, "pending_decision", "grant", actor="officer", roles={"approver"}, opinion=None)
    assert str(opinion.value) == "执行「批准」必须填写意见"


def test_refusal_texts_fall_back_to_ids() -> None:
    assert str(ActorNotAllowed("s", "a", "robot")) == "当前状态「s」下，robot不能执行「a」"
    assert str(RoleNotAllowed("a", {"clerk", "intake"})) == "执行「a」需要clerk或受理人员角色"
    once = OncePerStep("a", "s")
    assert (str(once), once.legal_basis) == ("「a」在「s」环节只能办理一次，本环节已经办理过", None)
    cited = OncePerStep("a", "s", legal_basis="第三十二条")
    assert (str(cited), cited.legal_basis) == (
        "「a」在「s」环节只能办理一次，本环节已经办理过（依据第三十二条）", "第三十二条"
    )


# --- calendar: a year's end and its argument checks -----------------------------------------------


def test_the_last_working_day_of_a_year_stays_in_that_year() -> None:
    assert CALENDAR.is_working_day(date(2026, 12, 31))
    assert CALENDAR.add_working_days(date(2026, 12, 30), 1) == date(2026, 12, 31)
    assert CALENDAR.add_working_days(date(2026, 12, 31), 1) == date(2027, 1, 1)
    assert CALENDAR.working_days_between(date(2026, 12, 30), date(2027, 1, 1)) == 2
    assert CALENDAR.working_days_between(date(2026, 12, 31), date(2026, 12, 31)) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: WorkingCalendar({"2026-01-01": True}), f"override key {WHOLE_DAY} str"),
        (lambda: WorkingCalendar({date(2026, 1, 1): 1}), "override for 2026-01-01 must be a bool"),
        (lambda: CALENDAR.is_working_day(datetime(2026, 1, 1)), f"day {WHOLE_DAY} datetime"),
        (lambda: CALENDAR.add_working_days("2026-01-01", 1), f"start {WHOLE_DAY} str"),
        (lambda: CALENDAR.add_working_days(date(2026, 1, 1), 1.0), "days must be an int, got float"),
        (lambda: CALENDAR.working_days_between("x", date(2026, 1, 1)), f"start {WHOLE_DAY} str"),
        (lambda: CALENDAR.working_days_between(date(2026, 1, 1), "x"), f"end {WHOLE_DAY} str"),
    ],
)
def test_calendar_type_errors_name_the_argument(call: Callable[[], object], message: str) -> None:
    with pytest.raises(TypeError) as raised:
        call()
    assert str(raised.value) == message


def test_negative_days_are_refused() -> None:
    with pytest.raises(ValueError) as raised:
        CALENDAR.add_working_days(date(2026, 1, 1), -1)
    assert str(raised.value) == "days must not be negative, got -1"


# --- time limits ---------------------------------------------------------------------------------


def test_steps_without_weights_share_the_limit_evenly() -> None:
    document = _standard()
    for step in document["steps"]:
        step["time_allocation_days"] = 0
    deadlines = allocate_step_deadlines(load_definition(document), CALENDAR, date(2026, 3, 2), 9)
    # Three steps after intake, 3 working days each from Monday 2 March 2026.
    assert deadlines == {"review": date(2026, 3, 5), "decision": date(2026, 3, 10), "completion": date(2026, 3, 13)}


def test_one_weighted_step_takes_the_whole_limit() -> None:
    document = _standard()
    for step, weight in zip(document["steps"], (1, 1, 0, 0), strict=True):
        step["time_allocation_days"] = weight
    deadlines = allocate_step_deadlines(load_definition(document), CALENDAR, date(2026, 3, 2), 4)
    assert deadlines == {"review": date(2026, 3, 6), "decision": date(2026, 3, 6), "completion": date(2026, 3, 6)}


def test_the_intake_step_is_the_one_starting_the_clock_wherever_it_is_listed() -> None:
    document = _standard()
    transitions = document["transitions"]
    transitions.insert(0, transitions.pop(_index(document, "under_review", "review")))
    definition = load_definition(document)
    assert compute_intake_deadline(definition, CALENDAR, date(2026, 3, 2)) == date(2026, 3, 3)
    assert set(allocate_step_deadlines(definition, CALENDAR, date(2026, 3, 2), 9)) == {
        "review", "decision", "completion",
    }


def test_time_limit_errors_explain() -> None:
    with pytest.raises(ValueError) as negative:
        allocate_step_deadlines(standard_definition(), CALENDAR, date(2026, 3, 2), -1)
    assert str(negative.value) == "limit_days must not be negative, got -1"
    with pytest.raises(ValueError) as backwards:
        extend_for_suspension(CALENDAR, date(2026, 3, 20), date(2026, 3, 10), date(2026, 3, 9))
    assert str(backwards.value) == "resumed_on 2026-03-09 is before suspended_on 2026-03-10"
    document = _standard()
    for transition in document["transitions"]:
        if transition["clock"] == "start":
            transition["clock"] = "none"
    document["transitions"] = [t for t in document["transitions"] if t["action"] != "supplement"
                               or t["source"] != "review_supplement"]
    for transition in document["transitions"]:
        if transition["action"] == "request_supplement" and transition["source"] == "under_review":
            transition["clock"] = "none"
    never = load_definition(document)
    with pytest.raises(ValueError) as raised:
        compute_intake_deadline(never, CALENDAR, date(2026, 3, 2))
    assert str(raised.value) == "workflow standard v1 never starts the clock"
    last = _standard()
    last["steps"] = [last["steps"][1], last["steps"][2], last["steps"][3], last["steps"][0]]
    for transition in last["transitions"]:
        if transition["step"] != "intake":
            transition["step"] = "intake"
    with pytest.raises(ValueError) as after:
        allocate_step_deadlines(load_definition(last), CALENDAR, date(2026, 3, 2), 9)
    assert str(after.value) == "workflow standard v1 declares no step after 'intake'"
