"""Case events are append-only and hash-chained; verification says which case and event broke."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.cases.models import Case, CaseEvent


@dataclass(frozen=True)
class NewEvent:
    action: str
    to_state: str
    actor_type: str
    actor_id: str
    actor_name: str
    occurred_at: datetime
    from_state: str | None = None
    step: str | None = None
    department_id: int | None = None
    opinion: str | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class Finding:
    tracking_no: str
    seq: int | None
    problem: str
    detail: str


def append_event(session: Session, case: Case, new: NewEvent) -> CaseEvent:
    event = CaseEvent(
        case=case,
        seq=case.event_count + 1,
        action=new.action,
        step=new.step,
        from_state=new.from_state,
        to_state=new.to_state,
        actor_type=new.actor_type,
        actor_id=new.actor_id,
        actor_name=new.actor_name,
        department_id=new.department_id,
        opinion=new.opinion,
        occurred_at=new.occurred_at,
        data=new.data or {},
        prev_hash=case.last_event_hash,
    )
    event.hash = event_digest(case.tracking_no, event)
    case.event_count = event.seq
    case.last_event_hash = event.hash
    session.add(event)
    return event


def event_digest(tracking_no: str, event: CaseEvent) -> str:
    body = {
        "case": tracking_no,
        "seq": event.seq,
        "action": event.action,
        "step": event.step,
        "from": event.from_state,
        "to": event.to_state,
        "actor": [event.actor_type, event.actor_id, event.actor_name],
        "department_id": event.department_id,
        "opinion": event.opinion,
        "at": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "data": event.data,
        "prev": event.prev_hash,
    }
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def verify(session: Session, *, tracking_no: str | None = None) -> tuple[int, list[Finding]]:
    """Walk every case's chain; return how many events were checked and what is wrong."""
    cases = select(Case.id, Case.tracking_no, Case.event_count, Case.last_event_hash)
    if tracking_no:
        cases = cases.where(Case.tracking_no == tracking_no)
    findings: list[Finding] = []
    checked = 0
    for case_id, number, count, head in session.execute(cases.order_by(Case.id)):
        events = session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq)
        ).all()
        checked += len(events)
        findings.extend(_verify_chain(number, count, head, list(events)))
    return checked, findings


def _verify_chain(
    number: str, count: int, head: str | None, events: list[CaseEvent]
) -> list[Finding]:
    findings: list[Finding] = []
    previous_hash: str | None = None
    expected_seq = 1
    for event in events:
        if event.seq != expected_seq:
            missing = ", ".join(str(s) for s in range(expected_seq, event.seq))
            findings.append(Finding(number, expected_seq, "deleted", f"事件 {missing} 缺失 (deleted)"))
        elif event.prev_hash != previous_hash:
            findings.append(Finding(number, event.seq, "chain_broken", "前序哈希不一致 (chain broken)"))
        if event_digest(number, event) != event.hash:
            findings.append(Finding(number, event.seq, "edited", "事件内容与哈希不符 (edited)"))
        previous_hash = event.hash
        expected_seq = event.seq + 1
    if count > len(events) and (not events or events[-1].seq < count):
        last = events[-1].seq if events else 0
        findings.append(
            Finding(number, last + 1, "deleted", f"末尾事件 {last + 1}..{count} 缺失 (deleted)")
        )
    elif events and head != events[-1].hash:
        findings.append(Finding(number, events[-1].seq, "head_mismatch", "案件记录的链尾哈希不一致"))
    return findings
