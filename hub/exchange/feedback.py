"""Feedback a partner can read: what became of each of its messages.

* Every message of a partner that never applies — a REST record answered ``rejected``; an AMQP message the
  hub rejected, or one dead-lettered after its delivery limit — produces ONE ``partner.rejected.v1`` event on
  ``hub.events`` with the routing key ``partner.<code>.rejected.v1`` (schemas/partner-rejection.v1.json),
  written to the outbox in the same transaction as the decision: the REST request's, or the dead-letter
  handler's that stores the dead letter. A partner's own queue bound with ``partner.<code>.#`` receives it.
* One event per (partner, message id, outcome): the ``partner_rejections`` row is the key, so a message sent
  again and refused again, or a dead letter redelivered, tells the partner nothing twice.
* A message without an authenticated sender (no ``user_id``) tells nobody: there is nobody to tell; it is
  still dead-lettered with its reason.
* ``record_status`` answers ``GET /api/v1/exchange/records/{message_id}`` from the inbox (applied, duplicate,
  held, stale) and from these rows (rejected, dead_lettered).

Why the dead-letter handler and not the inbound one tells the partner about an AMQP rejection: every dead
letter passes through it — the hub's rejections and the broker's own dead-lettering alike — and it commits
the dead letter and the event together, so the partner hears exactly what the operator sees.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.cases.models import Case
from hub.db import begin_for_savepoints
from hub.errors import NotFound
from hub.exchange.checks import RecordRejected
from hub.exchange.models import DeadLetter, InboxMessage, Partner, PartnerRejection
from hub.exchange.partners import directory, find_partner
from hub.outbox import service as outbox

EVENT_TYPE = "partner.rejected.v1"
REJECTED, DEAD_LETTERED = "rejected", "dead_lettered"
MAX_ID = 64  # message ids are stored as String(64), like the dead letters'


def routing_key_for(partner_code: str) -> str:
    """The routing key of a partner's rejection events: only its own queue's ``partner.<code>.#`` matches."""
    return f"partner.{partner_code}.rejected.v1"


# For people first (Chinese), by category; the category, rule and detail follow in English for machines.
_CATEGORY_TEXT = {
    "schema": "记录不符合数据规范",
    "identifier": "证件号码与申请人类型不符或有误",
    "applicant_type": "申请人类型与证件不符",
    "state": "办件状态与办理环节不一致",
    "steps": "办理环节不符合标准流程",
    "text": "文本含有不允许的字符或为空",
    "source_mismatch": "信封中的发送方与认证的发送方不一致",
    "unknown_partner": "发送方不是已登记且启用的交换伙伴",
    "type_not_allowed": "该伙伴无权发送此类记录",
    "wrong_region": "超出本伙伴所辖区划",
    "unknown_item": "事项不在事项目录中",
    "special_procedure": "特别程序不符合规定",
    "bad_json": "消息不是合法的JSON",
    "database_refused": "数据库拒绝了该数据",
    "internal_error": "枢纽处理该消息时出错，修复后将由运维人员重放",
    "retries_exhausted": "多次重试仍未能处理，已转入死信队列，请稍后重发或联系运维人员",
    "broker": "消息被消息代理转入死信队列",
}
_DEFAULT_TEXT = "消息被拒绝"
# Categories whose dead-letter reason never names a field: re-checking the message cannot tell more.
_NOT_A_FIELD = frozenset({"bad_json", "database_refused", "internal_error", "retries_exhausted", "broker",
                          "unauthenticated", "transient"})


