"""The inbound consumer's own CPU per delivery: adapters.amqp ``consume`` with a batch handler that does nothing.

    python -m bench.consumer_cpu --amqp-url amqp://… --management-url http://… [--messages 20000] [--rounds 3]

What a `hub worker`'s inbound thread spends on a partner record besides the handler: pika reading and parsing
the delivery's frames, ``inbound_message``, the batching, the ``multiple`` ack. Messages shaped like
bench.ingest's (≈1 KB JSON bodies with the partner's properties) are published to a quorum queue with the inbound
queue's arguments, then consumed in batches of 50 (prefetch 200, as the worker) by this thread; its CPU
(``time.thread_time``) from the first delivery to the last, per delivery.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from collections.abc import Sequence

import pika

from adapters.amqp import AmqpSettings, InboundMessage, OutboundMessage, Outcome, Publisher, consume, open_connection
from adapters.amqp.topology import inbound_queue_arguments
from bench.ingest import fresh_vhost

QUEUE = "bench.consumer-cpu"


def body(i: int) -> bytes:
    record = {"message_id": str(uuid.uuid4()), "type": "case-record", "version": 1, "source": "shenyang",
              "occurred_at": "2026-12-01T02:00:00+08:00", "correlation_id": f"SY-{i:08d}",
              "payload": {"external_id": f"SY-{i:08d}", "record_version": 1, "event_seq": 1,
                          "item_code": "210102-0001-XK-0003", "applicant": {"type": "natural_person",
                                                                             "name": "张三", "id_type": "id_card",
                                                                             "id_number": "210102199001011234"},
                          "form": {"field_" + str(k): "值" * 8 for k in range(12)},
                          "step": {"name": "accept", "action": "accept", "at": "2026-12-01T02:00:00+08:00",
                                   "operator": "operator-1", "comment": "受理"}}}
    return json.dumps(record, ensure_ascii=False).encode()


def publish(url: str, user: str, count: int) -> None:
    connection = open_connection(AmqpSettings(url=url))
    connection.channel().queue_declare(QUEUE, durable=True, arguments=inbound_queue_arguments())
    connection.close()
    with Publisher(AmqpSettings(url=url, connection_name="bench-consumer-cpu-publisher")) as publisher:
        for start in range(0, count, 500):
            publisher.publish_many([OutboundMessage(
                exchange="", routing_key=QUEUE, body=body(i), type="case-record.v1", message_id=str(uuid.uuid4()),
                correlation_id=f"SY-{i:08d}", headers={"x-partner-trace": f"t-{i}"}, user_id=user)
                for i in range(start, min(count, start + 500))])


class NoOp:
    """A batch handler that acks everything: only the consumer's own work is left."""

    batch_size = 50
    batch_wait_s = 0.01

    def __init__(self, expected: int, stop: threading.Event) -> None:
        self.expected, self.stop = expected, stop
        self.seen = 0
        self.cpu_started: float | None = None

    def __call__(self, message: InboundMessage) -> Outcome:
        return self.handle_batch([message])[0]

    def handle_batch(self, messages: Sequence[InboundMessage]) -> list[Outcome]:
        if self.cpu_started is None:
            self.cpu_started = time.thread_time()
        self.seen += len(messages)
        if self.seen >= self.expected:
            self.stop.set()
        return [Outcome.ACK] * len(messages)


def one_round(url: str, user: str, count: int) -> float:
    publish(url, user, count)
    stop = threading.Event()
    handler = NoOp(count, stop)
    consume(AmqpSettings(url=url, connection_name="bench-consumer-cpu"), QUEUE, handler, stop_event=stop)
    assert handler.cpu_started is not None
    return (time.thread_time() - handler.cpu_started) / count * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.consumer_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--management-url", required=True)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with fresh_vhost(args.amqp_url, args.management_url) as broker:
        user = pika.URLParameters(broker.admin_url).credentials.username  # type: ignore[attr-defined]
        figures = []
        for round_no in range(1, args.rounds + 1):
            figures.append(one_round(broker.admin_url, user, args.messages))
            print(f"round {round_no}: consumer thread CPU {figures[-1]:.4f} ms/delivery", flush=True)
        print(f"median: {statistics.median(figures):.4f} ms/delivery ({args.messages} deliveries per round, "
              f"batches of {NoOp.batch_size})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
