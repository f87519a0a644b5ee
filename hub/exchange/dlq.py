"""Dead letters: every message the hub could not apply, kept with its reason, replayable."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.errors import NotFound
from hub.exchange.models import DeadLetter

REPLAY_HEADER = "x-hub-replay-of"


def store(
    session: Session, *, body: bytes, routing_key: str, headers: dict[str, Any], message_id: str | None,
    source: str | None, reason: str, now: datetime,
) -> DeadLetter:
    letter = DeadLetter(
        message_id=message_id, routing_key=routing_key, source=source, reason=reason[:2000],
        headers=_jsonable(headers), body=body.decode("utf-8", errors="replace"), received_at=now,
    )
    session.add(letter)
    session.flush()
    return letter


def _jsonable(headers: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(headers, default=str))


def list_letters(session: Session, *, pending_only: bool = True, limit: int = 100) -> list[DeadLetter]:
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if pending_only:
        query = query.where(DeadLetter.replayed_at.is_(None))
    return list(session.scalars(query))


def get_letter(session: Session, letter_id: int) -> DeadLetter:
    letter = session.get(DeadLetter, letter_id)
    if letter is None:
        raise NotFound(f"死信 {letter_id} 不存在 (unknown dead letter)")
    return letter


Republish = Callable[[DeadLetter], None]


def replay(session: Session, *, letter_ids: Sequence[int], republish: Republish, now: datetime) -> int:
    """Send dead letters back to the inbound queue (after the cause was fixed); marks them replayed."""
    count = 0
    for letter_id in letter_ids:
        letter = get_letter(session, letter_id)
        if letter.replayed_at is not None:
            continue
        republish(letter)
        letter.replayed_at = now
        count += 1
    session.flush()
    return count
