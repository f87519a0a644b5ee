"""AMQP handlers: inbound partner records, and the dead letters they may become.

A handler returns ACK only after its transaction committed (the inbound one commits a batch of messages at
once, see ``InboundHandler``); a message that can never apply is
rejected with its reason (and lands in the dead-letter queue); a passing failure is retried.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
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

from adapters.amqp.messages import SOURCE_HEADER, InboundMessage, Outcome, OutcomeKind, header_text
from adapters.amqp.topology import DEAD_LETTER_EXCHANGE
from hub.clock import Clock
from hub.db import unit_of_work
from hub.exchange import dlq, feedback, service

log = logging.getLogger("hub.exchange.consumer")


# Failures that pass by themselves: the database is down or restarting, a deadlock or serialisation failure, a
# pool timeout, another consumer applying the same message at the same moment (IntegrityError: the retry finds
# it done). Everything else about a message is permanent, and retrying it only delays the records behind it.
TRANSIENT = (OperationalError, InterfaceError, IntegrityError, SqlTimeoutError, DisconnectionError)


def authenticated_source(message: InboundMessage, hub_user: str, factory: sessionmaker[Session] | None = None,
                         known: dict[str, str] | None = None) -> str | None:
    """Who sent the message, as far as the broker proves it: the AMQP ``user_id``, which RabbitMQ checks
    against the connection's user. Headers are a partner's to set and prove nothing — except on a message
    the hub itself published (its own ``user_id``): a dead letter, or a replayed one, carries the source the
    broker proved when it first arrived.

    A partner's RabbitMQ user need not be named as its code (``<vhost>.<code>`` outside vhost ``/``), so
    with ``factory`` the user is mapped to its partner's code through the partner directory (cached: no
    query while it is current); a user no partner has stays as it is, and is refused as an unknown partner.
    ``known``: the users already mapped in this batch (user → source), filled here — a batch's messages come
    from a handful of users, and a session per message to ask the directory was ≈2 % of a record's CPU."""
    from_hub = bool(message.user_id) and message.user_id == hub_user
    if from_hub and (dlq.REPLAY_HEADER in message.headers or message.exchange == DEAD_LETTER_EXCHANGE):
        # The dead-letter copy names the partner's user; a replay, the code stored with the dead letter.
        user = header_text(message.headers, SOURCE_HEADER) or None
    elif from_hub:
        return message.user_id
    else:
        user = message.user_id or None
    if user is None or factory is None:
        return user
    if known is not None and user in known:
        return known[user]
    from hub.exchange.partners import partner_of_amqp_user

    with factory() as session:
        source = partner_of_amqp_user(session, user) or user
    if known is not None:
        known[user] = source
    return source


