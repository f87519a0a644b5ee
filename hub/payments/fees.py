"""What a case owes (issue 12, item 1): the assessment from its item's fee rules, the guard on the case's
steps, payment and waiver.

An item's guide carries its fee rule (``guide.fee``, hub/catalog/schemas.py ``Fee``): fixed or per unit (the
count read from a form field, capped), its legal basis, exemptions (an applicant type, or a form field's
value) and when it is due (before acceptance or before completion). A case is assessed once — when it is
submitted, from the item as it stood then — into one ``case_fees`` row; later edits of the item change
nothing for cases already assessed.

The guard (``ensure_allowed``) is called by ``hub.cases.service.act`` before ``accept`` and ``complete``: a fee
due before acceptance blocks acceptance until paid; any fee still due blocks the completion of a granted
case. A denied case is never charged (its payment is refunded, hub/payments/refunds.py). ``waived`` (an
approver's recorded reason), ``exempt`` and ``paid`` let the case go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.cases import writes
from hub.cases.models import Case, CaseEvent
from hub.errors import FieldError, HubError
from hub.payments.models import CaseFee

BEFORE_ACCEPTANCE, BEFORE_COMPLETION = "before_acceptance", "before_completion"
# Statuses after which nothing more is owed.
SETTLED = frozenset({"paid", "waived", "exempt"})
WAIVE_ACTION = "waive_fee"
PAY_HINT = ("请通过网上办事大厅“缴费”或 POST /api/v1/payments 选择支付宝或银联在线缴纳；"
            "确需减免的，由审批部门负责人登记减免理由")


@dataclass(frozen=True)
class Assessment:
    """What the fee rule says a case owes; ``exemption`` the basis of the exemption that applies, if any."""

    amount_fen: int
    due: str
    basis: str
    exemption: str | None = None


def fee_rule(case: Case) -> dict[str, Any] | None:
    """The fee rule of the case's item (its guide's ``fee``); None for an item without a fee. A joint case's
    branch is never charged: the fee belongs to the application (the parent case)."""
    if case.parent_id is not None:
        return None
    rule = (case.item.guide or {}).get("fee")
    return rule if isinstance(rule, dict) else None


def compute(rule: dict[str, Any], *, applicant_type: str, form: dict[str, Any]) -> Assessment:
    """The amount, due point and basis a rule gives for one applicant and form (no database)."""
    due = rule.get("due") or BEFORE_COMPLETION
    basis = str(rule.get("basis") or "")
    for exemption in rule.get("exemptions") or []:
        if _applies(exemption.get("when") or {}, applicant_type=applicant_type, form=form):
            return Assessment(0, due, basis, str(exemption.get("basis") or basis))
    return Assessment(amount_of(rule, form), due, basis)


def amount_of(rule: dict[str, Any], form: dict[str, Any]) -> int:
    """Fixed: ``amount_fen``. Per unit: ``unit_fen`` times the count in the form's ``unit_field`` (at least one
    unit: the application itself), capped by ``max_fen``."""
    if rule.get("kind", "fixed") != "per_unit":
        return int(rule.get("amount_fen") or 0)
    count = units(rule, form)
    amount = int(rule.get("unit_fen") or 0) * count
    cap = rule.get("max_fen")
    return min(amount, int(cap)) if cap is not None else amount


def units(rule: dict[str, Any], form: dict[str, Any]) -> int:
    value = form.get(str(rule.get("unit_field") or ""))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 1
    return max(int(value), 1)


def _applies(when: dict[str, Any], *, applicant_type: str, form: dict[str, Any]) -> bool:
    if "applicant_type" in when:
        return bool(applicant_type == str(when["applicant_type"]))
    if "form_field" in when:
        return bool(when["form_field"] in form and form[when["form_field"]] == when.get("equals"))
    return False


# --- the case's row ------------------------------------------------------------------------------------


def fee_of(session: Session, case: Case, *, lock: bool = False) -> CaseFee | None:
    if case.id is None:
        return None
    query = select(CaseFee).where(CaseFee.case_id == case.id)
    return session.scalar(query.with_for_update() if lock else query)


def assess(session: Session, *, case: Case, now: datetime) -> CaseFee | None:
    """The case's fee row, created once from its item's fee rule and its form and applicant; None when the
    item has no fee. An existing row (the hub's or a partner's) is returned as it is."""
    existing = fee_of(session, case)
    if existing is not None:
        return existing
    rule = fee_rule(case)
    if rule is None:
        return None
    assessment = compute(rule, applicant_type=case.applicant_type, form=case.form_data or {})
    status = "due" if assessment.amount_fen > 0 else "exempt"
    exemption = assessment.exemption
    if status == "exempt" and exemption is None:
        exemption = "应缴金额为零 (nothing to pay)"
    row = CaseFee(
        case_id=case.id, amount_fen=assessment.amount_fen, due=assessment.due, basis=assessment.basis,
        status=status, source="hub", exemption=exemption, paid_fen=0, assessed_at=now, updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


# --- the guard on the case's steps -------------------------------------------------------------------


def ensure_allowed(session: Session, *, case: Case, action: str, now: datetime | None = None) -> None:
    """Refuse ``accept`` while a fee due before acceptance is unpaid, and ``complete`` of a granted case while
    any fee is unpaid: 409 ``fee-unpaid``. Other actions, denied cases and items without a fee pass."""
    # Only a hub case of an item with a fee can owe one (a partner's case is read-only here): no query else.
    if action not in ("accept", "complete") or fee_rule(case) is None:
        return
    if action == "complete" and case.state != "granted" and case.result != "granted":
        return  # a denied (or otherwise ended) case is not charged
    row = fee_of(session, case)
    if row is None:
        row = assess(session, case=case, now=now or case.updated_at)
    if row is None or row.status in SETTLED:
        return
    if action == "accept" and row.due != BEFORE_ACCEPTANCE:
        return
    raise fee_unpaid(row, action)


def fee_unpaid(row: CaseFee, action: str) -> HubError:
    owed = row.amount_fen - row.paid_fen
    step = "受理" if action == "accept" else "办结"
    message = (f"本事项须缴纳费用 {yuan(owed)} 元（{row.basis}），缴费完成前不能{step}。{PAY_HINT} "
               f"(a fee of {yuan(owed)} yuan is unpaid: the case cannot be "
               f"{'accepted' if action == 'accept' else 'completed'} until it is paid or waived)")
    return HubError(detail=message, title="费用未缴", status=409, type_slug="fee-unpaid",
                    errors=[FieldError("fee", "fee_unpaid", message)])


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


# --- payment and waiver --------------------------------------------------------------------------------


def mark_paid(session: Session, *, case_id: int, amount_fen: int, now: datetime) -> CaseFee | None:
    """A payment of ``amount_fen`` was confirmed (hub/payments/service.apply_trade): add it; the fee is paid
    once the amount is covered. Idempotent per order is the caller's (an order is marked paid once)."""
    row = session.scalar(select(CaseFee).where(CaseFee.case_id == case_id).with_for_update())
    if row is None:
        return None
    row.paid_fen = (row.paid_fen or 0) + amount_fen
    if row.status == "due" and row.paid_fen >= row.amount_fen:
        row.status = "paid"
    row.updated_at = now
    session.flush()
    return row


