"""Mock Alipay-style gateway (支付宝开放平台 style): ``/gateway.do`` dispatching by ``method``.

At start it generates its own gateway key pair and a merchant key pair (shown on ``GET /_keys``, dev only); it
verifies the merchant's RSA2 signature on every call and signs every answer with the gateway key, ``sign`` beside
the ``*_response`` object, as Alipay does. Methods:

    alipay.trade.page.pay                         GET gateway.do?<signed parameters> → the cashier page (HTML)
    alipay.trade.query                            ACQ.TRADE_NOT_EXIST until the buyer opened the cashier
    alipay.trade.refund                           partial refunds keyed by out_request_no (a retry refunds once)
    alipay.trade.fastpay.refund.query             one refund by out_request_no
    alipay.trade.close                            close an unpaid trade
    alipay.data.dataservice.bill.downloadurl.query → a short-lived URL of the day's CSV statement

The shared parts (ledger, resending notifier, fault switches, cashier forms, control routes) are in
mocks/payments/common.py. Simplifications: the statement is one plain UTF-8 CSV (Alipay sends a zip of GBK CSVs)
and today's statement may be downloaded (Alipay only gives yesterday's and older).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse

from mocks.control import own_control_router
from mocks.payments.common import (
    CST,
    KeyMaterial,
    LedgerEntry,
    LedgerError,
    NotifyEvent,
    PaymentMockState,
    Trade,
    cashier_message,
    cashier_page,
    cst_time,
    fen,
    generate_keys,
    install,
    now_utc,
    parse_cst_time,
    rsa_sign,
    rsa_verify,
    sorted_params,
    yuan,
)
from mocks.registries.seed import Seed
from mocks.server import MockServer

PATH = "/gateway.do"
BILL_PATH = "/downloadBillFile.resource"
APP_ID = "2021000122600001"
SELLER_ID = "2088102180000001"
OTHER_APP_ID = "2021000199999999"  # what wrong_app notifications name
OTHER_SELLER_ID = "2088109999999999"  # what wrong_merchant notifications name
BILL_URL_TTL_S = 30.0  # Alipay's download URLs expire after 30 s
TRADE_STATUS = {"pending": "WAIT_BUYER_PAY", "paid": "TRADE_SUCCESS", "closed": "TRADE_CLOSED"}
_ORDER_NO = re.compile(r"^[0-9A-Za-z_]{1,64}$")
_REQUIRED_COMMON = (("app_id", "isv.missing-app-id"), ("sign_type", "isv.missing-signature-type"),
                    ("sign", "isv.missing-signature"), ("timestamp", "isv.missing-timestamp"),
                    ("version", "isv.missing-version"))
BILL_HEADER = ("支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号", "门店名称",
               "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）", "支付宝红包（元）", "集分宝（元）",
               "支付宝优惠（元）", "商家优惠（元）", "券核销金额（元）", "券名称", "商家红包消费金额（元）",
               "卡消费金额（元）", "退款批次号/请求号", "服务费（元）", "分润（元）", "备注")


def request_sign_content(params: Mapping[str, str]) -> str:
    """What the merchant signs: every non-empty parameter but ``sign``."""
    return sorted_params(params, exclude=frozenset({"sign"}))


def notification_sign_content(params: Mapping[str, str]) -> str:
    """What the gateway signs in notifications and browser returns: without ``sign`` and ``sign_type``."""
    return sorted_params(params, exclude=frozenset({"sign", "sign_type"}))


def response_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


_CODE_MESSAGES = {"20000": "Service Currently Unavailable", "40001": "Missing Required Arguments",
                  "40002": "Invalid Arguments", "40004": "Business Failed", "40006": "Insufficient Permissions"}


class AlipayError(Exception):
    """An Alipay error answer: ``code`` (40001/40002/40004/20000), ``msg``, ``sub_code``, ``sub_msg``."""

    def __init__(self, code: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_code)
        self.code, self.sub_code, self.sub_msg = code, sub_code, sub_msg

    def payload(self) -> dict[str, str]:
        return {"code": self.code, "msg": _CODE_MESSAGES[self.code], "sub_code": self.sub_code,
                "sub_msg": self.sub_msg}


_LEDGER_ERRORS = {
    "trade_not_exist": ("ACQ.TRADE_NOT_EXIST", "交易不存在"),
    "trade_closed": ("ACQ.TRADE_HAS_CLOSE", "交易已关闭"),
    "trade_paid": ("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
    "trade_not_paid": ("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
    "context_inconsistent": ("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改"),
    "refund_exceeds": ("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限"),
    "refund_conflict": ("ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致"),
    "invalid_amount": ("ACQ.INVALID_PARAMETER", "参数无效"),
}


def _business(exc: LedgerError) -> AlipayError:
    sub_code, sub_msg = _LEDGER_ERRORS.get(exc.code, ("ACQ.SYSTEM_ERROR", "系统错误"))
    return AlipayError("40004", sub_code, sub_msg)


def _invalid(field: str, why: str) -> AlipayError:
    return AlipayError("40002", "isv.invalid-parameter", f"参数{field}不合法（{why}）")


def _amount(biz: Mapping[str, Any], field: str) -> int:
    value = biz.get(field)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise AlipayError("40002", "isv.missing-parameter" if value is None else "isv.invalid-parameter",
                          f"缺少参数{field}" if value is None else f"参数{field}不合法")
    try:
        amount = fen(str(value))
    except ValueError:
        raise _invalid(field, "金额最多两位小数") from None
    if amount <= 0:
        raise _invalid(field, "金额必须大于0")
    return amount


def _text(biz: Mapping[str, Any], field: str, *, required: bool = True) -> str:
    value = biz.get(field)
    if value is None or value == "":
        if required:
            raise AlipayError("40002", "isv.missing-parameter", f"缺少参数{field}")
        return ""
    if not isinstance(value, str):
        raise _invalid(field, "应为字符串")
    return value


def _mask_phone(number: str) -> str:
    return number[:3] + "****" + number[-4:]


class AlipayMock:
    """The mock's state: keys, merchant identity, the shared payment state and issued statement URLs."""

    def __init__(self, server: MockServer, *, app_id: str = APP_ID, seller_id: str = SELLER_ID) -> None:
        self.server = server
        self.app_id = app_id
        self.seller_id = seller_id
        self.gateway_keys = generate_keys("mock-alipay-gateway")
        self.merchant_keys = generate_keys("mock-alipay-merchant")
        self._forge_keys: KeyMaterial | None = None
        self._lock = threading.Lock()
        self._bills: dict[str, tuple[date, float]] = {}
        self.payment = PaymentMockState(
            server=server, gateway="alipay", shape=self.shape_notification,
            acknowledged=lambda status, body: status == 200 and body == b"success",
            return_params=self.return_params, keys=self.keys, notify_on_close=True, stale_status="pending",
            new_trade_no=lambda at: at.astimezone(CST).strftime("%Y%m%d") + "22001"
            + "".join(secrets.choice("0123456789") for _ in range(15)),
        )

    # --- keys and signatures ---------------------------------------------------------------------------------

    def keys(self) -> dict[str, str]:
        return {
            "app_id": self.app_id,
            "seller_id": self.seller_id,
            "merchant_private_key": self.merchant_keys.private_pem,
            "merchant_public_key": self.merchant_keys.public_pem,
            "merchant_certificate": self.merchant_keys.certificate_pem,
            "gateway_public_key": self.gateway_keys.public_pem,
            "gateway_certificate": self.gateway_keys.certificate_pem,
        }

    def _forger(self) -> KeyMaterial:
        with self._lock:
            if self._forge_keys is None:
                self._forge_keys = generate_keys("not-alipay")
            return self._forge_keys

    def signed_params(self, params: dict[str, str], *, forge: bool = False) -> dict[str, str]:
        keys = self._forger() if forge else self.gateway_keys
        return {**params, "sign": rsa_sign(keys.private_key, notification_sign_content(params))}

    def answer(self, method: str, payload: Mapping[str, Any]) -> Response:
        """``{"<method>_response": {...}, "sign": "..."}``: the signature covers the value's exact text."""
        inner = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        signature = rsa_sign(self.gateway_keys.private_key, inner)
        body = f'{{"{response_key(method)}":{inner},"sign":"{signature}"}}'
        return Response(body, media_type="application/json;charset=utf-8")

    # --- what the buyer's side produces ----------------------------------------------------------------------

    def _buyer(self, trade: Trade) -> tuple[str, str]:
        if "buyer_id" not in trade.extra:
            trade.extra["buyer_id"] = "2088" + "".join(secrets.choice("0123456789") for _ in range(12))
            trade.extra["buyer_logon_id"] = "138" + "".join(secrets.choice("0123456789") for _ in range(8))
        return trade.extra["buyer_id"], trade.extra["buyer_logon_id"]

    def shape_notification(self, trade: Trade, event: NotifyEvent) -> dict[str, str]:
        """An asynchronous notification (trade_status_sync) as Alipay POSTs it, signed."""
        stale = event.label == "out_of_order"
        trade_status = TRADE_STATUS[event.status]
        params = {
            "notify_id": event.notify_id,
            "notify_type": "trade_status_sync",
            "notify_time": cst_time(event.occurred_at if stale else self.payment.clock()),
            "app_id": OTHER_APP_ID if event.wrong_app else self.app_id,
            "auth_app_id": OTHER_APP_ID if event.wrong_app else self.app_id,
            "seller_id": OTHER_SELLER_ID if event.wrong_merchant else self.seller_id,
            "charset": "utf-8",
            "version": "1.0",
            "sign_type": "RSA2",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.order_no,
            "subject": trade.subject,
            "total_amount": yuan(event.amount_fen),
            "gmt_create": cst_time(trade.created_at),
        }
        if event.status == "paid" and trade.paid_at is not None:
            buyer_id, logon_id = self._buyer(trade)
            paid = yuan(event.amount_fen)
            params.update(buyer_id=buyer_id, buyer_logon_id=logon_id, receipt_amount=paid, buyer_pay_amount=paid,
                          invoice_amount=paid, gmt_payment=cst_time(trade.paid_at))
        if event.status == "closed" and trade.closed_at is not None and not stale:
            params["gmt_close"] = cst_time(trade.closed_at)
        if event.kind == "refund" and event.refund is not None and event.refund_fen is not None:
            extra_fen = event.refund_fen - event.refund.amount_fen  # +1 under wrong_amount
            refunded = trade.refunded_fen + extra_fen
            trade_status = "TRADE_CLOSED" if refunded >= trade.amount_fen else "TRADE_SUCCESS"
            params.update(out_biz_no=event.refund.refund_no, refund_fee=yuan(refunded),
                          send_back_fee=yuan(event.refund_fen),
                          gmt_refund=cst_time(event.refund.refunded_at))
        params["trade_status"] = trade_status
        return self.signed_params(params, forge=event.forge_signature)

    def return_params(self, trade: Trade) -> dict[str, str]:
        """The browser's signed way back (alipay.trade.page.pay.return): display only."""
        params = {
            "charset": "utf-8", "method": "alipay.trade.page.pay.return", "version": "1.0", "sign_type": "RSA2",
            "app_id": self.app_id, "auth_app_id": self.app_id, "seller_id": self.seller_id,
            "out_trade_no": trade.order_no, "trade_no": trade.trade_no,
            "total_amount": yuan(trade.amount_fen), "timestamp": cst_time(self.payment.clock()),
        }
        return self.signed_params(params)

    # --- the gateway ------------------------------------------------------------------------------------------

    def check_request(self, params: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
        """Common parameters and the merchant's signature; returns (method, biz_content)."""
        method = params.get("method", "")
        if not method:
            raise AlipayError("40001", "isv.missing-method", "缺少方法名参数")
        for name, sub_code in _REQUIRED_COMMON:
            if not params.get(name):
                raise AlipayError("40001", sub_code, f"缺少参数{name}")
        if params["app_id"] != self.app_id:
            raise AlipayError("40002", "isv.invalid-app-id", "无效的AppID参数")
        if params["sign_type"] != "RSA2":
            raise AlipayError("40002", "isv.invalid-signature-type", "无效签名类型")
        if not rsa_verify(self.merchant_keys.public_key, request_sign_content(params), params["sign"]):
            raise AlipayError("40002", "isv.invalid-signature", "验签出错")
        try:
            at = parse_cst_time(params["timestamp"])
        except ValueError:
            raise AlipayError("40002", "isv.invalid-timestamp", "非法的时间戳参数") from None
        # A page-pay URL is signed when the order is made and followed whenever the applicant clicks: only the
        # server-to-server calls must be fresh.
        if method != "alipay.trade.page.pay" and abs((now_utc() - at).total_seconds()) > 15 * 60:
            raise AlipayError("40002", "isv.invalid-timestamp", "非法的时间戳参数（与网关时间相差超过15分钟）")
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except json.JSONDecodeError:
            raise _invalid("biz_content", "不是合法的JSON") from None
        if not isinstance(biz, dict):
            raise _invalid("biz_content", "应为JSON对象")
        return method, biz

    def _trade(self, biz: Mapping[str, Any]) -> Trade:
        order_no, trade_no = _text(biz, "out_trade_no", required=False), _text(biz, "trade_no", required=False)
        if not order_no and not trade_no:
            raise AlipayError("40002", "isv.missing-parameter", "缺少参数out_trade_no或trade_no")
        trade = self.payment.ledger.by_trade_no(trade_no) if trade_no else self.payment.ledger.get(order_no)
        if trade is None or (order_no and trade.order_no != order_no):
            raise AlipayError("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在")
        self.expire(trade)
        return trade

    def expire(self, trade: Trade) -> None:
        """An unpaid trade past its time_expire closes (and Alipay notifies TRADE_CLOSED)."""
        if trade.status == "pending" and trade.expires_at is not None and trade.expires_at <= self.payment.clock():
            self.payment.close(trade.order_no)

    def page_pay(self, params: Mapping[str, str], biz: Mapping[str, Any]) -> HTMLResponse:
        order_no = _text(biz, "out_trade_no")
        if not _ORDER_NO.match(order_no):
            raise _invalid("out_trade_no", "只能包含字母、数字、下划线，最长64位")
        if _text(biz, "product_code") != "FAST_INSTANT_TRADE_PAY":
            raise _invalid("product_code", "电脑网站支付应为FAST_INSTANT_TRADE_PAY")
        amount_fen, subject = _amount(biz, "total_amount"), _text(biz, "subject")
        expires_at = None
        if biz.get("time_expire"):
            try:
                expires_at = parse_cst_time(_text(biz, "time_expire"))
            except ValueError:
                raise _invalid("time_expire", "格式应为yyyy-MM-dd HH:mm:ss") from None
        try:
            trade = self.payment.ledger.create(order_no=order_no, amount_fen=amount_fen, subject=subject,
                                               notify_url=params.get("notify_url", ""),
                                               return_url=params.get("return_url", ""), at=self.payment.clock(),
                                               expires_at=expires_at)
        except LedgerError as exc:
            raise _business(exc) from None
        self.expire(trade)
        if trade.status == "paid":
            raise AlipayError("40004", "ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        if trade.status == "closed":
            raise AlipayError("40004", "ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        return cashier_page(gateway="alipay", trade=trade)

    def query(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._trade(biz)
        # A paid trade refunded in full shows TRADE_CLOSED (with its payment time), as on Alipay.
        refunded = trade.status == "paid" and trade.refunded_fen >= trade.amount_fen
        answer: dict[str, Any] = {"code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                                  "out_trade_no": trade.order_no,
                                  "trade_status": "TRADE_CLOSED" if refunded else TRADE_STATUS[trade.status],
                                  "total_amount": yuan(trade.amount_fen)}
        if trade.status == "paid" and trade.paid_at is not None:
            buyer_id, logon_id = self._buyer(trade)
            answer.update(buyer_logon_id=_mask_phone(logon_id), buyer_user_id=buyer_id,
                          buyer_pay_amount=yuan(trade.amount_fen),
                          receipt_amount=yuan(trade.amount_fen), send_pay_date=cst_time(trade.paid_at))
        return answer

    def refund(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._trade(biz)
        amount_fen = _amount(biz, "refund_amount")
        refund_no = _text(biz, "out_request_no", required=False) or trade.order_no
        try:
            refund, created = self.payment.ledger.refund(trade.order_no, refund_no=refund_no, amount_fen=amount_fen,
                                                         at=self.payment.clock(),
                                                         reason=_text(biz, "refund_reason", required=False))
        except LedgerError as exc:
            raise _business(exc) from None
        if created:
            self.payment.announce(trade, kind="refund", refund=refund)
        _, logon_id = self._buyer(trade)
        return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.order_no,
                "buyer_logon_id": _mask_phone(logon_id), "fund_change": "Y" if created else "N",
                "refund_fee": yuan(trade.refunded_fen), "send_back_fee": yuan(refund.amount_fen),
                "gmt_refund_pay": cst_time(refund.refunded_at)}

    def refund_query(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._trade(biz)
        refund_no = _text(biz, "out_request_no")
        refund = trade.refunds.get(refund_no)
        answer: dict[str, Any] = {"code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                                  "out_trade_no": trade.order_no, "out_request_no": refund_no}
        if refund is not None:  # an unknown request number answers success without a refund, as Alipay does
            answer.update(refund_amount=yuan(refund.amount_fen), total_amount=yuan(trade.amount_fen),
                          refund_status="REFUND_SUCCESS", gmt_refund_pay=cst_time(refund.refunded_at))
        return answer

    def close(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._trade(biz)
        try:
            self.payment.close(trade.order_no)
        except LedgerError as exc:
            raise _business(exc) from None
        return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.order_no}

    def bill_url(self, biz: Mapping[str, Any], base_url: str) -> dict[str, Any]:
        if _text(biz, "bill_type") != "trade":
            raise _invalid("bill_type", "仅支持trade")
        text = _text(biz, "bill_date")
        try:
            day = date.fromisoformat(text) if len(text) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise _invalid("bill_date", "日账单格式为yyyy-MM-dd")
        if day > self.payment.clock().astimezone(CST).date():
            raise AlipayError("40004", "isp.bill_not_exist", "账单不存在")
        token = secrets.token_urlsafe(16)
        with self._lock:
            now = time.monotonic()
            self._bills = {t: v for t, v in self._bills.items() if v[1] > now}
            self._bills[token] = (day, now + BILL_URL_TTL_S)
        url = (f"{base_url}{BILL_PATH}?bizType=trade&userId={self.seller_id}&fileType=csv"
               f"&bizDates={day:%Y%m%d}&downloadFileName={self.seller_id}_{day:%Y%m%d}.csv&token={token}")
        return {"code": "10000", "msg": "Success", "bill_download_url": url}

    def bill_day(self, token: str) -> date | None:
        with self._lock:
            found = self._bills.get(token)
        return found[0] if found and found[1] > time.monotonic() else None

    def statement_csv(self, day: date) -> str:
        """The day's 业务明细 as Alipay lays it out: comment lines, the header, one row per payment or refund."""
        entries = self.payment.ledger.statement(day)
        out = io.StringIO()
        following = day + timedelta(days=1)
        out.write("#支付宝业务明细查询\r\n")
        out.write(f"#账号：[{self.seller_id}0156]\r\n")
        out.write(f"#起始日期：[{day:%Y年%m月%d日} 00:00:00]   终止日期：[{following:%Y年%m月%d日} 00:00:00]\r\n")
        out.write("#-----------------------------------------业务明细列表----------------------------------------\r\n")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(BILL_HEADER)
        for entry in entries:
            writer.writerow(self._bill_row(entry))
        out.write("#-----------------------------------------业务明细列表结束------------------------------------\r\n")
        payments = [e for e in entries if e.kind == "payment"]
        refunds = [e for e in entries if e.kind == "refund"]
        out.write(f"#交易合计：{len(payments)}笔，商家实收：{yuan(sum(e.amount_fen for e in payments))}元，"
                  "商家优惠：0.00元\r\n")
        out.write(f"#退款合计：{len(refunds)}笔，商家实收：{yuan(-sum(e.amount_fen for e in refunds))}元，"
                  "商家优惠：0.00元\r\n")
        out.write(f"#导出时间：[{self.payment.clock().astimezone(CST):%Y年%m月%d日 %H:%M:%S}]\r\n")
        return out.getvalue()

    def _bill_row(self, entry: LedgerEntry) -> list[str]:
        trade = self.payment.ledger.require(entry.order_no)
        _, logon_id = self._buyer(trade)
        received = entry.amount_fen if entry.kind == "payment" else -entry.amount_fen
        zero = "0.00"
        return [entry.trade_no, entry.order_no, "交易" if entry.kind == "payment" else "退款", entry.subject,
                cst_time(trade.created_at), cst_time(entry.occurred_at), "", "", "", "",
                _mask_phone(logon_id), yuan(entry.order_amount_fen), yuan(received), zero, zero, zero,
                zero, zero, "", zero, zero, entry.refund_no or "", zero, zero, ""]

    def dispatch(self, params: Mapping[str, str], base_url: str) -> Response:
        """One gateway.do call: an HTML page for page pay, a signed JSON answer for the rest."""
        method = params.get("method", "")
        try:
            method, biz = self.check_request(params)
            if method == "alipay.trade.page.pay":
                return self.page_pay(params, biz)
            handlers = {
                "alipay.trade.query": self.query,
                "alipay.trade.refund": self.refund,
                "alipay.trade.fastpay.refund.query": self.refund_query,
                "alipay.trade.close": self.close,
                "alipay.data.dataservice.bill.downloadurl.query": lambda b: self.bill_url(b, base_url),
            }
            handler = handlers.get(method)
            if handler is None:
                raise AlipayError("40002", "isv.invalid-method", "不存在的方法名")
            return self.answer(method, handler(biz))
        except AlipayError as exc:
            if method == "alipay.trade.page.pay":
                return cashier_message("alipay", "支付请求错误",
                                       f"错误代码 {exc.sub_code}：{exc.sub_msg}", status_code=400)
            return self.answer(method or "error", exc.payload())


def create_app(server: MockServer, seed: Seed | None = None) -> FastAPI:
    """The mock Alipay gateway on ``server`` (``seed`` is unused: the registries' seed has no payments)."""
    mock = AlipayMock(server)
    app = FastAPI(title="Mock Alipay-style payment gateway")
    app.include_router(own_control_router(server))
    install(app, mock.payment)
    app.state.alipay = mock

    async def gateway(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
        refused = await mock.payment.gate(params.get("method") or "gateway.do")
        if refused is not None:
            return refused
        base_url = str(request.base_url).rstrip("/")
        return await _in_thread(lambda: mock.dispatch(params, base_url))

    app.add_api_route(PATH, gateway, methods=["GET", "POST"], summary="the open API: dispatched by `method`")

    @app.get(BILL_PATH, summary="a statement file, by the URL the bill query gave (expires after 30 s)")
    async def bill(token: str = "") -> Response:
        refused = await mock.payment.gate("bill.download")
        if refused is not None:
            return refused
        day = mock.bill_day(token)
        if day is None:
            return Response("账单链接已失效 (the statement URL expired or is unknown)", status_code=404,
                            media_type="text/plain;charset=utf-8")
        return Response(mock.statement_csv(day), media_type="text/csv;charset=utf-8")

    return app


async def _in_thread(fn: Callable[[], Response]) -> Response:
    # Signing and key checks take milliseconds of CPU: keep the mock's event loop free for other calls.
    return await asyncio.to_thread(fn)
