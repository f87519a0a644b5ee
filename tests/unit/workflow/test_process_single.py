"""workflow.process over a single (standard.v1) case: the same checks and results as machine.apply
plus the clock of workflow/clock.py, and the clock actions (Art. 42 extension, Art. 45 procedures).

Dates: Monday 21 September 2026; Friday 25 September is the Mid-Autumn Festival and 1–7 October the
National Day holiday (make-up working Saturday 10 October)."""

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
    OpinionRequired,
    RoleNotAllowed,
    UnknownBranch,
    WorkflowError,
)
from workflow.process import (
    CLOCK_ACTION_LABELS,
    CLOCK_ACTION_ROLES,
    CLOCK_ACTIONS,
    Move,
    Outcome,
    Process,
    advance,
    available_actions,
    handling_of,
    start,
)
from workflow.registry import UnknownDefinition, get_definition
from workflow.timelimits import compute_deadline, extend_for_suspension

CALENDAR = WorkingCalendar()
MONDAY = date(2026, 9, 21)
A42 = "《中华人民共和国行政许可法》第四十二条"
A45 = "《中华人民共和国行政许可法》第四十五条"
A32 = "《中华人民共和国行政许可法》第三十二条"


def _do(
    process: Process, action: str, *, on: date = MONDAY, actor: str = "officer",
    roles: Collection[str] = ("intake", "reviewer", "approver"), opinion: str | None = "意见",
    data: dict[str, Any] | None = None,
) -> Outcome:
    return advance(process, action, actor=actor, roles=roles, opinion=opinion, today=on, calendar=CALENDAR, data=data)


def _new(statutory: int = 20, promised: int = 10) -> Process:
    return start("standard.v1", statutory_limit_days=statutory, promised_limit_days=promised)


def _accepted(on: date = MONDAY, **limits: int) -> Process:
    return _do(_new(**limits), "accept", on=on).process


def _deadlines(process: Process, today: date) -> tuple[date | None, date | None]:
    return (process.clock.statutory_deadline(CALENDAR, today), process.clock.promised_deadline(CALENDAR, today))


# --- start ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workflow_id", "statutory", "promised", "expected"),
    [
        ("standard.v1", 30, 25, (20, 20)),
        ("standard.v1", 20, 10, (20, 10)),
        ("standard.v1", 21, 21, (20, 20)),
        ("standard.v1", 15, 18, (15, 15)),
        ("standard.v1", 0, 0, (0, 0)),
        ("enterprise-establishment.v1", 60, 5, (45, 5)),
        ("enterprise-establishment.v1", 46, 46, (45, 45)),
        ("enterprise-establishment.v1", 45, 45, (45, 45)),
        ("enterprise-establishment.v1", 40, 50, (40, 40)),
    ],
)
def test_start_caps_the_limits_by_the_law(
    workflow_id: str, statutory: int, promised: int, expected: tuple[int, int]
) -> None:
    process = start(workflow_id, statutory_limit_days=statutory, promised_limit_days=promised)
    assert (process.clock.statutory_limit_days, process.clock.promised_limit_days) == expected
    assert process == Process(workflow_id, get_definition(workflow_id).initial_state, process.clock)
    assert process.clock == ClockFacts(*expected)
    assert (process.taken, dict(process.branches), process.result, process.note) == (frozenset(), {}, None, None)


def test_start_refuses_a_branch_workflow() -> None:
    with pytest.raises(ValueError, match=r"^joint-branch\.v1 is a branch workflow: its cases are opened by"):
        start("joint-branch.v1", statutory_limit_days=45, promised_limit_days=3)


def test_start_refuses_an_unknown_workflow() -> None:
    with pytest.raises(UnknownDefinition):
        start("standard.v7", statutory_limit_days=20, promised_limit_days=20)


def test_handling_is_joint_for_parallel_and_branch_definitions() -> None:
    assert handling_of(get_definition("standard.v1")) == "single"
    assert handling_of(get_definition("enterprise-establishment.v1")) == "joint"
    assert handling_of(get_definition("joint-branch.v1")) == "joint"


