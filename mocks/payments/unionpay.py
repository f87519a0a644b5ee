"""Mock UnionPay-style gateway (银联全渠道 gateway interface 5.1.0), on the shared ledger and notifier.

Endpoints (forms in, URL-encoded signed forms out — the real gateway answers raw ``k=v&…`` text):

    POST /gateway/api/frontTransReq.do   the browser's consume request (txnType 01) → the cashier page (HTML)
    POST /gateway/api/backTransReq.do    refund (txnType 04, its own orderId, origQryId = the payment's queryId)
    POST /gateway/api/queryTrans.do      query (txnType 00) by orderId + txnTime → origRespCode
    POST /gateway/api/fileTransfer.do    statement (txnType 76, fileType 00, settleDate MMDD) → fileContent
    GET  /_control/unionpay-faults       the UnionPay-only switches (POST to change, DELETE to clear):
                                         query_resp_code, orig_resp_code, refund_resp_code (03/04/05)

plus what ``mocks.payments.common`` installs (cashier forms, payment fault switches, trades, notifications,
``/_keys``). Every request's signature is checked with the merchant certificate this mock issued (``certId``
must be its serial): a bad one is answered with respCode 11 (验证签名失败). Answers and notifications carry the
gateway's certificate in ``signPubKeyCert`` and are signed with its key (``forge_signature``: with another key,
carrying that key's certificate — what a forger would do). Notifications go to ``backUrl`` and are resent until
HTTP 200. After paying, the browser is sent (303) to ``frontUrl`` with the signed result (display only). A
refund's notification goes to its own ``backUrl``, else to the payment's; a refund asked again under the same
orderId is the same refund, answered with the first request's txnTime and queryId. ``wrong_app`` has no UnionPay meaning
(there is no app id) and changes nothing here.

A trade is (merId, orderId, txnTime): a query with another txnTime finds nothing (34). An order not paid is not a
transaction at UnionPay yet: its query answers 34 too. Once its time to pay (payTimeout − txnTime, counted from
when the mock first saw the order, so that a hub on a test clock works) has passed, the mock closes it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import secrets
import threading
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict

from mocks.control import own_control_router
from mocks.payments.common import (
    CST,
    DEV_SCHEDULE_S,
    LedgerError,
    NotifyEvent,
    PaymentMockState,
    Refund,
    Trade,
    cashier_message,
    cashier_page,
    install,
    new_notify_id,
    now_utc,
)
from mocks.payments.gateway_keys import GatewayKey, sha256_hex, sorted_string, verify
from mocks.server import MockServer

PATH = "/gateway/api"  # frontTransReq.do, backTransReq.do, queryTrans.do, fileTransfer.do under it
MER_ID = "777290058110097"
OTHER_MER_ID = "777290058110098"  # what ``wrong_merchant`` notifications name
VERSION = "5.1.0"
FORM_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"
SUCCESS_MSG = "成功[0000000]"

# respCode → respMsg, as the gateway words them.
MESSAGES: dict[str, str] = {
    "00": SUCCESS_MSG,
    "03": "交易通讯超时，请发起查询交易",
    "04": "交易状态未明，请查询对账结果",
    "05": "交易已受理，请稍后查询交易结果",
    "10": "报文格式错误",
    "11": "验证签名失败",
    "12": "重复交易",
    "13": "报文交易要素缺失",
    "31": "商户状态不正确",
    "32": "无此交易权限",
    "34": "查无此交易",
    "35": "原交易不存在或状态不正确",
    "36": "与原交易信息不符",
    "98": "文件不存在",
}
UnknownCode = Literal["03", "04", "05"]
REQUIRED = ("version", "encoding", "signMethod", "certId", "txnType", "txnSubType", "bizType", "accessType",
            "merId", "txnTime", "signature")


class UnionPayFaultsUpdate(BaseModel):
    """UnionPay-only switches: answer "not final" codes. Omitted keep their value, null clears."""

    model_config = ConfigDict(extra="forbid")

    query_resp_code: UnknownCode | None = None  # the query itself could not be answered
    orig_resp_code: UnknownCode | None = None  # a paid or refunded transaction queried reads as not final
    refund_resp_code: UnknownCode | None = None  # the refund is made, but its answer says "not final"


@dataclass(frozen=True)
class UnionPayFaults:
    query_resp_code: str | None = None
    orig_resp_code: str | None = None
    refund_resp_code: str | None = None


@dataclass(frozen=True)
class UnionPayKeys:
    """What this mock generated at start: its own signing key/certificate, the merchant's it issued, and the key
    a forger uses (same certificate name, another key)."""

    gateway: GatewayKey
    merchant: GatewayKey
    forger: GatewayKey
    mer_id: str = MER_ID

    @classmethod
    def generate(cls, *, mer_id: str = MER_ID) -> UnionPayKeys:
        return cls(gateway=GatewayKey.generate("China UnionPay mock signing"),
                   merchant=GatewayKey.generate(f"merchant {mer_id}"),
                   forger=GatewayKey.generate("China UnionPay mock signing"), mer_id=mer_id)

    def as_json(self) -> dict[str, str]:
        return {
            "merchant_private_key": self.merchant.private_pem,
            "merchant_public_key": self.merchant.public_pem,
            "merchant_certificate": self.merchant.certificate_pem,
            "merchant_cert_id": self.merchant.cert_id,
            "gateway_public_key": self.gateway.public_pem,
            "gateway_certificate": self.gateway.certificate_pem,
            "mer_id": self.mer_id,
        }


def signature_base(fields: Mapping[str, str]) -> str:
    """The SHA-256 hex of the sorted ``k=v&…`` of every non-empty field but ``signature``."""
    return sha256_hex(sorted_string(fields, exclude=frozenset({"signature"})))


@dataclass(frozen=True)
class Signer:
    """A gateway identity ready to sign answers and notifications, carrying its certificate."""

    key: GatewayKey
    certificate: str

    @classmethod
    def of(cls, key: GatewayKey) -> Signer:
        return cls(key, key.certificate_pem)

    def sign(self, fields: Mapping[str, str]) -> dict[str, str]:
        """Fields as a UnionPay-style gateway signs them: its certificate carried, the SHA-256 hex signed."""
        signed = {k: v for k, v in fields.items() if k != "signature"}
        signed["signPubKeyCert"] = self.certificate
        return {**signed, "signature": self.key.sign(signature_base(signed))}


# The statement file: a subset of the 全渠道 ZM flow file's columns, fixed width, one space between (name, width).
# Amounts are zero-padded fen; traceTime is the transmission time MMDDhhmmss (CST).
STATEMENT_COLUMNS: tuple[tuple[str, int], ...] = (
    ("code", 3),  # S22 consume, S30 refund
    ("traceNo", 6),
    ("traceTime", 10),
    ("accNo", 19),
    ("txnAmt", 12),
    ("queryId", 21),
    ("orderId", 32),
    ("origQryId", 21),
    ("reqReserved", 32),  # a refund's: the order it refunds
    ("merId", 15),
)


def statement_line(values: Mapping[str, str]) -> str:
    return " ".join(values.get(name, "").ljust(width)[:width] for name, width in STATEMENT_COLUMNS)


def pack_file(name: str, text: str) -> str:
    """``fileContent``: base64 of the zlib-deflated zip holding the file, as the gateway sends it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, text.encode("utf-8"))
    return base64.b64encode(zlib.compress(buffer.getvalue())).decode("ascii")


