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

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.cases import writes
from hub.cases.models import Case, CaseEvent
from hub.catalog.models import Item
from hub.catalog.schemas import Fee, FeeCondition
from hub.db import begin_for_savepoints
from hub.errors import FieldError, HubError
from hub.payments.models import CaseFee

log = logging.getLogger("hub.payments.fees")
BEFORE_ACCEPTANCE, BEFORE_COMPLETION = "before_acceptance", "before_completion"
# Statuses after which nothing more is owed.
SETTLED = frozenset({"paid", "waived", "exempt"})
WAIVE_ACTION = "waive_fee"
# The case steps a fee can hold up (hub/cases/service.act calls ensure_allowed before them).
GUARDED_ACTIONS = frozenset({"accept", "complete"})
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
    # The stored guide names every condition key, the unused ones null.
    if when.get("applicant_type") is not None:
        return bool(applicant_type == str(when["applicant_type"]))
    field = when.get("form_field")
    if field is not None and field in form:
        return _same(form[field], when.get("equals"))
    return False


def _same(value: Any, expected: Any) -> bool:
    """The form's value is the rule's: ``true`` is not ``1`` (JSON booleans are not numbers here)."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    return bool(value == expected)


# --- the item's rule, checked ----------------------------------------------------------------------------


def rule_errors(fee: Fee, *, form_schema: dict[str, Any], applicant_types: list[str]) -> list[FieldError]:
    """What makes an item's fee rule unusable, each naming the field (``fee.…``) and the rule: checked on every
    item write (the catalogue API, the seed), so a case is never assessed from a bad rule."""
    errors: list[FieldError] = []
    properties = form_schema.get("properties") if isinstance(form_schema.get("properties"), dict) else {}
    if fee.kind == "fixed" and fee.amount_fen is None:
        errors.append(FieldError("fee.amount_fen", "required_for_fixed", "固定收费须给出金额 amount_fen（分）"))
    if fee.kind == "per_unit":
        if fee.unit_fen is None:
            errors.append(FieldError("fee.unit_fen", "required_for_per_unit",
                                     "按数量收费须给出单价 unit_fen（分）"))
        if fee.unit_field is None:
            errors.append(FieldError("fee.unit_field", "required_for_per_unit",
                                     "按数量收费须指明表单中填写数量的字段 unit_field"))
        elif not _integer_field(properties.get(fee.unit_field)):
            errors.append(FieldError("fee.unit_field", "integer_form_field",
                                     f"表单中没有整数字段 {fee.unit_field}（数量须由申请表的整数字段填写）"))
        if fee.max_fen is not None and fee.unit_fen is not None and fee.max_fen < fee.unit_fen:
            errors.append(FieldError("fee.max_fen", "not_below_unit_fen", "收费上限不得低于单价"))
    elif fee.unit_fen is not None or fee.unit_field is not None or fee.max_fen is not None:
        errors.append(FieldError("fee.kind", "per_unit_fields",
                                 "unit_fen、unit_field、max_fen 仅用于按数量收费 per_unit"))
    for index, exemption in enumerate(fee.exemptions):
        errors.extend(_exemption_errors(exemption.when, f"fee.exemptions.{index}.when", properties, applicant_types))
    return errors


def _integer_field(prop: Any) -> bool:
    return isinstance(prop, dict) and prop.get("type") == "integer"


def _exemption_errors(when: FeeCondition, where: str, properties: dict[str, Any], applicant_types: list[str]
                      ) -> list[FieldError]:
    if (when.applicant_type is None) == (when.form_field is None):
        return [FieldError(where, "one_condition", "免收条件须为申请人类型 applicant_type 或表单字段 form_field 之一")]
    if when.applicant_type is not None:
        if when.equals is not None:
            return [FieldError(f"{where}.equals", "form_field_only", "equals 仅与 form_field 同用")]
        if when.applicant_type not in applicant_types:
            return [FieldError(f"{where}.applicant_type", "applicant_type_of_item",
                               f"申请人类型 {when.applicant_type} 不是本事项受理的申请人类型")]
        return []
    if when.form_field not in properties:
        return [FieldError(f"{where}.form_field", "form_field_exists", f"表单中没有字段 {when.form_field}")]
    if when.equals is None:
        return [FieldError(f"{where}.equals", "required", "须给出使申请人免收的字段值 equals")]
    return []


# --- the case's row ------------------------------------------------------------------------------------


def fee_of(session: Session, case: Case, *, lock: bool = False) -> CaseFee | None:
    if case.id is None:
        return None
    query = select(CaseFee).where(CaseFee.case_id == case.id)
    return session.scalar(query.with_for_update() if lock else query)


def assess(session: Session, *, case: Case, now: datetime, new_case: bool = False) -> CaseFee | None:
    """The case's fee row, created once from its item's fee rule and its form and applicant; None when the
    item has no fee. An existing row (the hub's or a partner's) is returned as it is. ``new_case``: the case
    was inserted in this unit of work (a submission), so no row can exist yet: not looked for."""
    rule = fee_rule(case)
    looked_for = not new_case and (rule is not None or case.origin == "partner")
    existing = fee_of(session, case) if looked_for else None
    # A partner's case is the platform's to charge: only what it reported (``record_partner_payment``).
    if existing is not None or rule is None or case.origin == "partner":
        return existing
    assessment = compute(rule, applicant_type=case.applicant_type, form=case.form_data or {})
    status = "due" if assessment.amount_fen > 0 else "exempt"
    exemption = assessment.exemption
    if status == "exempt" and exemption is None:
        exemption = "应缴金额为零 (nothing to pay)"
    row = CaseFee(
        case_id=case.id, amount_fen=assessment.amount_fen, due=assessment.due, basis=assessment.basis,
        status=status, source="hub", exemption=exemption, paid_fen=0, assessed_at=now, updated_at=now,
    )
    if new_case:
        session.add(row)
        session.flush()
        return row
    # A case submitted before its item had a fee, assessed on first need: two requests may race to it.
    begin_for_savepoints(session)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return fee_of(session, case)
    return row


def brief(session: Session, case: Case) -> dict[str, Any] | None:
    """The fee as the case views show it (one field): amount, due point, status; None when nothing is owed
    or reported. No query for a hub case whose item has no fee."""
    if fee_rule(case) is None and case.origin != "partner":
        return None
    row = fee_of(session, case)
    if row is None:
        return None
    return {"amount_fen": row.amount_fen, "paid_fen": row.paid_fen, "due": row.due, "status": row.status,
            "source": row.source}


def not_charged(case: Case) -> bool:
    """A case that ended without a grant (denied, refused at intake, withdrawn) is never charged: what it paid
    is refunded (hub/payments/refunds.py)."""
    return case.state in ("denied", "intake_refused", "withdrawn") or (
        case.result is not None and case.result != "granted")


def owed(case: Case, row: CaseFee | None) -> bool:
    """Whether the applicant still has to pay."""
    return row is not None and row.status == "due" and not not_charged(case)


# --- the guard on the case's steps -------------------------------------------------------------------


def ensure_allowed(session: Session, *, case: Case, action: str, now: datetime | None = None) -> None:
    """Refuse ``accept`` while a fee due before acceptance is unpaid, and ``complete`` of a granted case while
    any fee is unpaid: 409 ``fee-unpaid``. Other actions, denied cases and items without a fee pass."""
    # Only a hub case of an item with a fee can owe one (a partner's case is read-only here): no query else.
    if action not in GUARDED_ACTIONS or fee_rule(case) is None:
        return
    if action == "complete" and (case.state != "granted" or not_charged(case)):
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
    left = row.amount_fen - row.paid_fen
    step = "受理" if action == "accept" else "办结"
    message = (f"本事项须缴纳费用 {yuan(left)} 元（{row.basis}），缴费完成前不能{step}。{PAY_HINT} "
               f"(a fee of {yuan(left)} yuan is unpaid: the case cannot be "
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
    # The operators' log too (no personal data: the reason stays in the row and the chain).
    log.info("fee waived", extra={"tracking_no": case.tracking_no, "officer": officer.username,
                                  "amount_fen": row.amount_fen})
    return row


def _record_waiver(session: Session, case: Case, officer: Officer, row: CaseFee, reason: str, now: datetime,
                   key: str) -> CaseEvent:
    return writes.append_step(session, case, writes.NewEvent(
        action=WAIVE_ACTION, from_state=case.state, to_state=case.state, actor_type="officer",
        actor_id=officer.username, actor_name=officer.name, department_id=officer.department_id, opinion=None,
        occurred_at=now, data={"amount_fen": row.amount_fen, "reason": reason, "basis": row.basis},
    ), key=key)


# --- partner platforms' records --------------------------------------------------------------------------

# A record's payment status (schemas/case-record.v1.json ``payment.status``) → case_fees.status.
PARTNER_STATUS = {"unpaid": "due", "paid": "paid", "waived": "waived", "exempt": "exempt", "refunded": "refunded"}


def record_partner_payment(session: Session, *, case: Case, item: Item, payment: dict[str, Any], now: datetime,
                           opened: bool) -> CaseFee:
    """Store a partner record's ``payment`` as reported (``source`` "partner", the object itself in
    ``reported``): the platform collects its own fees, the hub only mirrors what it says — electronic
    supervision reads it (``procedure.fee_unpaid_at_completion``). Called inside the exchange's no-autoflush
    block: a new case (``opened``) has no id yet, its fee row goes to the same flush through ``CaseFee.case``;
    only an existing case's row is looked up (one primary-key read, none if it is in the session)."""
    row = _pending_fee(session, case)
    if row is None and not opened:
        row = session.get(CaseFee, case.id)
    rule = (item.guide or {}).get("fee") or {}
    status = PARTNER_STATUS[payment["status"]]
    amount = int(payment.get("amount_fen", 0))
    if row is None:
        row = CaseFee(case=case, assessed_at=now, source="partner")
        session.add(row)
    row.amount_fen, row.status, row.source, row.reported = amount, status, "partner", dict(payment)
    row.paid_fen = amount if status == "paid" else 0
    row.due = rule.get("due") or BEFORE_COMPLETION
    row.basis = str(rule.get("basis") or "合作平台报送 (reported by the partner platform)")
    row.exemption = "合作平台报送：免收 (reported exempt by the partner platform)" if status == "exempt" else None
    row.waived_reason = "合作平台报送：已减免 (reported waived by the partner platform)" if status == "waived" else None
    row.updated_at = now
    return row


def _pending_fee(session: Session, case: Case) -> CaseFee | None:
    """A fee row added in this unit of work and not yet written (a batch's earlier record of the same case)."""
    return next((o for o in session.new if isinstance(o, CaseFee) and o.case is case), None)
