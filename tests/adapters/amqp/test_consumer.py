"""The consumer runner: exactly-once handling of confirmed messages, retries, and dead letters with reasons."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp import (
    DELIVERY_COUNT_HEADER,
    FIRST_SEEN_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
    SOURCE_HEADER,
    AmqpBus,
    AmqpSettings,
    InboundMessage,
    OutboundMessage,
    Outcome,
    Publisher,
    Topology,
)
from tests.adapters.amqp.conftest import (
    TEST_DELIVERY_LIMIT,
    get_all,
    message,
    queue_depth,
    running_consumer,
    wait_for,
)


class Recorder:
    """A handler that records every delivery and answers with ``decide`` (ACK by default)."""

    def __init__(self, decide: Callable[[InboundMessage], Outcome] | None = None) -> None:
        self.deliveries: list[InboundMessage] = []
        self._decide = decide or (lambda _m: Outcome.ACK)
        self._lock = threading.Lock()

    def __call__(self, delivered: InboundMessage) -> Outcome:
        with self._lock:
            self.deliveries.append(delivered)
        return self._decide(delivered)

    def count(self, message_id: str | None = None) -> int:
        with self._lock:
            return sum(1 for d in self.deliveries if message_id is None or d.message_id == message_id)

    def ids(self) -> Counter[str | None]:
        with self._lock:
            return Counter(d.message_id for d in self.deliveries)


def publish(settings: AmqpSettings, *messages: OutboundMessage) -> None:
    with Publisher(settings) as publisher:
        publisher.publish_many(messages)


def test_confirmed_messages_are_handled_exactly_once(settings: AmqpSettings, topology: Topology,
                                                     channel: BlockingChannel) -> None:
    sent = [message(topology.inbound_exchange, f"city-210100.case-record.v{i % 2 + 1}", body=b'{"n": %d}' % i)
            for i in range(100)]
    publish(settings, *sent)
    handler = Recorder()
    with running_consumer(settings, topology.inbound_queue, handler,
                          dead_letter_exchange=topology.dead_letter_exchange):
        wait_for(lambda: handler.count() >= len(sent), timeout_s=20, what="100 deliveries")
    assert handler.ids() == Counter(m.message_id for m in sent)
    first = handler.deliveries[0]
    assert (first.redelivered, first.delivery_count, first.user_id) == (False, 0, settings.username)
    assert first.queue == topology.inbound_queue and first.exchange == topology.inbound_exchange
    assert queue_depth(channel, topology.inbound_queue) == 0
    assert queue_depth(channel, topology.dead_letter_queue) == 0


def test_a_rejected_message_lands_in_the_dead_letter_queue_with_its_reason(
        settings: AmqpSettings, topology: Topology, channel: BlockingChannel) -> None:
    poison = message(topology.inbound_exchange, "city-210100.case-record.v1", body=b'{"region": 1}',
                     headers={"x-case": "210102-20260311-0001"})
    good = message(topology.inbound_exchange)
    publish(settings, poison, good)
    reason = "schema violation: /payload/region must be a string"
    handler = Recorder(lambda m: Outcome.reject(reason) if m.message_id == poison.message_id else Outcome.ACK)
    with running_consumer(settings, topology.inbound_queue, handler,
                          dead_letter_exchange=topology.dead_letter_exchange):
        [(method, properties, body)] = get_all(channel, topology.dead_letter_queue, expected=1)
        wait_for(lambda: handler.count(good.message_id) == 1, timeout_s=10, what="the good message")

    assert (properties.message_id, body, method.routing_key) == (poison.message_id, poison.body, poison.routing_key)
    headers = properties.headers
    assert headers[REASON_HEADER] == reason
    assert headers[ORIGINAL_ROUTING_KEY_HEADER] == "city-210100.case-record.v1"
    assert headers[ORIGINAL_EXCHANGE_HEADER] == topology.inbound_exchange
    assert headers[ORIGINAL_QUEUE_HEADER] == topology.inbound_queue
    assert headers[SOURCE_HEADER] == settings.username
    assert headers[DELIVERY_COUNT_HEADER] == 1
    assert FIRST_SEEN_HEADER in headers
    assert headers["x-case"] == "210102-20260311-0001"  # the original headers travel along
    assert "x-death" not in headers  # our copy, not the broker's dead-lettering
    assert handler.count(poison.message_id) == 1
    assert queue_depth(channel, topology.inbound_queue) == 0


def test_a_failing_handler_is_retried_then_dead_lettered_and_the_consumer_keeps_going(
        settings: AmqpSettings, topology: Topology, channel: BlockingChannel, caplog: pytest.LogCaptureFixture) -> None:
    poison = message(topology.inbound_exchange)

    def explode(m: InboundMessage) -> Outcome:
        if m.message_id == poison.message_id:
            raise ValueError("110101199003074578 is not in the registry")  # must not reach the logs
        return Outcome.ACK

    handler = Recorder(explode)
    with running_consumer(settings, topology.inbound_queue, handler,
                          dead_letter_exchange=topology.dead_letter_exchange):
        publish(settings, poison)
        [(_, properties, _)] = get_all(channel, topology.dead_letter_queue, expected=1)
        later = message(topology.inbound_exchange)
        publish(settings, later)
        wait_for(lambda: handler.count(later.message_id) == 1, timeout_s=10, what="a message after the poison")

    counts = [d.delivery_count for d in handler.deliveries if d.message_id == poison.message_id]
    assert counts == list(range(TEST_DELIVERY_LIMIT + 1))  # first delivery + delivery_limit redeliveries
    assert properties.headers[REASON_HEADER] == (
        f"retries exhausted after {TEST_DELIVERY_LIMIT + 1} deliveries; last: handler raised ValueError")
    assert properties.headers[DELIVERY_COUNT_HEADER] == TEST_DELIVERY_LIMIT + 1
    assert "handler raised ValueError" in caplog.text
    assert "110101199003074578" not in caplog.text


def test_retry_redelivers_until_the_handler_succeeds(settings: AmqpSettings, topology: Topology,
                                                     channel: BlockingChannel) -> None:
    flaky = message(topology.inbound_exchange)
    handler = Recorder(lambda m: Outcome.retry("registry busy") if m.delivery_count < 2 else Outcome.ACK)
    publish(settings, flaky)
    with running_consumer(settings, topology.inbound_queue, handler,
                          dead_letter_exchange=topology.dead_letter_exchange):
        wait_for(lambda: handler.count() == 3, timeout_s=10, what="three deliveries")
    assert [(d.delivery_count, d.redelivered) for d in handler.deliveries] == [(0, False), (1, True), (2, True)]
    assert queue_depth(channel, topology.inbound_queue) == 0
    assert queue_depth(channel, topology.dead_letter_queue) == 0


def test_a_dead_letter_whose_handler_keeps_failing_stays_in_the_dead_letter_queue(
        settings: AmqpSettings, topology: Topology, channel: BlockingChannel) -> None:
    publish(settings, message(topology.inbound_exchange))
    with running_consumer(settings, topology.inbound_queue, Recorder(lambda _m: Outcome.reject("schema violation")),
                          dead_letter_exchange=topology.dead_letter_exchange):
        wait_for(lambda: queue_depth(channel, topology.dead_letter_queue) == 1, timeout_s=10, what="the dead letter")

    def store(delivered: InboundMessage) -> Outcome:
        if delivered.delivery_count <= TEST_DELIVERY_LIMIT + 1:  # past the limit: sending it round would loop
            raise ConnectionError("database unavailable")
        return Outcome.ACK

    handler = Recorder(store)
    with running_consumer(settings, topology.dead_letter_queue, handler,
                          dead_letter_exchange=topology.dead_letter_exchange):
        wait_for(lambda: handler.count() == TEST_DELIVERY_LIMIT + 3, timeout_s=10, what="the dead letter stored")
    assert [d.delivery_count for d in handler.deliveries] == list(range(TEST_DELIVERY_LIMIT + 3))
    assert {d.reason for d in handler.deliveries} == {"schema violation"}  # never replaced
    assert queue_depth(channel, topology.dead_letter_queue) == 0


def test_without_a_route_for_the_copy_the_broker_dead_letters_the_message_itself(
        settings: AmqpSettings, topology: Topology, channel: BlockingChannel) -> None:
    # The consumer's dead-letter exchange has no queue bound, so its copy is unroutable; it falls back to
    # basic.reject and the queue's own x-dead-letter-exchange (at-least-once) takes the message.
    channel.exchange_declare(f"{topology.dead_letter_exchange}.unbound", exchange_type="topic", durable=True)
    poison = message(topology.inbound_exchange)
    publish(settings, poison)
    try:
        with running_consumer(settings, topology.inbound_queue, Recorder(lambda _m: Outcome.reject("bad")),
                              dead_letter_exchange=f"{topology.dead_letter_exchange}.unbound"):
            [(_, properties, _)] = get_all(channel, topology.dead_letter_queue, expected=1)
    finally:
        channel.exchange_delete(f"{topology.dead_letter_exchange}.unbound")
    assert properties.message_id == poison.message_id
    assert properties.headers["x-first-death-reason"] == "rejected"
    assert REASON_HEADER not in properties.headers


def test_the_amqp_bus_declares_its_topology_and_round_trips(settings: AmqpSettings, topology: Topology) -> None:
    bus = AmqpBus(settings, topology=topology)
    handler = Recorder()
    stop = threading.Event()
    thread = threading.Thread(target=bus.consume, args=(topology.inbound_queue, handler), kwargs={"stop_event": stop})
    thread.start()
    try:
        bus.publish_many([message(topology.inbound_exchange) for _ in range(3)])
        bus.publish(message(topology.inbound_exchange))
        wait_for(lambda: handler.count() == 4, timeout_s=10, what="four deliveries through the bus")
    finally:
        stop.set()
        thread.join(timeout=15)
        bus.close()
    assert not thread.is_alive()


@pytest.mark.parametrize("bad_return", [None, "ack"])
def test_a_handler_returning_something_else_is_treated_as_retry(settings: AmqpSettings, topology: Topology,
                                                                 channel: BlockingChannel, bad_return: object) -> None:
    handler = Recorder(lambda _m: bad_return)  # type: ignore[arg-type, return-value]
    publish(settings, message(topology.inbound_exchange))
    with running_consumer(settings, topology.inbound_queue, handler,
                          dead_letter_exchange=topology.dead_letter_exchange):
        [(_, properties, _)] = get_all(channel, topology.dead_letter_queue, expected=1)
    assert "not an Outcome" in properties.headers[REASON_HEADER]
    assert handler.count() == TEST_DELIVERY_LIMIT + 1


class Deferring:
    """A batch handler that defers ``held`` the first ``times`` times it sees it and acks everything else."""

    def __init__(self, held: str | None, times: int) -> None:
        self.batch_size, self.batch_wait_s = 4, 0.05
        self.held, self.times = held, times
        self.batches: list[list[InboundMessage]] = []
        self._lock = threading.Lock()

    def __call__(self, delivered: InboundMessage) -> Outcome:
        return self.handle_batch([delivered])[0]

    def handle_batch(self, messages: Sequence[InboundMessage]) -> list[Outcome]:
        with self._lock:
            self.batches.append(list(messages))
            seen = sum(1 for batch in self.batches for m in batch if m.message_id == self.held)
        return [Outcome.DEFER if m.message_id == self.held and seen <= self.times else Outcome.ACK for m in messages]

    def handled(self) -> Counter[str | None]:
        with self._lock:
            return Counter(m.message_id for batch in self.batches for m in batch)


def test_a_deferred_delivery_is_kept_and_handed_over_first_with_the_next_batch_uncounted(
        settings: AmqpSettings, topology: Topology, channel: BlockingChannel) -> None:
    sent = [message(topology.inbound_exchange, body=b'{"n": %d}' % i) for i in range(12)]
    held = sent[1].message_id
    handler = Deferring(held, times=2)
    publish(settings, *sent)
    with running_consumer(settings, topology.inbound_queue, handler,
                          dead_letter_exchange=topology.dead_letter_exchange):
        wait_for(lambda: sum(handler.handled().values()) >= len(sent) + 2, timeout_s=20,
                 what="every message acked, the held one after two deferrals")
    assert handler.handled() == Counter({**{m.message_id: 1 for m in sent}, held: 3})
    with_held = [batch for batch in handler.batches if any(m.message_id == held for m in batch)]
    # Kept by the consumer, not returned to the broker: no redelivery, nothing counted toward the limit; and
    # ahead of the deliveries that came after it.
    assert all(batch[0].message_id == held for batch in with_held[1:])
    assert {(m.redelivered, m.delivery_count) for batch in with_held for m in batch if m.message_id == held} == {
        (False, 0)}
    # Nothing left unsettled or settled twice: the queue is empty once the consumer is gone, nothing dead.
    assert queue_depth(channel, topology.inbound_queue) == 0
    assert queue_depth(channel, topology.dead_letter_queue) == 0
