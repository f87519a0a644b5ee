"""How a delivery is settled, shared by the RabbitMQ consumer and the in-process bus so both behave alike.

* ACK → acknowledge.
* DEFER → keep the delivery unsettled and hand it to the handler again with the next batch, first.
* REJECT(reason) → dead-letter with the reason.
* RETRY, or a handler exception → requeue after a backoff delay, except on the last delivery the queue
  allows (``delivery_count >= delivery_limit``): the broker would dead-letter it on this requeue with only
  "delivery_limit" in ``x-death``, so the consumer dead-letters it itself, saying why.
* A message that came from the dead-letter exchange is never dead-lettered again (that would overwrite its
  reason and loop); it is requeued instead.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from adapters.amqp.messages import (
    BROKER_DELIVERY_COUNT_HEADER,
    DEAD_LETTERED_AT_HEADER,
    DELIVERY_COUNT_HEADER,
    FIRST_SEEN_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
    SOURCE_HEADER,
    BatchHandler,
    Handler,
    InboundMessage,
    LanedHandler,
    Outcome,
    OutcomeKind,
)
from adapters.resilience import ResiliencePolicy, backoff_s

log = logging.getLogger("adapters.amqp.consumer")

MAX_REASON_CHARS = 500


class Action(StrEnum):
    ACK = "ack"
    DEFER = "defer"
    REQUEUE = "requeue"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Settlement:
    action: Action
    reason: str | None = None


def settle(message: InboundMessage, outcome: Outcome, delivery_limit: int, *, dead_letter_exchange: str) -> Settlement:
    if outcome.kind is OutcomeKind.ACK:
        return Settlement(Action.ACK)
    if outcome.kind is OutcomeKind.DEFER:
        return Settlement(Action.DEFER)
    if outcome.kind is OutcomeKind.REJECT:
        settlement = Settlement(Action.DEAD_LETTER, outcome.reason)
    elif message.delivery_count >= delivery_limit:
        why = outcome.reason or "handler asked to retry"
        settlement = Settlement(Action.DEAD_LETTER,
                                f"retries exhausted after {message.delivery_count + 1} deliveries; last: {why}")
    else:
        return Settlement(Action.REQUEUE, outcome.reason)
    if message.exchange == dead_letter_exchange:
        # Already a dead letter (e.g. the handler storing dead letters cannot reach its database): sending it
        # round again would replace its reason and loop. It stays where it is and is tried again later.
        log.error("dead letter %s from %s failed again and stays queued: %s", message.message_id, message.queue,
                  settlement.reason)
        return Settlement(Action.REQUEUE, settlement.reason)
    return settlement


def retry_delay_s(message: InboundMessage, policy: ResiliencePolicy) -> float:
    """How long to hold a message before requeueing it: exponential in its delivery count, with jitter."""
    return backoff_s(policy, message.delivery_count + 1)


def run_handler(handler: Handler, message: InboundMessage) -> Outcome:
    """Call the handler; an exception or a wrong return value becomes RETRY, so one bad message never stops
    the consumer. Only the exception's class is logged: its text may quote personal data from the body."""
    try:
        outcome = handler(message)
    except Exception as exc:
        log.warning("handler raised %s for message %s (routing key %s, delivery %d)", type(exc).__name__,
                    message.message_id, message.routing_key, message.delivery_count + 1)
        return Outcome.retry(f"handler raised {type(exc).__name__}")
    if not isinstance(outcome, Outcome):
        log.error("handler returned %s instead of an Outcome for message %s", type(outcome).__name__,
                  message.message_id)
        return Outcome.retry(f"handler returned {type(outcome).__name__}, not an Outcome")
    return outcome


def run_batch_handler(handler: BatchHandler, messages: Sequence[InboundMessage]) -> list[Outcome]:
    """``run_handler`` for a batch: an exception, or not one Outcome per message, retries them all (nothing
    of the batch is taken as done)."""
    try:
        outcomes = list(handler.handle_batch(messages))
    except Exception as exc:
        log.warning("batch handler raised %s for %d message(s) (first %s)", type(exc).__name__, len(messages),
                    messages[0].message_id if messages else None)
        return [Outcome.retry(f"handler raised {type(exc).__name__}")] * len(messages)
    if len(outcomes) != len(messages) or not all(isinstance(o, Outcome) for o in outcomes):
        log.error("batch handler returned %d outcome(s) for %d message(s), or not Outcomes", len(outcomes),
                  len(messages))
        return [Outcome.retry("handler returned no Outcome for each message")] * len(messages)
    return outcomes


def batch_handler(handler: Handler | BatchHandler) -> BatchHandler | None:
    """The handler as a BatchHandler, if it is one (a plain callable handles one message at a time)."""
    return handler if isinstance(handler, BatchHandler) and handler.batch_size > 1 else None


class FirstSeen:
    """When this process first saw each recent message id (bounded), for the ``x-hub-first-seen`` header.
    Best effort by design: another worker or a restart only makes the time later, never wrong in kind."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, message_id: str | None, now: datetime) -> datetime:
        if message_id is None:
            return now
        with self._lock:
            seen = self._seen.setdefault(message_id, now)
            self._seen.move_to_end(message_id)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return seen

    def forget(self, message_id: str | None) -> None:
        if message_id is not None:
            with self._lock:
                self._seen.pop(message_id, None)


def dead_letter_headers(message: InboundMessage, reason: str, *, first_seen: datetime, now: datetime,
                        trusted_publisher: str | None = None) -> dict[str, Any]:
    """The original headers plus where the message came from and why it died.

    ``x-hub-*`` headers are the hub's own and are kept only on a message the hub itself published (its
    ``user_id``, which the broker checks, is ``trusted_publisher``): a replayed dead letter keeps its original
    first-seen time, routing key and source. On anyone else's message they are dropped and the source is the
    broker-checked ``user_id`` — a partner cannot make its dead letter say it came from another partner."""
    trusted = trusted_publisher is not None and message.user_id == trusted_publisher
    headers: dict[str, Any] = {k: v for k, v in message.headers.items()
                               if k != BROKER_DELIVERY_COUNT_HEADER and (trusted or not k.lower().startswith("x-hub-"))}
    headers[REASON_HEADER] = reason[:MAX_REASON_CHARS]
    headers.setdefault(FIRST_SEEN_HEADER, first_seen.isoformat())
    headers.setdefault(ORIGINAL_EXCHANGE_HEADER, message.exchange)
    headers.setdefault(ORIGINAL_ROUTING_KEY_HEADER, message.routing_key)
    headers.setdefault(ORIGINAL_QUEUE_HEADER, message.queue)
    if message.user_id:
        headers.setdefault(SOURCE_HEADER, message.user_id)
    headers[DEAD_LETTERED_AT_HEADER] = now.isoformat()
    headers[DELIVERY_COUNT_HEADER] = message.delivery_count + 1
    return headers


def delivery_count(headers: Mapping[str, Any] | None) -> int:
    value = (headers or {}).get(BROKER_DELIVERY_COUNT_HEADER, 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def laned_handler(handler: Handler | BatchHandler) -> LanedHandler | None:
    """The handler as a LanedHandler, if it is a batch handler with more than one lane."""
    if batch_handler(handler) is None or not isinstance(handler, LanedHandler):
        return None
    return handler if handler.lanes > 1 else None
