"""The bus interface the hub depends on, its RabbitMQ implementation, and the choice between the two."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from adapters.amqp.consumer import consume
from adapters.amqp.inprocess import InProcessBus
from adapters.amqp.messages import BatchHandler, Handler, OutboundMessage
from adapters.amqp.publisher import Publisher, close_quietly
from adapters.amqp.settings import AmqpSettings, open_connection
from adapters.amqp.topology import HUB_TOPOLOGY, Topology, declare_topology, retire_shard_queues, unroute_shards

log = logging.getLogger("adapters.amqp.bus")


class MessageBus(Protocol):
    def publish(self, message: OutboundMessage) -> None: ...

    def publish_many(self, messages: Sequence[OutboundMessage]) -> None: ...

    def consume(self, queue: str, handler: Handler | BatchHandler, *, stop_event: threading.Event) -> None: ...

    def close(self) -> None: ...


class AmqpBus:
    """RabbitMQ behind the MessageBus interface. ``publish`` may be called from any thread (one shared
    confirm channel behind a lock); each ``consume`` call opens its own connection, so run one per thread."""

    def __init__(self, settings: AmqpSettings, *, topology: Topology = HUB_TOPOLOGY) -> None:
        self.settings = settings
        self.topology = topology
        self._publisher = Publisher(settings)
        self._lock = threading.Lock()

    def declare_topology(self) -> list[str]:
        """Once at start (then on every consumer connection): also, with routing by case off, unbind a shard
        exchange an earlier configuration left (its own channel: the broker closes it if there is none), and
        unbind shard queues beyond ``topology.shards`` (retired: the inbound consumer drains them). Returns the
        retired shard queues found. Raises ExchangeTypeMissing when the broker lacks the consistent-hash plugin."""
        connection = open_connection(self.settings)
        try:
            self._declare(connection.channel())
            if self.topology.shards == 0:
                unroute_shards(connection.channel(), self.topology)
            retired = retire_shard_queues(connection, self.topology)
        finally:
            close_quietly(connection)
        if retired:
            log.warning("shard queue(s) %s exist beyond HUB_INGEST_SHARDS=%d: unbound from the shard exchange and "
                        "drained by every worker beside %s; delete them once they are empty (docs/amqp.md \"Case "
                        "shards\")", ", ".join(retired), self.topology.shards, self.topology.inbound_queue)
        return retired

    def publish(self, message: OutboundMessage) -> None:
        with self._lock:
            self._publisher.publish(message)

    def publish_many(self, messages: Sequence[OutboundMessage]) -> None:
        with self._lock:
            self._publisher.publish_many(messages)

    def consume(self, queue: str | Sequence[str], handler: Handler | BatchHandler, *,
                stop_event: threading.Event, drain_retired_shards: bool = False) -> None:
        """Consume one queue, or several on one channel (the case shards a worker holds), until stopped. With
        ``drain_retired_shards`` also every retired shard queue (``retire_shard_queues``), found anew on each
        connection: the worker's consumer of hub.inbound.records."""
        consume(self.settings, queue, handler, stop_event=stop_event, setup=self._declare,
                dead_letter_exchange=self.topology.dead_letter_exchange,
                more_queues=self._retired_shard_queues if drain_retired_shards else None)

    def _retired_shard_queues(self, connection: BlockingConnection) -> list[str]:
        return retire_shard_queues(connection, self.topology)

    def close(self) -> None:
        with self._lock:
            self._publisher.close()

    def _declare(self, channel: BlockingChannel) -> None:
        # On every (re)connection: after a broker reset the topology is back before the first delivery.
        declare_topology(channel, self.topology, delivery_limit=self.settings.delivery_limit)


def make_bus(amqp_url: str | None, *, topology: Topology = HUB_TOPOLOGY, **settings: Any) -> AmqpBus | InProcessBus:
    """RabbitMQ when ``amqp_url`` (HUB_AMQP_URL) is set, else the in-process bus. ``settings`` are
    AmqpSettings fields; ``delivery_limit``, ``retry_initial_s`` and ``retry_max_s`` also apply to the
    in-process bus. ``topology``: RabbitMQ's names and shards (the in-process bus has one inbound queue)."""
    if amqp_url:
        return AmqpBus(AmqpSettings(url=amqp_url, **settings), topology=topology)
    shared = {k: v for k, v in settings.items() if k in ("delivery_limit", "retry_initial_s", "retry_max_s")}
    return InProcessBus(**shared)
