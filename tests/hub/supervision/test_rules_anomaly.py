"""Each anomaly rule, positive and negative, over cases built in memory; the lookups they make are asked
only for an event new in this unit of work."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hub.supervision.rules import Withdrawal
from hub.supervision.rules.anomaly import BackfilledBatch, ResultBeforeAcceptance, TooFast, WithdrawResubmit
from tests.hub.supervision.rulekit import T0, FakeLookups, case, facts, found, standard, steps


def test_too_fast_against_the_items_median() -> None:
    history = FakeLookups(durations=[10] * 30)
    (finding,) = found(TooFast(), facts(standard(), of=case(working_days_used=1), new_from=5, lookups=history))
    assert finding.detail == {"working_days": 1, "median": 10, "sample": 30}
    assert found(TooFast(), facts(standard(), of=case(working_days_used=6), new_from=5, lookups=history)) == []


def test_too_fast_needs_a_sample_and_a_new_completion() -> None:
    few = FakeLookups(durations=[10] * 5)
    assert found(TooFast(), facts(standard(), of=case(working_days_used=1), new_from=5, lookups=few)) == []
    history = FakeLookups(durations=[10] * 30)
    # Completed earlier: re-evaluating the case asks nothing.
    assert found(TooFast(), facts(standard(), of=case(working_days_used=1), new_from=6, lookups=history)) == []
    assert history.asked == []


def test_too_fast_counts_working_days_itself_when_the_case_row_has_none() -> None:
    history = FakeLookups(durations=[8] * 20)
    same_day = case(working_days_used=None, accepted_on=date(2026, 3, 10))
    assert len(found(TooFast(), facts(standard(), of=same_day, new_from=5, lookups=history))) == 1


def decisions_at(hour_utc: int, day: int = 10) -> list:
    moment = datetime(2026, 3, day, hour_utc, 0, tzinfo=UTC)
    return steps(("submit", "submitted"), ("accept", "under_review"), ("review", "pending_decision"),
                 ("grant", "granted"), start=moment - timedelta(minutes=3), every=timedelta(minutes=1))


def test_backfilled_batch_at_night() -> None:
    night = decisions_at(17)  # 01:00 China time
    (finding,) = found(BackfilledBatch(), facts(night, new_from=4, lookups=FakeLookups(decisions=7)))
    assert finding.detail["count"] == 7 and finding.detail["seq"] == 4
    assert found(BackfilledBatch(), facts(night, new_from=4, lookups=FakeLookups(decisions=2))) == []


def test_backfilled_batch_on_a_sunday_but_not_in_office_hours() -> None:
    sunday = decisions_at(2, day=15)  # Sunday 15 March 2026, 10:00 China time
    assert len(found(BackfilledBatch(), facts(sunday, new_from=4, lookups=FakeLookups(decisions=9)))) == 1
    office = FakeLookups(decisions=9)
    assert found(BackfilledBatch(), facts(decisions_at(2), new_from=4, lookups=office)) == []
    assert office.asked == []  # in office hours nothing is looked up


def test_withdraw_and_resubmit() -> None:
    earlier = FakeLookups(withdrawals=[Withdrawal("210100-20260302-0007", T0 - timedelta(days=3))])
    (finding,) = found(WithdrawResubmit(), facts(standard(2), new_from=2, lookups=earlier))
    assert finding.detail == {"withdrawn": ["210100-20260302-0007"]}
    long_ago = FakeLookups(withdrawals=[Withdrawal("210100-20260101-0001", T0 - timedelta(days=60))])
    assert found(WithdrawResubmit(), facts(standard(2), new_from=2, lookups=long_ago)) == []
    assert found(WithdrawResubmit(), facts(standard(3), new_from=3, lookups=earlier)) == []  # accepted before


def test_result_before_acceptance() -> None:
    backdated = standard(4, grant={"occurred_at": T0 - timedelta(days=1)})
    assert found(ResultBeforeAcceptance(), facts(backdated))[0].detail["seqs"] == [4]
    completed_early = case(accepted_on=date(2026, 3, 12), completed_at=T0)
    assert len(found(ResultBeforeAcceptance(), facts(standard(), of=completed_early))) == 1
    assert found(ResultBeforeAcceptance(), facts(standard(), of=case(completed_at=T0 + timedelta(days=2)))) == []
