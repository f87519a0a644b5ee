"""Publishing with confirms: properties, batches, and a clear error for every way a publish can fail."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp import (
    AmqpSettings,
    Publisher,
    PublishInterrupted,
    PublishRefused,
    PublishUnroutable,
    Topology,
)
from tests.adapters.amqp.conftest import get_all, message, queue_depth
from tests.adapters.amqp.proxy import LoopbackProxy


@pytest.fixture
def publisher(settings: AmqpSettings) -> Iterator[Publisher]:
    with Publisher(settings, batch_size=100) as publisher:
        yield publisher


def test_a_published_message_carries_the_exchange_properties(publisher: Publisher, channel: BlockingChannel,
                                                             topology: Topology, settings: AmqpSettings) -> None:
    occurred = datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
    sent = message(topology.inbound_exchange, correlation_id="corr-1", headers={"x-case": "210102-20260311-0001"},
                   timestamp=occurred)
    publisher.publish(sent)

    [(method, properties, body)] = get_all(channel, topology.inbound_queue, expected=1)
    assert (method.exchange, method.routing_key, body) == (topology.inbound_exchange, sent.routing_key, sent.body)
    assert properties.delivery_mode == 2
    assert properties.message_id == sent.message_id
    assert properties.type == "case-record.v1"
    assert properties.content_type == "application/json"
    assert properties.correlation_id == "corr-1"
    assert properties.timestamp == int(occurred.timestamp())
    assert properties.user_id == settings.username
    assert properties.app_id == settings.connection_name
    assert properties.headers["x-case"] == "210102-20260311-0001"


def test_a_batch_is_confirmed_in_full(publisher: Publisher, channel: BlockingChannel, topology: Topology) -> None:
    batch = [message(topology.inbound_exchange, body=b'{"n": %d}' % i) for i in range(1000)]
    publisher.publish_many(batch)  # returns only once every confirm arrived
    assert queue_depth(channel, topology.inbound_queue) == 1000


def test_a_batch_goes_out_in_a_few_writes_not_one_per_frame(publisher: Publisher, channel: BlockingChannel,
                                                             topology: Topology) -> None:
    publisher.publish(message(topology.inbound_exchange))  # connected, confirm channel open
    connection = publisher._connection
    assert connection is not None
    transport = connection._impl._transport
    sends: list[int] = []
    send = transport._sigint_safe_send

    def counted(sock: object, data: bytes) -> int:
        sends.append(len(data))
        return int(send(sock, data))

    transport._sigint_safe_send = counted  # what pika's transport writes each buffer with
    batch = [message(topology.inbound_exchange, body=b'{"n": %d}' % i) for i in range(60)]
    publisher.publish_many(batch)

    assert queue_depth(channel, topology.inbound_queue) == 61  # every message, confirmed, in order below
    assert [body for _, _, body in get_all(channel, topology.inbound_queue, expected=61)][1:] == [m.body for m in batch]
    # Three frames per message (method, header, body) were three send() calls each: 180 for this batch. Now
    # the batch's frames go out together; the few other writes are pika's own (heartbeats, none expected here).
    assert len(sends) <= 3, sends


def test_an_unroutable_message_is_an_error_naming_it(publisher: Publisher, topology: Topology) -> None:
    routable = message(topology.inbound_exchange)
    nowhere = message(topology.events_exchange, "case.accepted.v1")  # nothing is bound to hub.events here
    with pytest.raises(PublishUnroutable) as raised:
        publisher.publish_many([routable, nowhere])
    assert raised.value.failed == {nowhere.message_id: "unroutable"}
    assert raised.value.confirmed == (routable.message_id,)
    assert not raised.value.retryable


def test_a_user_id_other_than_the_connection_user_is_refused(publisher: Publisher, topology: Topology,
                                                              channel: BlockingChannel) -> None:
    forged = message(topology.inbound_exchange, user_id="city-210100")
    with pytest.raises(PublishRefused) as raised:
        publisher.publish(forged)
    assert raised.value.reply_code == 406
    assert "user_id property set to 'city-210100'" in raised.value.reply_text
    assert raised.value.failed == {forged.message_id: "unconfirmed"}
    # The refusal closed only the channel; the next publish works.
    publisher.publish(message(topology.inbound_exchange))
    assert queue_depth(channel, topology.inbound_queue) == 1


def test_publishing_to_a_missing_exchange_is_refused(publisher: Publisher) -> None:
    with pytest.raises(PublishRefused) as raised:
        publisher.publish(message("test.no-such-exchange"))
    assert raised.value.reply_code == 404


def _through(proxy: LoopbackProxy, settings: AmqpSettings, **changes: object) -> AmqpSettings:
    parts = urlsplit(settings.url)
    netloc = f"{quote(parts.username or '')}:{quote(parts.password or '')}@127.0.0.1:{proxy.port}"
    return dataclasses.replace(settings, url=urlunsplit(parts._replace(netloc=netloc)), **changes)


def test_connection_lost_mid_publish_is_an_error_and_the_next_call_reconnects(
        settings: AmqpSettings, topology: Topology, channel: BlockingChannel) -> None:
    broker = urlsplit(settings.url)
    with LoopbackProxy(broker.hostname or "127.0.0.1", broker.port or 5672) as proxy, \
            Publisher(_through(proxy, settings)) as publisher:
        publisher.publish(message(topology.inbound_exchange))
        proxy.mute()  # confirms stop arriving…
        threading.Timer(0.5, proxy.cut).start()  # …then the link drops
        batch = [message(topology.inbound_exchange) for _ in range(20)]
        with pytest.raises(PublishInterrupted) as raised:
            publisher.publish_many(batch)
        assert raised.value.retryable
        assert raised.value.confirmed == ()
        assert set(raised.value.failed) == {m.message_id for m in batch}
        assert set(raised.value.failed.values()) == {"unconfirmed"}

        proxy.unmute()
        publisher.publish(message(topology.inbound_exchange))  # reconnects, with backoff, inside this call
    # 1 + 1 confirmed; the 20 unconfirmed ones may or may not have reached the queue — hence "unconfirmed".
    assert 2 <= queue_depth(channel, topology.inbound_queue) <= 22


def test_overdue_confirms_give_up_on_the_connection(settings: AmqpSettings, topology: Topology) -> None:
    broker = urlsplit(settings.url)
    with LoopbackProxy(broker.hostname or "127.0.0.1", broker.port or 5672) as proxy, \
            Publisher(_through(proxy, settings, confirm_timeout_s=0.3)) as publisher:
        publisher.publish(message(topology.inbound_exchange))
        proxy.mute()
        # Closing a black-holed connection waits for the broker's close-ok; the cut bounds that wait here
        # (in production the heartbeat does).
        threading.Timer(1.0, proxy.cut).start()
        started = time.monotonic()
        with pytest.raises(PublishInterrupted, match="confirms overdue"):
            publisher.publish(message(topology.inbound_exchange))
        assert time.monotonic() - started < 5
        proxy.unmute()
        publisher.publish(message(topology.inbound_exchange))


def test_a_connection_lost_while_idle_is_replaced_without_an_error(settings: AmqpSettings, topology: Topology,
                                                                   channel: BlockingChannel) -> None:
    broker = urlsplit(settings.url)
    with LoopbackProxy(broker.hostname or "127.0.0.1", broker.port or 5672) as proxy, \
            Publisher(_through(proxy, settings)) as publisher:
        publisher.publish(message(topology.inbound_exchange))
        proxy.cut()  # e.g. the broker restarted overnight; nothing was in flight
        publisher.publish(message(topology.inbound_exchange))
    assert queue_depth(channel, topology.inbound_queue) == 2
