"""HTTP: a case's fee (issue 12) — what it owes, where that stands and its payment orders — and an approver's
waiver with a recorded reason."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.auth import service as auth_service
from hub.auth.models import Officer
from hub.auth.service import require_role
from hub.cases import service as cases
from hub.cases.models import Case
from hub.cases.router import TrackingNo, applicant_case
from hub.deps import NowDep, OfficerDep, SessionDep, SessionFactoryDep, SettingsDep, oauth2_scheme
from hub.errors import FieldError, Forbidden, HubError, NotFound, ValidationFailed
from hub.payments import fees
from hub.payments.models import CaseFee, PaymentOrder
from hub.problems import problem_responses
from hub.settings import Settings
from hub.text import TextRuleViolation, normalize_text
from workflow.registry import get_definition

router = APIRouter(prefix="/api/v1/cases", tags=["payments"])

REASON_MIN, REASON_MAX = 4, 2000


class FeeOrderOut(BaseModel):
    """A payment order of the case as the fee view lists it (no payer data)."""

    order_no: str
    gateway: str
    amount_fen: int
    refunded_fen: int
    state: str
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None


class FeeOut(BaseModel):
    tracking_no: str
    status: Literal["none", "due", "paid", "waived", "exempt", "refunded"] = Field(
        description="none: the item charges nothing; due: to pay; paid; waived (减免, with the approver's "
                    "reason); exempt (免收: the exemption below); refunded")
    owed: bool = Field(description="the applicant still has to pay: due, and the case was not denied, refused "
                                   "or withdrawn (such a case is never charged; what it paid is refunded)")
    amount_fen: int = Field(description="应缴金额（分）")
    amount_yuan: str = Field(description="应缴金额（元）, for people")
    paid_fen: int
    due: Literal["before_acceptance", "before_completion"] | None = Field(
        description="payment is due before the case is accepted (受理前) or completed (办结前)")
    basis: str | None = Field(description="收费依据 (the legal basis of the fee)")
    exemption: str | None = Field(description="免收依据, when an exemption applies")
    source: Literal["hub", "partner"] | None = Field(description="partner: as the city platform reported it")
    waived_at: datetime | None = None
    waived_by: str | None = Field(default=None, description="officers only")
    waived_reason: str | None = Field(default=None, description="officers only")
    orders: list[FeeOrderOut] = Field(default_factory=list)


class WaiverIn(BaseModel):
    reason: str = Field(min_length=REASON_MIN, max_length=REASON_MAX, description="减免理由 (recorded)")


def optional_officer(session: SessionDep, settings: SettingsDep, now: NowDep,
                     token: Annotated[str | None, Depends(oauth2_scheme)]) -> Officer | None:
    """The signed-in officer when a bearer token is sent (it must be valid), else None (the applicant)."""
    if not token:
        return None
    return auth_service.officer_from_token(session, token=token, secret=settings.secret_key, now=now)


@router.get("/{tracking_no}/fee", response_model=FeeOut, responses=problem_responses(401, 404, 422, 429))
def get_fee(
    tracking_no: TrackingNo, session: SessionDep, factory: SessionFactoryDep, settings: SettingsDep,
    now: NowDep, officer: Annotated[Officer | None, Depends(optional_officer)],
    query_code: Annotated[str | None, Query(min_length=4, max_length=16, description="查询码 (the applicant)")] = None,
    query_code_header: Annotated[str | None, Header(alias="X-Query-Code", min_length=4, max_length=16)] = None,
) -> FeeOut:
    """The case's fee: amount, when it is due, its status, legal basis, exemption and payment orders.

    For the applicant (query code as ``query_code`` or ``X-Query-Code``, with the same budget of wrong codes
    as the case view: 429 past it) or an officer who may see the case (bearer token)."""
    case = _case_for(session, factory, tracking_no, officer=officer, query_code=query_code or query_code_header,
                     settings=settings, now=now)
    return fee_out(session, case, row=fees.assess(session, case=case, now=now), officer=officer is not None)


@router.post("/{tracking_no}/fee/waiver", response_model=FeeOut,
             responses=problem_responses(401, 403, 404, 409, 422))
def waive_fee(
    tracking_no: TrackingNo, data: WaiverIn, session: SessionDep, officer: OfficerDep, now: NowDep,
    settings: SettingsDep,
) -> FeeOut:
    """Waive (减免) the case's fee: an approver of the case's department, with the reason (recorded on the fee,
    as a ``waive_fee`` step of the case and in its audit chain). 409 ``no-fee-due`` when nothing is owed;
    409 ``case-closed`` on a case that has ended; 409 ``partner-system-of-record`` for a platform's case."""
    case = cases.case_for_officer(session, tracking_no=tracking_no, officer=officer)
    require_role(officer, ["approver"])
    if officer.department_id != case.department_id:
        raise Forbidden("只能减免本部门办件的费用 (case belongs to another department)")
    cases.check_system_of_record(case)
    if get_definition(case.workflow_id).is_terminal(case.state):
        raise HubError(detail="办件已结束，不能减免费用 (the case has ended)", title="状态冲突", status=409,
                       type_slug="case-closed")
    reason = _reason(data.reason)
    row = fees.waive(session, case=case, officer=officer, reason=reason, now=now, audit_key=settings.audit_key)
    return fee_out(session, case, row=row, officer=True)


def _case_for(session: Session, factory: object, tracking_no: str, *, officer: Officer | None,
              query_code: str | None, settings: Settings, now: datetime) -> Case:
    if officer is not None:
        return cases.case_for_officer(session, tracking_no=tracking_no, officer=officer)
    if not query_code:
        raise NotFound("办件编号或查询码不正确 (tracking number or query code wrong)")
    return applicant_case(session, factory, tracking_no, query_code, settings=settings, now=now)  # type: ignore[arg-type]


def _reason(value: str) -> str:
    try:
        reason = normalize_text(value, max_length=REASON_MAX)
    except TextRuleViolation as exc:
        raise ValidationFailed([FieldError("reason", exc.rule, exc.message)]) from exc
    if len(reason) < REASON_MIN:
        raise ValidationFailed([FieldError("reason", "min_length", f"减免理由至少 {REASON_MIN} 个字")])
    return reason


def fee_out(session: Session, case: Case, *, row: CaseFee | None, officer: bool) -> FeeOut:
    if row is None:
        return FeeOut(tracking_no=case.tracking_no, status="none", owed=False, amount_fen=0, amount_yuan="0.00",
                      paid_fen=0, due=None, basis=None, exemption=None, source=None)
    orders = session.scalars(select(PaymentOrder).where(PaymentOrder.case_id == case.id)
                             .order_by(PaymentOrder.created_at, PaymentOrder.id))
    return FeeOut(
        tracking_no=case.tracking_no, status=row.status, owed=fees.owed(case, row),  # type: ignore[arg-type]
        amount_fen=row.amount_fen,
        amount_yuan=fees.yuan(row.amount_fen), paid_fen=row.paid_fen or 0, due=row.due,  # type: ignore[arg-type]
        basis=row.basis or None, exemption=row.exemption, source=row.source,  # type: ignore[arg-type]
        waived_at=row.waived_at, waived_by=row.waived_by if officer else None,
        waived_reason=row.waived_reason if officer else None,
        orders=[FeeOrderOut(order_no=o.order_no, gateway=o.gateway, amount_fen=o.amount_fen,
                            refunded_fen=o.refunded_fen or 0, state=o.state, created_at=o.created_at,
                            expires_at=o.expires_at, paid_at=o.paid_at) for o in orders],
    )
