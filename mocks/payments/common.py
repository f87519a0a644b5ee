"""What both mock payment gateways share: the trade ledger, the resending notifier, the payment fault switches,
the control routes and the cashier page.

Gateway-neutral on purpose: the ledger speaks fen and the hub-neutral statuses (pending, paid, closed); a gateway
module supplies how a notification is shaped and signed (``Shaper``), what acknowledges it (``AckPredicate``),
which signed parameters the browser carries back (``ReturnParams``) and the keys it shows on ``/_keys``.

Routes added to a gateway's app (``install(app, state)``):

    GET/POST/DELETE /_control/payment-faults      the payment fault switches (JSON; DELETE = all off)
    POST /_control/trades/{order_no}/pay          pay without the browser ({"paid_at": ...} optional)
    POST /_control/trades/{order_no}/close        close an unpaid trade
    GET  /_control/trades[/{order_no}]            the ledger
    GET  /_control/notifications[?order_no=]      every notification: to whom, each attempt, the answers
    GET  /_keys                                   dev-only key material (PEM strings) and merchant ids
    POST /cashier/{order_no}/pay | /cancel        the cashier page's two forms (303 back to the return URL)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import heapq
import html
import itertools
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Body, FastAPI, HTTPException, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from mocks.faults import Exchange
from mocks.server import MockServer

CST = timezone(timedelta(hours=8), "CST")
TradeStatus = Literal["pending", "paid", "closed"]
NotifyKind = Literal["payment", "refund"]

# Resend delays after each failed attempt (the first attempt goes at once): 8 attempts within ≈19 s in dev and
# tests; the real gateways' ≈25 h schedule (Alipay: 4m, 10m, 10m, 1h, 2h, 6h, 15h) behind the switch
# ``real_schedule``.
DEV_SCHEDULE_S: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0, 5.0, 5.0)
REAL_SCHEDULE_S: tuple[float, ...] = (240.0, 600.0, 600.0, 3600.0, 7200.0, 21600.0, 54000.0)
_NOTIFY_TIMEOUT_S = 5.0
_BODY_EXCERPT = 200
_KEEP_RECORDS = 2000


def now_utc() -> datetime:
    return datetime.now(UTC)


def yuan(fen: int) -> str:
    """Fen as a two-decimal yuan string, exactly (integer arithmetic, never a float)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


_YUAN = re.compile(r"^(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?$")


