"""Payment endpoints (issue 12, part orders): the applicant's orders, the page that sends the browser to the
gateway, the gateways' back-end notifications and the browser's return."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from adapters.payments.base import Acknowledgement, NotificationRejected
from hub.cases.router import applicant_case
from hub.db import unit_of_work
from hub.deps import NowDep, SessionDep, SessionFactoryDep, SettingsDep
from hub.errors import NotFound
from hub.payments import pages, service
from hub.payments.gateways import Gateways
from hub.payments.models import PaymentOrder
from hub.payments.schemas import ORDER_NO, HistoryEntry, PaymentDetail, PaymentIn, PaymentOut
from hub.problems import MEDIA_TYPE, Problem, problem_responses
from hub.settings import Settings

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])
log = logging.getLogger("hub.payments")

OrderNo = Annotated[str, Path(pattern=ORDER_NO, description="订单号")]
GatewayName = Annotated[str, Path(pattern=r"^(alipay|unionpay)$", description="支付渠道")]


async def get_gateways(request: Request) -> Gateways:
    gateways: Gateways = request.app.state.payment_gateways
    return gateways


async def raw_body(request: Request) -> bytes:
    return await request.body()


GatewaysDep = Annotated[Gateways, Depends(get_gateways)]
RawBody = Annotated[bytes, Depends(raw_body)]


@router.post("", response_model=PaymentOut, status_code=201, responses={
    200: {"model": PaymentOut, "description": "the case's open order through this gateway, again"},
    **problem_responses(404, 409, 422, 429),
    503: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": "支付机构暂不可用 (gateway unavailable)"}})
def create_payment(data: PaymentIn, session: SessionDep, factory: SessionFactoryDep, settings: SettingsDep,
                   now: NowDep, gateways: GatewaysDep) -> JSONResponse:
    """Create a payment order for the case's fee (201), or return its open one through the same gateway (200).

    ``pay_url`` is where the applicant's browser goes to pay. 409 ``no_fee_due`` when nothing is owed; 422
    ``gateway_not_configured`` for a gateway this hub does not offer."""
    gateways.get(data.gateway)  # 422 before the query code is counted
    case = applicant_case(session, factory, data.tracking_no, data.query_code, settings=settings, now=now)
    order, created = service.create_order(session, case=case, gateway=data.gateway, gateways=gateways,
                                          settings=settings, now=now)
    body = _out(order, case.tracking_no, settings).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if created else 200)


@router.get("/return/{gateway}", response_class=HTMLResponse)
def browser_return(gateway: GatewayName, request: Request, session: SessionDep) -> HTMLResponse:
    """Where the browser comes back from the cashier: the order's stored state, in Chinese ("支付结果以支付机构
    通知为准"). Never changes anything: only a verified notification, a query or a statement marks paid."""
    return HTMLResponse(pages.returned(_returned_order(session, gateway, dict(request.query_params))))


@router.post("/return/{gateway}", response_class=HTMLResponse, include_in_schema=False)
def browser_return_posted(gateway: GatewayName, request: Request, body: RawBody,
                          session: SessionDep) -> HTMLResponse:
    """UnionPay's front URL is a form POST: the same page, the same nothing changed."""
    params = {**dict(parse_qsl(body.decode("utf-8", "replace"))), **dict(request.query_params)}
    return HTMLResponse(pages.returned(_returned_order(session, gateway, params)))


@router.post("/notify/{gateway}", response_class=PlainTextResponse, responses={
    200: {"content": {"text/plain": {}}, "description": "the gateway's acknowledgement (Alipay `success` or "
          "`failure`)"},
    400: {"content": {"text/plain": {}}, "description": "not acknowledged (UnionPay)"},
    **problem_responses(404, 422)})