@dataclass(frozen=True)
class Fault:
    """Why a message never applied: its category (``RecordRejected.reason``), the detail, field and rule."""

    category: str
    detail: str
    field: str | None = None
    rule: str | None = None

    @classmethod
    def of(cls, exc: RecordRejected) -> Fault:
        return cls(exc.reason, exc.detail, exc.field, exc.rule)

    @classmethod
    def parse(cls, line: str) -> Fault:
        """A dead letter's reason as the consumer wrote it: ``RecordRejected.describe()`` (``<category>:
        <detail> [field <f>, rule <r>]``), ``bad_json: …``, ``retries exhausted after …``, ``broker: …``."""
        line = line.strip()
        if line.startswith("retries exhausted"):
            return cls("retries_exhausted", line)
        head = _HEAD.match(line)
        if head is None:
            return cls("rejected", line)
        category, rest = head["category"], head["rest"]
        tail = _TAIL.search(rest)
        if tail is None:
            return cls(category, rest)
        return cls(category, rest[:tail.start()], tail["field"], tail["rule"])

    @property
    def names_its_field(self) -> bool:
        return self.rule is not None or self.category in _NOT_A_FIELD

    def reason(self) -> str:
        """Bilingual: the Chinese sentence for people, then the category, rule and detail in English."""
        text = _CATEGORY_TEXT.get(self.category, _DEFAULT_TEXT)
        if self.field:
            text += f"：字段 {self.field} 违反规则 {self.rule or self.category}"
        elif self.rule and self.rule != self.category:
            text += f"：违反规则 {self.rule}"
        return f"{text} ({self.category}: {self.detail})"[:2000]

    def errors(self) -> list[dict[str, Any]]:
        """The offending field and rule; a fault of the whole message (bad JSON, a defect) has no field; a
        message that was never found at fault (retries exhausted, the broker's dead-lettering) has none."""
        if self.rule is None and self.field is None and self.category in _NOT_THE_MESSAGES_FAULT:
            return []
        return [{"field": self.field, "rule": (self.rule or self.category)[:64], "message": self.detail[:2000]}]


_NOT_THE_MESSAGES_FAULT = frozenset({"retries_exhausted", "broker", "transient"})
_HEAD = re.compile(r"^(?P<category>[a-z_]{2,64}): (?P<rest>.*)$", re.DOTALL)
_TAIL = re.compile(r"\s*\[(?:field (?P<field>\S+), )?rule (?P<rule>\S+)\]$")


def tell_partner(
    session: Session, *, partner_code: str, message_id: str | None, outcome: str, routing_key: str, fault: Fault,
    now: datetime,
) -> PartnerRejection | None:
    """Record the decision and write its ``partner.rejected.v1`` event to the outbox, in the caller's
    transaction; None when the partner already heard of this message with this outcome, or is unknown."""
    partner = _partner(session, partner_code)
    if partner is None:
        return None  # not a partner the hub knows: nobody to tell (the dead letter keeps the reason)
    message_id = message_id[:MAX_ID] if message_id else None
    if message_id is not None and session.scalar(select(PartnerRejection.id).where(
            PartnerRejection.partner_code == partner.code, PartnerRejection.message_id == message_id,
            PartnerRejection.outcome == outcome)) is not None:
        return None
    event = outbox.message(event_type=EVENT_TYPE, region_code=partner.region_code, payload={}, occurred_at=now,
                           correlation_id=message_id)
    event.routing_key = routing_key_for(partner.code)
    event.payload = {
        "event_id": str(event.message_id), "type": EVENT_TYPE, "occurred_at": now.isoformat(),
        "partner_code": partner.code, "message_id": message_id, "routing_key": routing_key[:255],
        "outcome": outcome, "reason": fault.reason(), "category": fault.category[:64], "errors": fault.errors(),
    }
    row = PartnerRejection(
        partner_code=partner.code, message_id=message_id, outcome=outcome, routing_key=routing_key[:255],
        category=fault.category[:64], reason=event.payload["reason"], errors=event.payload["errors"],
        event_id=event.message_id, received_at=now,
    )
    session.add_all([event, row])
    return row


def _partner(session: Session, source: str) -> Partner | None:
    """The partner by its code, or by its AMQP user name (``<vhost>.<code>`` outside vhost "/")."""
    partner = find_partner(session, source)
    if partner is None:
        code = getattr(directory(session), "by_amqp_user", {}).get(source)
        partner = find_partner(session, code) if code else None
    return partner


# --- REST ------------------------------------------------------------------------------------------


def tell_rejected_records(
    session: Session, *, partner: Partner, envelopes: Sequence[Any], rejections: Sequence[RecordRejected | None],
    now: datetime,
) -> None:
    """The batch's records answered ``rejected``, each told to its partner as AMQP would have."""
    for envelope, rejected in zip(envelopes, rejections, strict=True):
        if rejected is not None:
            tell_partner(session, partner_code=partner.code, message_id=_envelope_id(envelope), outcome=REJECTED,
                         routing_key=rest_routing_key(partner.code, envelope), fault=Fault.of(rejected), now=now)


def rest_routing_key(partner_code: str, envelope: Any) -> str:
    """The routing key a REST record would have had over AMQP: ``<code>.<type>.v<version>``."""
    kind = envelope.get("type") if isinstance(envelope, dict) else None
    version = envelope.get("version") if isinstance(envelope, dict) else None
    if isinstance(kind, str) and _WORD.match(kind) and isinstance(version, int) and not isinstance(version, bool):
        return f"{partner_code}.{kind}.v{version}"
    return f"{partner_code}.rest"