def cst_time(moment: datetime) -> str:
    return moment.astimezone(CST).strftime("%Y%m%d%H%M%S")


def parse_cst(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=CST).astimezone(UTC)


def new_query_id(at: datetime) -> str:
    """21 digits, like UnionPay's queryId: the CST time then random digits."""
    return at.astimezone(CST).strftime("%y%m%d%H%M%S") + "".join(secrets.choice("0123456789") for _ in range(9))


class UnionPayMock:
    """The gateway's behaviour on top of ``PaymentMockState``."""

    def __init__(self, server: MockServer, *, keys: UnionPayKeys | None = None,
                 clock: Callable[[], datetime] = now_utc, schedule: Sequence[float] = DEV_SCHEDULE_S) -> None:
        self.keys = keys or UnionPayKeys.generate()
        self.mer_id = self.keys.mer_id
        self._merchant_key = self.keys.merchant.public_key
        self._merchant_cert_id = self.keys.merchant.cert_id
        self._gateway = Signer.of(self.keys.gateway)
        self._forger = Signer.of(self.keys.forger)
        self._lock = threading.Lock()
        self._faults = UnionPayFaults()
        self._refund_times: dict[str, str] = {}  # refund orderId → the txnTime it was made under
        self._refund_urls: dict[str, str] = {}  # refund orderId → its backUrl
        self.state = PaymentMockState(
            server=server, gateway="unionpay", shape=self.shape, acknowledged=lambda status, _body: status == 200,
            return_params=self.return_params, keys=self.keys.as_json, clock=clock, schedule=schedule,
            notify_on_close=False,  # UnionPay notifies results of transactions; a cancelled cashier is none
            stale_status="pending", new_trade_no=new_query_id,
        )

    # --- switches --------------------------------------------------------------------------------

    @property
    def faults(self) -> UnionPayFaults:
        with self._lock:
            return self._faults

    def update_faults(self, changes: Mapping[str, Any]) -> UnionPayFaults:
        with self._lock:
            self._faults = replace(self._faults, **changes)
            return self._faults

    def clear_faults(self) -> UnionPayFaults:
        with self._lock:
            self._faults = UnionPayFaults()
            return self._faults

    # --- signatures ------------------------------------------------------------------------------

    def merchant_signature_ok(self, fields: Mapping[str, str]) -> bool:
        return (fields.get("signMethod") == "01" and fields.get("certId") == self._merchant_cert_id
                and verify(self._merchant_key, signature_base(fields), fields.get("signature", "")))

    def answer(self, fields: Mapping[str, str]) -> Response:
        return Response(urlencode(self._gateway.sign(fields)), media_type=FORM_TYPE)

    def refusal(self, request: Mapping[str, str], code: str) -> Response:
        """A signed answer with an error respCode, echoing what identifies the request."""
        echo = {k: request[k] for k in ("version", "encoding", "txnType", "txnSubType", "bizType", "accessType",
                                        "merId", "orderId", "txnTime", "origQryId", "settleDate") if request.get(k)}
        return self.answer({"version": VERSION, "encoding": "UTF-8", "signMethod": "01", **echo,
                            "respCode": code, "respMsg": MESSAGES[code]})

    def check_request(self, fields: Mapping[str, str], *, txn_types: tuple[str, ...],
                      extra: tuple[str, ...] = ()) -> str | None:
        """The respCode refusing a back-end request, or None when it may proceed."""
        if any(not fields.get(k) for k in (*REQUIRED, *extra)):
            return "13"
        if fields["version"] != VERSION or fields["encoding"].upper() != "UTF-8":
            return "10"
        if not self.merchant_signature_ok(fields):
            return "11"
        if fields["merId"] != self.mer_id:
            return "31"
        if fields["txnType"] not in txn_types:
            return "32"
        try:
            parse_cst(fields["txnTime"])
        except ValueError:
            return "10"
        return None

    # --- notifications and the front return ------------------------------------------------------

    def _result_fields(self, trade: Trade, *, code: str, amount_fen: int, at: datetime) -> dict[str, str]:
        fields = {
            "version": VERSION, "encoding": "UTF-8", "signMethod": "01", "txnType": "01", "txnSubType": "01",
            "bizType": "000201", "accessType": "0", "channelType": "07", "merId": self.mer_id,
            "orderId": trade.order_no, "txnTime": trade.extra["txnTime"], "txnAmt": str(amount_fen),
            "currencyCode": "156", "queryId": trade.trade_no, "respCode": code, "respMsg": MESSAGES[code],
            "traceNo": trade.trade_no[-6:], "traceTime": at.astimezone(CST).strftime("%m%d%H%M%S"),
            "settleAmt": str(amount_fen), "settleCurrencyCode": "156",
            "settleDate": at.astimezone(CST).strftime("%m%d"), "accNo": "6216****0018", "payCardType": "01",
        }
        if trade.extra.get("reqReserved"):
            fields["reqReserved"] = trade.extra["reqReserved"]
        return fields

    def shape(self, trade: Trade, event: NotifyEvent) -> dict[str, str]:
        """A back-end notification (the notifier resends these exact fields)."""
        if event.kind == "refund" and event.refund is not None:
            fields = self._refund_fields(trade, event.refund, amount_fen=event.refund_fen or 0, code="00")
        else:
            code = "00" if event.status == "paid" else "05"
            fields = self._result_fields(trade, code=code, amount_fen=event.amount_fen, at=event.occurred_at)
        if event.wrong_merchant:
            fields["merId"] = OTHER_MER_ID
        return (self._forger if event.forge_signature else self._gateway).sign(fields)

    def return_params(self, trade: Trade) -> dict[str, str]:
        """What the browser brings back to frontUrl: the signed result (display only)."""
        fields = self._result_fields(trade, code="00", amount_fen=trade.amount_fen,
                                     at=trade.paid_at or self.state.clock())
        return self._gateway.sign(fields)

    def _refund_fields(self, trade: Trade, refund: Refund, *, amount_fen: int, code: str) -> dict[str, str]:
        return {
            "version": VERSION, "encoding": "UTF-8", "signMethod": "01", "txnType": "04", "txnSubType": "00",
            "bizType": "000201", "accessType": "0", "channelType": "07", "merId": self.mer_id,
            "orderId": refund.refund_no, "txnTime": self._refund_times.get(refund.refund_no, ""),
            "txnAmt": str(amount_fen), "currencyCode": "156", "queryId": refund.refund_id,
            "origQryId": trade.trade_no, "reqReserved": trade.order_no, "respCode": code,
            "respMsg": MESSAGES[code], "traceNo": refund.refund_id[-6:],
            "traceTime": refund.refunded_at.astimezone(CST).strftime("%m%d%H%M%S"),
            "settleDate": refund.refunded_at.astimezone(CST).strftime("%m%d"),
        }

    def announce_refund(self, trade: Trade, refund: Refund) -> None:
        """The refund's back-end notification, under the same switches as a payment's."""
        faults = self.state.payment_faults.current
        event = NotifyEvent(notify_id=new_notify_id(), kind="refund", status=trade.status,
                            amount_fen=trade.amount_fen, occurred_at=refund.refunded_at, refund=refund,
                            refund_fen=refund.amount_fen + (1 if faults.wrong_amount else 0),
                            forge_signature=faults.forge_signature, wrong_merchant=faults.wrong_merchant)
        url = self._refund_urls.get(refund.refund_no) or trade.notify_url
        form = self.shape(trade, event)
        notifier = self.state.notifier
        records = [notifier.record(url, form, notify_id=event.notify_id, order_no=trade.order_no, kind="refund",
                                   status=trade.status, label=label, lost=faults.lose_notifications)
                   for label in (("normal", "duplicate") if faults.duplicate else ("normal",))]
        notifier.enqueue(records)

    # --- the four endpoints ----------------------------------------------------------------------

    def front(self, fields: Mapping[str, str], base_url: str) -> Response:
        """frontTransReq.do: create the trade and show the cashier."""
        code = self.check_request(fields, txn_types=("01",),
                                  extra=("orderId", "txnAmt", "currencyCode", "backUrl", "frontUrl"))
        if code is None and not (fields["txnAmt"].isdigit() and int(fields["txnAmt"]) > 0):
            code = "10"
        if code is not None:
            return cashier_message("unionpay", "交易失败", f"{MESSAGES[code]} [{code}]", status_code=400)
        # payTimeout is on the merchant's clock, like txnTime: the order may be paid for (payTimeout − txnTime)
        # from when this gateway first sees it. (Measuring it against our own clock would make every order of a
        # hub running on a test clock look expired, or never.)
        now = self.state.clock()
        try:
            ttl = parse_cst(fields["payTimeout"]) - parse_cst(fields["txnTime"]) if fields.get("payTimeout") else None
        except ValueError:
            return cashier_message("unionpay", "交易失败", f"{MESSAGES['10']} [10] payTimeout", status_code=400)
        if ttl is not None and ttl.total_seconds() <= 0:
            return cashier_message("unionpay", "交易失败", "交易已超过支付时限 (payTimeout)", status_code=400)
        expires = now + ttl if ttl is not None else None
        extra = {"txnTime": fields["txnTime"], **({"reqReserved": fields["reqReserved"]}
                                                   if fields.get("reqReserved") else {})}
        existing = self.state.ledger.get(fields["orderId"])
        if existing is not None:
            self._close_if_expired(existing)
        if existing is not None and existing.extra.get("txnTime") != fields["txnTime"]:
            return cashier_message("unionpay", "交易失败", f"{MESSAGES['12']} [12]", status_code=400)
        try:
            trade = self.state.ledger.create(
                order_no=fields["orderId"], amount_fen=int(fields["txnAmt"]),
                subject=fields.get("orderDesc") or "商户订单", notify_url=fields["backUrl"],
                return_url=fields["frontUrl"], at=now, expires_at=expires, extra=extra)
        except LedgerError as exc:
            return cashier_message("unionpay", "交易失败", exc.message, status_code=400)
        return cashier_page(gateway="unionpay", trade=trade, base_url=base_url)

    def query(self, fields: Mapping[str, str]) -> Response:
        """queryTrans.do: the transaction (payment or refund) of orderId + txnTime."""
        code = self.check_request(fields, txn_types=("00",), extra=("orderId",))
        if code is not None:
            return self.refusal(fields, code)
        faults = self.faults
        if faults.query_resp_code:
            return self.refusal(fields, faults.query_resp_code)
        order_id, at = fields["orderId"], fields["txnTime"]
        base = {"version": VERSION, "encoding": "UTF-8", "signMethod": "01", "txnType": "00", "txnSubType": "00",
                "bizType": "000000", "accessType": "0", "merId": self.mer_id, "orderId": order_id, "txnTime": at,
                "respCode": "00", "respMsg": SUCCESS_MSG}
        orig = faults.orig_resp_code or "00"
        trade = self.state.ledger.get(order_id)
        if trade is not None and trade.extra.get("txnTime") == at:
            self._close_if_expired(trade)
            if trade.status != "paid" or trade.paid_at is None:
                return self.refusal(fields, "34")  # never paid: no transaction at UnionPay
            result = self._result_fields(trade, code=orig, amount_fen=trade.amount_fen, at=trade.paid_at)
            return self.answer({**result, **base, "origRespCode": orig, "origRespMsg": MESSAGES[orig]})
        refund = self.state.ledger.find_refund(order_id)
        if refund is not None and self._refund_times.get(order_id) == at:
            paid = self.state.ledger.require(refund.order_no)
            result = self._refund_fields(paid, refund, amount_fen=refund.amount_fen, code=orig)
            return self.answer({**result, **base, "origRespCode": orig, "origRespMsg": MESSAGES[orig]})
        return self.refusal(fields, "34")

    def _close_if_expired(self, trade: Trade) -> None:
        if trade.status == "pending" and trade.expires_at is not None and trade.expires_at <= self.state.clock():
            with contextlib.suppress(LedgerError):  # paid meanwhile
                self.state.close(trade.order_no)

    def back(self, fields: Mapping[str, str]) -> Response:
        """backTransReq.do: a refund by its own orderId; the same orderId again is the same refund."""
        code = self.check_request(fields, txn_types=("04",), extra=("orderId", "origQryId", "txnAmt"))
        if code is None and not (fields["txnAmt"].isdigit() and int(fields["txnAmt"]) > 0):
            code = "10"
        if code is not None:
            return self.refusal(fields, code)
        trade = self.state.ledger.by_trade_no(fields["origQryId"])
        if trade is None:
            return self.refusal(fields, "35")
        refund_no = fields["orderId"]
        with self._lock:  # the refund and its txnTime recorded together when two retries race
            try:
                refund, created = self.state.ledger.refund(trade.order_no, refund_no=refund_no,
                                                           amount_fen=int(fields["txnAmt"]), at=self.state.clock())
            except LedgerError as exc:
                return self.refusal(fields, "12" if exc.code == "refund_conflict" else
                                    "36" if exc.code == "refund_exceeds" else "35")
            if created:
                self._refund_times[refund_no] = fields["txnTime"]
                if fields.get("backUrl"):
                    self._refund_urls[refund_no] = fields["backUrl"]
        if created:
            self.announce_refund(trade, refund)
        answer_code = self.faults.refund_resp_code or "00"
        result = self._refund_fields(trade, refund, amount_fen=refund.amount_fen, code=answer_code)
        return self.answer(result)

    def file(self, fields: Mapping[str, str]) -> Response:
        """fileTransfer.do: the statement of settleDate (MMDD, the latest such day not after today, CST)."""
        code = self.check_request(fields, txn_types=("76",), extra=("settleDate", "fileType"))
        if code is not None:
            return self.refusal(fields, code)
        day = self._settle_day(fields["settleDate"])
        if day is None or fields["fileType"] != "00":
            return self.refusal(fields, "10")
        text = "".join(statement_line(values) + "\r\n" for values in self.statement_lines(day))
        name = f"INN{day:%y%m%d}88ZM_{self.mer_id}"
        return self.answer({"version": VERSION, "encoding": "UTF-8", "signMethod": "01", "txnType": "76",
                            "txnSubType": "01", "bizType": "000000", "accessType": "0", "merId": self.mer_id,
                            "settleDate": fields["settleDate"], "txnTime": fields["txnTime"], "fileType": "00",
                            "fileName": f"{name}.zip", "fileContent": pack_file(name, text),
                            "respCode": "00", "respMsg": SUCCESS_MSG})

    def _settle_day(self, mmdd: str) -> date | None:
        """The day a settleDate (MMDD) means: the latest such day holding a payment or refund, else the latest
        such day up to today (payments may carry any year's times: `/_control/trades/{order}/pay` takes one)."""
        if len(mmdd) != 4 or not mmdd.isdigit():
            return None
        month, day_of_month = int(mmdd[:2]), int(mmdd[2:])
        days = {moment.astimezone(CST).date() for trade in self.state.ledger.trades()
                for moment in (trade.paid_at, *(r.refunded_at for r in trade.refunds.values())) if moment}
        matching = [d for d in days if (d.month, d.day) == (month, day_of_month)]
        if matching:
            return max(matching)
        today = self.state.clock().astimezone(CST).date()
        for year in range(today.year, today.year - 8, -1):  # (29 February: back to the last leap year)
            try:
                candidate = date(year, month, day_of_month)
            except ValueError:
                continue
            if candidate <= today:
                return candidate
        return None

    def statement_lines(self, day: date) -> list[dict[str, str]]:
        lines = []
        for entry in self.state.ledger.statement(day):
            common = {"traceNo": (entry.refund_id or entry.trade_no)[-6:],
                      "traceTime": entry.occurred_at.astimezone(CST).strftime("%m%d%H%M%S"),
                      "accNo": "6216****0018", "txnAmt": f"{entry.amount_fen:012d}", "merId": self.mer_id}
            if entry.kind == "payment":
                lines.append({**common, "code": "S22", "queryId": entry.trade_no, "orderId": entry.order_no})
            else:
                lines.append({**common, "code": "S30", "queryId": entry.refund_id or "",
                              "orderId": entry.refund_no or "", "origQryId": entry.trade_no,
                              "reqReserved": entry.order_no})
        return lines


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return {}


