"""The Alipay-style gateway adapter (支付宝开放平台 style): RSA2 over the sorted parameter string.

Wire facts this module speaks (and the mock in mocks/payments/alipay.py answers):

* Every call is ``gateway.do`` with the common parameters ``app_id, method, format=JSON, charset=utf-8,
  sign_type=RSA2, timestamp (yyyy-MM-dd HH:mm:ss, China Standard Time), version=1.0, biz_content`` (JSON) and
  ``sign``: SHA256withRSA by the merchant's key over the sorted ``k=v&…`` string of every non-empty parameter but
  ``sign``.
* An answer is ``{"<method with _>_response": {...}, "sign": "..."}``; ``sign`` is the gateway's signature over
  the exact text of the ``*_response`` value as sent. ``code`` 10000 is success, 20000 the gateway's own trouble,
  40004 a business refusal with ``sub_code`` (ACQ.TRADE_NOT_EXIST …), 40001/40002 a request the gateway rejects.
* Page pay (alipay.trade.page.pay) is the browser going to ``gateway.do?<signed parameters>``.
* A notification is a form POST (``notify_id, notify_time, trade_status, out_trade_no, trade_no, total_amount,
  seller_id, app_id, gmt_payment, buyer_logon_id …``); its signature excludes ``sign`` and ``sign_type``. The
  merchant answers exactly ``success``, else it is resent.
* Amounts are yuan with two decimals ("20.00"), converted to and from fen exactly — never through a float.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from adapters.errors import AdapterError, MalformedResponse, RegistryUnavailable
from adapters.http import build_http_client, classify_transport_error
from adapters.payments.base import (
    Acknowledgement,
    Checkout,
    GatewayName,
    GatewayRefused,
    GatewayUnavailable,
    Notification,
    NotificationRejected,
    OrderRequest,
    RefundRequest,
    RefundResult,
    RefundStatus,
    StatementLine,
    TradeState,
    TradeStatus,
)
from adapters.payments.signing import load_private_key, load_public_key, sign, sorted_string, verify
from adapters.resilience import RegistryGuard, ResiliencePolicy

CST = timezone(timedelta(hours=8), "CST")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
SUCCESS_CODE = "10000"

_YUAN = re.compile(r"^(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?$")


def fen_to_yuan(fen: int) -> str:
    """2000 → "20.00" (integer arithmetic; negative amounts keep their sign)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def yuan_to_fen(text: str) -> int:
    """"20.00" → 2000, "0.5" → 50, "-5.00" → -500 (statements); anything else (floats' exponents, three decimals,
    spaces, commas) raises ValueError."""
    negative = text.startswith("-")
    match = _YUAN.match(text[1:] if negative else text)
    if match is None:
        raise ValueError(f"not a yuan amount with at most two decimals: {text!r}")
    fen = int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))
    return -fen if negative else fen


def cst_timestamp(at: datetime) -> str:
    return at.astimezone(CST).strftime(TIMESTAMP_FORMAT)


def parse_cst_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=CST)


def request_sign_content(params: Mapping[str, str]) -> str:
    """What the merchant signs: every non-empty parameter but ``sign`` (``sign_type`` included), sorted."""
    return sorted_string(params, exclude=frozenset({"sign"}))


def notification_sign_content(params: Mapping[str, str]) -> str:
    """What the gateway signs in a notification or a browser return: without ``sign`` and ``sign_type``."""
    return sorted_string(params, exclude=frozenset({"sign", "sign_type"}))


def response_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


def response_sign_content(body: str, key: str) -> tuple[str, str | None] | None:
    """The exact text of ``"<key>": {...}``'s value as sent, and the ``sign`` beside it (None when absent); None
    when the body has no such object. The signature covers those characters, not a re-serialisation."""
    marker = f'"{key}"'
    start = body.find(marker)
    if start < 0:
        return None
    colon = body.find(":", start + len(marker))
    if colon < 0:
        return None
    value_start = colon + 1
    while value_start < len(body) and body[value_start] in " \t\r\n":
        value_start += 1
    try:
        _, value_end = json.JSONDecoder().raw_decode(body, value_start)
    except json.JSONDecodeError:
        return None
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return None
    signature = document.get("sign") if isinstance(document, dict) else None
    return body[value_start:value_end], signature if isinstance(signature, str) else None


