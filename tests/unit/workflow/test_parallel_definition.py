"""Definitions with a parallel block (joint handling, Art. 26): the schema's additive fields, the
semantic checks with their JSON pointers, and the two packaged joint definitions."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from workflow.calendar import WorkingCalendar
from workflow.definition import (
    Branch,
    DefinitionError,
    ParallelBlock,
    WorkflowDefinition,
    load_definition,
    standard_definition,
)
from workflow.registry import UnknownDefinition, get_definition
from workflow.timelimits import allocate_step_deadlines

Document = dict[str, Any]
A26 = "《中华人民共和国行政许可法》第二十六条"
A32 = "《中华人民共和国行政许可法》第三十二条"
A38 = "《中华人民共和国行政许可法》第三十八条"
A44 = "《中华人民共和国行政许可法》第四十四条"


def _document(name: str) -> Document:
    text = resources.files("workflow.definitions").joinpath(f"{name}.json").read_text("utf-8")
    return json.loads(text)


def _schema() -> Document:
    return json.loads(resources.files("schemas").joinpath("workflow-definition.v1.json").read_text("utf-8"))


def _resolve(workflow_id: str) -> WorkflowDefinition:
    return get_definition(workflow_id)


def _index(document: Document, source: str, action: str) -> int:
    for index, transition in enumerate(document["transitions"]):
        if (transition["source"], transition["action"]) == (source, action):
            return index
    raise AssertionError(f"no {action} from {source}")


def _fails(document: Document, resolve: Callable[[str], WorkflowDefinition] = _resolve) -> DefinitionError:
    with pytest.raises(DefinitionError) as raised:
        load_definition(document, resolve=resolve)
    return raised.value


# --- the packaged joint definitions --------------------------------------------------------------


@pytest.mark.parametrize("name", ["enterprise-establishment.v1", "joint-branch.v1"])
def test_joint_documents_are_valid_against_the_schema(name: str) -> None:
    assert list(Draft202012Validator(_schema()).iter_errors(_document(name))) == []


def test_standard_definition_file_is_unchanged_by_the_new_fields() -> None:
    definition = standard_definition()
    assert (definition.parallel, definition.initial_clock) == (None, "idle")
    assert definition.label == "标准行政许可办理流程"
    assert definition.workflow_id == "standard.v1"


def test_enterprise_establishment_parallel_block() -> None:
    definition = get_definition("enterprise-establishment.v1")
    block = definition.parallel
    assert block is not None
    assert (block.state, block.join_granted, block.join_denied, block.notify_supplement) == (
        "in_branches", "join_granted", "join_denied", "notify_supplement",
    )
    assert [(b.name, b.label, b.workflow_id, b.time_allocation_days) for b in block.branches] == [
        ("registration", "设立登记（市场监管）", "joint-branch.v1", 3),
        ("seal_engraving", "公章刻制（公安）", "joint-branch.v1", 1),
        ("tax_invoice", "涉税事项和发票申领（税务）", "joint-branch.v1", 2),
        ("social_insurance", "单位社会保险登记（人社）", "joint-branch.v1", 2),
    ]
    assert block.branch("tax_invoice") == block.branches[2]
    with pytest.raises(KeyError):
        block.branch("bank")


def test_each_branch_sees_the_form_part_its_department_needs() -> None:
    block = get_definition("enterprise-establishment.v1").parallel
    assert block is not None
    parts = {b.name: b.form_part for b in block.branches}
    assert parts == {
        "registration": (
            "enterprise_name", "enterprise_type", "domicile", "registered_capital_wan", "business_scope",
            "operating_term_years", "legal_representative", "shareholders", "bank_account_appointment",
        ),
        "seal_engraving": ("enterprise_name", "domicile", "legal_representative", "seal_engraving"),
        "tax_invoice": (
            "enterprise_name", "enterprise_type", "domicile", "business_scope", "legal_representative",
            "tax_registration",
        ),
        "social_insurance": ("enterprise_name", "domicile", "legal_representative", "social_insurance"),
    }
    form = json.loads(
        resources.files("schemas").joinpath("forms/enterprise-establishment.v1.json").read_text("utf-8")
    )
    properties = set(form["properties"])
    named = {name for part in parts.values() for name in part}
    # Every part names real properties of the form, and every property reaches some department.
    assert named == properties


def test_enterprise_establishment_states_and_labels() -> None:
    definition = get_definition("enterprise-establishment.v1")
    assert dict(definition.states) == {
        "submitted": "待受理",
        "awaiting_supplement": "待补正",
        "in_branches": "并联审批中",
        "joint_supplement": "并联补正",
        "granted": "准予许可",
        "denied": "不予许可",
        "completed": "已办结",
        "intake_refused": "不予受理",
        "withdrawn": "已撤回",
    }
    assert definition.terminal_states == {"completed", "intake_refused", "withdrawn"}
    assert definition.initial_state == "submitted"
    assert definition.initial_clock == "idle"
    assert [(s.name, s.label, s.time_allocation_days) for s in definition.steps] == [
        ("intake", "受理", 1), ("joint_review", "并联审批", 4), ("completion", "办结", 1),
    ]


@pytest.mark.parametrize(
    ("source", "action", "target", "actor", "roles", "clock", "opinion", "basis"),
    [
        ("submitted", "accept", "in_branches", "officer", {"intake"}, "start", False, A26),
        ("submitted", "refuse_intake", "intake_refused", "officer", {"intake"}, "stop", True, A32),
        ("submitted", "request_supplement", "awaiting_supplement", "officer", {"intake"}, "none", True, A32),
        ("awaiting_supplement", "supplement", "submitted", "applicant", set(), "none", False, None),
        ("in_branches", "notify_supplement", "joint_supplement", "system", set(), "suspend", False, A32),
        ("joint_supplement", "supplement", "in_branches", "applicant", set(), "resume", False, None),
        ("in_branches", "join_granted", "granted", "system", set(), "none", False, A26),
        ("in_branches", "join_denied", "denied", "system", set(), "none", False, A26),
        ("granted", "complete", "completed", "officer", {"intake", "approver"}, "stop", False, A44),
        ("denied", "complete", "completed", "officer", {"intake", "approver"}, "stop", False, A44),
        ("submitted", "withdraw", "withdrawn", "applicant", set(), "stop", False, None),
        ("awaiting_supplement", "withdraw", "withdrawn", "applicant", set(), "stop", False, None),
        ("in_branches", "withdraw", "withdrawn", "applicant", set(), "stop", False, None),
        ("joint_supplement", "withdraw", "withdrawn", "applicant", set(), "stop", False, None),
    ],
)
def test_enterprise_establishment_transitions(
    source: str, action: str, target: str, actor: str, roles: set[str], clock: str, opinion: bool,
    basis: str | None,
) -> None:
    transition = get_definition("enterprise-establishment.v1").transition_for(source, action)
    assert (transition.target, transition.actor, transition.roles, transition.clock) == (target, actor, roles, clock)
    assert (transition.requires_opinion, transition.legal_basis) == (opinion, basis)


def test_enterprise_establishment_has_no_other_transitions() -> None:
    assert len(get_definition("enterprise-establishment.v1").transitions) == 14
    assert get_definition("enterprise-establishment.v1").transition_for(
        "submitted", "request_supplement"
    ).once_per_step


def test_joint_branch_runs_from_its_parents_acceptance() -> None:
    definition = get_definition("joint-branch.v1")
    assert definition.initial_clock == "running"
    assert definition.initial_state == "pre_review"
    assert definition.parallel is None
    assert dict(definition.states) == {
        "pre_review": "同步预审",
        "awaiting_supplement": "待补正",
        "under_review": "审核中",
        "pending_decision": "待决定",
        "granted": "准予许可",
        "denied": "不予许可",
        "withdrawn": "已撤回",
    }
    assert definition.terminal_states == {"granted", "denied", "withdrawn"}
    assert {s: definition.clock_status(s) for s in definition.states} == {
        "pre_review": "running", "awaiting_supplement": "running", "under_review": "running",
        "pending_decision": "running", "granted": "stopped", "denied": "stopped", "withdrawn": "stopped",
    }


@pytest.mark.parametrize(
    ("source", "action", "target", "actor", "roles", "clock", "opinion", "once", "basis"),
    [
        ("pre_review", "pass_pre_review", "under_review", "officer", {"intake", "reviewer"}, "none", False, False, A26),
        ("pre_review", "request_supplement", "awaiting_supplement", "officer", {"intake", "reviewer"}, "none",
         True, True, A32),
        ("awaiting_supplement", "supplement", "pre_review", "system", set(), "none", False, False, None),
        ("under_review", "review", "pending_decision", "officer", {"reviewer"}, "none", True, False, None),
        ("pending_decision", "grant", "granted", "officer", {"approver"}, "stop", True, False, A38),
        ("pending_decision", "deny", "denied", "officer", {"approver"}, "stop", True, False, A38),
        ("pre_review", "withdraw", "withdrawn", "system", set(), "stop", False, False, None),
        ("awaiting_supplement", "withdraw", "withdrawn", "system", set(), "stop", False, False, None),
        ("under_review", "withdraw", "withdrawn", "system", set(), "stop", False, False, None),
        ("pending_decision", "withdraw", "withdrawn", "system", set(), "stop", False, False, None),
    ],
)
def test_joint_branch_transitions(
    source: str, action: str, target: str, actor: str, roles: set[str], clock: str, opinion: bool, once: bool,
    basis: str | None,
) -> None:
    transition = get_definition("joint-branch.v1").transition_for(source, action)
    assert (transition.target, transition.actor, transition.roles, transition.clock) == (target, actor, roles, clock)
    assert (transition.requires_opinion, transition.once_per_step, transition.legal_basis) == (opinion, once, basis)


def test_joint_branch_has_no_other_transitions() -> None:
    assert len(get_definition("joint-branch.v1").transitions) == 10


def test_system_actions_are_not_offered_to_officers_or_applicants() -> None:
    definition = get_definition("enterprise-establishment.v1")
    assert [t.action for t in definition.available_actions("in_branches", "officer")] == []
    assert [t.action for t in definition.available_actions("in_branches", "applicant")] == ["withdraw"]
    assert sorted(t.action for t in definition.available_actions("in_branches", "system")) == [
        "join_denied", "join_granted", "notify_supplement",
    ]


def test_branch_steps_share_the_whole_limit_from_acceptance() -> None:
    calendar = WorkingCalendar()
    deadlines = allocate_step_deadlines(get_definition("joint-branch.v1"), calendar, date(2026, 9, 21), 4)
    # Weights 1:2:1 of 4 working days from Monday 21 September 2026; Friday 25th is the Mid-Autumn
    # Festival.
    assert deadlines == {
        "pre_review": date(2026, 9, 22), "review": date(2026, 9, 24), "decision": date(2026, 9, 28),
    }


def test_parent_steps_after_intake_share_the_limit() -> None:
    calendar = WorkingCalendar()
    deadlines = allocate_step_deadlines(
        get_definition("enterprise-establishment.v1"), calendar, date(2026, 9, 21), 5
    )
    assert deadlines == {"joint_review": date(2026, 9, 28), "completion": date(2026, 9, 29)}


def test_definition_without_resolver_uses_the_registry() -> None:
    definition = load_definition(_document("enterprise-establishment.v1"))
    assert definition == get_definition("enterprise-establishment.v1")


# --- schema: the additive fields -------------------------------------------------------------


def _enterprise() -> Document:
    return copy.deepcopy(_document("enterprise-establishment.v1"))


@pytest.mark.parametrize(
    ("edit", "pointer"),
    [
        (lambda d: d.update(initial_clock="paused"), "/initial_clock"),
        (lambda d: d["parallel"].pop("branches"), "/parallel/branches"),
        (lambda d: d["parallel"].pop("notify_supplement"), "/parallel/notify_supplement"),
        (lambda d: d["parallel"].update(branches=[]), "/parallel/branches"),
        (lambda d: d["parallel"].update(extra=1), "/parallel/extra"),
        (lambda d: d["parallel"]["branches"][0].update(time_allocation_days=-1),
         "/parallel/branches/0/time_allocation_days"),
        (lambda d: d["parallel"]["branches"][1].update(form_part=[]), "/parallel/branches/1/form_part"),
        (lambda d: d["parallel"]["branches"][1].update(form_part=["domicile", "domicile"]),
         "/parallel/branches/1/form_part"),
        (lambda d: d["parallel"]["branches"][2].update(workflow_id="joint-branch"),
         "/parallel/branches/2/workflow_id"),
        (lambda d: d["parallel"]["branches"][2].update(workflow_id="joint-branch.v0"),
         "/parallel/branches/2/workflow_id"),
        (lambda d: d["parallel"]["branches"][3].pop("label"), "/parallel/branches/3/label"),
        (lambda d: d["transitions"][0].update(actor="robot"), "/transitions/0/actor"),
        (lambda d: d.update(id="Enterprise"), "/id"),
    ],
)
def test_schema_rejects_malformed_parallel_fields(edit: Callable[[Document], object], pointer: str) -> None:
    document = _enterprise()
    edit(document)
    assert _fails(document).path == pointer


def test_ids_may_hold_hyphens_but_not_start_with_one() -> None:
    document = copy.deepcopy(_document("joint-branch.v1"))
    document["id"] = "-branch"
    assert _fails(document).path == "/id"
    document["id"] = "a-b_c9"
    assert load_definition(document).workflow_id == "a-b_c9.v1"


# --- semantic checks ---------------------------------------------------------------------------


def test_system_action_takes_no_roles() -> None:
    document = _enterprise()
    index = _index(document, "in_branches", "join_granted")
    document["transitions"][index]["roles"] = ["approver"]
    error = _fails(document)
    assert (error.path, error.message) == (f"/transitions/{index}/roles", "a system action takes no officer roles")


def test_parallel_state_must_be_declared() -> None:
    document = _enterprise()
    document["parallel"]["state"] = "joint_review"
    error = _fails(document)
    assert (error.path, error.message) == (
        "/parallel/state", "parallel state 'joint_review' is not declared in /states"
    )


def test_parallel_state_cannot_be_terminal() -> None:
    document = _enterprise()
    document["parallel"]["state"] = "completed"
    error = _fails(document)
    assert (error.path, error.message) == ("/parallel/state", "parallel state 'completed' cannot be terminal")


@pytest.mark.parametrize("state", ["submitted", "joint_supplement"])
def test_clock_must_run_in_the_parallel_state(state: str) -> None:
    document = _enterprise()
    document["parallel"]["state"] = state
    error = _fails(document)
    assert (error.path, error.message) == (
        "/parallel/state", f"the clock must be running in the parallel state {state!r}"
    )


@pytest.mark.parametrize("field", ["join_granted", "join_denied", "notify_supplement"])
@pytest.mark.parametrize(
    "action",
    [
        "withdraw",  # from the parallel state, but the applicant's
        "complete",  # an officer's, from another state
        "bogus",
    ],
)
def test_parallel_actions_must_be_system_transitions_from_the_parallel_state(field: str, action: str) -> None:
    document = _enterprise()
    document["parallel"][field] = action
    error = _fails(document)
    assert (error.path, error.message) == (
        f"/parallel/{field}", f"action {action!r} is not a system transition from 'in_branches'"
    )


def test_a_system_transition_of_that_name_from_another_state_does_not_count() -> None:
    document = _enterprise()
    index = _index(document, "in_branches", "join_denied")
    document["transitions"][index]["source"] = "joint_supplement"
    error = _fails(document)
    assert (error.path, error.message) == (
        "/parallel/join_denied", "action 'join_denied' is not a system transition from 'in_branches'"
    )


@pytest.mark.parametrize(
    ("field", "same_as"),
    [("join_denied", "join_granted"), ("notify_supplement", "join_granted"), ("notify_supplement", "join_denied")],
)
def test_parallel_actions_are_distinct(field: str, same_as: str) -> None:
    document = _enterprise()
    document["parallel"][field] = document["parallel"][same_as]
    error = _fails(document)
    assert (error.path, error.message) == (
        f"/parallel/{field}", f"action {document['parallel'][same_as]!r} is already /parallel/{same_as}"
    )


def test_merged_notice_must_suspend_the_clock() -> None:
    document = _enterprise()
    document["transitions"][_index(document, "in_branches", "notify_supplement")]["clock"] = "none"
    document["transitions"][_index(document, "joint_supplement", "supplement")]["clock"] = "none"
    error = _fails(document)
    assert (error.path, error.message) == (
        "/parallel/notify_supplement", "the merged supplement notice must suspend the clock"
    )


@pytest.mark.parametrize(
    "edit",
    [
        {"action": "resubmit"},
        {"actor": "system"},
        {"target": "granted"},
    ],
)
def test_merged_notice_needs_the_applicants_supplement_back(edit: dict[str, str]) -> None:
    document = _enterprise()
    document["transitions"][_index(document, "joint_supplement", "supplement")].update(edit)
    error = _fails(document)
    assert (error.path, error.message) == (
        "/parallel/notify_supplement",
        "state 'joint_supplement' needs the applicant's 'supplement' back to 'in_branches' resuming the clock",
    )


def test_branch_names_are_unique() -> None:
    document = _enterprise()
    document["parallel"]["branches"][3]["name"] = "seal_engraving"
    error = _fails(document)
    assert (error.path, error.message) == ("/parallel/branches/3/name", "duplicate branch 'seal_engraving'")


def test_branch_workflow_must_be_known() -> None:
    document = _enterprise()
    document["parallel"]["branches"][1]["workflow_id"] = "joint-branch.v9"
    error = _fails(document)
    assert (error.path, error.message) == ("/parallel/branches/1/workflow_id", "unknown workflow 'joint-branch.v9'")


def test_unknown_definition_from_the_resolver_is_reported_not_raised() -> None:
    def resolve(workflow_id: str) -> WorkflowDefinition:
        raise UnknownDefinition(workflow_id)

    error = _fails(_enterprise(), resolve)
    assert (error.path, error.message) == ("/parallel/branches/0/workflow_id", "unknown workflow 'joint-branch.v1'")


def test_branch_cannot_run_its_parents_workflow() -> None:
    document = _enterprise()
    document["parallel"]["branches"][2]["workflow_id"] = "enterprise-establishment.v1"
    error = _fails(document)
    assert (error.path, error.message) == (
        "/parallel/branches/2/workflow_id", "a branch cannot run its parent's own workflow"
    )


def test_branch_cannot_be_parallel_itself() -> None:
    document = _enterprise()
    document["parallel"]["branches"][0]["workflow_id"] = "other.v1"
    error = _fails(document, lambda _: get_definition("enterprise-establishment.v1"))
    assert (error.path, error.message) == (
        "/parallel/branches/0/workflow_id",
        "branch workflow 'enterprise-establishment.v1' holds a parallel block itself",
    )


def test_branch_clock_must_run_from_creation() -> None:
    document = _enterprise()
    error = _fails(document, lambda _: standard_definition())
    assert (error.path, error.message) == (
        "/parallel/branches/0/workflow_id", "branch workflow 'standard.v1' must start with its clock running"
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.update(action="cancel", label="取消"),
        lambda t: t.update(actor="applicant"),
        lambda t: t.update(actor="officer", roles=["intake"]),
    ],
)
def test_every_open_branch_state_needs_a_system_withdraw(edit: Callable[[Document], None]) -> None:
    branch = copy.deepcopy(_document("joint-branch.v1"))
    edit(branch["transitions"][_index(branch, "under_review", "withdraw")])
    branch_definition = load_definition(branch)
    error = _fails(_enterprise(), lambda _: branch_definition)
    assert (error.path, error.message) == (
        "/parallel/branches/0/workflow_id",
        "branch workflow 'joint-branch.v1' has no system 'withdraw' from state 'under_review'",
    )


def test_branch_withdraw_must_end_the_branch() -> None:
    branch = copy.deepcopy(_document("joint-branch.v1"))
    branch["transitions"][_index(branch, "pending_decision", "withdraw")].update(
        target="under_review", clock="none"
    )
    branch_definition = load_definition(branch)
    error = _fails(_enterprise(), lambda _: branch_definition)
    assert error.message == "branch workflow 'joint-branch.v1' has no system 'withdraw' from state 'pending_decision'"


def test_initial_clock_running_starts_the_walk_running() -> None:
    branch = copy.deepcopy(_document("joint-branch.v1"))
    # A branch may not start the clock again: it is running from creation.
    branch["transitions"][_index(branch, "pre_review", "pass_pre_review")]["clock"] = "start"
    error = _fails(branch)
    assert error.message == "cannot start the clock: it is running in 'pre_review'"


def test_dataclasses_hold_the_parallel_block() -> None:
    branch = Branch("a", "甲", "joint-branch.v1", 2, ("x",))
    block = ParallelBlock("s", (branch,), "g", "d", "n")
    assert block.branch("a") is branch
