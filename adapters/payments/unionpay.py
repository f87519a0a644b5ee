"""UnionPay-style gateway (银联全渠道, gateway interface 5.1.0) behind ``PaymentGateway``.

Wire shape, as the real gateway's (simplified where noted):

* every request and answer is a flat form (``application/x-www-form-urlencoded``) with ``version`` 5.1.0,
  ``encoding`` UTF-8, ``signMethod`` 01, ``certId`` (the serial number of the signer's certificate), ``merId``,
  ``orderId`` (8–32 of [0-9A-Za-z]), ``txnTime`` (yyyyMMddHHmmss, China Standard Time) and ``txnAmt`` (fen);
* ``signature`` = base64(SHA256withRSA(sha256_hex(sorted ``k=v&…`` of every non-empty field but
  ``signature``))) — the merchant signs with its certificate's key; the gateway signs its answers and
  notifications with its own and puts its certificate in ``signPubKeyCert``. We verify with the CONFIGURED
  gateway certificate only: a certificate carried by the message is accepted only when it is that one;
* ``frontTransReq.do`` (txnType 01, bizType 000201, channelType 07, accessType 0) is posted by the applicant's
  browser (``create`` returns a POST ``Checkout``); the result comes as a back-end notification to ``backUrl``
  (acknowledged by HTTP 200, resent otherwise) and the browser returns to ``frontUrl`` (display only);
* ``queryTrans.do`` (txnType 00): ``respCode`` is the query's own outcome (00 answered, 34 no such
  transaction), ``origRespCode`` the transaction's (00/A6 success, 03/04/05 not final);
* ``backTransReq.do`` (txnType 04, refund; its own ``orderId`` = the hub's refund number, ``origQryId`` = the
  payment's ``queryId``); the answer only says "accepted", so the refund is confirmed by a query;
* ``fileTransfer.do`` (txnType 76, fileType 00, settleDate MMDD): ``fileContent`` = base64(zlib(zip)) of the
  day's statement file. (Real answers are raw ``k=v&…`` text and the real file is the 全渠道 ZM layout; the
  mock answers URL-encoded forms and a file with the subset of ZM columns reconciliation needs.)

Response codes in the hub's words: 00/A6 paid; 03/04/05 (and 06 busy, 37 too frequent) unknown — ask again,
never decide on them; 34 no such transaction — pending (nothing paid; the hub closes the order once it expired,
by its own clock); any other code of a transaction — failed. Outbound calls go through the resilience policy
(timeout, retries with backoff for timeouts/connection errors/5xx, circuit breaker); an answer whose signature
fails is never trusted (``GatewayUnavailable``, rule ``signature_invalid``).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import ClassVar, Literal
from urllib.parse import parse_qsl, urlencode

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from adapters.errors import AdapterError, CircuitOpen, RegistryRejected, RegistryUnavailable
from adapters.http import build_http_client, classify_transport_error
from adapters.payments import signing
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
from adapters.resilience import RegistryGuard, ResiliencePolicy

CST = timezone(timedelta(hours=8), "CST")
VERSION = "5.1.0"
ENCODING = "UTF-8"
SIGN_METHOD = "01"  # RSA certificate, SHA-256
CURRENCY_CNY = "156"
CHANNEL_PC = "07"
ACCESS_MERCHANT = "0"  # 商户直连接入
BIZ_GATEWAY = "000201"  # B2C 网关支付
BIZ_QUERY = "000000"

FRONT_PATH = "/gateway/api/frontTransReq.do"
BACK_PATH = "/gateway/api/backTransReq.do"
QUERY_PATH = "/gateway/api/queryTrans.do"
FILE_PATH = "/gateway/api/fileTransfer.do"

TXN_CONSUME = "01"
TXN_QUERY = "00"
TXN_REFUND = "04"
TXN_FILE = "76"

SUCCESS = frozenset({"00", "A6"})
# Not final: "通讯超时", "交易状态未明", "交易已受理，请稍后查询", "系统繁忙", "操作过于频繁".
UNKNOWN = frozenset({"03", "04", "05", "06", "37"})
NOT_FOUND = "34"
DUPLICATE = "12"
FILE_MISSING = "98"

ORDER_ID = re.compile(r"^[0-9A-Za-z]{8,32}$")
TXN_TIME = re.compile(r"^\d{14}$")
AMOUNT = re.compile(r"^\d{1,12}$")

Rule = Literal["signature_invalid", "malformed", "merchant_mismatch", "app_mismatch"]


def txn_time(moment: datetime) -> str:
    """``yyyyMMddHHmmss`` in China Standard Time (naive datetimes are taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(CST).strftime("%Y%m%d%H%M%S")


def parse_txn_time(value: str) -> datetime:
    """A CST ``yyyyMMddHHmmss`` as an aware UTC datetime."""
    return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=CST).astimezone(UTC)


