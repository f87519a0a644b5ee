"""workflow.process over a joint case (enterprise-establishment.v1 with four joint-branch.v1 branches):
branches opened at acceptance, the one merged supplement notice, the join exactly once, the withdraw
cascade, and the branches' clocks kept within the parent's (Art. 26, 32, 42, 45).

Dates: accepted Monday 21 September 2026; Friday 25 September is the Mid-Autumn Festival, 1–7 October
the National Day holiday, Saturday 10 October a make-up working day."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Any

import pytest

from workflow.calendar import WorkingCalendar
from workflow.clock import ClockFacts, Suspension
from workflow.errors import (
    ActionNotAvailable,
    ActorNotAllowed,
    ClockError,
    OncePerStep,
    UnknownBranch,
    WorkflowError,
)
from workflow.process import CLOCK_ACTIONS, Move, Outcome, Process, advance, available_actions, start

CALENDAR = WorkingCalendar()
MONDAY = date(2026, 9, 21)
BRANCHES = ("registration", "seal_engraving", "tax_invoice", "social_insurance")
LABELS = {
    "registration": "设立登记（市场监管）",
    "seal_engraving": "公章刻制（公安）",
    "tax_invoice": "涉税事项和发票申领（税务）",
    "social_insurance": "单位社会保险登记（人社）",
}
ROLES = frozenset({"intake", "reviewer", "approver"})
A32 = "《中华人民共和国行政许可法》第三十二条"
A42 = "《中华人民共和国行政许可法》第四十二条"
A45 = "《中华人民共和国行政许可法》第四十五条"
HEARING = {"kind": "hearing", "declared_days": 10}


def _do(
    process: Process, action: str, *, branch: str | None = None, on: date = MONDAY, actor: str = "officer",
    roles: Collection[str] = ROLES, opinion: str | None = "意见", data: dict[str, Any] | None = None,
) -> Outcome:
    return advance(
        process, action, actor=actor, roles=roles, opinion=opinion, today=on, calendar=CALENDAR, branch=branch,
        data=data,
    )


def _supplement(process: Process, on: date = MONDAY) -> Outcome:
    return _do(process, "supplement", actor="applicant", roles=(), opinion=None, on=on)


def _accepted(promised: int = 5) -> Process:
    process = start("enterprise-establishment.v1", statutory_limit_days=45, promised_limit_days=promised)
    return _do(process, "accept").process


def _through(process: Process, branch: str, *actions: str, on: date = MONDAY) -> Process:
    for action in actions:
        process = _do(process, action, branch=branch, on=on).process
    return process


def _decide(process: Process, decisions: dict[str, str], on: date = MONDAY) -> Outcome:
    """Take every branch to its decision; the outcome of the last one."""
    outcome = None
    for name, decision in decisions.items():
        child = process.branches[name]
        steps = ["pass_pre_review"] if child.state == "pre_review" else []
        process = _through(process, name, *steps, "review", on=on)
        outcome = _do(process, decision, branch=name, on=on, opinion=f"{name}理由")
        process = outcome.process
    assert outcome is not None
    return outcome


def _deadline_pair(process: Process, today: date) -> tuple[date | None, date | None]:
    return process.clock.statutory_deadline(CALENDAR, today), process.clock.promised_deadline(CALENDAR, today)


# --- acceptance opens the branches ----------------------------------------------------------------


def test_acceptance_opens_one_branch_per_department() -> None:
    process = start("enterprise-establishment.v1", statutory_limit_days=45, promised_limit_days=5)
    outcome = _do(process, "accept")
    assert outcome.opened == BRANCHES
    assert outcome.process.state == "in_branches"
    assert [m.action for m in outcome.moves] == ["accept"]
    assert outcome.moves[0].data["new"] == {"statutory_deadline": "2026-11-30", "promised_deadline": "2026-09-29"}
    assert dict(outcome.process.branches) == {
        "registration": Process("joint-branch.v1", "pre_review", ClockFacts(45, 3, accepted_on=MONDAY)),
        "seal_engraving": Process("joint-branch.v1", "pre_review", ClockFacts(45, 1, accepted_on=MONDAY)),
        "tax_invoice": Process("joint-branch.v1", "pre_review", ClockFacts(45, 2, accepted_on=MONDAY)),
        "social_insurance": Process("joint-branch.v1", "pre_review", ClockFacts(45, 2, accepted_on=MONDAY)),
    }


def test_branch_promise_is_capped_by_the_parents() -> None:
    process = _accepted(promised=2)
    assert {n: c.clock.promised_limit_days for n, c in process.branches.items()} == {
        "registration": 2, "seal_engraving": 1, "tax_invoice": 2, "social_insurance": 2,
    }


def test_branches_count_from_the_day_the_parent_was_accepted() -> None:
    process = start("enterprise-establishment.v1", statutory_limit_days=45, promised_limit_days=5)
    process = _do(process, "accept", on=date(2026, 9, 30), data={"accepted_on": "2026-09-22"}).process
    assert {c.clock.accepted_on for c in process.branches.values()} == {date(2026, 9, 22)}


def test_intake_supplement_and_refusal_open_no_branch() -> None:
    process = start("enterprise-establishment.v1", statutory_limit_days=45, promised_limit_days=5)
    asked = _do(process, "request_supplement")
    assert (asked.process.state, asked.opened, dict(asked.process.branches)) == ("awaiting_supplement", (), {})
    back = _supplement(asked.process).process
    assert (back.state, dict(back.branches)) == ("submitted", {})
    refused = _do(back, "refuse_intake")
    assert (refused.process.state, refused.process.result, refused.moves[-1].action) == (
        "intake_refused", "intake_refused", "refuse_intake",
    )


def test_a_branch_moves_on_its_own() -> None:
    outcome = _do(_accepted(), "pass_pre_review", branch="tax_invoice", roles={"reviewer"}, opinion=None)
    assert outcome.moves == (Move(
        "tax_invoice", "pass_pre_review", "pre_review", "pre_review", "under_review", "officer", None, {}
    ),)
    assert outcome.process.branches["tax_invoice"].state == "under_review"
    assert {n: c.state for n, c in outcome.process.branches.items() if n != "tax_invoice"} == {
        "registration": "pre_review", "seal_engraving": "pre_review", "social_insurance": "pre_review",
    }
    assert outcome.process.state == "in_branches"


@pytest.mark.parametrize("name", ["bank", "", "REGISTRATION"])
def test_unknown_branch_is_refused(name: str) -> None:
    with pytest.raises(UnknownBranch) as raised:
        _do(_accepted(), "pass_pre_review", branch=name)
    assert str(raised.value) == f"本办件没有分支「{name}」"


def test_no_branch_before_acceptance() -> None:
    process = start("enterprise-establishment.v1", statutory_limit_days=45, promised_limit_days=5)
    with pytest.raises(UnknownBranch):
        _do(process, "pass_pre_review", branch="registration")


def test_nobody_can_ask_for_a_system_action() -> None:
    process = _accepted()
    with pytest.raises(ActorNotAllowed) as raised:
        _do(process, "join_granted")
    assert str(raised.value) == "当前状态「并联审批中」下，工作人员不能执行「并联审批通过」"
    with pytest.raises(ActorNotAllowed):
        _do(process, "notify_supplement", actor="applicant", roles=())
    with pytest.raises(ActorNotAllowed):
        _do(process, "withdraw", branch="seal_engraving", actor="applicant", roles=())
    asked = _do(process, "request_supplement", branch="seal_engraving").process
    with pytest.raises(ActorNotAllowed):
        _do(asked, "supplement", branch="seal_engraving")


def test_branch_checks_are_the_branch_definitions() -> None:
    with pytest.raises(ActionNotAvailable) as raised:
        _do(_accepted(), "grant", branch="registration")
    assert str(raised.value) == "当前状态「同步预审」不能执行「批准」"


# --- one merged supplement notice (Art. 32) --------------------------------------------------------


def test_no_notice_while_a_branch_may_still_ask() -> None:
    process = _accepted()
    process = _do(process, "request_supplement", branch="seal_engraving", opinion="缺印章样式").process
    process = _through(process, "registration", "pass_pre_review")
    outcome = _do(process, "pass_pre_review", branch="tax_invoice")
    assert outcome.notice is None
    assert outcome.process.state == "in_branches"
    assert outcome.process.branches["seal_engraving"].note == "缺印章样式"


def test_the_last_branch_out_of_pre_review_sends_one_merged_notice() -> None:
    process = _accepted()
    process = _do(process, "request_supplement", branch="seal_engraving", opinion="缺印章样式").process
    process = _do(process, "request_supplement", branch="tax_invoice", opinion="缺办税人员信息").process
    process = _through(process, "registration", "pass_pre_review")
    outcome = _do(process, "pass_pre_review", branch="social_insurance", on=date(2026, 9, 22))
    merged = "公章刻制（公安）：缺印章样式；涉税事项和发票申领（税务）：缺办税人员信息"
    assert outcome.notice == {"seal_engraving": "缺印章样式", "tax_invoice": "缺办税人员信息"}
    assert [(m.branch, m.action) for m in outcome.moves] == [
        ("social_insurance", "pass_pre_review"),
        (None, "notify_supplement"),
        ("registration", "notify_supplement"),
        ("seal_engraving", "notify_supplement"),
        ("tax_invoice", "notify_supplement"),
        ("social_insurance", "notify_supplement"),
    ]
    notify = outcome.moves[1]
    assert notify == Move(
        None, "notify_supplement", "joint_review", "in_branches", "joint_supplement", "system", merged,
        {
            "kind": "supplement", "notice": {"seal_engraving": "缺印章样式", "tax_invoice": "缺办税人员信息"},
            "old": {"statutory_deadline": "2026-11-30", "promised_deadline": "2026-09-29"},
            "new": {"statutory_deadline": "2026-11-30", "promised_deadline": "2026-09-29"},
        },
    )
    assert outcome.moves[3] == Move(
        "seal_engraving", "notify_supplement", None, "awaiting_supplement", "awaiting_supplement", "system", None,
        {
            "kind": "supplement", "legal_basis": A32,
            "old": {"statutory_deadline": "2026-11-30", "promised_deadline": "2026-09-22"},
            "new": {"statutory_deadline": "2026-11-30", "promised_deadline": "2026-09-22"},
        },
    )
    process = outcome.process
    assert process.state == "joint_supplement"
    assert process.clock.open_suspension == Suspension("supplement", date(2026, 9, 22), reason=merged)
    for child in process.branches.values():
        assert child.clock.open_suspension == Suspension("supplement", date(2026, 9, 22), reason=merged)


def test_notice_when_every_branch_asks() -> None:
    process = _accepted()
    for name in BRANCHES[:-1]:
        process = _do(process, "request_supplement", branch=name, opinion=f"{name}缺").process
        assert process.state == "in_branches"
    outcome = _do(process, "request_supplement", branch="social_insurance", opinion="缺参保人数")
    assert outcome.process.state == "joint_supplement"
    assert outcome.notice == {
        "registration": "registration缺", "seal_engraving": "seal_engraving缺", "tax_invoice": "tax_invoice缺",
        "social_insurance": "缺参保人数",
    }


def test_no_notice_when_nobody_asks() -> None:
    process = _accepted()
    for name in BRANCHES:
        outcome = _do(process, "pass_pre_review", branch=name)
        assert outcome.notice is None
        process = outcome.process
    assert process.state == "in_branches"


def test_a_request_without_a_recorded_note_is_listed_empty() -> None:
    process = _accepted()
    process = _do(process, "request_supplement", branch="seal_engraving", opinion="缺").process
    process = Process.from_json({**process.to_json(), "branches": {
        **process.to_json()["branches"],
        "seal_engraving": {**process.to_json()["branches"]["seal_engraving"], "note": None},
    }})
    for name in ("registration", "tax_invoice"):
        process = _through(process, name, "pass_pre_review")
    outcome = _do(process, "pass_pre_review", branch="social_insurance")
    assert outcome.notice == {"seal_engraving": ""}
    assert outcome.moves[1].opinion == "公章刻制（公安）："


def _noticed(on: date = date(2026, 9, 22)) -> Process:
    process = _accepted()
    process = _do(process, "request_supplement", branch="seal_engraving", opinion="缺印章样式").process
    process = _through(process, "registration", "pass_pre_review", "review")
    process = _through(process, "tax_invoice", "pass_pre_review")
    process = _do(process, "pass_pre_review", branch="social_insurance", on=on).process
    assert process.state == "joint_supplement"
    return process


def test_branches_wait_while_the_applicant_supplements() -> None:
    process = _noticed()
    with pytest.raises(ActionNotAvailable) as raised:
        _do(process, "grant", branch="registration")
    assert str(raised.value) == "当前状态「并联补正」不能执行「批准」"
    assert (raised.value.state, raised.value.action) == ("joint_supplement", "grant")
    with pytest.raises(ActionNotAvailable) as clock:
        _do(process, "start_special_procedure", branch="registration", data=HEARING)
    assert str(clock.value) == "当前状态「并联补正」不能执行「启动特别程序」"
    assert available_actions(process, actor="officer", roles=ROLES, branch="registration") == []
    assert available_actions(process, actor="applicant") == ["supplement", "withdraw"]


def test_the_supplement_resumes_every_clock_and_sends_the_askers_back_to_pre_review() -> None:
    outcome = _supplement(_noticed(), on=date(2026, 10, 9))
    process = outcome.process
    assert process.state == "in_branches"
    assert [(m.branch, m.action, m.step, m.from_state, m.to_state, m.actor) for m in outcome.moves] == [
        (None, "supplement", "joint_review", "joint_supplement", "in_branches", "applicant"),
        ("registration", "supplement", None, "pending_decision", "pending_decision", "system"),
        ("seal_engraving", "supplement", "pre_review", "awaiting_supplement", "pre_review", "system"),
        ("tax_invoice", "supplement", None, "under_review", "under_review", "system"),
        ("social_insurance", "supplement", None, "under_review", "under_review", "system"),
    ]
    # 23, 24, 28, 29, 30 September, 8, 9 October: seven working days not counted.
    assert process.clock.days_suspended(CALENDAR, date(2026, 10, 9)) == 7
    assert _deadline_pair(process, date(2026, 10, 9)) == (date(2026, 12, 9), date(2026, 10, 14))
    for child in process.branches.values():
        assert child.clock.open_suspension is None
        assert child.clock.days_suspended(CALENDAR, date(2026, 10, 9)) == 7
    seal = process.branches["seal_engraving"]
    assert (seal.state, seal.note, seal.taken) == ("pre_review", None, {("pre_review", "request_supplement")})
    assert outcome.moves[1].data == {
        "old": {"statutory_deadline": "2026-12-09", "promised_deadline": "2026-10-12"},
        "new": {"statutory_deadline": "2026-12-09", "promised_deadline": "2026-10-12"},
    }
    assert outcome.moves[2].data == {
        "old": {"statutory_deadline": "2026-12-09", "promised_deadline": "2026-10-09"},
        "new": {"statutory_deadline": "2026-12-09", "promised_deadline": "2026-10-09"},
    }
    # Once per step (Art. 32): the branch cannot ask again.
    with pytest.raises(OncePerStep):
        _do(process, "request_supplement", branch="seal_engraving")
    assert available_actions(process, actor="officer", roles={"reviewer"}, branch="seal_engraving") == [
        "pass_pre_review", "start_special_procedure",
    ]


def test_after_the_supplement_no_second_notice_goes_out() -> None:
    process = _supplement(_noticed()).process
    outcome = _do(process, "pass_pre_review", branch="seal_engraving")
    assert (outcome.notice, outcome.process.state) == (None, "in_branches")


# --- the join, exactly once ------------------------------------------------------------------------


def test_all_granted_joins_as_granted_then_the_lead_completes() -> None:
    process = _accepted()
    outcome = _decide(process, dict.fromkeys(BRANCHES, "grant"), on=date(2026, 9, 24))
    assert outcome.joined == "granted"
    assert [(m.branch, m.action) for m in outcome.moves] == [("social_insurance", "grant"), (None, "join_granted")]
    assert outcome.moves[1] == Move(
        None, "join_granted", "joint_review", "in_branches", "granted", "system", "各部门均准予许可",
        {"results": dict.fromkeys(BRANCHES, "granted")},
    )
    process = outcome.process
    assert (process.state, process.result) == ("granted", "granted")
    assert {c.clock.stopped_on for c in process.branches.values()} == {date(2026, 9, 24)}
    assert available_actions(process, actor="officer", roles={"intake"}) == ["complete"]
    done = _do(process, "complete", roles={"intake"}, on=date(2026, 9, 28))
    assert (done.process.state, done.process.result, done.joined) == ("completed", "granted", None)
    assert done.process.clock.stopped_on == date(2026, 9, 28)
    assert done.process.clock.working_days_used(CALENDAR, date(2026, 12, 31)) == 4


def test_any_denial_joins_as_denied_with_every_departments_reasons() -> None:
    process = _accepted()
    outcome = _decide(process, {
        "registration": "grant", "seal_engraving": "deny", "tax_invoice": "grant", "social_insurance": "deny",
    })
    assert outcome.joined == "denied"
    join = outcome.moves[-1]
    assert (join.action, join.to_state, join.actor) == ("join_denied", "denied", "system")
    assert join.opinion == "公章刻制（公安）：seal_engraving理由；单位社会保险登记（人社）：social_insurance理由"
    assert join.data == {
        "results": {
            "registration": "granted", "seal_engraving": "denied", "tax_invoice": "granted",
            "social_insurance": "denied",
        },
        "reasons": {"seal_engraving": "seal_engraving理由", "social_insurance": "social_insurance理由"},
    }
    assert (outcome.process.state, outcome.process.result) == ("denied", "denied")
    assert outcome.process.branches["seal_engraving"].note == "seal_engraving理由"
    done = _do(outcome.process, "complete", roles={"approver"}).process
    assert (done.state, done.result) == ("completed", "denied")


def test_the_join_waits_for_the_last_branch() -> None:
    process = _accepted()
    outcome = _decide(process, {"registration": "deny", "seal_engraving": "grant", "tax_invoice": "grant"})
    assert (outcome.joined, outcome.process.state) == (None, "in_branches")
    assert outcome.process.result is None


def test_a_branch_reported_twice_counts_once() -> None:
    process = _decide(_accepted(), dict.fromkeys(BRANCHES, "grant")).process
    with pytest.raises(ActionNotAvailable) as raised:
        _do(process, "grant", branch="tax_invoice")
    assert str(raised.value) == "当前状态「准予许可」不能执行「批准」"
    assert (raised.value.state, raised.value.action) == ("granted", "grant")
    with pytest.raises(ActionNotAvailable):
        _do(process, "extend", branch="tax_invoice")
    assert available_actions(process, actor="officer", roles=ROLES, branch="tax_invoice") == []
    assert process.state == "granted"


def test_a_completed_joint_case_accepts_nothing() -> None:
    process = _decide(_accepted(), dict.fromkeys(BRANCHES, "grant")).process
    process = _do(process, "complete").process
    actions = {t.action for t in process.definition.transitions} | CLOCK_ACTIONS | {"review", "grant"}
    data = {"kind": "hearing", "declared_days": 2, "result": "x"}
    for action in sorted(actions):
        for actor in ("officer", "applicant"):
            for branch in (None, *BRANCHES):
                with pytest.raises(WorkflowError):
                    _do(process, action, actor=actor, branch=branch, data=data)
    assert available_actions(process, actor="officer", roles=ROLES) == []


# --- the applicant's withdrawal ends every open branch --------------------------------------------


def test_withdrawal_cascades_to_every_open_branch() -> None:
    process = _decide(_accepted(), {"tax_invoice": "grant"}).process
    outcome = _do(process, "withdraw", actor="applicant", roles=(), opinion=None, on=date(2026, 9, 28))
    assert [(m.branch, m.action, m.from_state, m.to_state, m.actor) for m in outcome.moves] == [
        (None, "withdraw", "in_branches", "withdrawn", "applicant"),
        ("registration", "withdraw", "pre_review", "withdrawn", "system"),
        ("seal_engraving", "withdraw", "pre_review", "withdrawn", "system"),
        ("social_insurance", "withdraw", "pre_review", "withdrawn", "system"),
    ]
    process = outcome.process
    assert (process.state, process.result, outcome.joined) == ("withdrawn", "withdrawn", None)
    assert {n: c.result for n, c in process.branches.items()} == {
        "registration": "withdrawn", "seal_engraving": "withdrawn", "tax_invoice": "granted",
        "social_insurance": "withdrawn",
    }
    assert process.branches["tax_invoice"].clock.stopped_on == MONDAY
    assert process.branches["registration"].clock.stopped_on == date(2026, 9, 28)


def test_withdrawal_while_waiting_for_the_supplement_closes_every_suspension() -> None:
    outcome = _do(_noticed(), "withdraw", actor="applicant", roles=(), opinion=None, on=date(2026, 9, 28))
    process = outcome.process
    assert process.state == "withdrawn"
    assert process.clock.suspensions[-1].ended_on == date(2026, 9, 28)
    assert {c.state for c in process.branches.values()} == {"withdrawn"}
    assert all(c.clock.open_suspension is None for c in process.branches.values())
    assert len(outcome.moves) == 5


# --- Art. 45 on a branch: the parent's clock stops too ---------------------------------------------


def test_a_branch_special_procedure_stops_the_parents_clock() -> None:
    process = _through(_accepted(), "registration", "pass_pre_review")
    outcome = _do(process, "start_special_procedure", branch="registration", roles={"reviewer"},
                  opinion="实地核查住所", data={"kind": "inspection", "declared_days": 3}, on=date(2026, 9, 22))
    assert [(m.branch, m.action, m.actor) for m in outcome.moves] == [
        ("registration", "start_special_procedure", "officer"), (None, "start_special_procedure", "system"),
    ]
    assert outcome.moves[1] == Move(
        None, "start_special_procedure", None, "in_branches", "in_branches", "system", None,
        {
            "branch": "registration", "kind": "inspection", "declared_days": 3, "legal_basis": A45,
            "old": {"statutory_deadline": "2026-11-30", "promised_deadline": "2026-09-29"},
            "new": {"statutory_deadline": "2026-11-30", "promised_deadline": "2026-09-29"},
        },
    )
    parent = outcome.process
    assert parent.clock.open_suspension == Suspension(
        "inspection", date(2026, 9, 22), reason="设立登记（市场监管）：实地核查住所", declared_days=3
    )
    # Other branches go on; the branch in the procedure waits for its end.
    assert _do(parent, "pass_pre_review", branch="tax_invoice").process.branches["tax_invoice"].state == "under_review"
    with pytest.raises(ClockError) as raised:
        _do(parent, "review", branch="registration")
    assert raised.value.rule == "special_procedure_open"
    assert str(raised.value) == f"特别程序（检测）进行中，只能结束特别程序或由申请人撤回申请（依据{A45}）"
    assert available_actions(parent, actor="officer", roles=ROLES, branch="registration") == ["end_special_procedure"]
    # The parent's stop is its branch's: it offers no end of its own, but may still be extended.
    assert available_actions(parent, actor="officer", roles=ROLES) == ["extend"]
    with pytest.raises(ClockError) as own:
        _do(parent, "end_special_procedure", data={"result": "x"})
    assert (own.value.rule, str(own.value)) == (
        "branches_open", f"并联审批期间，特别程序由各部门在其分支办理（依据{A45}）"
    )
    assert _do(parent, "extend", roles={"approver"}).process.clock.extension_days == 15


def test_the_parent_resumes_when_the_last_branch_procedure_ends() -> None:
    process = _accepted()
    process = _do(process, "start_special_procedure", branch="registration", data=HEARING,
                  on=date(2026, 9, 22)).process
    second = _do(process, "start_special_procedure", branch="tax_invoice", data={"kind": "testing", "declared_days": 2},
                 on=date(2026, 9, 23))
    assert [m.branch for m in second.moves] == ["tax_invoice"]  # the parent is stopped already
    process = second.process
    first_end = _do(process, "end_special_procedure", branch="registration", data={"result": "结束"},
                    on=date(2026, 9, 28))
    assert [m.branch for m in first_end.moves] == ["registration"]
    assert first_end.process.clock.open_suspension is not None
    last_end = _do(first_end.process, "end_special_procedure", branch="tax_invoice", data={"result": "合格"},
                   on=date(2026, 9, 30))
    assert [(m.branch, m.action, m.actor) for m in last_end.moves] == [
        ("tax_invoice", "end_special_procedure", "officer"), (None, "end_special_procedure", "system"),
    ]
    assert (last_end.moves[1].from_state, last_end.moves[1].to_state, last_end.moves[1].opinion) == (
        "in_branches", "in_branches", None,
    )
    assert last_end.moves[1].data == {
        "branch": "tax_invoice", "kind": "hearing", "legal_basis": A45,
        "old": {"statutory_deadline": "2026-12-07", "promised_deadline": "2026-10-12"},
        "new": {"statutory_deadline": "2026-12-07", "promised_deadline": "2026-10-12"},
    }
    parent = last_end.process
    assert parent.clock.suspensions == (
        Suspension("hearing", date(2026, 9, 22), reason="设立登记（市场监管）：意见", declared_days=10,
                   ended_on=date(2026, 9, 30)),
    )
    # 23, 24, 28, 29, 30 September not counted for the parent; each branch only its own days.
    today = date(2026, 10, 12)
    assert parent.clock.days_suspended(CALENDAR, today) == 5
    assert parent.branches["registration"].clock.days_suspended(CALENDAR, today) == 3
    assert parent.branches["tax_invoice"].clock.days_suspended(CALENDAR, today) == 4
    for child in parent.branches.values():
        assert child.clock.statutory_deadline(CALENDAR, today) <= parent.clock.statutory_deadline(CALENDAR, today)


def test_withdrawal_during_a_branch_procedure() -> None:
    process = _do(_accepted(), "start_special_procedure", branch="registration", data=HEARING).process
    assert available_actions(process, actor="applicant") == ["withdraw"]
    outcome = _do(process, "withdraw", actor="applicant", roles=(), opinion=None, on=date(2026, 9, 23))
    assert outcome.process.state == "withdrawn"
    assert outcome.process.branches["registration"].clock.suspensions[0].ended_on == date(2026, 9, 23)
    assert outcome.process.clock.suspensions[0].ended_on == date(2026, 9, 23)


def test_the_parent_runs_no_procedure_of_its_own_while_branches_are_open() -> None:
    process = _accepted()
    with pytest.raises(ClockError) as raised:
        _do(process, "start_special_procedure", data=HEARING)
    assert raised.value.rule == "branches_open"
    with pytest.raises(ActorNotAllowed):
        _do(process, "start_special_procedure", actor="applicant", roles=(), data=HEARING)
    with pytest.raises(ClockError) as before:
        _do(start("enterprise-establishment.v1", statutory_limit_days=45, promised_limit_days=5),
            "start_special_procedure", data=HEARING)
    assert before.value.rule == "clock_not_started"
    joined = _decide(process, dict.fromkeys(BRANCHES, "grant")).process
    started = _do(joined, "start_special_procedure", data=HEARING).process
    assert started.clock.open_suspension is not None
    with pytest.raises(ClockError) as blocked:
        _do(started, "complete")
    assert blocked.value.rule == "special_procedure_open"


def test_the_notice_takes_over_from_a_branch_procedure_and_hands_back() -> None:
    process = _through(_accepted(), "registration", "pass_pre_review")
    process = _do(process, "start_special_procedure", branch="registration", data=HEARING,
                  on=date(2026, 9, 22)).process
    process = _do(process, "request_supplement", branch="seal_engraving", opinion="缺", on=date(2026, 9, 22)).process
    process = _through(process, "tax_invoice", "pass_pre_review", on=date(2026, 9, 23))
    noticed = _do(process, "pass_pre_review", branch="social_insurance", on=date(2026, 9, 24))
    # The branch in its procedure keeps its own stop; the others stop for the notice.
    assert [m.branch for m in noticed.moves] == [
        "social_insurance", None, "seal_engraving", "tax_invoice", "social_insurance",
    ]
    parent = noticed.process
    assert [(s.kind, s.started_on, s.ended_on) for s in parent.clock.suspensions] == [
        ("hearing", date(2026, 9, 22), date(2026, 9, 24)), ("supplement", date(2026, 9, 24), None),
    ]
    back = _supplement(parent, on=date(2026, 9, 30))
    assert [(m.branch, m.action, m.actor) for m in back.moves] == [
        (None, "supplement", "applicant"),
        ("seal_engraving", "supplement", "system"),
        ("tax_invoice", "supplement", "system"),
        ("social_insurance", "supplement", "system"),
        (None, "start_special_procedure", "system"),
    ]
    parent = back.process
    assert [(s.kind, s.started_on, s.ended_on) for s in parent.clock.suspensions] == [
        ("hearing", date(2026, 9, 22), date(2026, 9, 24)),
        ("supplement", date(2026, 9, 24), date(2026, 9, 30)),
        ("hearing", date(2026, 9, 30), None),
    ]
    assert parent.branches["registration"].clock.suspensions == (
        Suspension("hearing", date(2026, 9, 22), reason="意见", declared_days=10),
    )
    today = date(2026, 10, 12)
    assert parent.clock.days_suspended(CALENDAR, today) == parent.branches["registration"].clock.days_suspended(
        CALENDAR, today
    )


# --- Art. 42 on a joint case: 15 days, the parent with its branches --------------------------------


def test_a_branch_extension_extends_the_parent_too() -> None:
    outcome = _do(_accepted(), "extend", branch="tax_invoice", roles={"approver"}, opinion="需核查")
    assert [(m.branch, m.action, m.actor) for m in outcome.moves] == [
        ("tax_invoice", "extend", "officer"), (None, "extend", "system"),
    ]
    assert outcome.moves[0].data == {
        "days": 15, "legal_basis": A42,
        "old": {"statutory_deadline": "2026-11-30", "promised_deadline": "2026-09-23"},
        "new": {"statutory_deadline": "2026-12-21", "promised_deadline": "2026-09-23"},
    }
    assert (outcome.moves[1].from_state, outcome.moves[1].to_state) == ("in_branches", "in_branches")
    assert outcome.moves[1].data == {
        "branch": "tax_invoice", "days": 15, "legal_basis": A42,
        "old": {"statutory_deadline": "2026-11-30", "promised_deadline": "2026-09-29"},
        "new": {"statutory_deadline": "2026-12-21", "promised_deadline": "2026-09-29"},
    }
    process = outcome.process
    assert process.clock.extension_days == 15
    assert {n: c.clock.extension_days for n, c in process.branches.items()} == {
        "registration": 0, "seal_engraving": 0, "tax_invoice": 15, "social_insurance": 0,
    }
    again = _do(process, "extend", branch="registration", roles={"approver"})
    assert [m.branch for m in again.moves] == ["registration"]
    with pytest.raises(ClockError) as raised:
        _do(again.process, "extend", branch="registration", roles={"approver"})
    assert raised.value.rule == "already_extended"


def test_a_parent_extension_leaves_the_branches_alone() -> None:
    outcome = _do(_accepted(), "extend", roles={"approver"})
    assert [m.branch for m in outcome.moves] == [None]
    assert outcome.moves[0].data["days"] == 15
    assert {c.clock.extension_days for c in outcome.process.branches.values()} == {0}
    branch = _do(outcome.process, "extend", branch="seal_engraving", roles={"approver"})
    assert [m.branch for m in branch.moves] == ["seal_engraving"]
    assert branch.process.clock.extension_days == 15


# --- what may be done now --------------------------------------------------------------------------


def test_available_actions_of_a_joint_case() -> None:
    process = start("enterprise-establishment.v1", statutory_limit_days=45, promised_limit_days=5)
    assert available_actions(process, actor="officer", roles={"intake"}) == [
        "accept", "refuse_intake", "request_supplement",
    ]
    process = _do(process, "accept").process
    assert available_actions(process, actor="officer", roles={"intake"}) == []
    assert available_actions(process, actor="officer", roles={"approver"}) == ["extend"]
    assert available_actions(process, actor="applicant") == ["withdraw"]
    assert available_actions(process, actor="officer", roles={"reviewer"}, branch="registration") == [
        "pass_pre_review", "request_supplement", "start_special_procedure",
    ]
    assert available_actions(process, actor="officer", roles={"intake"}, branch="registration") == [
        "pass_pre_review", "request_supplement",
    ]
    assert available_actions(process, actor="applicant", branch="registration") == []
    with pytest.raises(UnknownBranch) as raised:
        available_actions(process, actor="officer", branch="bank")
    assert raised.value.branch == "bank"


def test_joint_state_round_trips_through_json() -> None:
    process = _noticed()
    data = process.to_json()
    assert set(data["branches"]) == set(BRANCHES)
    assert data["branches"]["seal_engraving"]["taken"] == [["pre_review", "request_supplement"]]
    assert data["branches"]["seal_engraving"]["branches"] == {}
    assert Process.from_json(data) == process


def test_a_branch_in_a_procedure_cannot_be_extended_until_it_ends() -> None:
    process = _do(_accepted(), "start_special_procedure", branch="registration", data=HEARING).process
    with pytest.raises(ClockError) as raised:
        _do(process, "extend", branch="registration", roles={"approver"})
    assert raised.value.rule == "special_procedure_open"
    assert available_actions(process, actor="applicant", branch="registration") == []


def test_a_denial_without_a_recorded_reason_is_listed_empty() -> None:
    process = _decide(_accepted(), {"registration": "grant", "seal_engraving": "deny", "tax_invoice": "grant"}).process
    # Rebuilt from rows whose denial reasons were not filled in.
    data = process.to_json()
    data["branches"]["seal_engraving"]["note"] = None
    process = _through(Process.from_json(data), "social_insurance", "pass_pre_review", "review")
    outcome = _do(process, "grant", branch="social_insurance")
    assert outcome.joined == "denied"
    assert outcome.moves[-1].data["reasons"] == {"seal_engraving": ""}
    assert outcome.moves[-1].opinion == "公章刻制（公安）："