# --- the adapter -------------------------------------------------------------------------------------------------

GATEWAY = "alipay"
LABEL = "支付宝"
PAGE_PAY = "alipay.trade.page.pay"
QUERY = "alipay.trade.query"
REFUND = "alipay.trade.refund"
REFUND_QUERY = "alipay.trade.fastpay.refund.query"
BILL_URL = "alipay.data.dataservice.bill.downloadurl.query"
ACK_SUCCESS = "success"
ACK_FAILURE = "failure"
# trade_status → the hub's words. TRADE_CLOSED is "closed unpaid" unless the trade shows a payment (a trade closes
# after a full refund): see _trade_status.
TRADE_STATUSES: dict[str, TradeStatus] = {"WAIT_BUYER_PAY": "pending", "TRADE_SUCCESS": "paid",
                                          "TRADE_FINISHED": "paid", "TRADE_CLOSED": "closed"}
# Business refusals of a refund (sub_code → the rule GatewayRefused carries).
REFUND_REFUSALS = {
    "ACQ.TRADE_NOT_EXIST": "trade_not_exist",
    "ACQ.TRADE_STATUS_ERROR": "trade_status_invalid",
    "ACQ.TRADE_HAS_CLOSE": "trade_status_invalid",
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": "refund_exceeds_balance",
    "ACQ.DISCORDANT_REPEAT_REQUEST": "refund_no_conflict",
    "ACQ.INVALID_PARAMETER": "invalid_parameter",
}
# Answers that mean "the gateway had trouble": try again (with the same request number for a refund).
TRANSIENT_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "aop.unknow-error", "isp.unknow-error"})
BUYER_FIELDS = ("buyer_logon_id", "buyer_id", "buyer_user_id", "buyer_open_id")


class _BadSignature(MalformedResponse):
    """An answer whose signature does not verify: never trusted, not retried at once."""


def mask_buyer(value: str) -> str:
    """Buyer identifiers in what the hub stores: ``138****5678``, ``abc***@example.com``, ``2088********1234``."""
    if not value or "*" in value:
        return value
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:3]}***@{domain}"
    if len(value) > 8:
        return value[:4] + "*" * (len(value) - 8) + value[-4:] if len(value) > 11 else value[:3] + "****" + value[-4:]
    return value[:1] + "***"


def masked_params(params: Mapping[str, str]) -> dict[str, str]:
    return {k: mask_buyer(v) if k in BUYER_FIELDS else v for k, v in params.items()}


def _gateway_url(url: str) -> str:
    """``payments_alipay_url`` may be the gateway's base (the mock's) or the full ``…/gateway.do`` address."""
    url = url.rstrip("/")
    return url if url.endswith(".do") else f"{url}/gateway.do"


def _unavailable(reason: str, *, rule: str = "gateway_unavailable") -> GatewayUnavailable:
    return GatewayUnavailable(GATEWAY, f"{LABEL}暂时无法访问，请稍后重试 (alipay gateway unavailable: {reason})",
                              rule=rule)


def _rejected(rule: str, reason: str) -> NotificationRejected:
    return NotificationRejected(GATEWAY, f"{LABEL}通知未通过校验 (alipay notification rejected: {reason})", rule=rule)


