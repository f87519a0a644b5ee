"""Each procedure rule, positive and negative, over cases built in memory (the rules are pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

from hub.supervision.rules import RULES
from hub.supervision.rules.procedure import (
    ChangeAfterCompletion,
    NoReasons,
    OutOfOrder,
    OutsideScope,
    RepeatedSupplement,
    SeparationOfDuties,
    SkippedStep,
    SuspensionOverlong,
    SuspensionUnrecorded,
)
from hub.supervision.rules.replay import OUT_OF_ORDER, REPEATED, SKIPPED, replay
from tests.hub.supervision.rulekit import FLOW, case, facts, found, standard, steps
from workflow.registry import get_definition


def test_every_rule_is_named_documented_and_has_a_basis() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    for rule in RULES:
        assert rule.name.startswith(f"{rule.kind}.") and rule.description and rule.basis


def test_every_rule_is_in_docs_supervision() -> None:
    text = (Path(__file__).parents[3] / "docs" / "supervision.md").read_text("utf-8")
    section = text[text.index("## Procedure and anomaly rules"):]
    assert [rule.name for rule in RULES if f"`{rule.name}`" not in section] == []


# --- replay --------------------------------------------------------------------------------------------


def test_replay_of_the_standard_flow_finds_nothing() -> None:
    assert replay(get_definition("standard.v1"), standard()) == []


def test_replay_names_the_steps_a_grant_after_submission_skipped() -> None:
    events = steps(("submit", "submitted"), ("grant", "granted"), ("complete", "completed"))
    (deviation,) = replay(get_definition("standard.v1"), events)
    assert (deviation.kind, deviation.seq, deviation.missing) == (SKIPPED, 2, ("accept", "review"))


def test_replay_reports_a_step_already_left_and_a_repeated_once_per_step_action() -> None:
    behind = steps(("submit", "submitted"), ("accept", "under_review"), ("accept", "under_review"))
    assert [d.kind for d in replay(get_definition("standard.v1"), behind)] == [OUT_OF_ORDER]
    again = steps(("submit", "submitted"), ("accept", "under_review"), ("request_supplement", "review_supplement"),
                  ("supplement", "under_review"), ("request_supplement", "review_supplement"))
    assert [d.kind for d in replay(get_definition("standard.v1"), again)] == [REPEATED]


def test_replay_ignores_clock_actions_and_records_that_do_not_move_the_case() -> None:
    events = steps(("submit", "submitted"), ("accept", "under_review"), ("extend", "under_review"),
                   ("verify_manually", "under_review"), ("review", "pending_decision"))
    assert replay(get_definition("standard.v1"), events) == []


# --- the rules -----------------------------------------------------------------------------------------


def test_skipped_step_on_a_partner_case_without_acceptance() -> None:
    events = steps(("submit", "submitted"), ("grant", "granted", {"actor_type": "partner"}))
    (finding,) = found(SkippedStep(), facts(events, of=case(origin="partner", accepted_on=None)))
    assert (finding.rule, finding.level, finding.detail["no_acceptance"]) == ("procedure.skipped_step", "red", True)
    assert "受理" in finding.message
    assert found(SkippedStep(), facts(standard())) == []


def test_out_of_order() -> None:
    events = steps(("submit", "submitted"), ("accept", "under_review"), ("accept", "under_review"))
    assert [f.rule for f in found(OutOfOrder(), facts(events))] == ["procedure.out_of_order"]
    assert found(OutOfOrder(), facts(standard())) == []


def test_no_reasons_for_a_denial_or_refusal() -> None:
    denied = steps(("submit", "submitted"), ("accept", "under_review"), ("review", "pending_decision"),
                   ("deny", "denied", {"opinion": "  "}))
    assert found(NoReasons(), facts(denied))[0].detail == {"seqs": [4]}
    refused = steps(("submit", "submitted"), ("refuse_intake", "intake_refused", {"opinion": None}))
    assert len(found(NoReasons(), facts(refused))) == 1
    with_reasons = steps(("submit", "submitted"), ("refuse_intake", "intake_refused", {"opinion": "不属于本机关职权"}))
    assert found(NoReasons(), facts(with_reasons)) == []


def test_separation_of_duties() -> None:
    same = standard(4, review={"actor_id": "o2"}, grant={"actor_id": "o2"})
    (finding,) = found(SeparationOfDuties(), facts(same))
    assert finding.detail == {"review_seq": 3, "decision_seq": 4, "actor_id": "o2"}
    apart = standard(4, review={"actor_id": "o2"}, grant={"actor_id": "o3"})
    assert found(SeparationOfDuties(), facts(apart)) == []


def test_outside_scope() -> None:
    stranger = standard(3, review={"department_id": 99})
    assert found(OutsideScope(), facts(stranger))[0].detail["department_ids"] == [99]
    assert found(OutsideScope(), facts(standard(3))) == []
    # The cross-region window that registered the application is not a stranger.
    window = standard(2, submit={"actor_type": "officer", "department_id": 12})
    assert found(OutsideScope(), facts(window, of=case(receiving_department_id=12))) == []
    # A joint branch's first step is the lead department's acceptance that opened it; a later step by the lead is not.
    opened = standard(3, submit={"actor_type": "officer", "department_id": 99})
    assert found(OutsideScope(), facts(opened, of=case(parent_id=1))) == []
    assert found(OutsideScope(), facts(opened, of=case(parent_id=None)))[0].detail["seqs"] == [1]
    later = standard(3, review={"department_id": 99})
    assert found(OutsideScope(), facts(later, of=case(parent_id=1)))[0].detail["seqs"] == [3]


def test_repeated_supplement_notices() -> None:
    twice = steps(("submit", "submitted"), ("request_supplement", "awaiting_supplement"), ("supplement", "submitted"),
                  ("accept", "under_review"), ("request_supplement", "review_supplement"))
    assert found(RepeatedSupplement(), facts(twice))[0].detail == {"seqs": [2, 5]}
    assert found(RepeatedSupplement(max_notices=2), facts(twice)) == []
    assert found(RepeatedSupplement(), facts(twice[:4])) == []


def special(started: str, *, declared: int | None = 3, ended: str | None = None, reason: str = "专家评审") -> dict:
    return {"kind": "expert_review", "started_on": started, "reason": reason, "declared_days": declared,
            "ended_on": ended}


def test_suspension_without_a_special_procedure_record() -> None:
    held = case(suspensions=[special("2026-03-11")])
    assert len(found(SuspensionUnrecorded(), facts(standard(2), of=held))) == 1
    started = steps(("submit", "submitted"), ("accept", "under_review"), ("start_special_procedure", "under_review"),
                    every=timedelta(days=1))  # the procedure starts on 12 March
    assert len(found(SuspensionUnrecorded(), facts(started, of=held))) == 1
    assert found(SuspensionUnrecorded(), facts(started, of=case(suspensions=[special("2026-03-12")]))) == []
    # A partner's special procedure is its record; only one without a reason is reported.
    assert found(SuspensionUnrecorded(), facts(standard(2), of=case(origin="partner", suspensions=[
        special("2026-03-11")]))) == []
    assert len(found(SuspensionUnrecorded(), facts(standard(2), of=case(origin="partner", suspensions=[
        special("2026-03-11", reason=" ")])))) == 1


def test_special_procedure_longer_than_declared() -> None:
    # Declared 3 working days from Wed 11 March; still open on Mon 16 March (3 days) and Tue 17 (4).
    running = case(suspensions=[special("2026-03-11")])
    assert found(SuspensionOverlong(), facts(standard(2), of=running, today=date(2026, 3, 16))) == []
    (finding,) = found(SuspensionOverlong(), facts(standard(2), of=running, today=date(2026, 3, 17)))
    assert finding.detail["working_days"] == 4 and finding.detail["open"] is True
    ended = case(suspensions=[special("2026-03-11", ended="2026-03-13")])
    assert found(SuspensionOverlong(), facts(standard(2), of=ended, today=date(2026, 3, 30))) == []


def test_change_after_completion_and_chain_break() -> None:
    changed = steps(*[(action, state) for action, state, _ in FLOW], ("update_record", "completed"))
    assert found(ChangeAfterCompletion(), facts(changed))[0].detail["after_terminal"] == [6]
    assert found(ChangeAfterCompletion(), facts(standard())) == []
    broken = list(standard())
    broken[3] = replace(broken[3], prev_hash="forged")
    assert found(ChangeAfterCompletion(), facts(broken))[0].detail["chain_breaks"] == [4]