def waive(session: Session, *, case: Case, officer: Officer, reason: str, now: datetime,
          audit_key: str = "") -> CaseFee:
    """An approver waives the case's fee with a recorded reason: the row says who, when and why, and one
    ``waive_fee`` event goes into the case's chain."""
    row = fee_of(session, case, lock=True) or assess(session, case=case, now=now)
    if row is None:
        raise HubError(detail="该办件无需缴费 (the case has no fee)", title="无需缴费", status=409,
                       type_slug="no-fee-due", errors=[FieldError("fee", "no_fee_due", "该办件无需缴费")])
    if row.status != "due":
        raise HubError(detail=f"费用状态为 {row.status}，不能减免 (the fee is {row.status}: nothing to waive)",
                       title="无需缴费", status=409, type_slug="no-fee-due",
                       errors=[FieldError("fee", "no_fee_due", f"费用状态为 {row.status}，不能减免")])
    row.status, row.waived_reason, row.waived_by, row.waived_at = "waived", reason, officer.username, now
    row.updated_at = now
    case.updated_at = now
    _record_waiver(session, case, officer, row, reason, now, audit_key)
    session.flush()
    return row


def _record_waiver(session: Session, case: Case, officer: Officer, row: CaseFee, reason: str, now: datetime,
                   key: str) -> CaseEvent:
    return writes.append_step(session, case, writes.NewEvent(
        action=WAIVE_ACTION, from_state=case.state, to_state=case.state, actor_type="officer",
        actor_id=officer.username, actor_name=officer.name, department_id=officer.department_id, opinion=None,
        occurred_at=now, data={"amount_fen": row.amount_fen, "reason": reason, "basis": row.basis},
    ), key=key)