def test_process_knows_its_definition_and_whether_it_ended() -> None:
    process = _new()
    assert process.definition is get_definition("standard.v1")
    assert not process.is_terminal
    assert _do(process, "withdraw", actor="applicant", roles=()).process.is_terminal


# --- transitions: the machine's checks, the clock's effects ---------------------------------------


def test_accept_starts_the_clock_and_records_the_deadlines() -> None:
    outcome = _do(_new(), "accept", opinion="  ")
    process = outcome.process
    assert process.state == "under_review"
    assert process.clock == ClockFacts(20, 10, accepted_on=MONDAY)
    assert outcome.moves == (Move(
        branch=None, action="accept", step="intake", from_state="submitted", to_state="under_review",
        actor="officer", opinion=None,
        data={
            "old": {"statutory_deadline": None, "promised_deadline": None},
            "new": {"statutory_deadline": "2026-10-26", "promised_deadline": "2026-10-12"},
        },
    ),)
    assert (outcome.opened, outcome.joined, outcome.notice) == ((), None, None)
    # The same deadlines as the hub stored at acceptance before (compute_deadline).
    assert _deadlines(process, MONDAY) == (
        compute_deadline(CALENDAR, MONDAY, 20), compute_deadline(CALENDAR, MONDAY, 10)
    )


def test_accept_on_the_day_the_materials_were_received() -> None:
    # Art. 32: no notice within 5 working days → accepted on the day of receipt.
    process = _do(_new(), "accept", on=date(2026, 9, 30), data={"accepted_on": "2026-09-21"}).process
    assert process.clock.accepted_on == MONDAY
    process = _do(_new(), "accept", on=date(2026, 9, 30), data={"accepted_on": date(2026, 9, 22)}).process
    assert process.clock.accepted_on == date(2026, 9, 22)
    same_day = _do(_new(), "accept", data={"accepted_on": "2026-09-21"})
    assert same_day.process.clock.accepted_on == MONDAY
    assert same_day.moves[0].data["accepted_on"] == "2026-09-21"


@pytest.mark.parametrize("given", ["2026-09-22", "yesterday", 20260920, date(2026, 9, 22)])
def test_accepted_on_must_be_a_day_not_after_today(given: object) -> None:
    with pytest.raises(ClockError) as raised:
        _do(_new(), "accept", data={"accepted_on": given})
    error = raised.value
    assert (error.rule, error.field, error.legal_basis) == ("accepted_on", "data.accepted_on", A32)
    assert str(error) == f"受理日期「{given}」无效：应为不晚于今天的日期（依据{A32}）"


def test_review_supplement_suspends_and_the_supplement_resumes_as_before() -> None:
    process = _accepted()
    suspended = _do(process, "request_supplement", on=date(2026, 9, 24), opinion=" 缺少营业执照 ")
    assert suspended.process.state == "review_supplement"
    assert suspended.process.clock.suspensions == (Suspension("supplement", date(2026, 9, 24), reason="缺少营业执照"),)
    assert suspended.process.taken == {("review", "request_supplement")}
    assert suspended.process.note == "缺少营业执照"
    assert suspended.moves[0].opinion == "缺少营业执照"
    resumed = _do(suspended.process, "supplement", on=date(2026, 10, 9), actor="applicant", roles=(), opinion=None)
    process = resumed.process
    assert process.state == "under_review"
    assert process.note is None
    assert process.clock.suspensions[0].ended_on == date(2026, 10, 9)
    # Five working days (28, 29, 30 September, 8, 9 October) are not counted — what the hub computed
    # with extend_for_suspension before.
    old = compute_deadline(CALENDAR, MONDAY, 20)
    assert _deadlines(process, date(2026, 10, 9)) == (date(2026, 11, 2), date(2026, 10, 19))
    assert process.clock.statutory_deadline(CALENDAR, date(2027, 1, 1)) == extend_for_suspension(
        CALENDAR, old, date(2026, 9, 24), date(2026, 10, 9)
    )
    assert resumed.moves[0].data == {
        "old": {"statutory_deadline": "2026-11-02", "promised_deadline": "2026-10-19"},
        "new": {"statutory_deadline": "2026-11-02", "promised_deadline": "2026-10-19"},
    }
    with pytest.raises(OncePerStep):
        _do(process, "request_supplement")


