"""What goes over the bus: outbound messages, delivered messages, and what a handler says about one."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

JSON = "application/json"
PERSISTENT = 2

# Headers the hub puts on the dead letters it publishes itself (see consumer.py for why it does that).
REASON_HEADER = "x-hub-reason"
ORIGINAL_EXCHANGE_HEADER = "x-hub-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER = "x-hub-original-routing-key"
ORIGINAL_QUEUE_HEADER = "x-hub-original-queue"
SOURCE_HEADER = "x-hub-source"
FIRST_SEEN_HEADER = "x-hub-first-seen"
DEAD_LETTERED_AT_HEADER = "x-hub-dead-lettered-at"
DELIVERY_COUNT_HEADER = "x-hub-delivery-count"
# Set by quorum queues: how often the message was returned to the queue before this delivery (0 first).
BROKER_DELIVERY_COUNT_HEADER = "x-delivery-count"


def new_message_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class OutboundMessage:
    """One message to publish. ``user_id`` defaults to the connection's user (the broker refuses any other
    value, which is how it authenticates the source); set it only to prove that refusal."""

    exchange: str
    routing_key: str
    body: bytes
    type: str
    message_id: str = field(default_factory=new_message_id)
    correlation_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    content_type: str = JSON
    timestamp: datetime | None = None
    user_id: str | None = None
    # Records must reach the hub's queue, so an unroutable one is an error. Events on hub.events are
    # broadcast: when no partner has bound a queue yet nobody is waiting, and that is not a failure.
    mandatory: bool = True


@dataclass(frozen=True)
class InboundMessage:
    """One delivery as a handler sees it. ``delivery_count`` is the broker's ``x-delivery-count`` (0 on
    the first delivery); ``redelivered`` is AMQP's flag (also set after a consumer crash or restart)."""

    body: bytes
    routing_key: str
    exchange: str
    queue: str
    message_id: str | None
    user_id: str | None
    type: str | None
    correlation_id: str | None
    content_type: str | None
    timestamp: datetime | None
    headers: Mapping[str, Any]
    redelivered: bool
    delivery_count: int

    @property
    def reason(self) -> str | None:
        """The dead-letter reason the hub attached, if this is one of its dead letters."""
        value = self.headers.get(REASON_HEADER)
        return _text(value) if value is not None else None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def header_text(headers: Mapping[str, Any], name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else _text(value)


def utc_from_epoch(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(int(seconds), tz=UTC)


def epoch_seconds(moment: datetime | None) -> int:
    # AMQP timestamps are whole seconds since the epoch.
    return int((moment or datetime.now(UTC)).timestamp())


class OutcomeKind(StrEnum):
    ACK = "ack"
    REJECT = "reject"
    RETRY = "retry"
    DEFER = "defer"


@dataclass(frozen=True)
class Outcome:
    """What the handler decided.

    * ``Outcome.ACK`` — done (return it only after the handler's own transaction committed);
    * ``Outcome.reject(reason)`` — poison: dead-letter now, with the reason (never personal data);
    * ``Outcome.RETRY`` / ``Outcome.retry(reason)`` — transient failure: redeliver; counts toward the
      delivery limit, after which the message is dead-lettered with the last reason;
    * ``Outcome.DEFER`` — not handled yet, through no fault of its own (another consumer is applying a message
      about the same case): the consumer keeps the delivery, unsettled, and hands it over again with its next
      batch, ahead of later deliveries; it counts toward nothing. Only a batch handler returns it.
    """

    kind: OutcomeKind
    reason: str | None = None

    ACK: ClassVar[Outcome]
    RETRY: ClassVar[Outcome]
    DEFER: ClassVar[Outcome]

    @classmethod
    def reject(cls, reason: str) -> Outcome:
        if not reason:
            raise ValueError("a rejection needs a reason")
        return cls(OutcomeKind.REJECT, reason)

    @classmethod
    def retry(cls, reason: str | None = None) -> Outcome:
        return cls(OutcomeKind.RETRY, reason)


Outcome.ACK = Outcome(OutcomeKind.ACK)
Outcome.RETRY = Outcome(OutcomeKind.RETRY)
Outcome.DEFER = Outcome(OutcomeKind.DEFER)

Handler = Callable[[InboundMessage], Outcome]


@runtime_checkable
class BatchHandler(Protocol):
    """A handler that settles several deliveries at once (e.g. one database transaction for all of them).

    The consumer hands it up to ``batch_size`` deliveries: those already prefetched, waiting at most
    ``batch_wait_s`` for more once the first is there (never while the queue is empty). ``handle_batch``
    returns one Outcome per message, in order; the consumer settles them only after it returned — an ACK
    therefore still means "committed". Calling the handler with one message handles a batch of one."""

    batch_size: int
    batch_wait_s: float

    def __call__(self, message: InboundMessage) -> Outcome: ...

    def handle_batch(self, messages: Sequence[InboundMessage]) -> Sequence[Outcome]: ...


@runtime_checkable
class LanedHandler(BatchHandler, Protocol):
    """A batch handler whose batches may run on ``lanes`` threads at once (adapters/amqp/lanes.py).

    ``lane_of(message)`` names the lane (0 … ``lanes`` − 1) a delivery must be applied on: deliveries that must
    keep their order, or must never be applied at the same time (e.g. records of one case), must get the same
    lane; a delivery whose lane cannot be told goes to a fixed lane (0). It is called on the consumer's thread,
    once per delivery, so it must be cheap. ``handle_batch`` is then called from several threads at once, each
    with deliveries of its own lane only."""

    lanes: int

    def lane_of(self, message: InboundMessage) -> int: ...
