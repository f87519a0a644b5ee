"""The topology of DESIGN §5, declared with the arguments the reliability rules need."""

from __future__ import annotations

import httpx
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    EVENTS_EXCHANGE,
    HUB_TOPOLOGY,
    INBOUND_EXCHANGE,
    INBOUND_QUEUE,
    AmqpSettings,
    Topology,
    TopologyMismatch,
    declare_topology,
    open_connection,
)
from adapters.amqp.topology import DEAD_QUEUE_DELIVERY_LIMIT, DEFAULT_DELIVERY_LIMIT
from tests.adapters.amqp.conftest import vhost_path


def test_declaring_twice_is_idempotent_and_everything_exists(channel: BlockingChannel) -> None:
    # The real names with the production delivery limit: other suites declare them the same way.
    declare_topology(channel)
    declare_topology(channel)
    # Passive declares fail with 404 (closing the channel) for anything missing.
    for exchange in (INBOUND_EXCHANGE, DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE):
        channel.exchange_declare(exchange, passive=True)
    for queue in (INBOUND_QUEUE, DEAD_LETTER_QUEUE):
        assert channel.queue_declare(queue, passive=True).method.queue == queue


def test_queues_and_exchanges_have_the_designed_arguments(channel: BlockingChannel, management: httpx.Client,
                                                         admin: tuple[str, str, str]) -> None:
    declare_topology(channel)
    vhost = vhost_path(admin[2])

    records = management.get(f"/api/queues/{vhost}/{INBOUND_QUEUE}").json()
    assert records["durable"] is True
    assert records["type"] == "quorum"
    assert records["arguments"] == {
        "x-queue-type": "quorum",
        "x-delivery-limit": DEFAULT_DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    dead = management.get(f"/api/queues/{vhost}/{DEAD_LETTER_QUEUE}").json()
    assert dead["durable"] is True
    assert dead["arguments"] == {"x-queue-type": "quorum", "x-delivery-limit": DEAD_QUEUE_DELIVERY_LIMIT}

    for name in HUB_TOPOLOGY.exchanges:
        exchange = management.get(f"/api/exchanges/{vhost}/{name}").json()
        assert (exchange["type"], exchange["durable"], exchange["auto_delete"]) == ("topic", True, False)

    bindings = {(b["source"], b["destination"], b["routing_key"])
                for b in management.get(f"/api/bindings/{vhost}").json()}
    assert (INBOUND_EXCHANGE, INBOUND_QUEUE, "#") in bindings
    assert (DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, "#") in bindings


def test_redeclaring_with_other_arguments_is_a_topology_mismatch(settings: AmqpSettings, topology: Topology) -> None:
    connection = open_connection(settings)
    try:
        with pytest.raises(TopologyMismatch, match="x-delivery-limit"):
            declare_topology(connection.channel(), topology, delivery_limit=settings.delivery_limit + 1)
    finally:
        connection.close()


def test_passive_redeclare_of_a_missing_queue_fails(channel: BlockingChannel) -> None:
    # The check above relies on passive declares failing for what does not exist; prove it once.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        channel.queue_declare("test.no-such-queue", passive=True)
    assert raised.value.reply_code == 404