def test_intake_supplement_does_not_touch_the_clock() -> None:
    outcome = _do(_new(), "request_supplement", opinion="补身份证")
    assert outcome.process.clock == ClockFacts(20, 10)
    assert outcome.moves[0].data == {}
    assert outcome.process.taken == {("intake", "request_supplement")}
    back = _do(outcome.process, "supplement", actor="applicant", roles=(), opinion=None).process
    assert (back.state, back.note, back.taken) == ("submitted", None, {("intake", "request_supplement")})


@pytest.mark.parametrize(
    ("path", "result"),
    [
        (["accept", "review", "grant", "complete"], "granted"),
        (["accept", "review", "deny", "complete"], "denied"),
        (["refuse_intake"], "intake_refused"),
    ],
)
def test_results_of_the_ways_a_case_ends(path: list[str], result: str) -> None:
    process = _new()
    for action in path:
        process = _do(process, action, on=date(2026, 10, 12)).process
    assert process.result == result
    assert process.clock.stopped_on == date(2026, 10, 12)
    assert process.is_terminal


def test_decision_is_the_result_before_completion() -> None:
    process = _do(_do(_accepted(), "review").process, "deny", opinion="不符合条件").process
    assert (process.state, process.result, process.note) == ("denied", "denied", "不符合条件")
    assert process.clock.stopped_on is None


def test_withdrawal_ends_the_case_as_withdrawn_and_stops_the_clock() -> None:
    process = _do(_accepted(), "withdraw", on=date(2026, 9, 28), actor="applicant", roles=(), opinion=None).process
    assert (process.state, process.result) == ("withdrawn", "withdrawn")
    assert process.clock.stopped_on == date(2026, 9, 28)
    assert process.clock.working_days_used(CALENDAR, date(2026, 12, 1)) == 4  # 22, 23, 24, 28 Sept


def test_refusals_are_the_machines() -> None:
    with pytest.raises(ActionNotAvailable) as raised:
        _do(_new(), "grant")
    assert str(raised.value) == "当前状态「待受理」不能执行「批准」"
    with pytest.raises(ActorNotAllowed):
        _do(_new(), "accept", actor="applicant")
    with pytest.raises(RoleNotAllowed):
        _do(_new(), "accept", roles={"reviewer"})
    with pytest.raises(OpinionRequired):
        _do(_new(), "refuse_intake", opinion=" ")


def test_the_system_actor_is_the_engines_own() -> None:
    with pytest.raises(ValueError, match=r"^actor must be one of \['applicant', 'officer'\], got 'system'$"):
        _do(_new(), "accept", actor="system")


def test_a_single_case_has_no_branches() -> None:
    with pytest.raises(UnknownBranch) as raised:
        advance(_accepted(), "review", actor="officer", roles={"reviewer"}, opinion="x", today=MONDAY,
                calendar=CALENDAR, branch="registration")
    assert str(raised.value) == "本办件没有分支「registration」"
    assert raised.value.branch == "registration"
    with pytest.raises(UnknownBranch):
        available_actions(_accepted(), actor="officer", branch="registration")


def test_caller_data_is_recorded_with_the_move() -> None:
    outcome = _do(_accepted(), "review", data={"checked": ["licence"]})
    assert outcome.moves[0].data == {"checked": ["licence"]}


def test_a_completed_case_accepts_nothing() -> None:
    process = _new()
    for action in ("accept", "review", "grant", "complete"):
        process = _do(process, action).process
    everything = {t.action for t in process.definition.transitions} | CLOCK_ACTIONS
    for action in sorted(everything):
        for actor in ("officer", "applicant"):
            with pytest.raises(WorkflowError):
                _do(process, action, actor=actor, data={"kind": "hearing", "declared_days": 3, "result": "x"})
    assert available_actions(process, actor="officer", roles={"intake", "reviewer", "approver"}) == []


# --- Art. 42: the one extension --------------------------------------------------------------------


