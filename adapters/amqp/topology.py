"""The AMQP topology of DESIGN §5, declared by code so every environment has exactly the same one.

    hub.inbound (topic) --#--> hub.inbound.records (quorum, x-delivery-limit, DLX hub.dlx, at-least-once)
    hub.dlx     (topic) --#--> hub.inbound.dead    (quorum)
    hub.events  (topic)        each partner binds its own queue (partner.<name>.*)

Why these arguments:
* ``x-delivery-limit`` explicit: without it RabbitMQ 3.x redelivers a poison message forever and 4.x drops
  it after 20 deliveries unless a dead-letter exchange is set.
* ``x-dead-letter-strategy: at-least-once`` (quorum queues, RabbitMQ >= 3.10): the broker moves dead
  letters with internal publisher confirms, so a dead letter is never lost on its way to hub.dlx. The
  default (at-most-once) can lose it. It requires ``x-overflow: reject-publish``; with ``drop-head`` the
  broker silently falls back to at-most-once. With no length limit set, reject-publish changes nothing
  else; operators may add ``max-length`` by policy, and publishers then get nacks instead of lost data.
* the dead-letter queue is a quorum queue too (replicated; stores every message on disk, even one a partner
  published non-persistent) with a high explicit delivery limit: inspecting it by get-and-requeue counts as
  a delivery, and on RabbitMQ 4.x the implicit limit of 20 would drop a dead letter after 20 looks.

Re-declaring with different arguments fails with 406 PRECONDITION_FAILED (raised as TopologyMismatch), so a
running broker can never silently keep an old shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp.errors import TopologyMismatch

INBOUND_EXCHANGE = "hub.inbound"
INBOUND_QUEUE = "hub.inbound.records"
DEAD_LETTER_EXCHANGE = "hub.dlx"
DEAD_LETTER_QUEUE = "hub.inbound.dead"
EVENTS_EXCHANGE = "hub.events"

DEFAULT_DELIVERY_LIMIT = 5
DEAD_QUEUE_DELIVERY_LIMIT = 10_000
ALL_ROUTING_KEYS = "#"
PRECONDITION_FAILED = 406


@dataclass(frozen=True)
class Topology:
    """The names of one topology. ``HUB_TOPOLOGY`` is the real one; tests use ``with_prefix`` for private
    copies with identical arguments."""

    inbound_exchange: str = INBOUND_EXCHANGE
    inbound_queue: str = INBOUND_QUEUE
    dead_letter_exchange: str = DEAD_LETTER_EXCHANGE
    dead_letter_queue: str = DEAD_LETTER_QUEUE
    events_exchange: str = EVENTS_EXCHANGE

    @classmethod
    def with_prefix(cls, prefix: str) -> Topology:
        return cls(*(f"{prefix}.{name}" for name in
                     (INBOUND_EXCHANGE, INBOUND_QUEUE, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, EVENTS_EXCHANGE)))

    @property
    def exchanges(self) -> tuple[str, ...]:
        return self.inbound_exchange, self.dead_letter_exchange, self.events_exchange

    @property
    def queues(self) -> tuple[str, ...]:
        return self.inbound_queue, self.dead_letter_queue


HUB_TOPOLOGY = Topology()


def inbound_queue_arguments(topology: Topology = HUB_TOPOLOGY, *,
                            delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": topology.dead_letter_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def dead_letter_queue_arguments() -> dict[str, Any]:
    return {"x-queue-type": "quorum", "x-delivery-limit": DEAD_QUEUE_DELIVERY_LIMIT}


def declare_topology(channel: BlockingChannel, topology: Topology = HUB_TOPOLOGY, *,
                     delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> None:
    """Declare (idempotently) every exchange, queue and binding. Raises TopologyMismatch when one exists
    with other arguments; the channel is closed by the broker then."""
    try:
        for exchange in topology.exchanges:
            channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.queue_declare(topology.inbound_queue, durable=True,
                              arguments=inbound_queue_arguments(topology, delivery_limit=delivery_limit))
        channel.queue_declare(topology.dead_letter_queue, durable=True, arguments=dead_letter_queue_arguments())
        channel.queue_bind(topology.inbound_queue, topology.inbound_exchange, routing_key=ALL_ROUTING_KEYS)
        channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange, routing_key=ALL_ROUTING_KEYS)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == PRECONDITION_FAILED:
            raise TopologyMismatch.because(exc.reply_text) from None
        raise


@lru_cache(maxsize=1024)
def _pattern_words(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("."))


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: words separated by '.', '*' matches exactly one word, '#' zero or more."""
    return _match(_pattern_words(pattern), tuple(routing_key.split(".")))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        # '#' swallows 0..n words; try each split (patterns are short, so this stays cheap).
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])
