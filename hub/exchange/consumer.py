"""AMQP handlers: inbound partner records, and the dead letters they may become.

A handler returns ACK only after its transaction committed; a message that can never apply is
rejected with its reason (and lands in the dead-letter queue); a passing failure is retried.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as SqlTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp.messages import SOURCE_HEADER, InboundMessage, Outcome, header_text
from adapters.amqp.topology import DEAD_LETTER_EXCHANGE
from hub.clock import Clock
from hub.db import unit_of_work
from hub.exchange import dlq, service

log = logging.getLogger("hub.exchange.consumer")


# Failures that pass by themselves: the database is down or restarting, a deadlock or serialisation failure, a
# pool timeout, another consumer applying the same message at the same moment (IntegrityError: the retry finds
# it done). Everything else about a message is permanent, and retrying it only delays the records behind it.
TRANSIENT = (OperationalError, InterfaceError, IntegrityError, SqlTimeoutError, DisconnectionError)


def authenticated_source(message: InboundMessage, hub_user: str) -> str | None:
    """Who sent the message, as far as the broker proves it: the AMQP ``user_id``, which RabbitMQ checks
    against the connection's user. Headers are a partner's to set and prove nothing — except on a message
    the hub itself published (its own ``user_id``): a replayed dead letter carries the source the broker
    proved when it first arrived."""
    from_hub = bool(message.user_id) and message.user_id == hub_user
    if from_hub and (dlq.REPLAY_HEADER in message.headers or message.exchange == DEAD_LETTER_EXCHANGE):
        return header_text(message.headers, SOURCE_HEADER) or None
    return message.user_id or None


@dataclass
class InboundHandler:
    """Applies partner records from `hub.inbound.records`.

    A record that can never apply is dead-lettered at once with its reason, field and rule; only transient
    failures (``TRANSIENT``) are retried, so poison never holds back the records queued behind it."""

    factory: sessionmaker[Session]
    clock: Clock
    hub_user: str
    audit_key: str

    def __call__(self, message: InboundMessage) -> Outcome:
        source = authenticated_source(message, self.hub_user)
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
            return Outcome.reject(exc.describe())
        except TRANSIENT as exc:
            log.warning("transient failure while applying a record; will retry: %s", type(exc).__name__)
            return Outcome.retry(f"transient: {type(exc).__name__}")
        except DBAPIError as exc:
            # The database refused this message's data (DataError and the like): it will refuse it again.
            log.error("database refused record %s from %s: %s", message.message_id, source, type(exc).__name__)
            return Outcome.reject(f"database_refused: {type(exc).__name__}")
        except Exception as exc:
            # A defect met by this message: retrying cannot help; replay it once the defect is fixed. Only the
            # class is given: the text may quote personal data from the body.
            log.exception("internal error applying record %s from %s", message.message_id, source)
            return Outcome.reject(f"internal_error: {type(exc).__name__}")
        log.info("record %s from %s: %s", message.message_id, source, result.outcome)
        return Outcome.ACK


@dataclass
class DeadLetterHandler:
    """Moves dead letters from `hub.inbound.dead` into the database, where operators see and replay them.

    The stored source is the authenticated one (see ``authenticated_source``), never a partner's header, so a
    replay is applied as the partner that really sent the message."""

    factory: sessionmaker[Session]
    clock: Clock
    hub_user: str

    def __call__(self, message: InboundMessage) -> Outcome:
        headers: dict[str, Any] = dict(message.headers)
        # The hub's own dead letters (its user_id) carry trustworthy x-hub-* headers; a message the broker
        # dead-lettered itself still has the partner's properties and headers.
        from_hub = bool(message.user_id) and message.user_id == self.hub_user
        with unit_of_work(self.factory) as session:
            dlq.store(
                session, body=message.body,
                routing_key=_original_key(message) if from_hub else message.routing_key, headers=headers,
                message_id=message.message_id, source=authenticated_source(message, self.hub_user),
                reason=(message.reason if from_hub else None) or _death_reason(headers), now=self.clock.now(),
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