def test_extend_adds_the_laws_ten_days_to_the_statutory_deadline_only() -> None:
    outcome = _do(_accepted(), "extend", on=date(2026, 10, 12), roles={"approver"}, opinion=" 情况复杂 ")
    process = outcome.process
    assert process.state == "under_review"
    assert process.clock.extension_days == 10
    assert outcome.moves == (Move(
        branch=None, action="extend", step=None, from_state="under_review", to_state="under_review",
        actor="officer", opinion="情况复杂",
        data={
            "days": 10, "legal_basis": A42,
            "old": {"statutory_deadline": "2026-10-26", "promised_deadline": "2026-10-12"},
            "new": {"statutory_deadline": "2026-11-09", "promised_deadline": "2026-10-12"},
        },
    ),)


def test_extend_only_once() -> None:
    process = _do(_accepted(), "extend", roles={"approver"}).process
    with pytest.raises(ClockError) as raised:
        _do(process, "extend", roles={"approver"})
    error = raised.value
    assert (error.rule, error.field, error.legal_basis) == ("already_extended", None, A42)
    assert str(error) == f"办理期限已经延长过一次，不能再次延长（依据{A42}）"


def test_extend_needs_the_approver_and_a_reason() -> None:
    with pytest.raises(RoleNotAllowed) as role:
        _do(_accepted(), "extend", roles={"reviewer", "intake"})
    assert str(role.value) == "执行「延长办理期限」需要审批人员角色"
    with pytest.raises(ActorNotAllowed) as actor:
        _do(_accepted(), "extend", actor="applicant", roles=())
    assert str(actor.value) == "当前状态「审核中」下，申请人不能执行「延长办理期限」"
    for blank in (None, "", " \u3000"):
        with pytest.raises(OpinionRequired) as opinion:
            _do(_accepted(), "extend", roles={"approver"}, opinion=blank)
        assert str(opinion.value) == "执行「延长办理期限」必须填写意见"


def test_extend_before_acceptance_or_after_the_end_is_refused() -> None:
    with pytest.raises(ClockError) as before:
        _do(_new(), "extend", roles={"approver"})
    assert (before.value.rule, str(before.value)) == ("clock_not_started", "办件尚未受理，办理期限尚未起算")
    ended = _do(_accepted(), "withdraw", actor="applicant", roles=()).process
    with pytest.raises(ClockError) as after:
        _do(ended, "extend", roles={"approver"})
    assert (after.value.rule, str(after.value)) == ("clock_stopped", "办件已经办结，办理期限不再计算")


def test_a_decided_case_may_still_be_extended_until_completion() -> None:
    process = _do(_do(_accepted(), "review").process, "grant").process
    assert _do(process, "extend", roles={"approver"}).process.clock.extension_days == 10


# --- Art. 45: special procedures ------------------------------------------------------------------

HEARING = {"kind": "hearing", "declared_days": 10}


def test_special_procedure_stops_the_clock_until_it_ends() -> None:
    started = _do(_accepted(), "start_special_procedure", on=date(2026, 9, 24), roles={"reviewer"},
                  opinion="申请人要求听证", data=HEARING)
    process = started.process
    assert process.state == "under_review"
    assert process.clock.open_suspension == Suspension(
        "hearing", date(2026, 9, 24), reason="申请人要求听证", declared_days=10
    )
    assert started.moves == (Move(
        None, "start_special_procedure", None, "under_review", "under_review", "officer", "申请人要求听证",
        {
            "kind": "hearing", "kind_label": "听证", "declared_days": 10, "legal_basis": A45,
            "old": {"statutory_deadline": "2026-10-26", "promised_deadline": "2026-10-12"},
            "new": {"statutory_deadline": "2026-10-26", "promised_deadline": "2026-10-12"},
        },
    ),)
    ended = _do(process, "end_special_procedure", on=date(2026, 10, 9), roles={"approver"}, opinion=None,
                data={"result": " 听证完毕 "})
    assert ended.process.clock.suspensions[0].ended_on == date(2026, 10, 9)
    assert ended.moves == (Move(
        None, "end_special_procedure", None, "under_review", "under_review", "officer", None,
        {
            "kind": "hearing", "kind_label": "听证", "result": "听证完毕", "started_on": "2026-09-24",
            "days_suspended": 5, "legal_basis": A45,
            "old": {"statutory_deadline": "2026-11-02", "promised_deadline": "2026-10-19"},
            "new": {"statutory_deadline": "2026-11-02", "promised_deadline": "2026-10-19"},
        },
    ),)
    assert ended.process.clock.working_days_used(CALENDAR, date(2026, 10, 9)) == 3
    assert ended.process.clock.days_suspended(CALENDAR, date(2026, 10, 9)) == 5


