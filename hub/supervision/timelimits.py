"""The time-limit rules: a case's colour (yellow, red) from its clock, and the next day it may change.

Every figure comes from the law's clock (workflow/clock.py through hub/cases/clock.facts_of): working days
used net of suspensions (Art. 82: working days; Art. 45: special procedures not counted). A colour is a
function of the working days used, which grow by one per working day while the clock runs — so the day a
case reaches a threshold is known in advance (``add_working_days``) and the scanner (hub/supervision/scanner.py)
reads only the cases whose day has come.

The rules (thresholds per region, hub/supervision/service.thresholds_for):

* ``time.case_due`` (yellow) — the case has used >= ``yellow_used_percent`` of its promised limit, or has
  <= ``yellow_days_left`` working days left; ``time.case_overdue`` (red) — past its promised deadline (承诺时限);
  ``time.statutory_overdue`` (red) — past the law's limit with its one extension (Art. 42; Art. 26 joint).
* ``time.step_due.<step>`` / ``time.step_overdue.<step>`` — the same for the current step's share of the
  promised limit (workflow/timelimits.allocate_step_deadlines), hub cases only (a partner's steps are its own).
* ``time.intake_due`` / ``time.intake_overdue`` — intake (accept, refuse, or the one supplement notice) not
  decided within 5 working days of receipt (Art. 32): yellow on its last day(s), red the working day after.
* ``time.supplement_notice_late`` (red) — a supplement notice at intake given after those 5 working days
  (Art. 32: the application counted as accepted on receipt); the hub refuses such a notice, a partner's
  record may carry one.

Each joint branch is a case of its own (its clock: the branch's allocation) and the parent keeps the whole
joint limit (Art. 26: 45 working days), so both are judged, each on its own row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from hub.cases.clock import facts_of
from hub.cases.models import Case
from hub.clock import CHINA_TZ
from hub.supervision.findings import Finding
from hub.supervision.service import Thresholds
from workflow.calendar import WorkingCalendar
from workflow.clock import INTAKE_NOTICE_DAYS, ClockFacts, intake_deadline
from workflow.clock import received_on as received_day
from workflow.definition import WorkflowDefinition
from workflow.registry import UnknownDefinition, get_definition
from workflow.timelimits import allocate_step_deadlines

BASIS_DECISION = "《中华人民共和国行政许可法》第四十二条"
BASIS_INTAKE = "《中华人民共和国行政许可法》第三十二条"
BASIS_WORKING_DAYS = "《中华人民共和国行政许可法》第八十二条"

CASE_DUE, CASE_OVERDUE, STATUTORY_OVERDUE = "time.case_due", "time.case_overdue", "time.statutory_overdue"
INTAKE_DUE, INTAKE_OVERDUE = "time.intake_due", "time.intake_overdue"
SUPPLEMENT_NOTICE_LATE = "time.supplement_notice_late"
STEP_DUE, STEP_OVERDUE = "time.step_due", "time.step_overdue"  # + "." + the step's name
# What is documented (docs/supervision.md): each rule, its level and its basis.
RULES: dict[str, tuple[str, str]] = {
    CASE_DUE: ("yellow", "承诺时限即将届满；第八十二条按工作日计算"),
    CASE_OVERDUE: ("red", "超过承诺办理时限"),
    STATUTORY_OVERDUE: ("red", f"超过法定办理时限（{BASIS_DECISION}）"),
    STEP_DUE + ".<step>": ("yellow", "当前环节时限即将届满"),
    STEP_OVERDUE + ".<step>": ("red", "当前环节超时"),
    INTAKE_DUE: ("yellow", f"受理期限即将届满（{BASIS_INTAKE}）"),
    INTAKE_OVERDUE: ("red", f"五个工作日内未作出受理决定（{BASIS_INTAKE}）"),
    SUPPLEMENT_NOTICE_LATE: ("red", f"超过五个工作日才一次告知补正（{BASIS_INTAKE}）"),
}


@dataclass(frozen=True)
class Judgement:
    """A case's time findings today, its colour, and the next day the colour may change (None: not while
    the clock stands still or has stopped)."""

    findings: tuple[Finding, ...]
    colour: str | None
    due_on: date | None
    stopped: bool = False


@dataclass(frozen=True)
class _Limit:
    """One limit measured in working days used: yellow from ``yellow_at``, red from ``limit + 1``."""

    due_rule: str | None
    overdue_rule: str
    start: int  # working days used when this limit's period began (a step's share starts where the last ended)
    limit: int  # working days used at which the period ends (its last day still in time)
    what: str  # Chinese, for the messages
    basis: str
    step: str | None = None

    def yellow_at(self, thresholds: Thresholds) -> int:
        length = self.limit - self.start
        by_share = self.start + -(-thresholds.yellow_used_percent * length // 100)
        return max(self.start, min(by_share, self.limit - thresholds.yellow_days_left))


def judge(case: Case, *, calendar: WorkingCalendar, today: date, thresholds: Thresholds) -> Judgement:
    """The time findings of ``case`` on ``today``."""
    facts = facts_of(case)
    if facts.stopped_on is not None or case.completed_at is not None:
        return Judgement((), case.colour, None, stopped=True)
    if facts.accepted_on is None:
        return _judge_intake(case, calendar=calendar, today=today, thresholds=thresholds)
    if facts.open_suspension is not None:
        return Judgement((), case.colour, None)  # the clock stands still; resuming sets the day again
    used = facts.working_days_used(calendar, today)
    findings: list[Finding] = []
    next_used: list[int] = []
    for limit in _limits(case, facts, calendar):
        yellow_at = limit.yellow_at(thresholds)
        if used > limit.limit:
            findings.append(_overdue(limit, used))
        else:
            next_used.append(limit.limit + 1)
            if limit.due_rule is not None and used >= yellow_at:
                findings.append(_due(limit, used))
            elif limit.due_rule is not None:
                next_used.append(yellow_at)
    suspended = facts.days_suspended(calendar, today)
    due = min((calendar.add_working_days(facts.accepted_on, n + suspended) for n in next_used), default=None)
    return Judgement(tuple(findings), _colour(findings), due)


def _limits(case: Case, facts: ClockFacts, calendar: WorkingCalendar) -> list[_Limit]:
    assert facts.accepted_on is not None
    limits = [
        _Limit(CASE_DUE, CASE_OVERDUE, 0, facts.promised_limit_days, "承诺办理时限", BASIS_WORKING_DAYS),
        _Limit(None, STATUTORY_OVERDUE, 0, facts.statutory_limit_days + facts.extension_days, "法定办理时限",
               BASIS_DECISION),
    ]
    step = _current_step(case, calendar)
    if step is not None:
        limits.append(step)
    return limits


def _current_step(case: Case, calendar: WorkingCalendar) -> _Limit | None:
    """The current step's share of the promised limit, in working days used (hub cases: their definition
    allocates it; a partner platform's record keeps its own steps)."""
    if case.origin == "partner" or case.accepted_on is None:
        return None
    definition = _definition(case)
    if definition is None:
        return None
    name = next((t.step for t in definition.transitions if t.source == case.state), None)
    if name is None:
        return None
    accepted = case.accepted_on
    limit = min(case.promised_limit_days, case.statutory_limit_days)
    # Each step's end as working days after acceptance (the allocation's own days, counted back).
    ends = {step: calendar.working_days_between(accepted, day)
            for step, day in allocate_step_deadlines(definition, calendar, accepted, limit).items()}
    if name not in ends:
        return None
    start = 0
    for step, end in ends.items():
        if step == name and (start, end) == (0, limit):
            return None  # the step's share is the whole limit: the case's own rule says it all
        if step == name:
            label = definition.step(name).label
            return _Limit(f"{STEP_DUE}.{name}", f"{STEP_OVERDUE}.{name}", start, end, f"「{label}」环节时限",
                          BASIS_WORKING_DAYS, step=name)
        start = end
    return None


