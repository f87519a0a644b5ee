"""The bus interface the hub depends on, its RabbitMQ implementation, and the choice between the two."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp.consumer import consume
from adapters.amqp.inprocess import InProcessBus
from adapters.amqp.messages import BatchHandler, Handler, OutboundMessage
from adapters.amqp.publisher import Publisher, close_quietly
from adapters.amqp.settings import AmqpSettings, open_connection
from adapters.amqp.topology import HUB_TOPOLOGY, Topology, declare_topology, unroute_shards


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

    def declare_topology(self) -> None:
        """Once at start (then on every consumer connection): also, with routing by case off, unbind a shard
        exchange an earlier configuration left (its own channel: the broker closes it if there is none)."""
        connection = open_connection(self.settings)
        try:
            self._declare(connection.channel())
            if self.topology.shards == 0:
                unroute_shards(connection.channel(), self.topology)
        finally:
            close_quietly(connection)

    def publish(self, message: OutboundMessage) -> None:
        with self._lock:
            self._publisher.publish(message)

    def publish_many(self, messages: Sequence[OutboundMessage]) -> None:
        with self._lock:
            self._publisher.publish_many(messages)

    def consume(self, queue: str | Sequence[str], handler: Handler | BatchHandler, *,
                stop_event: threading.Event) -> None:
        """Consume one queue, or several on one channel (the case shards a worker holds), until stopped."""
        consume(self.settings, queue, handler, stop_event=stop_event, setup=self._declare,
                dead_letter_exchange=self.topology.dead_letter_exchange)

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
