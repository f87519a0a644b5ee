"""The law's clock on exact dates: weekends, National Day 2026 with its make-up working days, 2027 before and
after its holiday notice is loaded, the after-hours rule, the one extension and suspensions.

chinese_calendar's 2026 schedule (the State Council notice): National Day and Mid-autumn 2026-10-01..07 off,
Sunday 2026-09-20 and Saturday 2026-10-10 worked; Mid-autumn 2026-09-25..27 off; Qingming 2026-04-06 off.
It stops at 2026: 2027 counts Monday to Friday until the province loads the 2027 notice.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from workflow.calendar import WorkingCalendar, overrides_from_notice, parse_notice
from workflow.clock import (
    LAW_LIMITS,
    SPECIAL_PROCEDURES,
    SUPPLEMENT,
    ClockFacts,
    Suspension,
    intake_deadline,
    received_on,
)

CAL = WorkingCalendar()
# A 2027 notice as the province would load it (the dates of this test's own making).
NOTICE_2027 = {
    "year": 2027, "source": "国务院办公厅关于2027年部分节假日安排的通知（测试）",
    "holidays": [{"name": "元旦", "from": "2027-01-01", "to": "2027-01-03"},
                 {"name": "春节", "from": "2027-02-06", "to": "2027-02-12"}],
    "workdays": [{"name": "春节调休", "date": "2027-02-13"}],
}
CAL_2027 = WorkingCalendar(overrides_from_notice(parse_notice(NOTICE_2027)))


def single(accepted_on: date, promised: int = 20) -> ClockFacts:
    return ClockFacts(statutory_limit_days=LAW_LIMITS["single"][0], promised_limit_days=promised).accept(accepted_on)


# --- received_on: the after-hours rule -----------------------------------------------------------------


@pytest.mark.parametrize(("local", "expected"), [
    (datetime(2026, 3, 11, 16, 59), date(2026, 3, 11)),  # a Wednesday, before 17:00: that day
    (datetime(2026, 3, 11, 17, 0), date(2026, 3, 12)),  # 17:00 sharp: the next working day
    (datetime(2026, 3, 13, 17, 30), date(2026, 3, 16)),  # Friday evening: Monday
    (datetime(2026, 3, 14, 10, 0), date(2026, 3, 16)),  # Saturday: Monday
    (datetime(2026, 3, 15, 23, 59), date(2026, 3, 16)),  # Sunday night: Monday
    (datetime(2026, 10, 1, 10, 0), date(2026, 10, 8)),  # National Day: the first day after the holiday
    (datetime(2026, 9, 30, 17, 5), date(2026, 10, 8)),  # the evening before it: the same
    (datetime(2026, 10, 10, 9, 0), date(2026, 10, 10)),  # a make-up working Saturday counts
    (datetime(2026, 9, 20, 9, 0), date(2026, 9, 20)),  # a make-up working Sunday too
    (datetime(2026, 4, 6, 9, 0), date(2026, 4, 7)),  # Qingming Monday
])
def test_received_on_is_the_working_day_the_application_counts_for(local: datetime, expected: date) -> None:
    assert received_on(CAL, local) == expected


def test_intake_period_is_five_working_days_across_national_day_and_a_make_up_saturday() -> None:
    # Sep 29, Sep 30, (Oct 1-7 off), Oct 8, Oct 9, Oct 10 (make-up Saturday).
    assert intake_deadline(CAL, date(2026, 9, 28)) == date(2026, 10, 10)
    assert intake_deadline(CAL, date(2026, 3, 11)) == date(2026, 3, 18)  # Thu Fri Mon Tue Wed


# --- deadlines ----------------------------------------------------------------------------------------


def test_a_one_day_limit_skips_the_weekend() -> None:
    facts = ClockFacts(statutory_limit_days=1, promised_limit_days=1).accept(date(2026, 3, 13))
    assert facts.statutory_deadline(CAL, date(2026, 3, 13)) == date(2026, 3, 16)


def test_twenty_working_days_over_qingming() -> None:
    facts = single(date(2026, 3, 11), promised=5)
    assert facts.promised_deadline(CAL, date(2026, 3, 11)) == date(2026, 3, 18)
    assert facts.statutory_deadline(CAL, date(2026, 3, 11)) == date(2026, 4, 9)  # Apr 6 is Qingming


def test_twenty_working_days_over_national_day_count_the_make_up_saturday() -> None:
    # Sep 29, 30 | Oct 8, 9, 10 (Sat, worked), 12-16, 19-23, 26-30: the 20th is Friday Oct 30.
    facts = single(date(2026, 9, 28))
    assert facts.statutory_deadline(CAL, date(2026, 9, 28)) == date(2026, 10, 30)
    # Without the make-up Saturday it would be one working day later.
    assert CAL.add_working_days(date(2026, 9, 28), 19) == date(2026, 10, 29)


def test_accepted_just_before_national_day() -> None:
    # Sep 30 accepted: Oct 8 is the first working day counted, Oct 10 (Saturday) the third.
    facts = ClockFacts(statutory_limit_days=3, promised_limit_days=3).accept(date(2026, 9, 30))
    assert facts.statutory_deadline(CAL, date(2026, 9, 30)) == date(2026, 10, 10)
    assert facts.working_days_used(CAL, date(2026, 10, 7)) == 0  # the holiday is not counted
    assert facts.days_remaining(CAL, date(2026, 10, 9)) == 1


def test_2027_counts_monday_to_friday_until_its_notice_is_loaded() -> None:
    facts = single(date(2026, 12, 28))
    # Dec 29, 30, 31 | 2027 without a notice: Jan 1 (a Friday) counts, ... the 20th is Monday Jan 25.
    assert CAL.coverage(2027) == "fallback"
    assert facts.statutory_deadline(CAL, date(2026, 12, 28)) == date(2027, 1, 25)
    # The notice makes Jan 1 a holiday: one day later.
    assert CAL_2027.coverage(2027) == "override"
    assert facts.statutory_deadline(CAL_2027, date(2026, 12, 28)) == date(2027, 1, 26)


def test_2027_spring_festival_and_its_make_up_saturday_after_the_notice() -> None:
    facts = ClockFacts(statutory_limit_days=10, promised_limit_days=10).accept(date(2027, 2, 1))
    # Before: Feb 2-5, 8-12, 15 -> Feb 15.
    assert facts.statutory_deadline(CAL, date(2027, 2, 1)) == date(2027, 2, 15)
    # After: Feb 2-5 (4), Feb 6-12 off, Sat Feb 13 worked (5), Feb 15-19 (6-10) -> Feb 19.
    assert facts.statutory_deadline(CAL_2027, date(2027, 2, 1)) == date(2027, 2, 19)


# --- Art. 42: one extension ----------------------------------------------------------------------------


def test_extension_moves_the_statutory_deadline_once() -> None:
    facts = single(date(2026, 3, 11), promised=5).extend(LAW_LIMITS["single"][1])
    assert facts.statutory_deadline(CAL, date(2026, 3, 11)) == date(2026, 4, 23)  # 30 working days
    assert facts.promised_deadline(CAL, date(2026, 3, 11)) == date(2026, 3, 18)  # the promise does not move
    assert facts.days_remaining(CAL, date(2026, 3, 11)) == 30
    with pytest.raises(ValueError, match=r"Art\. 42"):
        facts.extend(10)


def test_joint_handling_is_45_extended_by_15() -> None:
    assert LAW_LIMITS["joint"] == (45, 15)
    facts = ClockFacts(statutory_limit_days=45, promised_limit_days=45).accept(date(2026, 3, 11)).extend(15)
    assert facts.statutory_deadline(CAL, date(2026, 3, 11)) == CAL.add_working_days(date(2026, 3, 11), 60)


# --- Art. 45 and supplements: suspensions ----------------------------------------------------------------


def test_a_special_procedure_moves_every_deadline_by_its_working_days() -> None:
    facts = single(date(2026, 3, 11), promised=5)
    facts = facts.suspend(Suspension("expert_review", date(2026, 3, 12), "专家评审", declared_days=5))
    # While open: counted up to today (Mar 13, 16 after Mar 12), the used days stand still.
    assert facts.days_suspended(CAL, date(2026, 3, 16)) == 2
    assert facts.working_days_used(CAL, date(2026, 3, 16)) == 1
    facts = facts.resume(date(2026, 3, 17))
    # (Mar 12, Mar 17] = Mar 13, 16, 17: three working days not counted.
    assert facts.days_suspended(CAL, date(2026, 3, 30)) == 3
    assert facts.promised_deadline(CAL, date(2026, 3, 30)) == date(2026, 3, 23)
    assert facts.statutory_deadline(CAL, date(2026, 3, 30)) == date(2026, 4, 14)
    assert facts.working_days_used(CAL, date(2026, 3, 18)) == 2  # Mar 12 and Mar 18: the three are not counted
    assert facts.days_remaining(CAL, date(2026, 3, 18)) == 18


def test_a_suspension_over_national_day_counts_only_working_days() -> None:
    facts = single(date(2026, 9, 28)).suspend(Suspension(SUPPLEMENT, date(2026, 9, 30))).resume(date(2026, 10, 9))
    assert facts.days_suspended(CAL, date(2026, 10, 9)) == 2  # Oct 8, 9
    assert facts.statutory_deadline(CAL, date(2026, 10, 9)) == CAL.add_working_days(date(2026, 10, 30), 2)


def test_one_suspension_at_a_time_and_only_art_45_kinds() -> None:
    facts = single(date(2026, 3, 11)).suspend(Suspension("hearing", date(2026, 3, 12)))
    with pytest.raises(ValueError, match="suspended"):
        facts.suspend(Suspension("testing", date(2026, 3, 13)))
    with pytest.raises(ValueError, match="unknown suspension kind"):
        Suspension("public_notice", date(2026, 3, 12))
    assert set(SPECIAL_PROCEDURES) == {"hearing", "tendering", "auction", "testing", "inspection", "quarantine",
                                       "appraisal", "expert_review"}


def test_the_clock_stops_counting_at_the_decision() -> None:
    facts = single(date(2026, 3, 11)).stop(date(2026, 3, 18))
    assert facts.working_days_used(CAL, date(2026, 6, 1)) == 5
    assert facts.days_remaining(CAL, date(2026, 6, 1)) == 15


def test_suspensions_round_trip_through_json() -> None:
    one = Suspension("appraisal", date(2026, 3, 12), "鉴定", declared_days=7, ended_on=date(2026, 3, 20))
    assert Suspension.from_json(one.to_json()) == one