def _definition(case: Case) -> WorkflowDefinition | None:
    try:
        return get_definition(case.workflow_id)
    except UnknownDefinition:
        return None


def _judge_intake(case: Case, *, calendar: WorkingCalendar, today: date, thresholds: Thresholds) -> Judgement:
    """Art. 32: the intake decision within 5 working days of receipt (the receipt day not counted)."""
    if case.suspended_since is not None or not _at_intake(case):
        return Judgement((), case.colour, None)
    # A partner platform's record gives its submission only: received as the hub receives (docs/time-rules.md).
    received = case.received_on or received_day(calendar, case.submitted_at.astimezone(CHINA_TZ))
    limit = _Limit(INTAKE_DUE, INTAKE_OVERDUE, 0, INTAKE_NOTICE_DAYS, "受理期限", BASIS_INTAKE)
    used = calendar.working_days_between(received, max(today, received))
    yellow_at = limit.yellow_at(thresholds)
    if used > limit.limit:
        findings = [_overdue(limit, used)]
        return Judgement(tuple(findings), "red", None)  # red stays until intake is decided
    if used >= yellow_at:
        return Judgement((_due(limit, used),), "yellow", calendar.add_working_days(received, limit.limit + 1))
    return Judgement((), None, calendar.add_working_days(received, yellow_at))


