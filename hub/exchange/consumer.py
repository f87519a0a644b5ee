"""AMQP handlers: inbound partner records, and the dead letters they may become.

A handler returns ACK only after its transaction committed; a message that can never apply is
rejected with its reason (and lands in the dead-letter queue); a passing failure is retried.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp.messages import SOURCE_HEADER, InboundMessage, Outcome, header_text
from hub.clock import Clock
from hub.db import unit_of_work
from hub.exchange import dlq, service

log = logging.getLogger("hub.exchange.consumer")


@dataclass
class InboundHandler:
    """Applies partner records from `hub.inbound.records`."""

    factory: sessionmaker[Session]
    clock: Clock
    hub_user: str
    audit_key: str

    def __call__(self, message: InboundMessage) -> Outcome:
        source = self._authenticated_source(message)
        if source is None:
            return Outcome.reject("unauthenticated: the message carries no user_id")
        try:
            envelope = json.loads(message.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return Outcome.reject(f"bad_json: {exc}"[:300])
        try:
            with unit_of_work(self.factory) as session:
                result = service.ingest(session, envelope=envelope, authenticated_source=source,
                                        now=self.clock.now(), audit_key=self.audit_key)
        except service.RecordRejected as exc:
            return Outcome.reject(f"{exc.reason}: {exc.detail}")
        except IntegrityError:
            # Another consumer applied the same message at the same moment; the retry finds it done.
            return Outcome.retry("concurrent duplicate")
        except DBAPIError as exc:
            log.warning("database error while applying a record; will retry: %s", type(exc).__name__)
            return Outcome.retry(f"database: {type(exc).__name__}")
        log.info("record %s from %s: %s", message.message_id, source, result.outcome)
        return Outcome.ACK

    def _authenticated_source(self, message: InboundMessage) -> str | None:
        # A dead letter the hub replays is published under the hub's own user; the broker vouched for
        # the original sender when it first arrived, and the hub kept that name in a header.
        if message.user_id == self.hub_user and dlq.REPLAY_HEADER in message.headers:
            return header_text(message.headers, SOURCE_HEADER)
        return message.user_id


@dataclass
class DeadLetterHandler:
    """Moves dead letters from `hub.inbound.dead` into the database, where operators see and replay them."""

    factory: sessionmaker[Session]
    clock: Clock

    def __call__(self, message: InboundMessage) -> Outcome:
        headers: dict[str, Any] = dict(message.headers)
        with unit_of_work(self.factory) as session:
            dlq.store(
                session, body=message.body, routing_key=_original_key(message), headers=headers,
                message_id=message.message_id,
                source=header_text(headers, SOURCE_HEADER) or message.user_id,
                reason=message.reason or _death_reason(headers), now=self.clock.now(),
            )
        return Outcome.ACK


def _original_key(message: InboundMessage) -> str:
    from adapters.amqp.messages import ORIGINAL_ROUTING_KEY_HEADER

    return header_text(message.headers, ORIGINAL_ROUTING_KEY_HEADER) or message.routing_key


def _death_reason(headers: dict[str, Any]) -> str:
    deaths = headers.get("x-death") or []
    if deaths and isinstance(deaths[0], dict):
        return f"broker: {deaths[0].get('reason', 'dead-lettered')}"
    return "dead-lettered without a reason"