def _unionpay_control_router(mock: UnionPayMock) -> APIRouter:
    router = APIRouter(prefix="/_control", tags=["payment control"])

    @router.get("/unionpay-faults", summary="the UnionPay-only switches")
    def get_faults() -> dict[str, Any]:
        return asdict(mock.faults)

    @router.post("/unionpay-faults", summary="answer 03/04/05 to queries or refunds (null clears)")
    def set_faults(update: UnionPayFaultsUpdate) -> dict[str, Any]:
        return asdict(mock.update_faults({k: getattr(update, k) for k in update.model_fields_set}))

    @router.delete("/unionpay-faults", summary="every UnionPay switch off")
    def clear_faults() -> dict[str, Any]:
        return asdict(mock.clear_faults())

    return router


def create_app(server: MockServer, _seed: object = None, *, keys: UnionPayKeys | None = None,
               clock: Callable[[], datetime] = now_utc, schedule: Sequence[float] = DEV_SCHEDULE_S) -> FastAPI:
    """The mock gateway's app (the runner passes its seed, which a payment gateway does not need). The mock's
    state is ``app.state.unionpay`` (``UnionPayMock``) and ``app.state.payment`` (the shared state)."""
    mock = UnionPayMock(server, keys=keys, clock=clock, schedule=schedule)
    app = FastAPI(title="Mock UnionPay-style gateway (银联全渠道 5.1.0)")
    app.include_router(own_control_router(server))
    app.include_router(_unionpay_control_router(mock))
    install(app, mock.state)
    app.state.unionpay = mock

    async def endpoint(request: Request, operation: str,
                       handle: Callable[[dict[str, str]], Response]) -> Response:
        refused = await mock.state.gate(operation)
        if refused is not None:
            return refused
        return handle(_form(await request.body()))

    @app.post("/gateway/api/frontTransReq.do", summary="consume (browser form POST) → the cashier page")
    async def front(request: Request) -> Response:
        base_url = str(request.base_url).rstrip("/")
        return await endpoint(request, "frontTransReq", lambda fields: mock.front(fields, base_url))

    @app.post("/gateway/api/backTransReq.do", summary="refund (txnType 04)")
    async def back(request: Request) -> Response:
        return await endpoint(request, "backTransReq", mock.back)

    @app.post("/gateway/api/queryTrans.do", summary="transaction query (txnType 00)")
    async def query(request: Request) -> Response:
        return await endpoint(request, "queryTrans", mock.query)

    @app.post("/gateway/api/fileTransfer.do", summary="statement file (txnType 76)")
    async def file_transfer(request: Request) -> Response:
        return await endpoint(request, "fileTransfer", mock.file)

    return app

