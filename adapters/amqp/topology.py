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

Case shards (issue 8, part shards; off unless ``Topology.shards`` > 0, HUB_INGEST_SHARDS):

    hub.inbound (topic) --#--> hub.inbound.shards (x-consistent-hash on the correlation_id property)
                                   --"1"--> hub.inbound.shard.0 … hub.inbound.shard.<N-1> (quorum, as .records)

Each case's records (partners set ``correlation_id`` to the case's external id) land on one shard queue, and
each shard is consumed by one worker at a time (hub/exchange/shards.py): two workers no longer meet on a case.
The exchange hashes the property's value; a message without one is hashed as "no value" and lands on one fixed
shard, where it is applied like any other. ``hub.inbound.records`` stays declared, unbound from hub.inbound,
and consumed by every worker, so messages it held before the switch are still applied. The exchange type is the
plugin ``rabbitmq_consistent_hash_exchange`` (shipped with RabbitMQ, off by default: scripts/services.sh and
the deploy docs enable it); without it the broker closes the connection with 503 COMMAND_INVALID "unknown
exchange type 'x-consistent-hash'", raised as ExchangeTypeMissing.

Retired shard queues (issue 8, part default; ``retire_shard_queues``): shard queues that exist beyond
``Topology.shards`` — every one when routing by case is off, ``hub.inbound.shard.4`` … after 8 → 4 — are unbound
from the shard exchange (when routing is on; off, hub.inbound no longer feeds it) and consumed by every worker
beside ``hub.inbound.records``, so what they held is applied and nothing new lands there. They are never deleted
by the hub: RabbitMQ 3.10's quorum queues refuse a conditional delete (if-empty, if-unused: 540 NOT_IMPLEMENTED),
and an unconditional one could drop records; an operator deletes them once empty.

Re-declaring with different arguments fails with 406 PRECONDITION_FAILED (raised as TopologyMismatch), so a
running broker can never silently keep an old shape.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp.errors import ExchangeTypeMissing, TopologyMismatch

INBOUND_EXCHANGE = "hub.inbound"
INBOUND_QUEUE = "hub.inbound.records"
DEAD_LETTER_EXCHANGE = "hub.dlx"
DEAD_LETTER_QUEUE = "hub.inbound.dead"
EVENTS_EXCHANGE = "hub.events"
CONSISTENT_HASH = "x-consistent-hash"
HASH_PROPERTY = "correlation_id"  # the case's external id, as partners publish it (docs/partners.md)
SHARD_WEIGHT = "1"  # every shard queue gets the same share of the hash space
CONSISTENT_HASH_PLUGIN = "rabbitmq_consistent_hash_exchange"
MAX_SHARDS = 64  # HUB_INGEST_SHARDS' upper bound: retired shard queues are looked for up to it

DEFAULT_DELIVERY_LIMIT = 5
DEAD_QUEUE_DELIVERY_LIMIT = 10_000
ALL_ROUTING_KEYS = "#"
PRECONDITION_FAILED = 406
NOT_FOUND = 404
ACCESS_REFUSED = 403
# How RabbitMQ refuses an exchange type it has no plugin for (rabbit_exchange:check_type): "unknown exchange type
# 'x-consistent-hash'" when the type was never registered, "invalid exchange type …" when its plugin was disabled
# since. RabbitMQ 3.10 closes the connection with 503 COMMAND_INVALID (tried here); 4.x's check_type says
# PRECONDITION_FAILED (406, the channel). Matched by text, whichever the code.
EXCHANGE_TYPE_REFUSED = ("unknown exchange type", "invalid exchange type")


@dataclass(frozen=True)
class Topology:
    """The names of one topology. ``HUB_TOPOLOGY`` is the real one; tests use ``with_prefix`` for private
    copies with identical arguments."""

    inbound_exchange: str = INBOUND_EXCHANGE
    inbound_queue: str = INBOUND_QUEUE
    dead_letter_exchange: str = DEAD_LETTER_EXCHANGE
    dead_letter_queue: str = DEAD_LETTER_QUEUE
    events_exchange: str = EVENTS_EXCHANGE
    shards: int = 0  # > 0: records routed by case to this many shard queues (see the module); 0: one queue
    # The shard exchange's type; only the start-up check's tests change it (to a type no broker knows).
    shard_exchange_type: str = CONSISTENT_HASH

    @classmethod
    def with_prefix(cls, prefix: str, *, shards: int = 0) -> Topology:
        inbound_exchange, inbound_queue, dead_letter_exchange, dead_letter_queue, events_exchange = (
            f"{prefix}.{name}" for name in
            (INBOUND_EXCHANGE, INBOUND_QUEUE, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, EVENTS_EXCHANGE))
        return cls(inbound_exchange, inbound_queue, dead_letter_exchange, dead_letter_queue, events_exchange, shards)

    @property
    def shard_exchange(self) -> str:
        return f"{self.inbound_exchange}.shards"

    def shard_queue(self, shard: int) -> str:
        return f"{self.inbound_exchange}.shard.{shard}"

    @property
    def shard_queues(self) -> tuple[str, ...]:
        return tuple(self.shard_queue(i) for i in range(self.shards))

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
        if topology.shards > 0:
            _declare_shards(channel, topology, delivery_limit)
        else:
            channel.queue_bind(topology.inbound_queue, topology.inbound_exchange, routing_key=ALL_ROUTING_KEYS)
        channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange, routing_key=ALL_ROUTING_KEYS)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == PRECONDITION_FAILED:
            raise TopologyMismatch.because(exc.reply_text) from None
        raise


