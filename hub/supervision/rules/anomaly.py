"""Anomaly rules: what is lawful on its face but suggests a disguised shortcut (变相压缩、补录、重置时限).

Rules that need more than the case's own events ask ``facts.lookups`` — only when the event they look at is
new in this unit of work (``facts.is_new``), so evaluating a case again costs no further query.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Literal

from hub.clock import CHINA_TZ, business_date
from hub.supervision.findings import Finding
from hub.supervision.rules.base import ACCEPT, COMPLETE, DECISIONS, LAW
from hub.supervision.rules.facts import CaseFacts, Step

Level = Literal["yellow", "red"]


def _completion(facts: CaseFacts) -> Step | None:
    return next((s for s in reversed(facts.steps) if s.action == COMPLETE), None)


@dataclass(frozen=True)
class TooFast:
    name: ClassVar[str] = "anomaly.too_fast"
    kind: ClassVar[Literal["anomaly"]] = "anomaly"
    description: ClassVar[str] = (
        "A case completed in at most ``ratio`` × the median working days of the item's last ``sample`` "
        "completed cases (at least ``min_sample`` of them, median at least ``min_median_days``): the review "
        "may have been skipped in substance.")
    basis: ClassVar[str] = f"{LAW}第三十四条（对申请材料的实质内容进行核实）；电子监察异常监测"
    level: Level = "yellow"
    ratio: float = 0.25
    min_sample: int = 20
    sample: int = 200
    min_median_days: float = 2.0
    history_days: int = 365  # the item's cases submitted in the last year

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        done = _completion(facts)
        if done is None or not facts.is_new(done):
            return
        case = facts.case
        start = case.accepted_on or business_date(case.submitted_at)
        used = getattr(case, "working_days_used", None)
        if used is None:
            used = facts.calendar.working_days_between(start, business_date(done.occurred_at))
        history = facts.lookups.completed_durations(
            item_id=case.item_id, exclude_case_id=case.id, limit=self.sample,
            submitted_since=facts.now - timedelta(days=self.history_days))
        if len(history) < self.min_sample:
            return
        median = statistics.median(history)
        if median >= self.min_median_days and used <= median * self.ratio:
            yield Finding(self.name, self.kind, self.level,
                          f"办件用时{used}个工作日，远少于本事项办件的中位用时{median:g}个工作日",
                          {"working_days": used, "median": median, "sample": len(history)})


@dataclass(frozen=True)
class BackfilledBatch:
    name: ClassVar[str] = "anomaly.backfilled_batch"
    kind: ClassVar[Literal["anomaly"]] = "anomaly"
    description: ClassVar[str] = (
        "A decision recorded at an odd hour (before ``day_starts`` or from ``day_ends`` China time, or on a "
        "non-working day) in a burst of at least ``batch_size`` decisions by the same person within "
        "± ``window_minutes``: decisions back-filled in a batch.")
    basis: ClassVar[str] = f"{LAW}第三十八条（作出行政许可决定）；办件信息应当实时录入（电子监察实时监控）"
    level: Level = "yellow"
    batch_size: int = 5
    window_minutes: int = 30
    day_starts: int = 7
    day_ends: int = 21
    actions: tuple[str, ...] = (*DECISIONS, COMPLETE)
    history_days: int = 180  # the department's cases submitted in this many days are searched

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        for step in facts.steps:
            # The cheap tests first (a batch evaluates thousands of old steps): new, a decision, by a person.
            if not (facts.is_new(step) and step.action in self.actions and step.by_person and self._odd(facts, step)):
                continue
            window = timedelta(minutes=self.window_minutes)
            count = facts.lookups.decisions_between(
                actor_id=step.actor_id, department_id=facts.case.department_id, start=step.occurred_at - window,
                end=step.occurred_at + window, actions=self.actions,
                submitted_since=step.occurred_at - timedelta(days=self.history_days))
            if count >= self.batch_size:
                local = step.occurred_at.astimezone(CHINA_TZ)
                yield Finding(self.name, self.kind, self.level,
                              f"{local:%Y-%m-%d %H:%M} 非工作时间同一人员集中录入{count}个办理决定，疑似事后补录",
                              {"seq": step.seq, "actor_id": step.actor_id, "count": count,
                               "at": step.occurred_at.isoformat()})
                return

    def _odd(self, facts: CaseFacts, step: Step) -> bool:
        local = step.occurred_at.astimezone(CHINA_TZ)
        return (not facts.calendar.is_working_day(local.date())
                or local.hour < self.day_starts or local.hour >= self.day_ends)


@dataclass(frozen=True)
class WithdrawResubmit:
    name: ClassVar[str] = "anomaly.withdraw_resubmit"
    kind: ClassVar[Literal["anomaly"]] = "anomaly"
    description: ClassVar[str] = (
        "The case is accepted although the same applicant withdrew an accepted case of the same item at most "
        "``window_days`` calendar days before submitting it: a withdrawal and resubmission that restarts the "
        "time limit (常见于即将超期时劝申请人撤回重报).")
    basis: ClassVar[str] = f"{LAW}第四十二条（办理期限）；不得以撤回重报规避办理时限"
    level: Level = "yellow"
    window_days: int = 30

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        accept = facts.first(ACCEPT)
        if accept is None or not facts.is_new(accept):
            return
        case = facts.case
        earlier = facts.lookups.withdrawals_before(
            case_id=case.id, applicant_id_number=case.applicant_id_number, item_id=case.item_id,
            since=case.submitted_at - timedelta(days=self.window_days), until=case.submitted_at)
        if earlier:
            yield Finding(self.name, self.kind, self.level,
                          f"申请人撤回办件{earlier[0].tracking_no}后重新申报，办理时限被重新计算",
                          {"withdrawn": [w.tracking_no for w in earlier]})


@dataclass(frozen=True)
class ResultBeforeAcceptance:
    name: ClassVar[str] = "anomaly.result_before_acceptance"
    kind: ClassVar[Literal["anomaly"]] = "anomaly"
    description: ClassVar[str] = ("A decision or completion dated before the acceptance (the event's time, or "
                                  "the case's completion day before its acceptance day).")
    basis: ClassVar[str] = f"{LAW}第三十二条、第三十七条（先受理、后审查决定）"
    level: Level = "red"
    actions: tuple[str, ...] = (*DECISIONS, COMPLETE)

    def evaluate(self, facts: CaseFacts) -> Iterator[Finding]:
        accept = facts.first(ACCEPT)
        early = [s.seq for s in facts.steps
                 if accept is not None and s.action in self.actions and s.occurred_at < accept.occurred_at]
        case = facts.case
        ended = getattr(case, "completed_at", None) or getattr(case, "decided_at", None)
        day_before = bool(ended and case.accepted_on and business_date(ended) < case.accepted_on)
        if early or day_before:
            yield Finding(self.name, self.kind, self.level, "办件的决定或办结时间早于受理时间",
                          {"seqs": early, "accepted_on": case.accepted_on.isoformat() if case.accepted_on else None,
                           "ended_at": ended.isoformat() if ended else None})


RULES = (TooFast(), BackfilledBatch(), WithdrawResubmit(), ResultBeforeAcceptance())
