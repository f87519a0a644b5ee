"""``procedure.fee_unpaid_at_completion`` (issue 12) over CaseFacts built in memory: which completions it judges,
and that it reads the fee row only for a new completion of a granted case whose item charges a fee."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hub.supervision.rules import FeeFacts
from hub.supervision.rules.procedure import FeeUnpaidAtCompletion
from tests.hub.supervision.rulekit import FLOW, FakeLookups, case, facts, found, standard, steps

RULE = FeeUnpaidAtCompletion()
FEE_ITEM = SimpleNamespace(fee_fen=2000)


class FeeLookups(FakeLookups):
    def __init__(self, fee: FeeFacts | None) -> None:
        super().__init__()
        self.fee = fee

    def case_fee(self, *, case_id: int) -> FeeFacts | None:
        self.asked.append("fee")
        return self.fee


def fee(status: str, source: str = "partner") -> FeeFacts:
    return FeeFacts(status=status, amount_fen=2000, paid_fen=0, due="before_completion", source=source)


def judged(status: str | None, *, of: Any = None, upto: int = 5, new_from: int = 1) -> tuple[list[Any], list[str]]:
    lookups = FeeLookups(fee(status) if status else None)
    subject = of or case(origin="partner", item=FEE_ITEM, result="granted")
    return found(RULE, facts(standard(upto), of=subject, lookups=lookups, new_from=new_from)), lookups.asked


def test_a_granted_completion_with_the_fee_still_due_is_found() -> None:
    findings, _ = judged("due")
    assert [(f.rule, f.level) for f in findings] == [("procedure.fee_unpaid_at_completion", "yellow")]
    assert findings[0].detail["amount_fen"] == 2000 and findings[0].detail["seq"] == 5
    assert "20.00元" in findings[0].message


def test_paid_waived_exempt_or_refunded_fees_are_not_found() -> None:
    for status in ("paid", "waived", "exempt", "refunded"):
        assert judged(status)[0] == [], status


def test_no_fee_row_no_finding() -> None:
    assert judged(None)[0] == []


def test_a_denied_case_is_not_charged() -> None:
    denied = steps(*[(a, s) for a, s, _ in FLOW[:3]], ("deny", "denied"), ("complete", "completed"))
    lookups = FeeLookups(fee("due"))
    subject = case(origin="partner", item=FEE_ITEM, result=None)
    assert found(RULE, facts(denied, of=subject, lookups=lookups)) == []
    assert lookups.asked == []


def test_the_fee_is_not_read_for_an_item_without_a_fee_an_old_completion_or_a_running_case() -> None:
    no_fee = case(origin="partner", item=SimpleNamespace(fee_fen=None), result="granted")
    assert judged("due", of=no_fee) == ([], [])
    assert judged("due", new_from=6) == ([], [])  # completion recorded in an earlier unit of work
    assert judged("due", upto=4) == ([], [])  # granted, not completed