def notify(gateway: GatewayName, body: RawBody, factory: SessionFactoryDep, now: NowDep, gateways: GatewaysDep,
           content_type: Annotated[str, Header()] = "application/x-www-form-urlencoded") -> Response:
    """A gateway's back-end notification: verified by the adapter (signature, merchant, app), stored once in
    the inbox, applied to its order, COMMITTED — and only then acknowledged (Alipay ``success``, UnionPay
    200). Forged, malformed or not fitting its order (unknown order, amount, merchant, app): the
    non-acknowledgement, nothing changed. A failing commit is not acknowledged either: the gateway resends."""
    if gateway not in gateways:
        raise NotFound(f"本平台未开通该支付渠道 (payment gateway {gateway} is not configured)")
    adapter = gateways.get(gateway)
    try:
        notification = adapter.parse_notification(body=body, content_type=content_type)
    except NotificationRejected as exc:
        log.warning("payment notification rejected", extra={"gateway": gateway, "rule": exc.rule})
        return _answer(adapter.acknowledgement(accepted=False))
    try:
        # The unit of work of this request, deliberately: the acknowledgement is built after its commit.
        with unit_of_work(factory) as session:
            outcome = service.receive_notification(session, notification=notification, now=now,
                                                   gateways=gateways)
    except SQLAlchemyError:
        log.exception("payment notification not stored", extra={"gateway": gateway,
                                                                "notify_id": notification.notify_id})
        return _answer(adapter.acknowledgement(accepted=False))
    return _answer(adapter.acknowledgement(accepted=outcome.accepted))


@router.get("/{order_no}", response_model=PaymentDetail, responses=problem_responses(404, 422, 429))
def get_payment(order_no: OrderNo, query_code: Annotated[str, Query(min_length=4, max_length=16)],
                session: SessionDep, factory: SessionFactoryDep, settings: SettingsDep,
                now: NowDep) -> PaymentDetail:
    """One order and its full history, for the applicant (the case's query code). An unknown order and a
    wrong code get the same 404."""
    order = service.order_by_no(session, order_no)
    if order is None:
        raise NotFound("订单号或查询码不正确 (order number or query code wrong)")
    case = applicant_case(session, factory, service.case_of(session, order).tracking_no, query_code,
                          settings=settings, now=now)
    history = [HistoryEntry(from_state=e.from_state, to_state=e.to_state, source=e.source,
                            occurred_at=e.occurred_at) for e in service.history(session, order)]
    return PaymentDetail(**_out(order, case.tracking_no, settings).model_dump(), history=history)


@router.get("/{order_no}/pay", response_class=HTMLResponse, responses={
    303: {"description": "to the gateway's cashier (a GET checkout)"},
    409: {"content": {"text/html": {}}, "description": "the order can no longer be paid (a page saying why)"},
    **problem_responses(404, 422)})
def pay(order_no: OrderNo, session: SessionDep, now: NowDep) -> Response:
    """The hub's own page that sends the browser to the gateway's cashier: 303 for a GET checkout, an
    auto-submitting form for a POST one; an order no longer payable gets a page saying so."""
    order = service.order_by_no(session, order_no)
    if order is None:
        raise NotFound("订单不存在 (order not found)")
    checkout = order.checkout or {}
    expired = order.expires_at <= now
    if order.state not in service.OPEN_STATES or expired or not checkout.get("url"):
        return HTMLResponse(pages.not_payable(order, expired=expired), status_code=409)
    if checkout.get("method", "GET") == "GET":
        return RedirectResponse(str(checkout["url"]), status_code=303)
    return HTMLResponse(pages.checkout_form(order, checkout))


def _out(order: PaymentOrder, tracking_no: str, settings: Settings) -> PaymentOut:
    base = (settings.payments_public_url or settings.public_base_url).rstrip("/")
    return PaymentOut(order_no=order.order_no, tracking_no=tracking_no, gateway=order.gateway,
                      amount_fen=order.amount_fen, refunded_fen=order.refunded_fen,
                      state=order.state,  # type: ignore[arg-type]
                      pay_url=f"{base}/api/v1/payments/{order.order_no}/pay", expires_at=order.expires_at,
                      created_at=order.created_at, paid_at=order.paid_at)


def _returned_order(session: Session, gateway: str, params: dict[str, str]) -> PaymentOrder | None:
    for name in ("order_no", "out_trade_no", "orderId"):
        value = params.get(name, "")
        if value and len(value) <= 32 and value.isalnum():
            order = service.order_by_no(session, value)
            return order if order is not None and order.gateway == gateway else None
    return None


def _answer(ack: Acknowledgement) -> Response:
    return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)
