"""Procedure rules: was the case handled the way the law and its workflow say?

Each rule is a frozen dataclass: its parameters are the fields (with their defaults), ``name``, ``kind``,
``description`` and ``basis`` are documented in docs/supervision.md ("Procedure and anomaly rules").
``procedure.fee_unpaid_at_completion`` reads what issue 12 stores (``case_fees``) through ``facts.lookups``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

from hub.clock import business_date
from hub.supervision.findings import Finding
from hub.supervision.rules.base import ACCEPT, COMPLETE, DECISIONS, LAW, REFUSALS, label
from hub.supervision.rules.facts import CaseFacts
from hub.supervision.rules.replay import NO_OPINION, OUT_OF_ORDER, REPEATED, SKIPPED
from workflow.clock import SUPPLEMENT, Suspension
from workflow.definition import REQUEST_SUPPLEMENT_ACTION
from workflow.process import END_SPECIAL, START_SPECIAL

Level = Literal["yellow", "red"]


@dataclass(frozen=True)
class SkippedStep:
    name: ClassVar[str] = "procedure.skipped_step"
    kind: ClassVar[Literal["procedure"]] = "procedure"
    description: ClassVar[str] = (
        "Replaying the case's events through its workflow definition (workflow.machine.apply) finds an action "
        "taken where the engine would have required other steps first — e.g. a partner platform's case granted "
        "without acceptance or review.")
    basis: ClassVar[str] = f"{LAW}第三十二条（受理）、第三十四条（审查）、第三十七条（决定）：法定程序不得省略"
    level: Level = "red"

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        skipped = [d for d in facts.deviations if d.kind == SKIPPED]
        if not skipped:
            return
        missing = [action for d in skipped for action in d.missing]
        names = "、".join(dict.fromkeys(label(facts, a) for a in missing))
        first = skipped[0]
        yield Finding(
            self.name, self.kind, self.level,
            f"办件跳过了必经环节「{names}」：第{first.seq}步「{label(facts, first.action)}」之前未办理",
            {"steps": [{"seq": d.seq, "action": d.action, "from_state": d.state, "missing": list(d.missing)}
                       for d in skipped],
             "no_acceptance": ACCEPT in missing, "workflow_id": facts.definition.workflow_id})


@dataclass(frozen=True)
class OutOfOrder:
    name: ClassVar[str] = "procedure.out_of_order"
    kind: ClassVar[Literal["procedure"]] = "procedure"
    description: ClassVar[str] = (
        "Replay finds an action of a step the case had already left, or one leading to another state than "
        "the definition's.")
    basis: ClassVar[str] = f"{LAW}第四条（依照法定的程序）；省级事项流程模型"
    level: Level = "yellow"

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        wrong = [d for d in facts.deviations if d.kind in (OUT_OF_ORDER, REPEATED)]
        if wrong:
            yield Finding(
                self.name, self.kind, self.level,
                f"办件环节顺序异常：第{wrong[0].seq}步「{label(facts, wrong[0].action)}」不应在此时办理",
                {"steps": [{"seq": d.seq, "action": d.action, "from_state": d.state, "kind": d.kind}
                           for d in wrong]})


@dataclass(frozen=True)
class NoReasons:
    name: ClassVar[str] = "procedure.no_reasons"
    kind: ClassVar[Literal["procedure"]] = "procedure"
    description: ClassVar[str] = "A refusal of intake or a denial recorded without reasons (also any required "
    "opinion the replay finds missing on a partner's step)."
    basis: ClassVar[str] = (f"{LAW}第三十二条（不予受理应出具书面凭证）、第三十八条第二款（不予行政许可应当说明理由）")
    level: Level = "red"
    actions: tuple[str, ...] = REFUSALS

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        bare = [s.seq for s in facts.steps
                if s.by_person and s.action in self.actions and not (s.opinion or "").strip()]
        bare += [d.seq for d in facts.deviations if d.kind == NO_OPINION and d.seq not in bare]
        if bare:
            yield Finding(self.name, self.kind, self.level,
                          f"第{bare[0]}步作出不予受理或不予许可等决定，未说明理由", {"seqs": sorted(bare)})


@dataclass(frozen=True)
class SeparationOfDuties:
    name: ClassVar[str] = "procedure.separation_of_duties"
    kind: ClassVar[Literal["procedure"]] = "procedure"
    description: ClassVar[str] = "The same officer recorded the review and the decision on the case."
    basis: ClassVar[str] = ("审批分离的内部控制要求（审核与决定由不同人员办理）；"
                            f"{LAW}第三十四条、第三十七条、第三十八条")
    level: Level = "red"
    review_actions: tuple[str, ...] = ("review",)
    decision_actions: tuple[str, ...] = DECISIONS

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        reviewers: dict[str, int] = {}
        for step in facts.steps:
            if not step.by_person:
                continue
            if step.action in self.review_actions:
                reviewers[step.actor_id] = step.seq
            elif step.action in self.decision_actions and step.actor_id in reviewers:
                yield Finding(self.name, self.kind, self.level,
                              f"同一工作人员既审核（第{reviewers[step.actor_id]}步）又作出决定（第{step.seq}步）",
                              {"review_seq": reviewers[step.actor_id], "decision_seq": step.seq,
                               "actor_id": step.actor_id})
                return


@dataclass(frozen=True)
class OutsideScope:
    name: ClassVar[str] = "procedure.outside_scope"
    kind: ClassVar[Literal["procedure"]] = "procedure"
    description: ClassVar[str] = ("An officer of a department other than the case's (or the window that "
                                  "registered it) acted on the case.")
    basis: ClassVar[str] = f"{LAW}第二十二条（行政许可由具有行政许可权的行政机关在其法定职权范围内实施）"
    level: Level = "red"

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        case = facts.case
        allowed = {case.department_id, getattr(case, "receiving_department_id", None)}
        # A joint case's branch is opened by the lead department's acceptance: its first step is that officer's.
        opened_by_lead = 1 if getattr(case, "parent_id", None) is not None else None
        outside = [s for s in facts.steps
                   if s.actor_type == "officer" and s.department_id is not None and s.department_id not in allowed
                   and s.seq != opened_by_lead]
        if outside:
            yield Finding(self.name, self.kind, self.level,
                          f"第{outside[0].seq}步由非本办件所属部门的工作人员办理",
                          {"seqs": [s.seq for s in outside], "department_ids": sorted({s.department_id for s in outside
                                                                                        if s.department_id})})


@dataclass(frozen=True)
class RepeatedSupplement:
    name: ClassVar[str] = "procedure.repeated_supplement"
    kind: ClassVar[Literal["procedure"]] = "procedure"
    description: ClassVar[str] = "More supplement notices than ``max_notices`` on one case (一次性告知)."
    basis: ClassVar[str] = f"{LAW}第三十二条（申请材料不齐全的，应当一次告知申请人需要补正的全部内容）"
    level: Level = "yellow"
    max_notices: int = 1
    actions: tuple[str, ...] = (REQUEST_SUPPLEMENT_ACTION,)

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        notices = [s.seq for s in facts.steps if s.action in self.actions and s.actor_type != "system"]
        if len(notices) > self.max_notices:
            yield Finding(self.name, self.kind, self.level,
                          f"办件已发出{len(notices)}次补正通知，未做到一次性告知", {"seqs": notices})


def _suspensions(facts: CaseFacts) -> list[Suspension]:
    return [s for s in (Suspension.from_json(j) for j in getattr(facts.case, "suspensions", None) or ())
            if s.kind != SUPPLEMENT]


@dataclass(frozen=True)
class SuspensionUnrecorded:
    name: ClassVar[str] = "procedure.suspension_unrecorded"
    kind: ClassVar[Literal["procedure"]] = "procedure"
    description: ClassVar[str] = (
        "The clock stood still for a special procedure that no event started (a hub case), or that has no "
        "stated reason (a partner's special_procedures entry).")
    basis: ClassVar[str] = f"{LAW}第四十五条（特别程序所需时间应当书面告知申请人）"
    level: Level = "red"

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        started = {business_date(s.occurred_at) for s in facts.steps if s.action == START_SPECIAL}
        bad = [s for s in _suspensions(facts)
               if not s.reason.strip() or (not facts.is_partner and s.started_on not in started)]
        if bad:
            yield Finding(self.name, self.kind, self.level,
                          f"办件自{bad[0].started_on.isoformat()}起暂停计时，但没有特别程序记录或理由",
                          {"started_on": [s.started_on.isoformat() for s in bad]})


@dataclass(frozen=True)
class SuspensionOverlong:
    name: ClassVar[str] = "procedure.suspension_overlong"
    kind: ClassVar[Literal["procedure"]] = "procedure"
    description: ClassVar[str] = ("A special procedure has lasted (or lasts, still open) more working days "
                                  "than the applicant was told.")
    basis: ClassVar[str] = f"{LAW}第四十五条（所需时间书面告知申请人）"
    level: Level = "yellow"
    grace_days: int = 0

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        for s in _suspensions(facts):
            used = s.working_days(facts.calendar, facts.today)
            if s.declared_days is not None and used > s.declared_days + self.grace_days:
                yield Finding(self.name, self.kind, self.level,
                              f"特别程序已用{used}个工作日，超过告知申请人的{s.declared_days}个工作日",
                              {"started_on": s.started_on.isoformat(), "declared_days": s.declared_days,
                               "working_days": used, "open": s.is_open})
                return


@dataclass(frozen=True)
class ChangeAfterCompletion:
    name: ClassVar[str] = "procedure.change_after_completion"
    kind: ClassVar[Literal["procedure"]] = "procedure"
    description: ClassVar[str] = ("An event recorded after the case reached a terminal state (completed, "
                                  "refused, withdrawn), or a break in its hash chain (seq or prev_hash).")
    basis: ClassVar[str] = (f"{LAW}第四十条（许可决定公开）、第六十条（上级行政机关监督检查）；"
                            "办件记录不可篡改（hub/audit 链式校验）")
    level: Level = "red"
    allowed_after: tuple[str, ...] = (END_SPECIAL,)

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        ended: int | None = None
        late: list[int] = []
        previous = None
        breaks: list[int] = []
        for index, step in enumerate(facts.steps, start=1):
            if step.seq != index or (previous is not None and step.prev_hash != previous.hash):
                breaks.append(step.seq)
            previous = step
            if ended is not None:
                if step.action not in self.allowed_after:
                    late.append(step.seq)
            elif step.to_state in facts.definition.terminal_states:
                ended = step.seq
        if late or breaks:
            message = (f"办件办结后第{late[0]}步仍有变更" if late else f"办件记录第{breaks[0]}步的哈希链断裂")
            yield Finding(self.name, self.kind, self.level, message,
                          {"after_terminal": late, "chain_breaks": breaks, "terminal_seq": ended})


@dataclass(frozen=True)
class FeeUnpaidAtCompletion:
    name: ClassVar[str] = "procedure.fee_unpaid_at_completion"
    kind: ClassVar[Literal["procedure"]] = "procedure"
    description: ClassVar[str] = (
        "A granted case completed while the fee its item charges is still due: not paid, waived or exempt "
        "(``case_fees``: the hub's assessment, or the payment status a partner platform reported as "
        "``unpaid``). The hub's own officers cannot complete such a case (409 fee-unpaid): in practice it "
        "finds partner platforms' cases. A platform's case whose record reports no payment is not judged.")
    basis: ClassVar[str] = (f"{LAW}第五十八条、第五十九条（依照法律、行政法规收取费用的，按照公布的法定项目和标准收费，"
                            "所收取的费用全部上缴国库）；收费未缴不得发证")
    level: Level = "yellow"

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        done = next((s for s in reversed(facts.steps) if s.action == COMPLETE), None)
        if done is None or not facts.is_new(done) or not _granted(facts) or not _charges(facts.case):
            return
        fee = facts.lookups.case_fee(case_id=facts.case.id)
        if fee is None or fee.status != "due":
            return
        owed = fee.amount_fen - fee.paid_fen
        yield Finding(self.name, self.kind, self.level,
                      f"办件第{done.seq}步办结时，应缴费用{owed // 100}.{owed % 100:02d}元尚未缴纳（未减免、不属免收）",
                      {"seq": done.seq, "amount_fen": fee.amount_fen, "paid_fen": fee.paid_fen, "due": fee.due,
                       "source": fee.source})


def _granted(facts: CaseFacts) -> bool:
    """Only a granted case is charged (a denied one is refunded): its result, else its last decision step."""
    result = getattr(facts.case, "result", None)
    if result:
        return bool(result == "granted")
    decision = next((s for s in reversed(facts.steps) if s.action in DECISIONS), None)
    return decision is not None and decision.action == "grant"


def _charges(case: object) -> bool:
    """The item charges a fee: only then is the fee row looked up. Read from ``items.fee_fen`` (set from the
    item's fee rule on every write), not the guide: a partner batch loads its items without the guide."""
    return getattr(getattr(case, "item", None), "fee_fen", None) is not None


RULES = (SkippedStep(), OutOfOrder(), NoReasons(), SeparationOfDuties(), OutsideScope(), RepeatedSupplement(),
         SuspensionUnrecorded(), SuspensionOverlong(), ChangeAfterCompletion(), FeeUnpaidAtCompletion())
