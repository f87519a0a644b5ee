"""What an operator asks first: is anything stuck between the hub and its partners?"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.exchange.models import DeadLetter, InboxMessage, PendingEvent
from hub.exchange.shards import holders
from hub.outbox.relay import backlog


def exchange_overview(session: Session, *, shards: int = 0) -> dict[str, Any]:
    """``shards``: HUB_INGEST_SHARDS; when routing by case is on, which worker holds which shard is shown too."""
    inbox = dict(session.execute(
        select(InboxMessage.outcome, func.count()).group_by(InboxMessage.outcome)).all())
    waiting = session.scalar(select(func.count()).where(DeadLetter.replayed_at.is_(None))) or 0
    reasons = dict(session.execute(
        select(DeadLetter.reason, func.count()).where(DeadLetter.replayed_at.is_(None))
        .group_by(DeadLetter.reason).order_by(func.count().desc()).limit(10)).all())
    # Which partner's records are refused: the first thing an operator asks about dead letters after how many.
    by_partner = dict(session.execute(
        select(func.coalesce(DeadLetter.source, "(unknown)"), func.count()).where(DeadLetter.replayed_at.is_(None))
        .group_by(DeadLetter.source).order_by(func.count().desc()).limit(20)).all())
    held = session.scalar(select(func.count()).select_from(PendingEvent)) or 0
    return {
        "outbox": backlog(session),
        "inbox": inbox,
        "dead_letters_waiting": waiting,
        "dead_letter_reasons": reasons,
        "dead_letters_by_partner": by_partner,
        "held_out_of_order_events": held,
        **({"case_shards": shard_holders(session, shards)} if shards > 0 else {}),
    }


def shard_holders(session: Session, shards: int) -> dict[str, str]:
    """Shard queue number → the worker consuming it ("hub-worker <host> <pid>"), or "nobody" (then no worker runs,
    or one is about to take it: within ``ingest_shard_rebalance_s``). Leases are PostgreSQL's: SQLite cannot
    tell, and there one worker holds every shard."""
    if session.get_bind().dialect.name != "postgresql":
        return {str(shard): "unknown (SQLite: one worker holds every shard)" for shard in range(shards)}
    held = {h.shard: h.name or f"pid {h.pid}" for h in holders(session.connection())}
    return {str(shard): held.get(shard, "nobody") for shard in range(shards)}