def signature_base(fields: Mapping[str, str]) -> str:
    """What is signed: the lowercase SHA-256 hex of the sorted ``k=v&…`` of every non-empty field but
    ``signature``."""
    return signing.sha256_hex(signing.sorted_string(fields, exclude=frozenset({"signature"})))


def parse_form(body: bytes) -> dict[str, str]:
    """A URL-encoded form as a dict; a repeated field or bytes that are not UTF-8 are malformed."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError: callers treat it as malformed
    pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise ValueError("a field is repeated")
    return fields


def mask_account(value: str) -> str:
    """A card number reduced to its first 6 and last 4 digits (as UnionPay itself shows it)."""
    if len(value) <= 10:
        return "*" * len(value)
    return f"{value[:6]}{'*' * (len(value) - 10)}{value[-4:]}"


class UnionPayGateway:
    """``PaymentGateway`` against a UnionPay-style gateway at ``url`` (scheme://host[:port])."""

    name: ClassVar[GatewayName] = "unionpay"

    def __init__(self, *, url: str, mer_id: str, private_key_pem: bytes | str, certificate_pem: bytes | str,
                 gateway_certificate_pem: bytes | str, timeout_s: float, client: httpx.Client | None = None,
                 policy: ResiliencePolicy | None = None,
                 refund_notify_url: str | None = None, now: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url.rstrip("/")
        self.mer_id = mer_id
        self._key = signing.load_private_key(_bytes(private_key_pem))
        self._cert_id = str(signing.load_certificate(_bytes(certificate_pem)).serial_number)
        gateway_cert = signing.load_certificate(_bytes(gateway_certificate_pem))
        self._gateway_key = signing.load_public_key(_bytes(gateway_certificate_pem))
        self._gateway_cert_der = gateway_cert.public_bytes(serialization.Encoding.DER)
        self.timeout_s = timeout_s
        self.policy = policy or ResiliencePolicy(timeout_s=timeout_s)
        self.guard = RegistryGuard(self.name, self.policy, sleep=sleep)
        self._own_client = client is None
        self._http = client or build_http_client(timeout_s=timeout_s, max_connections=self.policy.max_concurrency)
        self.refund_notify_url = refund_notify_url
        self._now = now or (lambda: datetime.now(UTC))

    # --- the interface ---------------------------------------------------------------------------

    def create(self, request: OrderRequest) -> Checkout:
        """The signed consume request the applicant's browser posts to frontTransReq.do (no network here)."""
        _check_order_id(request.order_no, "order_no")
        if request.amount_fen <= 0:
            raise ValueError("amount_fen must be positive")
        fields = {
            **self._common(TXN_CONSUME, "01", BIZ_GATEWAY),
            "channelType": CHANNEL_PC,
            "orderId": request.order_no,
            "txnTime": txn_time(request.created_at),
            "txnAmt": str(request.amount_fen),
            "currencyCode": CURRENCY_CNY,
            "backUrl": request.notify_url,
            "frontUrl": request.return_url,
            "payTimeout": txn_time(request.expires_at),
            "orderDesc": request.subject,
        }
        return Checkout(url=self.url + FRONT_PATH, method="POST", fields=self._signed(fields))

    def parse_notification(self, *, body: bytes, content_type: str) -> Notification:
        media = content_type.split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise _rejected("malformed", "通知格式错误 (notification is not a URL-encoded form)")
        try:
            fields = parse_form(body)
        except ValueError:
            raise _rejected("malformed", "通知格式错误 (notification body is not a valid UTF-8 form)") from None
        problem = self._signature_problem(fields)
        if problem:
            raise _rejected("signature_invalid", f"通知签名验证失败 (notification signature invalid: {problem})")
        missing = [k for k in ("merId", "orderId", "txnType", "txnTime", "txnAmt", "respCode", "queryId")
                   if not fields.get(k)]
        if missing:
            raise _rejected("malformed", f"通知缺少字段 (notification lacks {', '.join(missing)})")
        if fields["merId"] != self.mer_id:
            raise _rejected("merchant_mismatch", "通知的商户号与本商户不符 (merId is another merchant's)")
        bad = _format_problem(fields)
        if bad:
            raise _rejected("malformed", f"通知字段格式错误 (notification field {bad})")
        txn_type = fields["txnType"]
        if txn_type not in (TXN_CONSUME, TXN_REFUND):
            raise _rejected("malformed", f"不支持的通知交易类型 (txnType {txn_type} is not a consume or refund)")
        code = fields["respCode"]
        # A resend carries the same transaction (queryId) and result: that pair is the notification's identity.
        notify_id = f"{fields['queryId']}-{code}"
        params = _masked(fields)
        if txn_type == TXN_REFUND:
            trade = TradeState(order_no=fields.get("reqReserved", ""), status="paid", merchant_id=fields["merId"],
                               code=code, message=fields.get("respMsg", ""))
            return Notification(gateway=self.name, notify_id=notify_id, kind="refund", trade=trade,
                                refund_no=fields["orderId"], refund_fen=int(fields["txnAmt"]), params=params)
        status = _trade_status(code)
        trade = TradeState(
            order_no=fields["orderId"], status=status, amount_fen=int(fields["txnAmt"]),
            gateway_trade_no=fields["queryId"],
            paid_at=_paid_at(fields) if status == "paid" else None,
            merchant_id=fields["merId"], code=code, message=fields.get("respMsg", ""),
        )
        return Notification(gateway=self.name, notify_id=notify_id, kind="payment", trade=trade, params=params)

    def acknowledgement(self, *, accepted: bool) -> Acknowledgement:
        # UnionPay resends until it gets HTTP 200; the body is not read.
        return Acknowledgement(status_code=200, body="ok") if accepted else Acknowledgement(400, "fail")

    def query(self, *, order_no: str, created_at: datetime) -> TradeState:
        _check_order_id(order_no, "order_no")
        answer = self._query(order_no, txn_time(created_at))
        code = answer["respCode"]
        if code == NOT_FOUND:
            # No transaction: the applicant has not paid (or cancelled at the cashier, which UnionPay does not
            # record). Pending, whatever the time: once the order's payTimeout has passed nobody can pay it, and
            # the hub closes it by its own clock (hub/payments/reconciliation.py) — this adapter's clock may not
            # be the one the order's times were taken from.
            return TradeState(order_no=order_no, status="pending", merchant_id=self.mer_id, code=code,
                              message=answer.get("respMsg", ""))
        if code in UNKNOWN:
            return TradeState(order_no=order_no, status="unknown", merchant_id=self.mer_id, code=code,
                              message=answer.get("respMsg", ""))
        if code != "00":
            raise self._refused("queryTrans", answer)
        original = answer.get("origRespCode", "")
        if not original:
            raise self._malformed("the query answer lacks origRespCode")
        status = _trade_status(original)
        amount = answer.get("txnAmt", "")
        return TradeState(
            order_no=order_no, status=status, amount_fen=int(amount) if AMOUNT.match(amount) else None,
            gateway_trade_no=answer.get("queryId") or None,
            paid_at=_paid_at(answer) if status == "paid" else None,
            merchant_id=answer.get("merId"), code=original, message=answer.get("origRespMsg", ""),
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund by the hub's refund number (this request's ``orderId``): a retry with the same number is the
        same refund. The answer only says "accepted"; the refund transaction is then queried for its result."""
        _check_order_id(request.refund_no, "refund_no")
        if not request.gateway_trade_no:
            raise GatewayRefused(self.name, "退款缺少原交易流水号 (refund needs the payment's queryId)",
                                 rule="malformed")
        if not 0 < request.amount_fen <= request.order_amount_fen:
            raise GatewayRefused(self.name, "退款金额无效 (refund amount must be positive and within the order's)",
                                 rule="refund_amount")
        fields = {
            **self._common(TXN_REFUND, "00", BIZ_GATEWAY),
            "channelType": CHANNEL_PC,
            "orderId": request.refund_no,
            "origQryId": request.gateway_trade_no,
            "txnTime": txn_time(self._now()),
            "txnAmt": str(request.amount_fen),
            "currencyCode": CURRENCY_CNY,
            "reqReserved": request.order_no,  # echoed in the refund's notification: which order it belongs to
        }
        if self.refund_notify_url:
            fields["backUrl"] = self.refund_notify_url
        answer = self._exchange(BACK_PATH, fields, "backTransReq")
        code = answer["respCode"]
        if code in UNKNOWN or code == DUPLICATE:
            # Not final, or "already have this orderId" from a gateway that does not repeat its first answer:
            # the hub keeps the refund open and asks again with the same number.
            return RefundResult(refund_no=request.refund_no, status="unknown", code=code,
                                message=answer.get("respMsg", ""))
        if code not in SUCCESS:
            raise self._refused("backTransReq", answer, rule="refund_refused")
        # Accepted: confirm by a query of the refund transaction, at the txnTime the gateway recorded for it.
        confirmed = self._query(request.refund_no, answer.get("txnTime") or fields["txnTime"])
        return _refund_result(request.refund_no, confirmed)

    def statement(self, *, day: date) -> list[StatementLine]:
        fields = {
            **self._common(TXN_FILE, "01", BIZ_QUERY),
            "settleDate": day.strftime("%m%d"),
            "txnTime": txn_time(self._now()),
            "fileType": "00",
        }
        answer = self._exchange(FILE_PATH, fields, "fileTransfer")
        code = answer["respCode"]
        if code == FILE_MISSING or code in UNKNOWN:
            raise GatewayUnavailable(self.name, f"银联对账文件尚未生成 (statement for {day} not ready: {code})",
                                     rule="statement_not_ready")
        if code != "00":
            raise self._refused("fileTransfer", answer)
        try:
            text = _unpack_file(answer.get("fileContent", ""))
        except ValueError as exc:
            raise self._malformed(f"fileContent: {exc}") from None
        return parse_statement(text, day=day)

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    def status(self) -> dict[str, object]:
        return self.guard.status()

    # --- plumbing --------------------------------------------------------------------------------

    def _common(self, txn_type: str, txn_sub_type: str, biz_type: str) -> dict[str, str]:
        return {"version": VERSION, "encoding": ENCODING, "signMethod": SIGN_METHOD, "certId": self._cert_id,
                "txnType": txn_type, "txnSubType": txn_sub_type, "bizType": biz_type,
                "accessType": ACCESS_MERCHANT, "merId": self.mer_id}

    def _signed(self, fields: dict[str, str]) -> dict[str, str]:
        return {**fields, "signature": signing.sign(self._key, signature_base(fields))}

    def _signature_problem(self, fields: Mapping[str, str]) -> str:
        """Why the fields' signature is not the configured gateway's ('' when it is)."""
        signature = fields.get("signature", "")
        if not signature:
            return "no signature"
        if fields.get("signMethod") != SIGN_METHOD:
            return "signMethod is not 01"
        carried = fields.get("signPubKeyCert", "")
        if carried and not self._is_gateway_certificate(carried):
            return "signPubKeyCert is not the configured gateway certificate"
        if not signing.verify(self._gateway_key, signature_base(fields), signature):
            return "signature does not verify with the gateway certificate"
        return ""

    def _is_gateway_certificate(self, pem: str) -> bool:
        try:
            carried = x509.load_pem_x509_certificate(pem.encode("ascii"))
        except ValueError:
            return False
        return carried.public_bytes(serialization.Encoding.DER) == self._gateway_cert_der

    def _query(self, order_id: str, at: str) -> dict[str, str]:
        fields = {**self._common(TXN_QUERY, "00", BIZ_QUERY), "orderId": order_id, "txnTime": at}
        answer = self._exchange(QUERY_PATH, fields, "queryTrans")
        if answer["respCode"] == "00" and answer.get("orderId") not in (None, order_id):
            raise self._malformed("the query answer is for another orderId")
        return answer

    def _exchange(self, path: str, fields: dict[str, str], what: str) -> dict[str, str]:
        """POST a signed form and return the verified answer; every failure as a PaymentGatewayError."""
        body = urlencode(self._signed(fields))

        def attempt() -> httpx.Response:
            return self._post(path, body)

        try:
            response = self.guard.call(attempt)
        except (RegistryUnavailable, CircuitOpen) as exc:
            raise GatewayUnavailable(self.name, f"银联网关暂时无法访问 (unionpay {what}: {_reason(exc)})",
                                     rule="unavailable") from None
        except RegistryRejected as exc:
            raise GatewayRefused(self.name, f"银联网关拒绝了请求 (unionpay {what}: {_reason(exc)})",
                                 rule="rejected") from None
        try:
            answer = parse_form(response.content)
        except ValueError:
            raise self._malformed(f"{what} answer is not a URL-encoded form") from None
        problem = self._signature_problem(answer)
        if problem:
            # Never trusted, never decided on: the next attempt (query job, refund retry) asks again.
            raise GatewayUnavailable(self.name, f"银联应答签名验证失败 (unionpay {what} answer: {problem})",
                                     rule="signature_invalid")
        if not answer.get("respCode"):
            raise self._malformed(f"{what} answer lacks respCode")
        if answer.get("merId", self.mer_id) != self.mer_id:
            raise self._malformed(f"{what} answer names another merId")
        return answer

    def _post(self, path: str, body: str) -> httpx.Response:
        try:
            response = self._http.post(self.url + path, content=body.encode("utf-8"),
                                       headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc, self.name, self.timeout_s) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise RegistryUnavailable(self.name, f"HTTP {response.status_code}")
        if response.status_code >= 300:
            raise RegistryRejected(self.name, f"HTTP {response.status_code}")
        return response

    def _refused(self, what: str, answer: Mapping[str, str], *, rule: str = "gateway_refused") -> GatewayRefused:
        code, message = answer.get("respCode", ""), answer.get("respMsg", "")
        return GatewayRefused(self.name, f"银联网关拒绝了请求：{message} (unionpay {what} answered respCode {code})",
                              rule=rule)

    def _malformed(self, what: str) -> GatewayUnavailable:
        return GatewayUnavailable(self.name, f"银联应答不符合接口约定 (unionpay answer malformed: {what})",
                                  rule="malformed")


# --- statement file ------------------------------------------------------------------------------

# The columns of a statement line (a subset of the 全渠道 ZM flow file, fixed width, one space between; the mock
# writes them with its own code, mocks/payments/unionpay.py):
# (name, width). Amounts are zero-padded fen; the time is the transmission time MMDDhhmmss (CST).
STATEMENT_COLUMNS: tuple[tuple[str, int], ...] = (
    ("code", 3),  # S22 consume, S30 refund
    ("traceNo", 6),
    ("traceTime", 10),
    ("accNo", 19),
    ("txnAmt", 12),
    ("queryId", 21),
    ("orderId", 32),
    ("origQryId", 21),
    ("reqReserved", 32),  # for a refund: the order it refunds
    ("merId", 15),
)
STATEMENT_CONSUME = "S22"
STATEMENT_REFUND = "S30"


def parse_statement(text: str, *, day: date) -> list[StatementLine]:
    """The lines of a statement file; the MMDD of each line's time takes the year of ``day`` (or the year
    before, for a January file's December lines)."""
    lines: list[StatementLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        values, position = {}, 0
        for name, width in STATEMENT_COLUMNS:
            values[name] = raw[position:position + width].strip()
            position += width + 1
        code = values["code"]
        if code not in (STATEMENT_CONSUME, STATEMENT_REFUND) or not AMOUNT.match(values["txnAmt"]):
            raise GatewayUnavailable("unionpay", f"银联对账文件格式错误 (statement line {number} malformed)",
                                     rule="malformed")
        occurred = _statement_time(values["traceTime"], day)
        if code == STATEMENT_CONSUME:
            lines.append(StatementLine(order_no=values["orderId"], kind="payment", amount_fen=int(values["txnAmt"]),
                                       occurred_at=occurred, gateway_trade_no=values["queryId"] or None))
        else:
            lines.append(StatementLine(order_no=values["reqReserved"], kind="refund",
                                       amount_fen=int(values["txnAmt"]), occurred_at=occurred,
                                       gateway_trade_no=values["queryId"] or None, refund_no=values["orderId"]))
    return lines


def _unpack_file(content: str) -> str:
    if not content:
        raise ValueError("empty")
    try:
        data = zlib.decompress(base64.b64decode(content, validate=True))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            return "".join(archive.read(n).decode("utf-8") for n in names)
    except (binascii.Error, zlib.error, zipfile.BadZipFile, UnicodeDecodeError, KeyError) as exc:
        raise ValueError(type(exc).__name__) from None


def _statement_time(mmddhhmmss: str, day: date) -> datetime:
    if not re.fullmatch(r"\d{10}", mmddhhmmss):
        raise GatewayUnavailable("unionpay", "银联对账文件格式错误 (statement time malformed)", rule="malformed")
    year = day.year - 1 if day.month == 1 and mmddhhmmss.startswith("12") else day.year
    return parse_txn_time(f"{year}{mmddhhmmss}")


# --- helpers -------------------------------------------------------------------------------------


def _bytes(pem: bytes | str) -> bytes:
    return pem.encode("ascii") if isinstance(pem, str) else pem


def _check_order_id(value: str, field: str) -> None:
    if not ORDER_ID.match(value):
        raise ValueError(f"{field} must be 8–32 of [0-9A-Za-z] (UnionPay orderId)")


def _trade_status(code: str) -> TradeStatus:
    if code in SUCCESS:
        return "paid"
    if code in UNKNOWN:
        return "unknown"
    if code == NOT_FOUND:
        return "pending"
    return "failed"


def _paid_at(fields: Mapping[str, str]) -> datetime | None:
    """When the money moved: the transmission time ``traceTime`` (MMDDhhmmss, CST) in the year of the order's
    ``txnTime`` (the next year when the order was placed in December and paid in January); else ``txnTime``."""
    ordered, traced = fields.get("txnTime", ""), fields.get("traceTime", "")
    if not TXN_TIME.match(ordered):
        return None
    if not re.fullmatch(r"\d{10}", traced):
        return parse_txn_time(ordered)
    year = int(ordered[:4]) + (1 if ordered[4:6] == "12" and traced[:2] == "01" else 0)
    try:
        return parse_txn_time(f"{year}{traced}")
    except ValueError:
        return parse_txn_time(ordered)


def _format_problem(fields: Mapping[str, str]) -> str:
    if not ORDER_ID.match(fields["orderId"]):
        return "orderId (8–32 of [0-9A-Za-z])"
    if not TXN_TIME.match(fields["txnTime"]):
        return "txnTime (yyyyMMddHHmmss)"
    if not AMOUNT.match(fields["txnAmt"]):
        return "txnAmt (fen, digits)"
    return ""


def _masked(fields: Mapping[str, str]) -> dict[str, str]:
    masked = {k: v for k, v in fields.items() if k not in ("customerInfo", "signPubKeyCert")}
    if masked.get("accNo"):
        masked["accNo"] = mask_account(masked["accNo"])
    return masked


def _refund_result(refund_no: str, answer: Mapping[str, str]) -> RefundResult:
    code = answer["respCode"]
    if code != "00":  # 34 right after acceptance, or not final yet
        return RefundResult(refund_no=refund_no, status="processing", code=code, message=answer.get("respMsg", ""))
    original = answer.get("origRespCode", "")
    status: RefundStatus = ("succeeded" if original in SUCCESS else "processing" if original in UNKNOWN
                            else "failed")
    amount = answer.get("txnAmt", "")
    return RefundResult(refund_no=refund_no, status=status,
                        refunded_fen=int(amount) if status == "succeeded" and AMOUNT.match(amount) else None,
                        gateway_refund_no=answer.get("queryId") or None, code=original,
                        message=answer.get("origRespMsg", ""))


def _rejected(rule: Rule, message: str) -> NotificationRejected:
    return NotificationRejected("unionpay", message, rule=rule)


def _reason(exc: AdapterError) -> str:
    return exc.message