@pytest.mark.parametrize("kind", ["hearing", "tendering", "auction", "testing", "inspection", "quarantine",
                                  "appraisal", "expert_review"])
def test_every_article_45_procedure_is_accepted(kind: str) -> None:
    process = _do(_accepted(), "start_special_procedure", data={"kind": kind, "declared_days": 1}).process
    open_suspension = process.clock.open_suspension
    assert open_suspension is not None and open_suspension.kind == kind


@pytest.mark.parametrize("kind", [None, "supplement", "party", 5, ["hearing"]])
def test_special_procedure_kind_must_be_one_of_the_law(kind: object) -> None:
    with pytest.raises(ClockError) as raised:
        _do(_accepted(), "start_special_procedure", data={"kind": kind, "declared_days": 3})
    error = raised.value
    assert (error.rule, error.field, error.legal_basis) == ("unknown_kind", "data.kind", A45)
    assert str(error) == (
        f"特别程序种类「{kind}」无效，只能是听证、招标、拍卖、检验、检测、检疫、鉴定、专家评审之一（依据{A45}）"
    )


@pytest.mark.parametrize("declared", [None, 0, -1, True, "3", 2.5])
def test_special_procedure_declares_its_length_in_working_days(declared: object) -> None:
    with pytest.raises(ClockError) as raised:
        _do(_accepted(), "start_special_procedure", data={"kind": "testing", "declared_days": declared})
    error = raised.value
    assert (error.rule, error.field, error.legal_basis) == ("declared_days", "data.declared_days", A45)
    assert str(error) == (
        f"须书面告知申请人特别程序所需时间：declared_days 应为正整数（工作日），收到「{declared}」（依据{A45}）"
    )


def test_one_declared_day_is_enough() -> None:
    process = _do(_accepted(), "start_special_procedure", data={"kind": "testing", "declared_days": 1}).process
    assert process.clock.suspensions[0].declared_days == 1


def test_special_procedure_needs_reviewer_or_approver_and_a_reason() -> None:
    with pytest.raises(RoleNotAllowed) as raised:
        _do(_accepted(), "start_special_procedure", roles={"intake", "supervisor"}, data=HEARING)
    assert str(raised.value) == "执行「启动特别程序」需要审批人员或审核人员角色"
    with pytest.raises(OpinionRequired) as opinion:
        _do(_accepted(), "start_special_procedure", opinion=None, data={})
    assert str(opinion.value) == "执行「启动特别程序」必须填写意见"
    process = _do(_accepted(), "start_special_procedure", roles={"approver"}, data=HEARING).process
    with pytest.raises(RoleNotAllowed) as end_role:
        _do(process, "end_special_procedure", roles={"intake"}, data={"result": "x"})
    assert str(end_role.value) == "执行「结束特别程序」需要审批人员或审核人员角色"


def test_while_a_special_procedure_runs_only_its_end_or_withdrawal_is_possible() -> None:
    process = _do(_accepted(), "start_special_procedure", data=HEARING).process
    for action in ("review", "request_supplement", "extend", "start_special_procedure"):
        with pytest.raises(ClockError) as raised:
            _do(process, action, data=HEARING)
        assert raised.value.rule == "special_procedure_open"
        assert str(raised.value) == f"特别程序（听证）进行中，只能结束特别程序或由申请人撤回申请（依据{A45}）"
    assert available_actions(process, actor="officer", roles={"reviewer", "approver"}) == ["end_special_procedure"]
    assert available_actions(process, actor="officer", roles={"intake"}) == []
    assert available_actions(process, actor="applicant") == ["withdraw"]
    withdrawn = _do(process, "withdraw", on=date(2026, 9, 28), actor="applicant", roles=(), opinion=None).process
    assert withdrawn.clock.suspensions[0].ended_on == date(2026, 9, 28)
    assert withdrawn.clock.stopped_on == date(2026, 9, 28)


