"""The consumer survives a broker restart in the middle of a stream: every message handled, none lost.

Duplicates are allowed at this layer (deliveries in flight when the broker stopped come back; the hub
deduplicates by message_id); the test counts and prints them.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from adapters.amqp import AmqpSettings, InboundMessage, Outcome, Publisher, Topology, open_connection
from tests.adapters.amqp.conftest import message, queue_depth, rabbitmqctl, running_consumer, wait_for

N = 400


@pytest.mark.slow
def test_stop_app_and_start_app_mid_stream_loses_nothing(settings: AmqpSettings, topology: Topology) -> None:
    sent = [message(topology.inbound_exchange, body=b'{"n": %d}' % i) for i in range(N)]
    with Publisher(settings) as publisher:
        publisher.publish_many(sent)

    handled: Counter[str | None] = Counter()
    lock = threading.Lock()
    quarter_done = threading.Event()
    broker_stopped = threading.Event()

    def handler(delivered: InboundMessage) -> Outcome:
        with lock:
            handled[delivered.message_id] += 1
            pause = len(handled) == N // 4 and not quarter_done.is_set()
        if pause:
            # Hold this delivery until the broker is down, so the restart lands mid-stream for certain:
            # its ack then fails and the message comes back (a counted duplicate).
            quarter_done.set()
            broker_stopped.wait(timeout=60)
        return Outcome.ACK

    with running_consumer(settings, topology.inbound_queue, handler,
                          dead_letter_exchange=topology.dead_letter_exchange):
        assert quarter_done.wait(timeout=30), "the consumer did not get going"
        try:
            rabbitmqctl("stop_app")
            with lock:
                before_restart = len(handled)
        finally:
            broker_stopped.set()
            rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
        wait_for(lambda: len(handled) == N, timeout_s=60, what=f"all {N} messages after the restart")

    assert before_restart < N
    assert set(handled) == {m.message_id for m in sent}
    duplicates = sum(count - 1 for count in handled.values())
    print(f"\nbroker restart: {N} messages handled, {duplicates} duplicate deliveries, "
          f"{before_restart} distinct handled before the restart")

    connection = open_connection(settings)
    try:
        inspect = connection.channel()
        assert queue_depth(inspect, topology.inbound_queue) == 0
        assert queue_depth(inspect, topology.dead_letter_queue) == 0
    finally:
        connection.close()