def fen(yuan_text: str) -> int:
    """"20.00" → 2000 exactly; anything but a plain amount with at most two decimals raises ValueError."""
    match = _YUAN.match(yuan_text)
    if match is None:
        raise ValueError(f"not a yuan amount: {yuan_text!r}")
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def cst_time(at: datetime, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return at.astimezone(CST).strftime(fmt)


def parse_cst_time(text: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> datetime:
    return datetime.strptime(text, fmt).replace(tzinfo=CST)


# --- signatures and keys -------------------------------------------------------------------------------------
# The mocks' own implementation, independent of adapters/payments (import contract: mocks know nothing of
# adapters): a bug in the adapter's signing then shows up as a refused call instead of agreeing with itself.


def sorted_params(params: Mapping[str, str], *, exclude: frozenset[str] = frozenset({"sign"})) -> str:
    """``k=v&…`` of the non-empty parameters but ``exclude``, sorted by key."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] not in ("", None))


def rsa_sign(private_key: rsa.RSAPrivateKey, text: str) -> str:
    """SHA256withRSA (PKCS#1 v1.5) over the UTF-8 text, base64."""
    return base64.b64encode(private_key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(public_key: rsa.RSAPublicKey, text: str, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature, validate=True), text.encode("utf-8"), padding.PKCS1v15(),
                          hashes.SHA256())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


@dataclass(frozen=True)
class KeyMaterial:
    """An RSA key pair with a self-signed certificate, generated when a mock starts (never stored)."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @property
    def private_pem(self) -> str:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()

    @property
    def public_pem(self) -> str:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def cert_id(self) -> str:
        """The certificate's serial number in decimal (UnionPay's certId)."""
        return str(self.certificate.serial_number)


def generate_keys(common_name: str, *, bits: int = 2048) -> KeyMaterial:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = now_utc()
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start - timedelta(days=1))
                   .not_valid_after(start + timedelta(days=365)).sign(key, hashes.SHA256()))
    return KeyMaterial(key, certificate)


# --- fault switches ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentFaults:
    """The payment switches; the defaults mean "behave like a healthy gateway"."""

    down: bool = False  # every gateway call and the cashier answer 503
    slow_ms: int = 0  # added to every gateway call and cashier request
    forge_signature: bool = False  # notifications signed with a key the hub does not know
    wrong_amount: bool = False  # notifications say one fen more than the trade
    lose_notifications: bool = False  # notifications are recorded as lost and never sent
    duplicate: bool = False  # every notification is sent twice at once (same notify id)
    out_of_order: bool = False  # after a paid notification, an older pending/closed one (another notify id)
    wrong_merchant: bool = False  # notifications name another merchant (seller_id / merId)
    wrong_app: bool = False  # notifications name another app (app_id)
    real_schedule: bool = False  # resend on the real ≈25 h schedule instead of the short dev one


class PaymentFaultsUpdate(BaseModel):
    """Switches to change; omitted ones keep their value, null restores the default."""

    model_config = ConfigDict(extra="forbid")

    down: bool | None = None
    slow_ms: int | None = Field(default=None, ge=0, le=120_000)
    forge_signature: bool | None = None
    wrong_amount: bool | None = None
    lose_notifications: bool | None = None
    duplicate: bool | None = None
    out_of_order: bool | None = None
    wrong_merchant: bool | None = None
    wrong_app: bool | None = None
    real_schedule: bool | None = None


class PaymentFaultState:
    """Thread-safe holder of the payment switches (control routes, the mock's loop and the notifier read it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults = PaymentFaults()

    @property
    def current(self) -> PaymentFaults:
        with self._lock:
            return self._faults

    def update(self, changes: Mapping[str, Any]) -> PaymentFaults:
        default = PaymentFaults()
        resolved = {key: getattr(default, key) if value is None else value for key, value in changes.items()}
        with self._lock:
            self._faults = replace(self._faults, **resolved)
            return self._faults

    def clear(self) -> PaymentFaults:
        with self._lock:
            self._faults = PaymentFaults()
            return self._faults


# --- the trade ledger ----------------------------------------------------------------------------------------


class LedgerError(Exception):
    """A gateway-neutral refusal; the gateway maps ``code`` onto its own error shape.

    Codes: trade_not_exist, trade_closed, trade_paid (closing a paid trade), trade_not_paid (refunding an unpaid
    one), context_inconsistent (the same order number created again with other terms), refund_exceeds (more than
    the refundable balance), refund_conflict (a reused refund number with another amount or order)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Refund:
    refund_no: str  # the merchant's request number (Alipay out_request_no, UnionPay refund orderId)
    order_no: str
    amount_fen: int
    refund_id: str  # the gateway's own number of this refund
    refunded_at: datetime
    reason: str = ""


@dataclass
class Trade:
    order_no: str
    amount_fen: int
    subject: str
    notify_url: str
    return_url: str
    created_at: datetime
    expires_at: datetime | None
    trade_no: str  # the gateway's trade number (Alipay trade_no, UnionPay queryId)
    status: TradeStatus = "pending"
    paid_at: datetime | None = None
    closed_at: datetime | None = None
    refunds: dict[str, Refund] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # the gateway's own request fields (txnTime, app_id …)

    @property
    def refunded_fen(self) -> int:
        return sum(r.amount_fen for r in self.refunds.values())

    @property
    def refundable_fen(self) -> int:
        return self.amount_fen - self.refunded_fen if self.status == "paid" else 0

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["refunds"] = [asdict(r) for r in self.refunds.values()]
        data["refunded_fen"] = self.refunded_fen
        return data


@dataclass(frozen=True)
class LedgerEntry:
    """One statement line: a payment or a refund on a given (CST) day."""

    kind: NotifyKind
    order_no: str
    trade_no: str
    amount_fen: int  # always positive: a refund's own amount
    occurred_at: datetime
    subject: str
    refund_no: str | None = None
    refund_id: str | None = None
    order_amount_fen: int = 0


def _default_trade_no(at: datetime) -> str:
    return at.astimezone(CST).strftime("%Y%m%d") + "".join(secrets.choice("0123456789") for _ in range(20))


class TradeLedger:
    """Orders created, paid, closed and refunded; refunds keyed by request number so a retry refunds once."""

    def __init__(self, *, new_trade_no: Callable[[datetime], str] = _default_trade_no) -> None:
        self._lock = threading.RLock()
        self._trades: dict[str, Trade] = {}
        self._new_trade_no = new_trade_no

    def create(self, *, order_no: str, amount_fen: int, subject: str, notify_url: str, return_url: str,
               at: datetime, expires_at: datetime | None = None, extra: Mapping[str, str] | None = None) -> Trade:
        """The trade of ``order_no``; asking again with the same terms returns the same trade (a browser may
        reload the checkout), other terms are refused like the real gateways do."""
        if amount_fen <= 0:
            raise LedgerError("invalid_amount", "金额必须大于零 (amount must be positive)")
        with self._lock:
            existing = self._trades.get(order_no)
            if existing is not None:
                if existing.amount_fen != amount_fen:
                    raise LedgerError("context_inconsistent",
                                      "交易信息被篡改 (the order number exists with another amount)")
                return existing
            trade = Trade(order_no=order_no, amount_fen=amount_fen, subject=subject, notify_url=notify_url,
                          return_url=return_url, created_at=at, expires_at=expires_at,
                          trade_no=self._new_trade_no(at), extra=dict(extra or {}))
            self._trades[order_no] = trade
            return trade

    def get(self, order_no: str) -> Trade | None:
        with self._lock:
            return self._trades.get(order_no)

    def require(self, order_no: str) -> Trade:
        trade = self.get(order_no)
        if trade is None:
            raise LedgerError("trade_not_exist", "交易不存在 (no such trade)")
        return trade

    def by_trade_no(self, trade_no: str) -> Trade | None:
        with self._lock:
            return next((t for t in self._trades.values() if t.trade_no == trade_no), None)

    def trades(self) -> list[Trade]:
        with self._lock:
            return list(self._trades.values())

    def pay(self, order_no: str, *, at: datetime) -> tuple[Trade, bool]:
        """Mark paid; returns (trade, changed). Paying a paid trade changes nothing; a closed one is refused."""
        with self._lock:
            trade = self.require(order_no)
            if trade.status == "paid":
                return trade, False
            if trade.status == "closed":
                raise LedgerError("trade_closed", "交易已关闭 (the trade is closed)")
            trade.status, trade.paid_at = "paid", at
            return trade, True

    def close(self, order_no: str, *, at: datetime) -> tuple[Trade, bool]:
        with self._lock:
            trade = self.require(order_no)
            if trade.status == "closed":
                return trade, False
            if trade.status == "paid":
                raise LedgerError("trade_paid", "交易已支付，不能关闭 (a paid trade cannot be closed)")
            trade.status, trade.closed_at = "closed", at
            return trade, True

    def refund(self, order_no: str, *, refund_no: str, amount_fen: int, at: datetime,
               reason: str = "") -> tuple[Refund, bool]:
        """Refund ``amount_fen`` under ``refund_no``; returns (refund, created). The same number again returns
        the first refund unchanged (a retry refunds once); another amount under it is refused."""
        if amount_fen <= 0:
            raise LedgerError("invalid_amount", "退款金额必须大于零 (refund amount must be positive)")
        with self._lock:
            trade = self.require(order_no)
            previous = trade.refunds.get(refund_no) or self._refund_elsewhere(refund_no)
            if previous is not None:
                if previous.order_no != order_no or previous.amount_fen != amount_fen:
                    raise LedgerError("refund_conflict",
                                      "退款请求号已用于其他退款 (the refund number was used with other terms)")
                return previous, False
            if trade.status != "paid":
                raise LedgerError("trade_not_paid", "交易未支付，不能退款 (the trade is not paid)")
            if amount_fen > trade.refundable_fen:
                raise LedgerError("refund_exceeds", "退款金额超过可退金额 (more than the refundable balance)")
            refund = Refund(refund_no=refund_no, order_no=order_no, amount_fen=amount_fen,
                            refund_id=self._new_trade_no(at), refunded_at=at, reason=reason)
            trade.refunds[refund_no] = refund
            return refund, True

    def _refund_elsewhere(self, refund_no: str) -> Refund | None:
        for trade in self._trades.values():
            if refund_no in trade.refunds:
                return trade.refunds[refund_no]
        return None

    def find_refund(self, refund_no: str) -> Refund | None:
        with self._lock:
            return self._refund_elsewhere(refund_no)

    def statement(self, day: date, *, tz: timezone = CST) -> list[LedgerEntry]:
        """The day's payments and refunds (by the gateway's local date), in time order."""
        entries: list[LedgerEntry] = []
        with self._lock:
            for t in self._trades.values():
                if t.paid_at is not None and t.paid_at.astimezone(tz).date() == day:
                    entries.append(LedgerEntry("payment", t.order_no, t.trade_no, t.amount_fen, t.paid_at,
                                               t.subject, order_amount_fen=t.amount_fen))
                for r in t.refunds.values():
                    if r.refunded_at.astimezone(tz).date() == day:
                        entries.append(LedgerEntry("refund", t.order_no, t.trade_no, r.amount_fen, r.refunded_at,
                                                   t.subject, r.refund_no, r.refund_id, t.amount_fen))
        return sorted(entries, key=lambda e: e.occurred_at)


# --- notifications -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyEvent:
    """What one notification says, faults already applied; the gateway's ``Shaper`` turns it into form fields
    (its own names, its own signature)."""

    notify_id: str
    kind: NotifyKind
    status: TradeStatus
    amount_fen: int  # the trade's amount as announced (+1 under wrong_amount)
    occurred_at: datetime  # notify_time; older than the trade's last change for an out-of-order one
    refund: Refund | None = None
    refund_fen: int | None = None  # the refund's amount as announced (+1 under wrong_amount)
    forge_signature: bool = False
    wrong_merchant: bool = False
    wrong_app: bool = False
    label: str = "normal"  # normal | duplicate | out_of_order


Shaper = Callable[[Trade, NotifyEvent], dict[str, str]]
AckPredicate = Callable[[int, bytes], bool]  # (HTTP status, body) → acknowledged?
ReturnParams = Callable[[Trade], dict[str, str]]


@dataclass
class Attempt:
    at: datetime
    status_code: int | None
    body: str
    acknowledged: bool
    error: str | None = None


@dataclass
class NotificationRecord:
    """One notification as sent (and resent) to one URL; ``attempts`` are the tries so far."""

    seq: int
    notify_id: str
    order_no: str
    kind: NotifyKind
    status: TradeStatus
    label: str
    url: str
    form: dict[str, str]
    lost: bool = False
    acknowledged: bool = False
    finished: bool = False  # acknowledged, out of attempts, or lost
    attempts: list[Attempt] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    record: NotificationRecord = field(compare=False)
    then: list[NotificationRecord] = field(compare=False, default_factory=list)  # sent after our 1st attempt


class Notifier:
    """A daemon thread POSTing form bodies to notify URLs until ``acknowledged`` holds or the schedule ends.

    Jobs due together are sent concurrently (a duplicate really arrives "at once"); a job's ``then`` records
    are queued only after its first attempt finished, so an out-of-order notification reaches the hub after the
    newer one it contradicts."""

    def __init__(self, *, acknowledged: AckPredicate, faults: PaymentFaultState,
                 schedule: Sequence[float] = DEV_SCHEDULE_S, real_schedule: Sequence[float] = REAL_SCHEDULE_S,
                 timeout_s: float = _NOTIFY_TIMEOUT_S) -> None:
        self._acknowledged = acknowledged
        self._faults = faults
        self.schedule = tuple(schedule)  # settable: tests shorten it
        self.real_schedule = tuple(real_schedule)
        self._timeout_s = timeout_s
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._records: list[NotificationRecord] = []
        self._seq = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._client: httpx.Client | None = None

    # -- public -------------------------------------------------------------------------------------------

    def send(self, url: str, form: dict[str, str], *, notify_id: str, order_no: str, kind: NotifyKind,
             status: TradeStatus, label: str = "normal", lost: bool = False,
             then: Sequence[NotificationRecord] = ()) -> NotificationRecord:
        """Queue a notification for sending now (or record it as lost); returns its record."""
        record = self.record(url, form, notify_id=notify_id, order_no=order_no, kind=kind, status=status,
                             label=label, lost=lost)
        self.enqueue([record], then=then)
        return record

    def enqueue(self, records: Sequence[NotificationRecord], *, then: Sequence[NotificationRecord] = ()) -> None:
        """Send ``records`` now, together (concurrently when several); ``then`` after the first one's first
        attempt. Lost records are never sent."""
        now = time.monotonic()
        jobs = [_Job(now, r.seq, r, list(then) if i == 0 else []) for i, r in enumerate(records) if not r.lost]
        with self._cond:
            if self._stopped:
                return
            for job in jobs:
                heapq.heappush(self._queue, job)
            if self._thread is None and jobs:
                self._thread = threading.Thread(target=self._run, name="mock-payment-notifier", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def record(self, url: str, form: dict[str, str], *, notify_id: str, order_no: str, kind: NotifyKind,
               status: TradeStatus, label: str = "normal", lost: bool = False) -> NotificationRecord:
        """A record not yet queued (for ``then``); ``lost`` ones are finished from the start."""
        record = NotificationRecord(seq=next(self._seq), notify_id=notify_id, order_no=order_no, kind=kind,
                                    status=status, label=label, url=url, form=dict(form), lost=lost, finished=lost)
        with self._cond:
            self._records.append(record)
            if len(self._records) > _KEEP_RECORDS:  # a long `hub up` session: forget the oldest finished ones
                oldest = next((r for r in self._records if r.finished), None)
                if oldest is not None:
                    self._records.remove(oldest)
        return record

    def records(self, order_no: str | None = None) -> list[NotificationRecord]:
        with self._cond:
            return [r for r in self._records if order_no is None or r.order_no == order_no]

    def snapshot(self, order_no: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [r.as_json() for r in self._records if order_no is None or r.order_no == order_no]

    def idle(self) -> bool:
        """Nothing queued (every notification acknowledged, given up or lost)."""
        with self._cond:
            return not self._queue and all(r.finished for r in self._records)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._timeout_s + 1)
        if self._client is not None:
            self._client.close()

    # -- the thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(self._timeout_s), trust_env=False,
                                    follow_redirects=False)
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0].due > time.monotonic()):
                    self._cond.wait(self._queue[0].due - time.monotonic() if self._queue else None)
                if self._stopped:
                    return
                due: list[_Job] = []
                now = time.monotonic()
                while self._queue and self._queue[0].due <= now:
                    due.append(heapq.heappop(self._queue))
            self._send_all(due)

    def _send_all(self, jobs: list[_Job]) -> None:
        if len(jobs) == 1:
            self._attempt(jobs[0])
            return
        threads = [threading.Thread(target=self._attempt, args=(job,), daemon=True) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _attempt(self, job: _Job) -> None:
        record = job.record
        assert self._client is not None
        try:
            response = self._client.post(record.url, data=record.form)
            ok = self._acknowledged(response.status_code, response.content)
            attempt = Attempt(now_utc(), response.status_code, response.content[:_BODY_EXCERPT].decode(
                "utf-8", "replace"), ok)
        except httpx.HTTPError as exc:
            ok, attempt = False, Attempt(now_utc(), None, "", False, type(exc).__name__)
        schedule = self.real_schedule if self._faults.current.real_schedule else self.schedule
        with self._cond:
            record.attempts.append(attempt)
            record.acknowledged = record.acknowledged or ok
            tries = len(record.attempts)
            if ok or tries > len(schedule):
                record.finished = True
            else:
                heapq.heappush(self._queue, _Job(time.monotonic() + schedule[tries - 1], job.seq, record))
            follow = [_Job(time.monotonic(), r.seq, r) for r in job.then if not r.lost]
            for j in follow:
                heapq.heappush(self._queue, j)
            self._cond.notify_all()


# --- the state one gateway mock holds ------------------------------------------------------------------------


class PaymentMockState:
    """One mock gateway's ledger, switches and notifier, and the gateway-specific callables they need."""

    def __init__(self, *, server: MockServer, gateway: str, shape: Shaper, acknowledged: AckPredicate,
                 return_params: ReturnParams, keys: Callable[[], dict[str, str]],
                 clock: Callable[[], datetime] = now_utc, schedule: Sequence[float] = DEV_SCHEDULE_S,
                 notify_on_close: bool = True, stale_status: TradeStatus = "pending",
                 new_trade_no: Callable[[datetime], str] = _default_trade_no) -> None:
        self.server = server
        self.gateway = gateway
        self.shape = shape
        self.return_params = return_params
        self.keys = keys
        self.clock = clock
        self.notify_on_close = notify_on_close
        self.stale_status: TradeStatus = stale_status
        self.ledger = TradeLedger(new_trade_no=new_trade_no)
        self.payment_faults = PaymentFaultState()
        self.notifier = Notifier(acknowledged=acknowledged, faults=self.payment_faults, schedule=schedule)

    def stop(self) -> None:
        """Stop resending (the runner calls this when the mock shuts down)."""
        self.notifier.stop()

    def pay(self, order_no: str, *, at: datetime | None = None) -> Trade:
        """The buyer paid (cashier or control): mark paid and announce it once."""
        trade, changed = self.ledger.pay(order_no, at=at or self.clock())
        if changed:
            self.announce(trade)
        return trade

    def close(self, order_no: str, *, at: datetime | None = None) -> Trade:
        trade, changed = self.ledger.close(order_no, at=at or self.clock())
        if changed and self.notify_on_close:
            self.announce(trade)
        return trade

    def announce(self, trade: Trade, *, kind: NotifyKind = "payment",
                 refund: Refund | None = None) -> list[NotificationRecord]:
        """Send the notification(s) of the trade's current state, applying the switches."""
        faults = self.payment_faults.current
        amount = trade.amount_fen + (1 if faults.wrong_amount else 0)
        refund_fen = None if refund is None else refund.amount_fen + (1 if faults.wrong_amount else 0)
        occurred = (refund.refunded_at if refund else trade.paid_at or trade.closed_at) or self.clock()
        event = NotifyEvent(notify_id=new_notify_id(), kind=kind, status=trade.status, amount_fen=amount,
                            occurred_at=occurred, refund=refund, refund_fen=refund_fen,
                            forge_signature=faults.forge_signature, wrong_merchant=faults.wrong_merchant,
                            wrong_app=faults.wrong_app)
        lost = faults.lose_notifications
        form = self.shape(trade, event)
        records = [self.notifier.record(trade.notify_url, form, notify_id=event.notify_id, order_no=trade.order_no,
                                        kind=kind, status=trade.status, label=label, lost=lost)
                   for label in (("normal", "duplicate") if faults.duplicate else ("normal",))]
        stale: list[NotificationRecord] = []
        if faults.out_of_order and kind == "payment" and trade.status == "paid":
            older = replace(event, notify_id=new_notify_id(), status=self.stale_status, label="out_of_order",
                            occurred_at=trade.created_at)
            stale.append(self.notifier.record(trade.notify_url, self.shape(trade, older), notify_id=older.notify_id,
                                              order_no=trade.order_no, kind=kind, status=older.status,
                                              label=older.label, lost=lost))
        self.notifier.enqueue(records, then=stale)
        return [*records, *stale]

    async def gate(self, operation: str) -> Response | None:
        """Count one gateway call and apply the switches: None to go on, or the answer to give instead."""
        decision = self.server.faults.admit(Exchange(operation=operation))
        faults = self.payment_faults.current
        delay_s = decision.latency_s + faults.slow_ms / 1000
        if delay_s:
            await asyncio.sleep(delay_s)
        if faults.down or decision.fail:
            status = decision.error_status if decision.fail else 503
            return Response("<html><body><h1>503 Service Unavailable</h1></body></html>", status_code=status,
                            media_type="text/html")
        return None


def new_notify_id() -> str:
    return uuid.uuid4().hex


# --- routes --------------------------------------------------------------------------------------------------


class PayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paid_at: datetime | None = Field(default=None, description="when the buyer paid (default now); tz-aware")


def _ledger_http_error(exc: LedgerError) -> HTTPException:
    status = 404 if exc.code == "trade_not_exist" else 409
    return HTTPException(status_code=status, detail={"code": exc.code, "message": exc.message})


def payment_control_router(state: PaymentMockState) -> APIRouter:
    """``/_control/payment-faults``, ``/_control/trades…`` and ``/_control/notifications``."""
    router = APIRouter(prefix="/_control", tags=["payment control"])

    @router.get("/payment-faults", summary="the payment fault switches")
    def get_faults() -> dict[str, Any]:
        return asdict(state.payment_faults.current)

    @router.post("/payment-faults", summary="change payment fault switches (omitted keep, null resets)")
    def set_faults(update: PaymentFaultsUpdate) -> dict[str, Any]:
        return asdict(state.payment_faults.update({k: getattr(update, k) for k in update.model_fields_set}))

    @router.delete("/payment-faults", summary="every payment switch off")
    def clear_faults() -> dict[str, Any]:
        return asdict(state.payment_faults.clear())

    @router.post("/trades/{order_no}/pay", summary="pay without the browser (notifications are sent)")
    def pay(order_no: str, body: PayRequest | None = Body(default=None)) -> dict[str, Any]:
        at = body.paid_at if body and body.paid_at else None
        if at is not None and at.tzinfo is None:
            raise HTTPException(status_code=422, detail="paid_at needs a time zone")
        try:
            return state.pay(order_no, at=at).as_json()
        except LedgerError as exc:
            raise _ledger_http_error(exc) from None

    @router.post("/trades/{order_no}/close", summary="close an unpaid trade")
    def close(order_no: str) -> dict[str, Any]:
        try:
            return state.close(order_no).as_json()
        except LedgerError as exc:
            raise _ledger_http_error(exc) from None

    @router.get("/trades", summary="every trade in the ledger")
    def trades() -> dict[str, Any]:
        return {"trades": [t.as_json() for t in state.ledger.trades()]}

    @router.get("/trades/{order_no}", summary="one trade")
    def trade(order_no: str) -> dict[str, Any]:
        found = state.ledger.get(order_no)
        if found is None:
            raise HTTPException(status_code=404, detail={"code": "trade_not_exist", "message": "no such trade"})
        return found.as_json()

    @router.get("/notifications", summary="notifications sent: to whom, every attempt and its answer")
    def notifications(order_no: str | None = None) -> dict[str, Any]:
        return {"notifications": state.notifier.snapshot(order_no), "idle": state.notifier.idle()}

    return router


def keys_router(state: PaymentMockState) -> APIRouter:
    """``GET /_keys``: dev-only key material so that `hub up` and tests configure the hub."""
    router = APIRouter(tags=["dev keys"])

    @router.get("/_keys", summary="dev only: the merchant and gateway keys this mock generated at start")
    def keys() -> dict[str, str]:
        return state.keys()

    return router


def _with_query(url: str, params: Mapping[str, str]) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params)


def cashier_router(state: PaymentMockState) -> APIRouter:
    """The cashier page's two forms: pay (then 303 to the return URL with the signed return parameters) and
    cancel (close, then 303 to the return URL)."""
    router = APIRouter(prefix="/cashier", tags=["cashier"])

    @router.post("/{order_no}/pay", summary="the buyer pays")
    async def pay(order_no: str) -> Response:
        refused = await state.gate("cashier.pay")
        if refused is not None:
            return refused
        try:
            trade = await asyncio.to_thread(state.pay, order_no)
        except LedgerError as exc:
            return cashier_message(state.gateway, "支付失败", exc.message, status_code=409)
        return RedirectResponse(_with_query(trade.return_url, state.return_params(trade)), status_code=303)

    @router.post("/{order_no}/cancel", summary="the buyer cancels")
    async def cancel(order_no: str) -> Response:
        refused = await state.gate("cashier.cancel")
        if refused is not None:
            return refused
        try:
            trade = await asyncio.to_thread(state.close, order_no)
        except LedgerError as exc:
            return cashier_message(state.gateway, "无法取消", exc.message, status_code=409)
        return RedirectResponse(trade.return_url, status_code=303)

    return router


def install(app: FastAPI, state: PaymentMockState) -> None:
    """Add the shared routes to a gateway mock's app."""
    app.include_router(payment_control_router(state))
    app.include_router(keys_router(state))
    app.include_router(cashier_router(state))
    app.state.payment = state


# --- the cashier page ----------------------------------------------------------------------------------------

_GATEWAY_TITLES = {"alipay": "支付宝（模拟）", "unionpay": "银联在线支付（模拟）"}
_PAGE_STYLE = ("body{font-family:sans-serif;max-width:32em;margin:2em auto}dt{color:#666}dd{margin:0 0 .6em}"
               "button{font-size:1.1em;padding:.4em 1.4em;margin-right:1em}")


def cashier_page(*, gateway: str, trade: Trade, base_url: str = "") -> HTMLResponse:
    """The cashier (收银台): item, amount in 元, order number, and the pay and cancel forms."""
    title = _GATEWAY_TITLES.get(gateway, gateway)
    e = html.escape
    pay_action = f"{base_url}/cashier/{trade.order_no}/pay"
    cancel_action = f"{base_url}/cashier/{trade.order_no}/cancel"
    state_line = {"pending": "待支付", "paid": "已支付", "closed": "已关闭"}[trade.status]
    body = f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{e(title)} 收银台</title><style>{_PAGE_STYLE}</style></head>
<body>
<h1>{e(title)} 收银台</h1>
<dl>
<dt>商品</dt><dd id="subject">{e(trade.subject)}</dd>
<dt>金额</dt><dd id="amount">¥{yuan(trade.amount_fen)} 元</dd>
<dt>订单号</dt><dd id="order_no">{e(trade.order_no)}</dd>
<dt>状态</dt><dd id="status">{state_line}</dd>
</dl>
<form id="pay" method="post" action="{e(pay_action)}"><button type="submit">确认付款</button></form>
<form id="cancel" method="post" action="{e(cancel_action)}"><button type="submit">取消支付</button></form>
<p><small>本页面为开发测试用模拟收银台，不涉及真实资金。</small></p>
</body></html>"""
    return HTMLResponse(body)


def cashier_message(gateway: str, heading: str, message: str, *, status_code: int = 200) -> HTMLResponse:
    title = _GATEWAY_TITLES.get(gateway, gateway)
    e = html.escape
    body = (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{e(title)}</title></head>'
            f"<body><h1>{e(heading)}</h1><p>{e(message)}</p></body></html>")
    return HTMLResponse(body, status_code=status_code)


def json_error(status_code: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status_code)