def test_no_special_procedure_while_the_clock_is_suspended_for_a_supplement() -> None:
    process = _do(_accepted(), "request_supplement").process
    with pytest.raises(ClockError) as raised:
        _do(process, "start_special_procedure", data=HEARING)
    assert (raised.value.rule, str(raised.value)) == ("clock_suspended", "办理期限暂停计算期间不能启动特别程序")
    with pytest.raises(ClockError) as ending:
        _do(process, "end_special_procedure", data={"result": "x"})
    assert ending.value.rule == "no_special_procedure"


def test_ending_needs_an_open_procedure_and_its_result() -> None:
    with pytest.raises(ClockError) as none:
        _do(_accepted(), "end_special_procedure", data={"result": "x"})
    assert (none.value.rule, str(none.value)) == ("no_special_procedure", f"没有进行中的特别程序（依据{A45}）")
    process = _do(_accepted(), "start_special_procedure", data=HEARING).process
    for data in ({}, {"result": " "}, {"result": 3}, None):
        with pytest.raises(ClockError) as raised:
            _do(process, "end_special_procedure", data=data)
        error = raised.value
        assert (error.rule, error.field) == ("result_required", "data.result")
        assert str(error) == f"结束特别程序须填写特别程序结果（data.result）（依据{A45}）"


def test_special_procedures_before_acceptance_are_refused() -> None:
    with pytest.raises(ClockError) as raised:
        _do(_new(), "start_special_procedure", data=HEARING)
    assert raised.value.rule == "clock_not_started"


# --- what may be done now ------------------------------------------------------------------------

ALL_ROLES = frozenset({"intake", "reviewer", "approver"})


@pytest.mark.parametrize(
    ("path", "actor", "roles", "expected"),
    [
        ([], "officer", ALL_ROLES, ["accept", "refuse_intake", "request_supplement"]),
        ([], "officer", {"reviewer"}, []),
        ([], "applicant", (), ["withdraw"]),
        (["accept"], "officer", ALL_ROLES,
         ["extend", "request_supplement", "review", "start_special_procedure"]),
        (["accept"], "officer", {"reviewer"}, ["request_supplement", "review", "start_special_procedure"]),
        (["accept"], "officer", {"approver"}, ["extend", "start_special_procedure"]),
        (["accept"], "officer", {"intake"}, []),
        (["accept", "extend"], "officer", {"approver"}, ["start_special_procedure"]),
        (["accept", "request_supplement"], "officer", ALL_ROLES, ["extend"]),
        (["accept", "request_supplement"], "applicant", (), ["supplement", "withdraw"]),
        (["accept", "review", "grant"], "officer", ALL_ROLES, ["complete", "extend", "start_special_procedure"]),
        (["accept", "review", "grant"], "applicant", (), []),
    ],
)
def test_available_actions_of_a_single_case(
    path: list[str], actor: str, roles: Collection[str], expected: list[str]
) -> None:
    process = _new()
    for action in path:
        process = _do(process, action).process
    assert available_actions(process, actor=actor, roles=roles) == expected


def test_clock_action_tables() -> None:
    assert {"extend", "start_special_procedure", "end_special_procedure"} == CLOCK_ACTIONS
    assert CLOCK_ACTION_LABELS == {
        "extend": "延长办理期限", "start_special_procedure": "启动特别程序", "end_special_procedure": "结束特别程序",
    }
    assert {
        "extend": {"approver"}, "start_special_procedure": {"reviewer", "approver"},
        "end_special_procedure": {"reviewer", "approver"},
    } == CLOCK_ACTION_ROLES


# --- serialisation ---------------------------------------------------------------------------------


