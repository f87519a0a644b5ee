"""One supplement notice per step (Administrative Licensing Law Art. 32): the once-per-step rule."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import workflow
from workflow.definition import DefinitionError, load_definition, standard_definition
from workflow.errors import ActionNotAvailable, OncePerStep, WorkflowError
from workflow.machine import apply

STANDARD = standard_definition()
ART_32 = "《中华人民共和国行政许可法》第三十二条"


def _standard_document() -> dict[str, Any]:
    text = resources.files("workflow.definitions").joinpath("standard.v1.json").read_text("utf-8")
    return dict(json.loads(text))


def test_both_supplement_notices_of_the_standard_flow_are_once_per_step() -> None:
    notices = [t for t in STANDARD.transitions if t.action == "request_supplement"]
    assert {(t.source, t.step) for t in notices} == {("submitted", "intake"), ("under_review", "review")}
    assert all(t.once_per_step and t.legal_basis == ART_32 for t in notices)
    assert not any(t.once_per_step for t in STANDARD.transitions if t.action != "request_supplement")


def test_a_second_notice_at_intake_is_refused_naming_the_rule_and_the_law() -> None:
    with pytest.raises(OncePerStep) as raised:
        apply(STANDARD, "submitted", "request_supplement", actor="officer", roles={"intake"},
              opinion="再补一份", taken={("intake", "submit"), ("intake", "request_supplement")})
    assert (raised.value.action, raised.value.step) == ("request_supplement", "intake")
    assert str(raised.value) == (f"「一次性告知补正」在「受理」环节只能办理一次，本环节已经办理过（依据{ART_32}）")
    assert isinstance(raised.value, WorkflowError)
    assert not isinstance(raised.value, ActionNotAvailable)  # a rule, not a state that lacks the action


def test_a_notice_at_intake_does_not_use_up_the_one_at_review() -> None:
    transition = apply(STANDARD, "under_review", "request_supplement", actor="officer", roles={"reviewer"},
                       opinion="请补交体检报告", taken={("intake", "request_supplement")})
    assert transition.target == "review_supplement"


def test_a_second_notice_at_review_is_refused() -> None:
    with pytest.raises(OncePerStep) as raised:
        apply(STANDARD, "under_review", "request_supplement", actor="officer", roles={"reviewer"},
              opinion="又缺一份", taken={("review", "request_supplement")})
    assert "「审核」环节只能办理一次" in str(raised.value)


def test_role_is_checked_before_the_once_per_step_rule() -> None:
    with pytest.raises(workflow.RoleNotAllowed):
        apply(STANDARD, "submitted", "request_supplement", actor="officer", roles={"reviewer"},
              opinion="x", taken={("intake", "request_supplement")})


def test_available_actions_leave_out_a_used_notice() -> None:
    fresh = [t.action for t in STANDARD.available_actions("submitted")]
    used = [t.action for t in STANDARD.available_actions("submitted", taken={("intake", "request_supplement")})]
    assert fresh == ["accept", "refuse_intake", "request_supplement"]
    assert used == ["accept", "refuse_intake"]
    review = [t.action for t in STANDARD.available_actions("under_review", taken={("intake", "request_supplement")})]
    assert "request_supplement" in review


def test_once_per_step_must_be_a_boolean_in_a_definition() -> None:
    document = _standard_document()
    document["transitions"][2]["once_per_step"] = "yes"
    with pytest.raises(DefinitionError) as raised:
        load_definition(document)
    assert raised.value.path == "/transitions/2/once_per_step"


def test_the_rule_is_exported_from_the_package() -> None:
    assert workflow.OncePerStep is OncePerStep


actions = st.sampled_from(sorted({t.action for t in STANDARD.transitions}))
ALL_ROLES = {"intake", "reviewer", "approver"}


@given(st.lists(st.tuples(actions, st.sampled_from(["officer", "applicant"])), max_size=60))
def test_no_sequence_of_actions_issues_two_notices_in_one_step(sequence: list[tuple[str, str]]) -> None:
    state, taken, notices = STANDARD.initial_state, set(), []
    for action, actor in sequence:
        try:
            transition = apply(STANDARD, state, action, actor=actor, roles=ALL_ROLES, opinion="意见",
                               taken=taken)
        except WorkflowError:
            continue
        taken.add((transition.step, transition.action))
        if action == "request_supplement":
            notices.append(transition.step)
        state = transition.target
    assert len(notices) == len(set(notices))
