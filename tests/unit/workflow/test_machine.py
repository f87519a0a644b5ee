"""The approval state machine over the standard definition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import workflow
from workflow.definition import standard_definition
from workflow.errors import ROLES
from workflow.machine import (
    ActionNotAvailable,
    ActorNotAllowed,
    OpinionRequired,
    RoleNotAllowed,
    UnknownState,
    WorkflowError,
    apply,
)

STANDARD = standard_definition()
ALL_ACTIONS = sorted({t.action for t in STANDARD.transitions} | {"bogus"})

role_sets = st.frozensets(st.sampled_from(sorted(ROLES | {"clerk"})))
opinions = st.sampled_from([None, "", "   ", "\u3000", "材料齐全，同意。"])
actors = st.sampled_from(["officer", "applicant"])


def test_intake_officer_accepts_a_submitted_case() -> None:
    transition = apply(
        STANDARD, "submitted", "accept", actor="officer", roles={"intake"}, opinion=None
    )
    assert (transition.target, transition.clock) == ("under_review", "start")


def test_unavailable_action_names_state_and_action_in_chinese() -> None:
    with pytest.raises(ActionNotAvailable) as raised:
        apply(STANDARD, "submitted", "grant", actor="officer", roles={"approver"}, opinion="同意")
    assert str(raised.value) == "当前状态「待受理」不能执行「批准」"
    assert (raised.value.state, raised.value.action) == ("submitted", "grant")


def test_officer_without_a_listed_role_is_refused() -> None:
    with pytest.raises(RoleNotAllowed) as raised:
        apply(STANDARD, "submitted", "accept", actor="officer", roles={"reviewer"}, opinion=None)
    assert raised.value.action == "accept"
    assert raised.value.required_roles == frozenset({"intake"})
    assert "受理人员" in str(raised.value)


def test_admin_role_grants_no_implicit_power() -> None:
    with pytest.raises(RoleNotAllowed):
        apply(
            STANDARD, "pending_decision", "grant", actor="officer", roles={"admin"}, opinion="同意"
        )


@pytest.mark.parametrize("opinion", [None, "", "   ", "\u3000\n"])
def test_refusal_without_reasons_is_rejected(opinion: str | None) -> None:
    with pytest.raises(OpinionRequired) as raised:
        apply(
            STANDARD,
            "submitted",
            "refuse_intake",
            actor="officer",
            roles={"intake"},
            opinion=opinion,
        )
    assert raised.value.action == "refuse_intake"


def test_refusal_with_reasons_passes() -> None:
    transition = apply(
        STANDARD,
        "submitted",
        "refuse_intake",
        actor="officer",
        roles={"intake"},
        opinion="不属于本部门职权范围",
    )
    assert transition.target == "intake_refused"


def test_officer_cannot_take_an_applicant_action() -> None:
    with pytest.raises(ActorNotAllowed) as raised:
        apply(
            STANDARD, "review_supplement", "supplement", actor="officer", roles=ROLES, opinion="x"
        )
    assert isinstance(raised.value, ActionNotAvailable)
    assert "工作人员" in str(raised.value)


def test_applicant_cannot_take_an_officer_action() -> None:
    with pytest.raises(ActorNotAllowed):
        apply(STANDARD, "submitted", "accept", actor="applicant", roles=ROLES, opinion=None)


def test_applicant_withdraws_without_any_role() -> None:
    transition = apply(
        STANDARD, "under_review", "withdraw", actor="applicant", roles=(), opinion=None
    )
    assert (transition.target, transition.clock) == ("withdrawn", "stop")


def test_unknown_actor_kind_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        apply(STANDARD, "submitted", "accept", actor="system", roles={"intake"}, opinion=None)


def test_undeclared_state_is_reported_as_such() -> None:
    with pytest.raises(UnknownState):
        apply(STANDARD, "archived", "accept", actor="officer", roles={"intake"}, opinion=None)


def test_errors_are_workflow_errors_and_exported_from_the_package() -> None:
    for error in (
        ActionNotAvailable,
        ActorNotAllowed,
        RoleNotAllowed,
        OpinionRequired,
        UnknownState,
    ):
        assert issubclass(error, WorkflowError)
        assert getattr(workflow, error.__name__) is error
    assert workflow.apply is apply


def test_full_case_with_supplement_during_review_reaches_completed() -> None:
    steps = [
        ("accept", "officer", {"intake"}, None, "start"),
        ("request_supplement", "officer", {"reviewer"}, "请补交营业执照复印件", "suspend"),
        ("supplement", "applicant", set(), None, "resume"),
        ("review", "officer", {"reviewer"}, "符合条件", "none"),
        ("grant", "officer", {"approver"}, "准予许可", "none"),
        ("complete", "officer", {"intake"}, None, "stop"),
    ]
    state = STANDARD.initial_state
    for action, actor, roles, opinion, clock in steps:
        transition = apply(STANDARD, state, action, actor=actor, roles=roles, opinion=opinion)
        assert transition.clock == clock
        state = transition.target
    assert state == "completed"
    assert STANDARD.is_terminal(state)


def test_supplement_before_acceptance_returns_to_intake_without_touching_the_clock() -> None:
    asked = apply(
        STANDARD,
        "submitted",
        "request_supplement",
        actor="officer",
        roles={"intake"},
        opinion="缺身份证明",
    )
    back = apply(STANDARD, asked.target, "supplement", actor="applicant", roles=(), opinion=None)
    assert (asked.target, asked.clock, back.target, back.clock) == (
        "awaiting_supplement",
        "none",
        "submitted",
        "none",
    )


attempts = st.lists(
    st.tuples(st.sampled_from(ALL_ACTIONS), actors, role_sets, opinions), max_size=40
)


@given(attempts)
def test_random_action_sequences_stay_in_declared_states(
    sequence: list[tuple[str, str, frozenset[str], str | None]],
) -> None:
    state = STANDARD.initial_state
    for action, actor, roles, opinion in sequence:
        try:
            transition = apply(STANDARD, state, action, actor=actor, roles=roles, opinion=opinion)
        except WorkflowError:
            continue
        assert transition.source == state
        assert transition.actor == actor
        state = transition.target
        assert state in STANDARD.states


@pytest.mark.parametrize("state", sorted(STANDARD.terminal_states))
@given(action=st.sampled_from(ALL_ACTIONS), actor=actors, roles=role_sets, opinion=opinions)
def test_terminal_states_accept_nothing(
    state: str, action: str, actor: str, roles: frozenset[str], opinion: str | None
) -> None:
    assert STANDARD.available_actions(state, actor) == []
    with pytest.raises(ActionNotAvailable):
        apply(STANDARD, state, action, actor=actor, roles=roles, opinion=opinion)


@given(
    transition=st.sampled_from([t for t in STANDARD.transitions if t.actor == "officer"]),
    roles=role_sets,
)
def test_only_listed_roles_pass(transition: workflow.Transition, roles: frozenset[str]) -> None:
    try:
        apply(
            STANDARD,
            transition.source,
            transition.action,
            actor="officer",
            roles=roles,
            opinion="意见",
        )
    except RoleNotAllowed:
        allowed = False
    else:
        allowed = True
    assert allowed == bool(roles & transition.roles)