def _at_intake(case: Case) -> bool:
    """Waiting for the intake decision: the definition's initial state (a supplement asked for at intake
    waits for the applicant, whose supplement starts the period again)."""
    definition = _definition(case)
    return definition is not None and case.state == definition.initial_state


def intake_notice_state(case: Case) -> str:
    """The state a supplement notice at intake is given from: the definition's initial state."""
    definition = _definition(case)
    return definition.initial_state if definition is not None else "submitted"


def supplement_notice_findings(case: Case, notices: Iterable[date], *, calendar: WorkingCalendar) -> list[Finding]:
    """Art. 32: the one supplement notice at intake, within 5 working days of receiving the application.
    ``notices``: the days of the case's supplement notices given at intake (the hub refuses a late one; a
    partner platform's record may carry one). Receipt: the submission's working day (after hours, the next)."""
    received = received_day(calendar, case.submitted_at.astimezone(CHINA_TZ))
    deadline = intake_deadline(calendar, received)
    late = sorted(day for day in notices if day > deadline)
    if not late:
        return []
    return [Finding(
        rule=SUPPLEMENT_NOTICE_LATE, kind="time", level="red",
        message=f"补正告知于{late[0].isoformat()}作出，已超过五个工作日的告知期限（{deadline.isoformat()}），"
                f"依照{BASIS_INTAKE}应视为自收到申请材料之日起受理",
        detail={"notice_on": late[0], "received_on": received, "intake_deadline": deadline},
    )]


def _due(limit: _Limit, used: int) -> Finding:
    assert limit.due_rule is not None
    left = limit.limit - used
    return Finding(
        rule=limit.due_rule, kind="time", level="yellow",
        message=f"{limit.what}即将届满：已用{used - limit.start}个工作日，剩余{left}个工作日（{limit.basis}）",
        detail=_detail(limit, used),
    )


def _overdue(limit: _Limit, used: int) -> Finding:
    return Finding(
        rule=limit.overdue_rule, kind="time", level="red",
        message=(f"已超过{limit.what}：时限{limit.limit - limit.start}个工作日，"
                 f"已用{used - limit.start}个工作日（{limit.basis}）"),
        detail=_detail(limit, used),
    )


def _detail(limit: _Limit, used: int) -> dict[str, object]:
    detail: dict[str, object] = {"working_days_used": used - limit.start, "limit_days": limit.limit - limit.start}
    if limit.step is not None:
        detail["step"] = limit.step
    return detail


def _colour(findings: Iterable[Finding]) -> str | None:
    levels = {f.level for f in findings}
    return "red" if "red" in levels else "yellow" if "yellow" in levels else None
