"""Checkpoints of every chain head (`audit.checkpoint.v1`), published so partners hold a copy.

A checkpoint lists, for every case, its tracking number, last event seq and head MAC, and carries a MAC
over that list made with the audit key. A partner cannot check the MAC, but it keeps the message; when
the hub's history is in doubt, `hub audit verify --checkpoint FILE` checks the MAC (so the copy is a
real checkpoint) and compares it with the chains as they are now: a head that changed at the same seq,
a seq that went down, a case that vanished, or an event that no longer has the MAC it had — each is a
rewrite that nobody holding only the database could have made to match.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text, tuple_
from sqlalchemy.orm import Session

from hub.audit.service import Finding
from hub.cases.models import Case, CaseEvent
from hub.org.models import Region
from hub.outbox import service as outbox
from hub.outbox.models import OutboxMessage

EVENT_TYPE = "audit.checkpoint.v1"
ALGORITHM = "hmac-sha256"
CHUNK = 500


def chain_heads(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Case.tracking_no, Case.event_count, Case.last_event_hash).order_by(Case.tracking_no)
    )
    return [{"tracking_no": number, "seq": seq, "head": head} for number, seq, head in rows]


def build(session: Session, *, key: str, now: datetime) -> dict[str, Any]:
    heads = chain_heads(session)
    at = now.astimezone(UTC).isoformat(timespec="microseconds")
    return {"checkpoint_at": at, "algorithm": ALGORITHM, "case_count": len(heads), "heads": heads,
            "mac": checkpoint_mac(at, heads, key=key)}


def checkpoint_mac(at: str, heads: Sequence[dict[str, Any]], *, key: str) -> str:
    canonical = json.dumps({"checkpoint_at": at, "heads": list(heads)}, sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"))
    return hmac.new(key.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def emit(session: Session, *, key: str, now: datetime) -> OutboxMessage:
    """Write one checkpoint to the outbox; the relay publishes it on `hub.events` like every event."""
    return outbox.enqueue(session, event_type=EVENT_TYPE, region_code=_province(session),
                          payload=build(session, key=key, now=now), occurred_at=now)


def emit_if_due(session: Session, *, key: str, now: datetime, interval_s: float) -> OutboxMessage | None:
    """The worker's periodic job: a checkpoint when the last one (by any worker) is `interval_s` old."""
    if session.get_bind().dialect.name == "postgresql":  # several workers: one checkpoint, not one each
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('audit-checkpoint', 0))"))
    # The newest checkpoint written, not the latest time: one stamped far ahead (a process whose clock ran
    # fast) must not silence the checkpoints for as long as that clock was ahead.
    last = session.scalar(select(OutboxMessage.occurred_at).where(OutboxMessage.type == EVENT_TYPE)
                          .order_by(OutboxMessage.id.desc()).limit(1))
    if last is not None and abs(now - last) < timedelta(seconds=interval_s):
        return None
    return emit(session, key=key, now=now)


def _province(session: Session) -> str:
    # The checkpoint concerns the whole province: the region at the root of the tree.
    code = session.scalar(select(Region.code).where(Region.parent_code.is_(None)).order_by(Region.code).limit(1))
    return code or "000000"


# --- comparing a saved checkpoint with the chains as they are now ----------------------------


def load(document: Any) -> dict[str, Any]:
    """The checkpoint payload from a saved message: the whole envelope as received, or its payload."""
    if isinstance(document, dict) and isinstance(document.get("payload"), dict):
        document = document["payload"]
    if not isinstance(document, dict) or not isinstance(document.get("heads"), list):
        raise ValueError("not an audit.checkpoint.v1 message (no payload.heads list)")
    return document


def compare(session: Session, *, checkpoint: dict[str, Any], key: str) -> list[Finding]:
    heads = checkpoint["heads"]
    at = str(checkpoint.get("checkpoint_at"))
    if not hmac.compare_digest(checkpoint_mac(at, heads, key=key), str(checkpoint.get("mac", ""))):
        return [Finding("-", None, "checkpoint_invalid",
                        "检查点的 MAC 不符：不是本平台签发的检查点，或已被改动 (checkpoint MAC does not verify)")]
    findings: list[Finding] = []
    for chunk in _chunks(heads):
        findings.extend(_compare_chunk(session, chunk, at))
    return findings


def _compare_chunk(session: Session, saved: list[dict[str, Any]], at: str) -> list[Finding]:
    numbers = [h["tracking_no"] for h in saved]
    current = {n: (seq, head) for n, seq, head in session.execute(
        select(Case.tracking_no, Case.event_count, Case.last_event_hash).where(Case.tracking_no.in_(numbers)))}
    pairs = [(h["tracking_no"], h["seq"]) for h in saved if h["seq"]]
    macs = {(n, s): h for n, s, h in session.execute(
        select(Case.tracking_no, CaseEvent.seq, CaseEvent.hash).join(CaseEvent, CaseEvent.case_id == Case.id)
        .where(tuple_(Case.tracking_no, CaseEvent.seq).in_(pairs)))} if pairs else {}
    findings = []
    for head in saved:
        number, seq = head["tracking_no"], head["seq"]
        if number not in current:
            findings.append(Finding(number, seq, "case_deleted", f"检查点 {at} 记录的办件已不存在 (case deleted)"))
            continue
        now_seq, now_head = current[number]
        if now_seq < seq:
            findings.append(Finding(number, seq, "seq_decreased",
                                    f"事件数由检查点 {at} 的 {seq} 降为 {now_seq} (events removed)"))
        elif now_seq == seq and now_head != head["head"]:
            findings.append(Finding(number, seq, "head_changed",
                                    f"链尾与检查点 {at} 不符 (head rewritten since the checkpoint)"))
        elif seq and macs.get((number, seq)) != head["head"]:
            findings.append(Finding(number, seq, "history_rewritten",
                                    f"事件 {seq} 的 MAC 与检查点 {at} 不符 (event rewritten since the checkpoint)"))
    return findings


def _chunks(heads: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(heads), CHUNK):
        yield heads[start:start + CHUNK]