class AlipayGateway:
    """The hub's Alipay-style gateway (``PaymentGateway``): see the module docstring for the wire facts."""

    name: GatewayName = "alipay"

    def __init__(self, *, url: str, app_id: str, seller_id: str, private_key_pem: bytes | str,
                 gateway_public_key_pem: bytes | str, timeout_s: float, client: httpx.Client | None = None,
                 policy: ResiliencePolicy | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.url = _gateway_url(url)
        self.app_id = app_id
        self.seller_id = seller_id
        self._private_key = load_private_key(_pem(private_key_pem))
        self._gateway_key = load_public_key(_pem(gateway_public_key_pem))
        self.timeout_s = timeout_s
        self._client = client or build_http_client(timeout_s=timeout_s, max_connections=8)
        self.guard = RegistryGuard(GATEWAY, policy or ResiliencePolicy(timeout_s=timeout_s))
        self._clock = clock or (lambda: datetime.now(UTC))

    # --- requests ----------------------------------------------------------------------------------------------

    def signed_request(self, method: str, biz: Mapping[str, Any], **extra: str) -> dict[str, str]:
        """The common parameters, ``biz_content`` and ``sign`` of one call."""
        params = {"app_id": self.app_id, "method": method, "format": "JSON", "charset": "utf-8",
                  "sign_type": "RSA2", "timestamp": cst_timestamp(self._clock()), "version": "1.0",
                  "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")), **extra}
        params["sign"] = sign(self._private_key, request_sign_content(params))
        return params

    def create(self, request: OrderRequest) -> Checkout:
        """alipay.trade.page.pay: the browser GETs the gateway with the signed parameters (电脑网站支付)."""
        biz = {"out_trade_no": request.order_no, "total_amount": fen_to_yuan(request.amount_fen),
               "subject": _subject(request.subject), "product_code": "FAST_INSTANT_TRADE_PAY",
               "time_expire": cst_timestamp(request.expires_at)}
        params = self.signed_request(PAGE_PAY, biz, notify_url=request.notify_url, return_url=request.return_url)
        return Checkout(url=f"{self.url}?{urlencode(params)}", method="GET")

    def _call(self, method: str, biz: Mapping[str, Any]) -> dict[str, Any]:
        """One signed call under the resilience policy; the verified ``*_response`` object."""
        def attempt() -> dict[str, Any]:
            params = self.signed_request(method, biz)
            try:
                response = self._client.post(self.url, data=params)
            except httpx.HTTPError as exc:
                raise classify_transport_error(exc, GATEWAY, self.timeout_s) from None
            if response.status_code >= 500 or response.status_code == 429:
                raise RegistryUnavailable(GATEWAY, f"HTTP {response.status_code}")
            if response.status_code != 200:
                raise MalformedResponse(GATEWAY, f"HTTP {response.status_code}")
            answer = self._verified(response, method)
            if answer.get("code") == "20000" or answer.get("sub_code") in TRANSIENT_SUB_CODES:
                raise RegistryUnavailable(GATEWAY, f"{answer.get('code')} {answer.get('sub_code', '')}".strip())
            return answer

        try:
            return self.guard.call(attempt)
        except _BadSignature:
            raise _unavailable("the answer's signature does not verify", rule="signature_invalid") from None
        except MalformedResponse as exc:
            raise _unavailable(_reason(exc), rule="malformed_response") from None
        except AdapterError as exc:
            raise _unavailable(_reason(exc)) from None

    def _verified(self, response: httpx.Response, method: str) -> dict[str, Any]:
        try:
            body = response.content.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedResponse(GATEWAY, "body is not UTF-8") from None
        found = response_sign_content(body, response_key(method)) or response_sign_content(body, "error_response")
        if found is None:
            raise MalformedResponse(GATEWAY, f"no {response_key(method)} object")
        content, signature = found
        if not signature or not verify(self._gateway_key, content, signature):
            raise _BadSignature(GATEWAY, "signature")
        answer = json.loads(content)
        if not isinstance(answer, dict) or not isinstance(answer.get("code"), str):
            raise MalformedResponse(GATEWAY, "the response object has no code")
        return answer

    def _refused(self, answer: Mapping[str, Any], *, rule: str = "gateway_refused") -> GatewayRefused:
        code, sub_code, sub_msg = answer.get("code"), answer.get("sub_code", ""), answer.get("sub_msg", "")
        return GatewayRefused(GATEWAY, f"{LABEL}拒绝了请求：{sub_msg} (alipay refused: {code} {sub_code})",
                              rule=rule)

    # --- query, refund, statement ------------------------------------------------------------------------------

    def query(self, *, order_no: str, created_at: datetime) -> TradeState:
        """alipay.trade.query; "trade does not exist" before the buyer opened the cashier is pending."""
        answer = self._call(QUERY, {"out_trade_no": order_no})
        if answer.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return TradeState(order_no=order_no, status="pending", code="ACQ.TRADE_NOT_EXIST",
                              message="交易不存在：买家尚未付款 (no trade yet: the buyer has not acted)")
        if answer["code"] != SUCCESS_CODE:
            raise self._refused(answer)
        if answer.get("out_trade_no") != order_no:
            raise _unavailable("the answer names another order", rule="malformed_response")
        try:
            amount = yuan_to_fen(str(answer.get("total_amount", "")))
            paid_at = parse_cst_timestamp(answer["send_pay_date"]) if answer.get("send_pay_date") else None
        except ValueError:
            raise _unavailable("amount or time malformed", rule="malformed_response") from None
        status = _trade_status(str(answer.get("trade_status", "")), paid=paid_at is not None)
        if status is None:
            raise _unavailable("unknown trade_status", rule="malformed_response")
        # The gateway answers our signed call only about our own app's trades: merchant and app are ours.
        return TradeState(order_no=order_no, status=status, amount_fen=amount,
                          gateway_trade_no=answer.get("trade_no"), paid_at=paid_at, merchant_id=self.seller_id,
                          app_id=self.app_id, code=str(answer.get("trade_status", "")), message=answer.get("msg", ""))

    def refund(self, request: RefundRequest) -> RefundResult:
        """alipay.trade.refund with out_request_no = the hub's refund number: a retry refunds once. A refund the
        gateway says moved no money (fund_change N: done before) is confirmed by the refund query."""
        biz = {"out_trade_no": request.order_no, "refund_amount": fen_to_yuan(request.amount_fen),
               "out_request_no": request.refund_no, "refund_reason": request.reason[:256]}
        answer = self._call(REFUND, biz)
        if answer["code"] != SUCCESS_CODE:
            rule = REFUND_REFUSALS.get(str(answer.get("sub_code", "")))
            if rule is None:
                return RefundResult(refund_no=request.refund_no, status="unknown", code=str(answer.get("sub_code")),
                                    message=str(answer.get("sub_msg", "")))
            raise self._refused(answer, rule=rule)
        if answer.get("fund_change") == "Y" and answer.get("send_back_fee"):
            return RefundResult(refund_no=request.refund_no, status="succeeded",
                                refunded_fen=_fen(answer["send_back_fee"]), code="fund_change=Y")
        return self.refund_status(order_no=request.order_no, refund_no=request.refund_no)

    def refund_status(self, *, order_no: str, refund_no: str) -> RefundResult:
        """alipay.trade.fastpay.refund.query: what the gateway holds under ``refund_no``."""
        answer = self._call(REFUND_QUERY, {"out_trade_no": order_no, "out_request_no": refund_no})
        if answer["code"] != SUCCESS_CODE:
            return RefundResult(refund_no=refund_no, status="unknown", code=str(answer.get("sub_code", "")),
                                message=str(answer.get("sub_msg", "")))
        if not answer.get("refund_amount"):
            return RefundResult(refund_no=refund_no, status="unknown", code="no_refund",
                                message="网关无此退款请求 (the gateway holds no refund under this number)")
        status: RefundStatus = ("succeeded" if answer.get("refund_status", "REFUND_SUCCESS") == "REFUND_SUCCESS"
                                else "processing")
        return RefundResult(refund_no=refund_no, status=status, refunded_fen=_fen(answer["refund_amount"]),
                            code=str(answer.get("refund_status", "")))

    def statement(self, *, day: date) -> list[StatementLine]:
        """The day's 业务明细: the bill download URL, then its CSV; payments and refunds as lines."""
        answer = self._call(BILL_URL, {"bill_type": "trade", "bill_date": day.isoformat()})
        if answer["code"] != SUCCESS_CODE:
            if answer.get("sub_code") == "isp.bill_not_exist":
                raise _unavailable(f"no statement for {day} yet", rule="statement_not_ready")
            raise self._refused(answer)
        url = answer.get("bill_download_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _unavailable("no bill_download_url", rule="malformed_response")
        return parse_statement(self._download(url))

    def _download(self, url: str) -> str:
        def attempt() -> str:
            try:
                response = self._client.get(url)
            except httpx.HTTPError as exc:
                raise classify_transport_error(exc, GATEWAY, self.timeout_s) from None
            if response.status_code >= 500 or response.status_code == 429:
                raise RegistryUnavailable(GATEWAY, f"statement download HTTP {response.status_code}")
            if response.status_code != 200:
                raise MalformedResponse(GATEWAY, f"statement download HTTP {response.status_code}")
            return _decode_statement(response.content)

        try:
            return self.guard.call(attempt)
        except MalformedResponse as exc:
            raise _unavailable(_reason(exc), rule="malformed_response") from None
        except AdapterError as exc:
            raise _unavailable(_reason(exc)) from None

    # --- notifications -----------------------------------------------------------------------------------------

    def parse_notification(self, *, body: bytes, content_type: str) -> Notification:
        """Verify (signature without sign/sign_type, seller, app) before anything is read from it."""
        params = _form(body, content_type)
        signature = params.get("sign", "")
        if not signature:
            raise _rejected("signature_invalid", "no sign")
        if params.get("sign_type", "RSA2") != "RSA2":
            raise _rejected("signature_invalid", f"sign_type {params.get('sign_type')!r} is not RSA2")
        if not verify(self._gateway_key, notification_sign_content(params), signature):
            raise _rejected("signature_invalid", "the signature does not verify with the gateway key")
        missing = [f for f in ("notify_id", "out_trade_no", "trade_status", "total_amount", "app_id", "seller_id")
                   if not params.get(f)]
        if missing:
            raise _rejected("malformed", f"missing {', '.join(missing)}")
        if params["seller_id"] != self.seller_id:
            raise _rejected("merchant_mismatch", "seller_id is not this merchant")
        if params["app_id"] != self.app_id:
            raise _rejected("app_mismatch", "app_id is not this app")
        try:
            amount = yuan_to_fen(params["total_amount"])
            paid_at = parse_cst_timestamp(params["gmt_payment"]) if params.get("gmt_payment") else None
            refund_fen = yuan_to_fen(params["send_back_fee"]) if params.get("send_back_fee") else None
        except ValueError:
            raise _rejected("malformed", "an amount or a time is malformed") from None
        is_refund = bool(params.get("out_biz_no")) and bool(params.get("refund_fee") or params.get("gmt_refund"))
        # A refund notification is about a paid trade, whatever trade_status says after the refund.
        status: TradeStatus | None = "paid" if is_refund else _trade_status(params["trade_status"],
                                                                             paid=paid_at is not None)
        if status is None:
            raise _rejected("malformed", "unknown trade_status")
        trade = TradeState(order_no=params["out_trade_no"], status=status, amount_fen=amount,
                           gateway_trade_no=params.get("trade_no") or None, paid_at=paid_at,
                           merchant_id=params["seller_id"], app_id=params["app_id"], code=params["trade_status"],
                           message=f"notify_time={params.get('notify_time', '')}")
        return Notification(gateway="alipay", notify_id=params["notify_id"], kind="refund" if is_refund else "payment",
                            trade=trade, refund_no=params.get("out_biz_no") if is_refund else None,
                            refund_fen=refund_fen if is_refund else None, params=masked_params(params))

    def acknowledgement(self, *, accepted: bool) -> Acknowledgement:
        """Exactly ``success`` stops the resending; anything else (``failure``) asks for it again."""
        return Acknowledgement(status_code=200, body=ACK_SUCCESS if accepted else ACK_FAILURE,
                               media_type="text/plain")

    def status(self) -> dict[str, Any]:
        """Breaker state and call statistics of this gateway (for an ops view)."""
        return self.guard.status()

    def verify_return(self, params: Mapping[str, str]) -> bool:
        """Whether a browser return's parameters carry the gateway's signature (display only, never paid)."""
        signature = params.get("sign", "")
        return bool(signature) and verify(self._gateway_key, notification_sign_content(params), signature)


def _subject(text: str) -> str:
    # Alipay refuses subjects with its separators (/ = &) and longer than 256 characters.
    return re.sub(r"[/=&]", " ", text).strip()[:256] or "行政事业性收费"


def _pem(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _fen(value: Any) -> int:
    try:
        return yuan_to_fen(str(value))
    except ValueError:
        raise _unavailable("amount malformed", rule="malformed_response") from None


def _reason(exc: AdapterError) -> str:
    # The English part of an adapter message ("中文 (english)"), else the message itself.
    text = str(exc)
    return text[text.find("(") + 1:-1] if text.endswith(")") and "(" in text else text or type(exc).__name__


def _trade_status(trade_status: str, *, paid: bool) -> TradeStatus | None:
    status = TRADE_STATUSES.get(trade_status)
    # TRADE_CLOSED after a payment is a fully refunded trade: it was paid (the refunds are separate lines).
    return "paid" if status == "closed" and paid else status


def _form(body: bytes, content_type: str) -> dict[str, str]:
    media_type = content_type.split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise _rejected("malformed", f"content type {media_type or 'missing'!r} is not a form")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                          encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _rejected("malformed", "the body is not a UTF-8 form") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise _rejected("malformed", f"parameter {key!r} appears twice")
        params[key] = value
    return params


def _decode_statement(content: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):  # Alipay's own files are GBK
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise MalformedResponse(GATEWAY, "statement is neither UTF-8 nor GBK")


_COLUMNS = {"trade_no": "支付宝交易号", "order_no": "商户订单号", "kind": "业务类型", "completed": "完成时间",
            "order_amount": "订单金额（元）", "received": "商家实收（元）", "refund_no": "退款批次号/请求号"}


def parse_statement(text: str) -> list[StatementLine]:
    """The CSV of 业务明细: comment lines start with ``#``; columns found by their header (fields may carry
    trailing tabs or spaces, as Alipay's do). Payments (交易) and refunds (退款) become lines."""
    rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not rows:
        raise _unavailable("the statement has no header", rule="malformed_response")
    reader = csv.reader(io.StringIO("\n".join(rows)))
    header = [h.strip() for h in next(reader)]
    try:
        index = {name: header.index(column) for name, column in _COLUMNS.items()}
    except ValueError:
        raise _unavailable("the statement lacks a column", rule="malformed_response") from None
    lines: list[StatementLine] = []
    for raw in reader:
        row = [field.strip() for field in raw]
        kind = row[index["kind"]]
        if kind not in ("交易", "退款"):
            continue
        try:
            occurred = parse_cst_timestamp(row[index["completed"]])
            amount = (yuan_to_fen(row[index["order_amount"]]) if kind == "交易"
                      else abs(yuan_to_fen(row[index["received"]])))
        except (ValueError, IndexError):
            raise _unavailable("a statement row is malformed", rule="malformed_response") from None
        lines.append(StatementLine(order_no=row[index["order_no"]], kind="payment" if kind == "交易" else "refund",
                                   amount_fen=amount, occurred_at=occurred,
                                   gateway_trade_no=row[index["trade_no"]] or None,
                                   refund_no=(row[index["refund_no"]] or None) if kind == "退款" else None))
    return lines