def _declare_shards(channel: BlockingChannel, topology: Topology, delivery_limit: int) -> None:
    """The shard exchange and queues, hub.inbound routed to them; then hub.inbound.records unbound. In that
    order a record published meanwhile reaches both at worst (applied once: the inbox), never neither."""
    _expected.reply = "exchange type '"  # raised below with the whole story: pika need not log it too
    try:
        channel.exchange_declare(topology.shard_exchange, exchange_type=topology.shard_exchange_type, durable=True,
                                 arguments={"hash-property": HASH_PROPERTY})
    except (pika.exceptions.ConnectionClosedByBroker, pika.exceptions.ChannelClosedByBroker) as exc:
        if exc.reply_text.split(" - ", 1)[-1].startswith(EXCHANGE_TYPE_REFUSED):
            raise exchange_type_missing(topology, exc.reply_code, exc.reply_text) from None
        raise
    finally:
        _expected.reply = None
    for queue in topology.shard_queues:
        channel.queue_declare(queue, durable=True,
                              arguments=inbound_queue_arguments(topology, delivery_limit=delivery_limit))
        channel.queue_bind(queue, topology.shard_exchange, routing_key=SHARD_WEIGHT)
    channel.exchange_bind(topology.shard_exchange, topology.inbound_exchange, routing_key=ALL_ROUTING_KEYS)
    channel.queue_unbind(topology.inbound_queue, topology.inbound_exchange, routing_key=ALL_ROUTING_KEYS)


def unroute_shards(channel: BlockingChannel, topology: Topology = HUB_TOPOLOGY) -> None:
    """Routing switched off (shards 0) after it was on: hub.inbound no longer feeds the shard exchange (its
    queues stay, to be drained; see docs/amqp.md). Nothing to do — and no error — when there never was one
(NOT_FOUND), or when this user may not touch it (ACCESS_REFUSED: a deployment whose hub user is granted only the
one-queue names, deploy/rabbitmq/definitions.json, never routed through it): the broker closes the channel,
which the caller passes for this alone."""
    try:
        channel.exchange_unbind(topology.shard_exchange, topology.inbound_exchange, routing_key=ALL_ROUTING_KEYS)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code not in (NOT_FOUND, ACCESS_REFUSED):
            raise


def exchange_type_missing(topology: Topology, reply_code: int, reply_text: str) -> ExchangeTypeMissing:
    """What an operator needs to read when the broker lacks the consistent-hash plugin: what is missing (the
    broker's own words), why the hub wants it, and both ways out."""
    message = (
        f"RabbitMQ cannot declare the exchange {topology.shard_exchange} of type {topology.shard_exchange_type!r}: "
        f"it answered {reply_code} {reply_text}. Routing records by case (HUB_INGEST_SHARDS={topology.shards}; 4 "
        f"unless set) needs the RabbitMQ plugin {CONSISTENT_HASH_PLUGIN}. Either enable it on the broker: "
        f"`rabbitmq-plugins enable {CONSISTENT_HASH_PLUGIN}` (no restart needed; docker-compose's "
        f"deploy/rabbitmq/enabled_plugins has it), or set HUB_INGEST_SHARDS=0 to consume the one queue "
        f"{topology.inbound_queue} (docs/amqp.md \"Case shards\").")
    return ExchangeTypeMissing(message, exchange_type=topology.shard_exchange_type, reply_text=reply_text)


def retire_shard_queues(connection: pika.BlockingConnection, topology: Topology = HUB_TOPOLOGY) -> list[str]:
    """The shard queues that exist beyond ``topology.shards`` (all of them when routing by case is off), unbound
    from the shard exchange when routing is on (so nothing new lands there): the caller drains them. A queue is
    looked for with a passive declare (404 closes only the channel) at every index up to MAX_SHARDS, not only up
    to the first gap: an operator may have deleted one in the middle. ACCESS_REFUSED ends the search: a
    deployment whose hub user may not touch shard names (deploy/rabbitmq/definitions.json before part shards)
    never had any."""
    found: list[str] = []
    channel: BlockingChannel | None = None
    _expected.reply = "NOT_FOUND"
    try:
        for shard in range(topology.shards, MAX_SHARDS):
            if channel is None or not channel.is_open:
                channel = connection.channel()
            queue = topology.shard_queue(shard)
            try:
                channel.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == ACCESS_REFUSED:
                    break
                if exc.reply_code != NOT_FOUND:
                    raise
                continue
            found.append(queue)
        if found and topology.shards > 0:
            channel = connection.channel()
            for queue in found:  # unbinding a binding that is not there is no error
                channel.queue_unbind(queue, topology.shard_exchange, routing_key=SHARD_WEIGHT)
    finally:
        _expected.reply = None
        if channel is not None and channel.is_open:
            channel.close()
    return found


class _ExpectedReply(threading.local):
    reply: str | None = None  # a broker reply this thread expects now and handles itself


_expected = _ExpectedReply()


class _QuietExpectedReplies(logging.Filter):
    """pika logs every channel or connection the broker closes (WARNING, ERROR). Two closes here are expected and
    handled: the look for retired shard queues gets a 404 per index that has none (≈60 per connection, which would
    bury the log), and a broker without the consistent-hash plugin answers 503 "unknown exchange type", which
    ExchangeTypeMissing tells in full. Only on the thread expecting it (pika's blocking adapter calls back on the
    caller's thread), only that reply."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_expected.reply is not None and _expected.reply in record.getMessage())


for _logger in ("pika.channel", "pika.connection", "pika.adapters.blocking_connection"):
    logging.getLogger(_logger).addFilter(_QuietExpectedReplies())


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
