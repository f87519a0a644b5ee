"""Workflow definitions: the standard flow, the JSON Schema and the semantic checks."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from workflow.definition import (
    DefinitionError,
    WorkflowDefinition,
    load_definition,
    standard_definition,
)
from workflow.errors import ROLES, ActionNotAvailable, UnknownState

Document = dict[str, Any]


def _standard_document() -> Document:
    text = resources.files("workflow.definitions").joinpath("standard.v1.json").read_text("utf-8")
    return json.loads(text)


def _schema() -> Document:
    text = resources.files("schemas").joinpath("workflow-definition.v1.json").read_text("utf-8")
    return json.loads(text)


def _index(document: Document, source: str, action: str) -> int:
    for index, transition in enumerate(document["transitions"]):
        if (transition["source"], transition["action"]) == (source, action):
            return index
    raise AssertionError(f"no {action} from {source}")


def test_schema_is_draft_2020_12_with_the_published_id() -> None:
    schema = _schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://hub.example.gov.cn/schemas/workflow-definition.v1.json"


def test_schema_roles_are_the_hub_roles() -> None:
    assert set(_schema()["$defs"]["role"]["enum"]) == ROLES


def test_standard_document_is_valid_against_the_schema() -> None:
    assert list(Draft202012Validator(_schema()).iter_errors(_standard_document())) == []


def test_standard_flow_declares_its_states_with_chinese_labels() -> None:
    definition = standard_definition()
    assert dict(definition.states) == {
        "submitted": "待受理",
        "awaiting_supplement": "待补正",
        "under_review": "审核中",
        "review_supplement": "审查中补正",
        "pending_decision": "待决定",
        "granted": "准予许可",
        "denied": "不予许可",
        "completed": "已办结",
        "intake_refused": "不予受理",
        "withdrawn": "已撤回",
    }
    assert definition.initial_state == "submitted"
    assert definition.terminal_states == {"completed", "intake_refused", "withdrawn"}


def test_standard_steps_in_order() -> None:
    steps = standard_definition().steps
    assert [(s.name, s.label) for s in steps] == [
        ("intake", "受理"),
        ("review", "审核"),
        ("decision", "决定"),
        ("completion", "办结"),
    ]
    assert standard_definition().step("intake").time_allocation_days == 1


@pytest.mark.parametrize(
    ("source", "action", "target", "roles", "clock", "opinion", "actor"),
    [
        ("submitted", "accept", "under_review", {"intake"}, "start", False, "officer"),
        ("submitted", "refuse_intake", "intake_refused", {"intake"}, "stop", True, "officer"),
        (
            "submitted",
            "request_supplement",
            "awaiting_supplement",
            {"intake"},
            "none",
            True,
            "officer",
        ),
        ("awaiting_supplement", "supplement", "submitted", set(), "none", False, "applicant"),
        (
            "under_review",
            "request_supplement",
            "review_supplement",
            {"reviewer"},
            "suspend",
            True,
            "officer",
        ),
        ("review_supplement", "supplement", "under_review", set(), "resume", False, "applicant"),
        ("under_review", "review", "pending_decision", {"reviewer"}, "none", True, "officer"),
        ("pending_decision", "grant", "granted", {"approver"}, "none", True, "officer"),
        ("pending_decision", "deny", "denied", {"approver"}, "none", True, "officer"),
        ("granted", "complete", "completed", {"intake", "approver"}, "stop", False, "officer"),
        ("denied", "complete", "completed", {"intake", "approver"}, "stop", False, "officer"),
        ("pending_decision", "withdraw", "withdrawn", set(), "stop", False, "applicant"),
    ],
)
def test_standard_transitions(
    source: str, action: str, target: str, roles: set[str], clock: str, opinion: bool, actor: str
) -> None:
    transition = standard_definition().transition_for(source, action)
    assert (transition.target, transition.roles, transition.clock) == (target, roles, clock)
    assert (transition.requires_opinion, transition.actor) == (opinion, actor)


def test_applicant_may_withdraw_from_every_open_state_before_decision() -> None:
    definition = standard_definition()
    sources = {t.source for t in definition.transitions if t.action == "withdraw"}
    assert sources == {
        "submitted",
        "awaiting_supplement",
        "under_review",
        "review_supplement",
        "pending_decision",
    }


def test_available_actions_depend_on_the_actor() -> None:
    definition = standard_definition()
    officer = [t.action for t in definition.available_actions("submitted")]
    applicant = [t.action for t in definition.available_actions("review_supplement", "applicant")]
    assert officer == ["accept", "refuse_intake", "request_supplement"]
    assert applicant == ["supplement", "withdraw"]


def test_clock_status_of_each_state_follows_from_the_transitions() -> None:
    definition = standard_definition()
    assert definition.clock_status("awaiting_supplement") == "idle"
    assert definition.clock_status("under_review") == "running"
    assert definition.clock_status("review_supplement") == "suspended"
    assert definition.clock_status("withdrawn") == "stopped"


def test_missing_transition_raises_action_not_available() -> None:
    with pytest.raises(ActionNotAvailable, match="当前状态「已办结」不能执行「撤回」"):
        standard_definition().transition_for("completed", "withdraw")


def test_undeclared_state_raises_unknown_state() -> None:
    with pytest.raises(UnknownState):
        standard_definition().available_actions("archived")
    with pytest.raises(UnknownState):
        standard_definition().is_terminal("archived")


def test_unknown_step_raises_key_error() -> None:
    with pytest.raises(KeyError):
        standard_definition().step("payment")


def test_standard_definition_is_loaded_once_and_hashable() -> None:
    assert standard_definition() is standard_definition()
    assert isinstance(hash(standard_definition()), int)
    assert load_definition(_standard_document()) == standard_definition()


def _add_state(name: str, *, terminal: bool = False) -> Callable[[Document], None]:
    def change(document: Document) -> None:
        document["states"][name] = {"label": "测试", "terminal": terminal}

    return change


def _set(*path: str | int, value: Any) -> Callable[[Document], None]:
    def change(document: Document) -> None:
        target: Any = document
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


def _append_transition(**fields: Any) -> Callable[[Document], None]:
    def change(document: Document) -> None:
        document["transitions"].append(
            {"action": "x", "label": "测试", "step": "review", "roles": ["admin"], "clock": "none"}
            | fields
        )

    return change


def _chain(*changes: Callable[[Document], None]) -> Callable[[Document], None]:
    def change(document: Document) -> None:
        for each in changes:
            each(document)

    return change


N = len(_standard_document()["transitions"])  # index of an appended transition
SUBMITTED_SUPPLEMENT = _index(_standard_document(), "submitted", "request_supplement")


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (_set("transitions", 0, "target", value="archived"), "/transitions/0/target"),
        (_set("transitions", 0, "source", value="archived"), "/transitions/0/source"),
        (_set("transitions", 0, "step", value="payment"), "/transitions/0/step"),
        (_set("transitions", 0, "roles", value=["clerk"]), "/transitions/0/roles/0"),
        (_set("transitions", 0, "roles", value=[]), "/transitions/0/roles"),
        (_set("transitions", 0, "clock", value="pause"), "/transitions/0/clock"),
        (_set("transitions", 0, "requires_opnion", value=True), "/transitions/0/requires_opnion"),
        (_set("initial_state", value="draft"), "/initial_state"),
        (_set("initial_state", value="Submitted"), "/initial_state"),
        (_set("version", value=0), "/version"),
        (_set("states", "submitted", value={}), "/states/submitted/label"),
        (_set("steps", 1, "name", value="intake"), "/steps/1/name"),
        (_set("steps", 0, "time_allocation_days", value=-1), "/steps/0/time_allocation_days"),
        (
            _set("transitions", SUBMITTED_SUPPLEMENT, "clock", value="suspend"),
            f"/transitions/{SUBMITTED_SUPPLEMENT}/clock",
        ),
        (_append_transition(source="completed", target="under_review"), f"/transitions/{N}/source"),
        (
            _append_transition(source="under_review", target="withdrawn", action="close"),
            f"/transitions/{N}/clock",
        ),
        (
            _append_transition(source="under_review", target="granted", action="review"),
            f"/transitions/{N}/action",
        ),
        (
            _append_transition(source="denied", target="granted", action="grant", label="准予"),
            f"/transitions/{N}/label",
        ),
        (
            _append_transition(
                source="submitted", target="under_review", action="fast_track", actor="applicant"
            ),
            f"/transitions/{N}/roles",
        ),
        (
            _chain(
                _add_state("orphan"),
                _append_transition(source="orphan", target="withdrawn", clock="stop"),
            ),
            "/states/orphan",
        ),
        (
            _chain(_add_state("limbo"), _append_transition(source="under_review", target="limbo")),
            "/states/limbo",
        ),
    ],
)
def test_invalid_definition_error_names_the_path(
    change: Callable[[Document], None], path: str
) -> None:
    document = copy.deepcopy(_standard_document())
    change(document)
    with pytest.raises(DefinitionError) as raised:
        load_definition(document)
    assert raised.value.path == path
    assert str(raised.value).startswith(f"{path}: ")


def test_definition_error_is_a_value_error() -> None:
    assert issubclass(DefinitionError, ValueError)


def test_transition_to_unknown_state_is_explained() -> None:
    document = copy.deepcopy(_standard_document())
    document["transitions"][0]["target"] = "archived"
    with pytest.raises(DefinitionError, match="'archived' is not declared"):
        load_definition(document)


def test_minimal_valid_definition_loads() -> None:
    definition = load_definition(
        {
            "id": "instant",
            "version": 1,
            "initial_state": "submitted",
            "states": {
                "submitted": {"label": "待受理"},
                "completed": {"label": "已办结", "terminal": True},
            },
            "steps": [{"name": "intake", "label": "受理", "time_allocation_days": 0}],
            "transitions": [
                {
                    "action": "complete",
                    "label": "即办",
                    "source": "submitted",
                    "target": "completed",
                    "step": "intake",
                    "roles": ["intake"],
                    "clock": "stop",
                }
            ],
        }
    )
    assert isinstance(definition, WorkflowDefinition)
    transition = definition.transition_for("submitted", "complete")
    assert (transition.actor, transition.requires_opinion) == ("officer", False)
