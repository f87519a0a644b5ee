"""Officers' payment endpoints (issue 12, part reconcile): the daily reconciliation reports (supervisors and
administrators) and a refund of a paid order (an approver of the case's department).

Included BEFORE the orders' router (hub/app.py): ``/payments/reconciliations`` would otherwise be taken for an
order number by ``GET /payments/{order_no}``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from hub.auth.models import Officer
from hub.deps import NowDep, OfficerDep, SessionDep
from hub.errors import Forbidden, NotFound
from hub.payments import reconciliation, refunds, service
from hub.payments.schemas import ORDER_NO
from hub.problems import problem_responses

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])

OrderNo = Annotated[str, Path(pattern=ORDER_NO, description="订单号")]


class RefundIn(BaseModel):
    amount_fen: int = Field(ge=1, le=10**10, description="退款金额（分），不超过可退金额")
    reason: str = Field(min_length=2, max_length=500, description="退款原因")


class RefundOut(BaseModel):
    refund_no: str
    order_no: str
    gateway: str
    amount_fen: int
    reason: str
    state: str = Field(description="requested, processing, succeeded, failed, unknown")
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    requested_at: datetime
    completed_at: datetime | None


class Difference(BaseModel):
    kind: str = Field(description="missing_at_hub, missing_at_gateway, amount_differs, refund_differs, "
                                  "business_date_differs")
    order_no: str
    refund_no: str | None = None
    hub_amount_fen: int | None = None
    gateway_amount_fen: int | None = None
    hub_state: str | None = None
    corrected: bool = Field(False, description="applied at the hub from the statement (source statement)")
    note: str | None = None


class ReportOut(BaseModel):
    gateway: str
    business_date: date
    status: str = Field(description="matched, differences, failed")
    summary: dict[str, Any]
    differences: list[Difference]
    created_at: datetime


class ReportList(BaseModel):
    reports: list[ReportOut]


def require_reconciliation_reader(officer: Officer) -> None:
    if not {"supervisor", "admin"} & set(officer.roles):
        raise Forbidden("需要监察人员或管理员角色 (requires role: supervisor or admin)")


@router.get("/reconciliations", response_model=ReportList, responses=problem_responses(401, 403, 422))
def list_reconciliations(
    session: SessionDep, officer: OfficerDep,
    gateway: Annotated[str | None, Query(pattern=r"^(alipay|unionpay)$", description="支付渠道")] = None,
    day: Annotated[date | None, Query(alias="date", description="对账日 (business day, China time)")] = None,
    limit: Annotated[int, Query(ge=1, le=366)] = 31,
) -> ReportList:
    """The daily reconciliation reports (对账结果), newest day first: per gateway and business day, the
    totals on both sides and every difference (corrected ones marked)."""
    require_reconciliation_reader(officer)
    rows = reconciliation.reports(session, gateway=gateway, day=day, limit=limit)
    return ReportList(reports=[ReportOut.model_validate(reconciliation.report_view(row)) for row in rows])


@router.post("/{order_no}/refunds", response_model=RefundOut, status_code=201,
             responses=problem_responses(401, 403, 404, 409, 422))
def refund(order_no: OrderNo, data: RefundIn, session: SessionDep, officer: OfficerDep, now: NowDep) -> RefundOut:
    """A refund of a paid order, full or partial, by an approver of the case's department: recorded under its
    refund number and sent by the worker (the same number on every retry). 422 ``exceeds_refundable`` for more
    than what is left to refund; 409 ``not_refundable`` for an order that holds no money."""
    order = service.order_by_no(session, order_no, lock=True)
    if order is None:
        raise NotFound("订单不存在 (order not found)")
    case = service.case_of(session, order)
    if "approver" not in officer.roles or officer.department_id != case.department_id:
        raise Forbidden("只有本部门审批人员可以退款 (requires role approver of the case's department)")
    made = refunds.request_refund(session, order=order, amount_fen=data.amount_fen, reason=data.reason.strip(),
                                  now=now)
    return RefundOut.model_validate(refunds.refund_view(made, order))
