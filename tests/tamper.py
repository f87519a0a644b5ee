"""What someone with write access to the database but without the audit key can do to the chain."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.cases.models import Case, CaseEvent


def old_plain_digest(number: str, event: CaseEvent, prev: str | None) -> str:
    """What the hub computed before issue 7, and what anyone can recompute without a key."""
    body = {"case": number, "seq": event.seq, "action": event.action, "step": event.step,
            "from": event.from_state, "to": event.to_state,
            "actor": [event.actor_type, event.actor_id, event.actor_name],
            "department_id": event.department_id, "opinion": event.opinion,
            "at": event.occurred_at.isoformat(timespec="microseconds"), "data": event.data, "prev": prev}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def rewrite_with_plain_hashes(engine: Engine, session_factory: sessionmaker[Session], number: str, *,
                              edit_seq: int | None = None, drop_row_seal: bool = False) -> None:
    """An attacker with database access edits an opinion and recomputes the whole chain, unkeyed."""
    with session_factory() as session:
        events = session.scalars(select(CaseEvent).join(Case).where(Case.tracking_no == number)
                                 .order_by(CaseEvent.seq)).unique().all()
        prev: str | None = None
        with engine.begin() as c:
            for event in events:
                if event.seq == edit_seq:
                    event.opinion = "不同意"
                digest = old_plain_digest(number, event, prev)
                c.execute(text("UPDATE case_events SET opinion = :o, prev_hash = :p, hash = :h"
                               + (", case_row = NULL" if drop_row_seal else "") + " WHERE id = :i"),
                          {"o": event.opinion, "p": prev, "h": digest, "i": event.id})
                prev = digest
            c.execute(text("UPDATE cases SET last_event_hash = :h WHERE tracking_no = :n"), {"h": prev, "n": number})