def test_to_json_is_plain_data_and_round_trips() -> None:
    process = _do(_accepted(), "start_special_procedure", on=date(2026, 9, 24), data=HEARING).process
    process = _do(process, "end_special_procedure", on=date(2026, 9, 30), data={"result": "ok"}).process
    process = _do(process, "request_supplement", on=date(2026, 9, 30), opinion="补").process
    data = process.to_json()
    assert data == {
        "workflow_id": "standard.v1",
        "state": "review_supplement",
        "clock": {
            "statutory_limit_days": 20, "promised_limit_days": 10, "accepted_on": "2026-09-21", "extension_days": 0,
            "suspensions": [
                {"kind": "hearing", "reason": "意见", "declared_days": 10, "started_on": "2026-09-24",
                 "ended_on": "2026-09-30"},
                {"kind": "supplement", "reason": "补", "declared_days": None, "started_on": "2026-09-30",
                 "ended_on": None},
            ],
            "stopped_on": None,
        },
        "taken": [["review", "request_supplement"]],
        "branches": {},
        "result": None,
        "note": "补",
    }
    assert Process.from_json(data) == process
    ended = _do(process, "withdraw", on=date(2026, 10, 9), actor="applicant", roles=()).process
    assert ended.to_json()["clock"]["stopped_on"] == "2026-10-09"
    assert Process.from_json(ended.to_json()) == ended


def test_from_json_fills_what_is_left_out() -> None:
    process = Process.from_json({
        "workflow_id": "standard.v1", "state": "submitted",
        "clock": {"statutory_limit_days": 20, "promised_limit_days": 5},
    })
    assert process == Process("standard.v1", "submitted", ClockFacts(20, 5))


# --- edges ------------------------------------------------------------------------------------------


def test_from_json_reads_the_extension() -> None:
    process = _do(_accepted(), "extend", roles={"approver"}).process
    assert Process.from_json(process.to_json()).clock.extension_days == 10


def test_a_denial_keeps_its_reasons_through_completion() -> None:
    process = _do(_do(_accepted(), "review").process, "deny", opinion="不符合条件").process
    assert _do(process, "complete").process.note == "不符合条件"


def test_a_resumption_without_a_recorded_suspension_leaves_the_clock_alone() -> None:
    # A case suspended before its suspensions were recorded as facts (rows older than migration 0010).
    legacy = Process("standard.v1", "review_supplement", ClockFacts(20, 10, accepted_on=MONDAY))
    outcome = _do(legacy, "supplement", actor="applicant", roles=(), opinion=None)
    assert (outcome.process.state, outcome.process.clock) == ("under_review", legacy.clock)
    assert outcome.moves[0].data == {}


@pytest.mark.parametrize(
    "process",
    [
        Process("standard.v1", "completed", ClockFacts(20, 10, accepted_on=MONDAY)),
        Process("standard.v1", "under_review", ClockFacts(20, 10, accepted_on=MONDAY, stopped_on=MONDAY)),
    ],
)
def test_no_clock_action_once_the_case_or_its_clock_has_ended(process: Process) -> None:
    with pytest.raises(ClockError) as raised:
        _do(process, "extend", roles={"approver"})
    assert raised.value.rule == "clock_stopped"


def test_clock_action_refusals_name_the_state_and_action() -> None:
    with pytest.raises(ActorNotAllowed) as actor:
        _do(_accepted(), "start_special_procedure", actor="applicant", roles=(), data=HEARING)
    assert (actor.value.state, actor.value.action, actor.value.actor) == (
        "under_review", "start_special_procedure", "applicant",
    )
    with pytest.raises(RoleNotAllowed) as role:
        _do(_accepted(), "end_special_procedure", roles={"intake"})
    assert (role.value.action, role.value.required_roles) == ("end_special_procedure", {"reviewer", "approver"})
    with pytest.raises(OpinionRequired) as opinion:
        _do(_accepted(), "extend", roles={"approver"}, opinion=None)
    assert opinion.value.action == "extend"


def test_an_applicant_action_other_than_withdrawal_waits_for_the_procedure() -> None:
    process = _do(_accepted(), "start_special_procedure", data=HEARING).process
    with pytest.raises(ClockError) as raised:
        _do(process, "supplement", actor="applicant", roles=(), opinion=None)
    assert raised.value.rule == "special_procedure_open"
