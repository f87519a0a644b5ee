"""The consumer runner with a ``LanedHandler``: lanes work at once, settlement stays correct (no hub, no database).

The handler's lane is the body's ``key`` modulo 2; lane 1 can be held back by the test. While it is, lane 0's
deliveries are handled and acked — each alone, as the held delivery is the lowest unsettled one and a
``multiple`` ack would settle it too; a retried delivery is requeued by its lane and comes back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence

import pytest
from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp import AmqpSettings, InboundMessage, LanedHandler, OutboundMessage, Outcome, Publisher, Topology
from tests.adapters.amqp.conftest import message, queue_depth, running_consumer, wait_for


class KeyedLanes:
    """A LanedHandler recording (thread, key) per handled delivery; lane 1 waits while ``hold`` is clear."""

    batch_size = 5
    batch_wait_s = 0.01
    lanes = 2

    def __init__(self, retry_once: set[int] | None = None) -> None:
        self.handled: list[tuple[str, int]] = []
        self.release = threading.Event()
        self.waiting = threading.Event()
        self._retry_once = set(retry_once or ())
        self._lock = threading.Lock()

    def lane_of(self, message: InboundMessage) -> int:
        return int(json.loads(message.body)["key"]) % 2

    def __call__(self, message: InboundMessage) -> Outcome:
        return self.handle_batch([message])[0]

    def handle_batch(self, messages: Sequence[InboundMessage]) -> list[Outcome]:
        keys = [int(json.loads(m.body)["key"]) for m in messages]
        if any(k % 2 for k in keys):
            self.waiting.set()
            self.release.wait(timeout=60)
        outcomes = []
        with self._lock:
            for key in keys:
                if key in self._retry_once:
                    self._retry_once.discard(key)
                    outcomes.append(Outcome.retry("not yet"))
                else:
                    self.handled.append((threading.current_thread().name, key))
                    outcomes.append(Outcome.ACK)
        return outcomes

    def keys(self) -> list[int]:
        with self._lock:
            return [k for _, k in self.handled]


def keyed(exchange: str, *keys: int) -> list[OutboundMessage]:
    return [message(exchange, body=json.dumps({"key": k}).encode()) for k in keys]


def publish(settings: AmqpSettings, messages: list[OutboundMessage]) -> None:
    with Publisher(settings) as publisher:
        publisher.publish_many(messages)


@pytest.fixture
def lanes_handler() -> Iterator[KeyedLanes]:
    handler = KeyedLanes()
    yield handler
    handler.release.set()


def test_the_handler_is_a_laned_handler() -> None:
    assert isinstance(KeyedLanes(), LanedHandler)


def test_a_held_lane_holds_back_only_its_own_deliveries_and_no_ack_covers_them(
        settings: AmqpSettings, topology: Topology, channel: BlockingChannel, acks: list[tuple[int, bool]],
        lanes_handler: KeyedLanes) -> None:
    with running_consumer(settings, topology.inbound_queue, lanes_handler,
                          dead_letter_exchange=topology.dead_letter_exchange):
        publish(settings, keyed(topology.inbound_exchange, 1))
        wait_for(lanes_handler.waiting.is_set, timeout_s=20, what="lane 1 holding its batch")
        publish(settings, keyed(topology.inbound_exchange, 0, 2, 3, 4, 5, 6, 8))
        evens = [0, 2, 4, 6, 8]
        wait_for(lambda: sorted(lanes_handler.keys()) == evens and len(acks) == len(evens), timeout_s=20,
                 what="lane 0's deliveries handled and acked while lane 1 is held")
        assert not any(multiple for _, multiple in acks), acks  # the held delivery (tag 1) is below them
        lanes_handler.release.set()
        wait_for(lambda: len(lanes_handler.keys()) == 8, timeout_s=20, what="lane 1's deliveries after release")
    odd = [k for _, k in lanes_handler.handled if k % 2]
    assert odd == [1, 3, 5], "one lane keeps its deliveries' order"
    threads = {thread for thread, _ in lanes_handler.handled}
    assert len(threads) == 2 and all(name.startswith("consumer-") for name in threads), threads
    wait_for(lambda: queue_depth(channel, topology.inbound_queue) == 0, timeout_s=20, what="nothing requeued")


def test_a_lane_retry_requeues_the_delivery_and_it_comes_back(
        settings: AmqpSettings, topology: Topology, channel: BlockingChannel) -> None:
    handler = KeyedLanes(retry_once={2})
    handler.release.set()
    publish(settings, keyed(topology.inbound_exchange, 0, 1, 2, 3))
    with running_consumer(settings, topology.inbound_queue, handler,
                          dead_letter_exchange=topology.dead_letter_exchange):
        wait_for(lambda: sorted(handler.keys()) == [0, 1, 2, 3], timeout_s=20, what="every key, 2 after its retry")
    assert queue_depth(channel, topology.inbound_queue) == 0
    assert queue_depth(channel, topology.dead_letter_queue) == 0