@dataclass
class InboundHandler:
    """Applies partner records from `hub.inbound.records`, in batches.

    The consumer hands it up to ``batch_size`` prefetched deliveries (waiting at most ``batch_wait_s`` for
    more once one is there, so a lone message is not held back). They are applied in one transaction —
    optimistically in one SAVEPOINT, and again with a SAVEPOINT per message only when a write fails
    (``service.ingest_batch``) — committed once; only then does the consumer ack them all — still
    at-least-once, still ack after commit.

    A record that can never apply is dead-lettered at once with its reason, field and rule; only transient
    failures (``TRANSIENT``) are retried, so poison never holds back the records queued behind it.
    Transient failures: one message's (its savepoint rolled back, e.g. another consumer applying the same
    message id) retries that message alone, the others commit; the transaction's (the database went away,
    the commit failed) retries the whole batch — nothing of it was committed. Any other failure of the
    batch's transaction applies its messages again one per transaction, so one bad message cannot take
    the others with it.

    With ``lanes`` > 1 the consumer applies batches on that many threads at once (adapters/amqp/lanes.py),
    each delivery on the lane of its case (``lane_of``): one case's records are applied by one thread, in
    arrival order, and the lanes never wait for each other's cases."""

    factory: sessionmaker[Session]
    clock: Clock
    hub_user: str
    audit_key: str
    batch_size: int = 50
    batch_wait_s: float = 0.01
    lanes: int = 1
    tally: service.IngestTally = field(default_factory=service.IngestTally)  # outcomes so far (heartbeat)

    def lane_of(self, message: InboundMessage) -> int:
        """The lane of the message's case: its authenticated partner and the partner's case id
        (``payload.external_id``), as the case's advisory lock names it. A message that names no case goes to
        lane 0, where it is refused as it would be anywhere."""
        if self.lanes <= 1:
            return 0
        key = _case_key(message, self.hub_user, self.factory)
        return 0 if key is None else zlib.crc32(key.encode("utf-8", "surrogatepass")) % self.lanes

    def __call__(self, message: InboundMessage) -> Outcome:
        return self.handle_batch([message])[0]

    def handle_batch(self, messages: Sequence[InboundMessage]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(messages)
        work: list[tuple[int, Any, str]] = []  # (index, envelope, authenticated source)
        known: dict[str, str] = {}  # the batch's users, mapped to their partners once
        for index, message in enumerate(messages):
            decoded = _decode(message, self.hub_user, self.factory, known)
            if isinstance(decoded, Outcome):
                outcomes[index] = decoded
            else:
                work.append((index, *decoded))
        if work:
            for index, outcome in zip((i for i, _, _ in work), self._apply(messages, work), strict=True):
                outcomes[index] = outcome
        done = [o if o is not None else Outcome.retry("not handled") for o in outcomes]
        self._count(done)
        return done

    def _count(self, outcomes: Sequence[Outcome]) -> None:
        kinds = [o.kind for o in outcomes]
        self.tally.add(batches=1, records=len(kinds), acked=kinds.count(OutcomeKind.ACK),
                       deferred=kinds.count(OutcomeKind.DEFER), rejected=kinds.count(OutcomeKind.REJECT),
                       retried=kinds.count(OutcomeKind.RETRY))

    def _apply(self, messages: Sequence[InboundMessage], work: list[tuple[int, Any, str]]) -> list[Outcome]:
        try:
            with unit_of_work(self.factory) as session:
                applied = service.ingest_batch(session, envelopes=[(e, s) for _, e, s in work],
                                               now=self.clock.now(), audit_key=self.audit_key, tally=self.tally)
        except TRANSIENT as exc:
            log.warning("transient failure while applying a batch of %d record(s); will retry: %s", len(work),
                        type(exc).__name__)
            return [Outcome.retry(f"transient: {type(exc).__name__}")] * len(work)
        except Exception as exc:
            if len(work) == 1:
                index, _, source = work[0]
                return [_outcome(messages[index], source, service.Applied(error=exc))]
            log.exception("a batch of %d record(s) failed as a whole; applying them one by one", len(work))
            return [self._apply(messages, [one])[0] for one in work]
        return [_outcome(messages[index], source, done)
                for (index, _, source), done in zip(work, applied, strict=True)]


def _decode(message: InboundMessage, hub_user: str, factory: sessionmaker[Session] | None = None,
            known: dict[str, str] | None = None) -> tuple[Any, str] | Outcome:
    """The envelope and its authenticated sender, or the rejection of a message that has neither."""
    source = authenticated_source(message, hub_user, factory, known)
    if source is None:
        return Outcome.reject("unauthenticated: the message carries no user_id")
    try:
        return json.loads(message.body), source
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Outcome.reject(f"bad_json: {exc}"[:300])


def _case_key(message: InboundMessage, hub_user: str, factory: sessionmaker[Session]) -> str | None:
    decoded = _decode(message, hub_user, factory)
    if isinstance(decoded, Outcome):
        return None
    envelope, source = decoded
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    external_id = payload.get("external_id") if isinstance(payload, dict) else None
    return f"{source}\x00{external_id}" if isinstance(external_id, str) else None


def _outcome(message: InboundMessage, source: str, applied: service.Applied) -> Outcome:
    if applied.deferred:  # its case is another worker's until that one commits: handed over again next batch
        return Outcome.DEFER
    if applied.result is not None:
        log.info("record %s from %s: %s", message.message_id, source, applied.result.outcome)
        return Outcome.ACK
    if applied.rejected is not None:
        return Outcome.reject(applied.rejected.describe())
    exc = applied.error
    if isinstance(exc, TRANSIENT):
        log.warning("transient failure while applying record %s; will retry: %s", message.message_id,
                    type(exc).__name__)
        return Outcome.retry(f"transient: {type(exc).__name__}")
    if isinstance(exc, DBAPIError):
        # The database refused this message's data (DataError and the like): it will refuse it again.
        log.error("database refused record %s from %s: %s", message.message_id, source, type(exc).__name__)
        return Outcome.reject(f"database_refused: {type(exc).__name__}")
    # A defect met by this message: retrying cannot help; replay it once the defect is fixed. Only the class
    # is given: the text may quote personal data from the body.
    log.error("internal error applying record %s from %s", message.message_id, source, exc_info=exc)
    return Outcome.reject(f"internal_error: {type(exc).__name__}")


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
            letter = dlq.store(
                session, body=message.body,
                routing_key=_original_key(message) if from_hub else message.routing_key, headers=headers,
                message_id=message.message_id, source=authenticated_source(message, self.hub_user, self.factory),
                reason=(message.reason if from_hub else None) or _death_reason(headers), now=self.clock.now(),
            )
            # The partner hears of it in the same transaction (hub/exchange/feedback.py).
            feedback.tell_dead_letter(session, source=letter.source, from_hub=from_hub, message_id=letter.message_id,
                                      routing_key=letter.routing_key, body=message.body, reason=letter.reason,
                                      now=letter.received_at)
        return Outcome.ACK


def _original_key(message: InboundMessage) -> str:
    from adapters.amqp.messages import ORIGINAL_ROUTING_KEY_HEADER

    return header_text(message.headers, ORIGINAL_ROUTING_KEY_HEADER) or message.routing_key


def _death_reason(headers: dict[str, Any]) -> str:
    deaths = headers.get("x-death") or []
    if deaths and isinstance(deaths[0], dict):
        return f"broker: {deaths[0].get('reason', 'dead-lettered')}"
    return "dead-lettered without a reason"