_WORD = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def _envelope_id(envelope: Any) -> str | None:
    value = envelope.get("message_id") if isinstance(envelope, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID else None


# --- AMQP dead letters -----------------------------------------------------------------------------


def tell_dead_letter(
    session: Session, *, source: str | None, from_hub: bool, message_id: str | None, routing_key: str, body: bytes,
    reason: str, now: datetime,
) -> PartnerRejection | None:
    """A dead letter being stored, told to the partner that sent it (``source``: the authenticated sender,
    None for a message that had none — then nobody is told). ``from_hub``: the hub dead-lettered it itself
    with its reason (``rejected``, unless its retries were exhausted); else the broker did (``dead_lettered``)."""
    if not source:
        return None
    envelope = _json(body)
    fault = Fault.parse(reason)
    if not fault.names_its_field and envelope is not None:
        fault = _recheck(session, envelope, source, fault)  # the reason was cut short: ask the checks again
    outcome = REJECTED if from_hub and fault.category != "retries_exhausted" else DEAD_LETTERED
    return tell_partner(session, partner_code=source, message_id=_envelope_id(envelope) or message_id,
                        outcome=outcome, routing_key=routing_key, fault=fault, now=now)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _recheck(session: Session, envelope: Any, source: str, fault: Fault) -> Fault:
    """The field and rule of a rejection whose stored reason lost them (reasons are capped in AMQP headers):
    the checks are pure and read-only, so asking them again names the same fault."""
    from hub.exchange import service  # service imports much; only this path needs it

    begin_for_savepoints(session)  # a failed read must not spoil the dead letter's transaction
    try:
        with session.begin_nested():
            service.check(session, envelope=envelope, authenticated_source=source)
    except RecordRejected as exc:
        if exc.reason == fault.category:
            return Fault(fault.category, fault.detail, exc.field, exc.rule)
    except Exception:  # best effort: the reason as stored is still the answer
        pass
    return fault


# --- GET /api/v1/exchange/records/{message_id} -------------------------------------------------------

_INBOX_STATUS = {"applied", "duplicate", "held", "stale"}


def record_status(session: Session, *, partner_code: str, message_id: str) -> dict[str, Any]:
    """What became of one message of this partner: the inbox if it applied, else what it was told, else its
    dead letter (one stored before rejections were recorded); 404 for an unknown id or another partner's."""
    applied = _inbox_status(session, partner_code, message_id)
    if applied is not None:
        return applied
    told = session.scalars(select(PartnerRejection).where(
        PartnerRejection.partner_code == partner_code, PartnerRejection.message_id == message_id[:MAX_ID])
        .order_by(PartnerRejection.id.desc()).limit(1)).first()
    if told is not None:
        return _status(message_id, partner_code, told.outcome, told.received_at, None, told.reason,
                       list(told.errors or []))
    letter = session.scalars(select(DeadLetter).where(
        DeadLetter.source == partner_code, DeadLetter.message_id == message_id[:MAX_ID])
        .order_by(DeadLetter.id.desc()).limit(1)).first()
    if letter is not None:
        fault = Fault.parse(letter.reason)
        return _status(message_id, partner_code, DEAD_LETTERED, letter.received_at, None, fault.reason(),
                       fault.errors())
    raise NotFound(f"本伙伴没有消息 {message_id[:MAX_ID]} 的记录 (no message with this id from partner "
                   f"{partner_code}; it may still be queued)")


def _inbox_status(session: Session, partner_code: str, message_id: str) -> dict[str, Any] | None:
    try:
        key = uuid.UUID(message_id)
    except ValueError:
        return None  # the inbox holds UUIDs only
    row = session.get(InboxMessage, (partner_code, key))
    if row is None:
        return None
    tracking_no = session.scalar(select(Case.tracking_no).where(Case.id == row.case_id)) if row.case_id else None
    status = row.outcome if row.outcome in _INBOX_STATUS else "applied"
    return _status(str(key), partner_code, status, row.received_at, tracking_no, None, [])


def _status(message_id: str, partner_code: str, status: str, received_at: datetime, tracking_no: str | None,
            reason: str | None, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"message_id": message_id, "partner_code": partner_code, "status": status, "received_at": received_at,
            "tracking_no": tracking_no, "reason": reason, "errors": errors}
