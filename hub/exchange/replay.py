"""How a dead letter goes back in: over RabbitMQ when the hub has one, else applied directly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from adapters.amqp import make_bus
from adapters.amqp.messages import SOURCE_HEADER, OutboundMessage
from adapters.amqp.topology import INBOUND_EXCHANGE
from hub.clock import SystemClock
from hub.errors import Conflict
from hub.exchange import dlq, service
from hub.exchange.models import DeadLetter
from hub.settings import Settings


@contextmanager
def republisher(settings: Settings, session: Session) -> Iterator[dlq.Republish]:
    if not settings.amqp_url:
        yield lambda letter: _apply_directly(session, letter, settings.audit_key)
        return
    bus = make_bus(settings.amqp_url)
    try:
        yield lambda letter: bus.publish(_message(letter))
    finally:
        bus.close()


def _source(letter: DeadLetter) -> str:
    """The sender the broker proved when the letter first arrived (stored by the dead-letter handler); a
    replay is applied as that partner and no other."""
    if not letter.source:
        raise Conflict(f"死信 {letter.id} 没有经认证的发送方，不能重放 (no authenticated source; cannot replay)")
    return letter.source


def _message(letter: DeadLetter) -> OutboundMessage:
    headers = {dlq.REPLAY_HEADER: str(letter.id), SOURCE_HEADER: _source(letter)}
    return OutboundMessage(
        exchange=INBOUND_EXCHANGE, routing_key=letter.routing_key, body=letter.body.encode(),
        type=str(letter.headers.get("type") or "record"), message_id=letter.message_id or str(letter.id),
        headers=headers,
    )


def _apply_directly(session: Session, letter: DeadLetter, audit_key: str) -> None:
    try:
        with session.begin_nested():
            service.ingest(session, envelope=json.loads(letter.body), authenticated_source=_source(letter),
                           now=SystemClock().now(), audit_key=audit_key)
    except (service.RecordRejected, ValueError) as exc:
        raise Conflict(f"死信 {letter.id} 仍无法处理 (still fails): {exc}") from exc
