"""The in-process bus keeps the AMQP bus's semantics (no broker needed for these tests)."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from adapters.amqp import (
    DEAD_LETTER_QUEUE,
    DELIVERY_COUNT_HEADER,
    EVENTS_EXCHANGE,
    INBOUND_EXCHANGE,
    INBOUND_QUEUE,
    ORIGINAL_ROUTING_KEY_HEADER,
    SOURCE_HEADER,
    Handler,
    InboundMessage,
    InProcessBus,
    Outcome,
    PublishRefused,
    PublishUnroutable,
    make_bus,
    topic_matches,
)
from adapters.amqp.settlement import Action, Settlement, retry_delay_s, settle
from adapters.resilience import ResiliencePolicy
from tests.adapters.amqp.conftest import message, wait_for

LIMIT = 3


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus(user="hub", delivery_limit=LIMIT, retry_initial_s=0.001, retry_max_s=0.005)


@contextmanager
def consuming(bus: InProcessBus, handler: Handler, *, threads: int = 1, queue: str = INBOUND_QUEUE
              ) -> Iterator[None]:
    stop = threading.Event()
    workers = [threading.Thread(target=bus.consume, args=(queue, handler), kwargs={"stop_event": stop})
               for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=5)
    assert not any(worker.is_alive() for worker in workers)


def recorder(decide: Callable[[InboundMessage], Outcome] = lambda _m: Outcome.ACK
             ) -> tuple[list[InboundMessage], Handler]:
    seen: list[InboundMessage] = []
    lock = threading.Lock()

    def handler(delivered: InboundMessage) -> Outcome:
        with lock:
            seen.append(delivered)
        return decide(delivered)

    return seen, handler


def test_each_message_is_handled_exactly_once_across_consumers(bus: InProcessBus) -> None:
    sent = [message(INBOUND_EXCHANGE, body=b'{"n": %d}' % i) for i in range(200)]
    seen, handler = recorder()
    with consuming(bus, handler, threads=4):
        bus.publish_many(sent[:100])
        for m in sent[100:]:
            bus.publish(m)
        wait_for(lambda: len(seen) >= 200, timeout_s=10, what="200 deliveries")
    assert Counter(m.message_id for m in seen) == Counter(m.message_id for m in sent)
    assert {(m.user_id, m.delivery_count, m.redelivered) for m in seen} == {("hub", 0, False)}
    assert bus.messages(INBOUND_QUEUE) == [] and bus.messages(DEAD_LETTER_QUEUE) == []


def test_reject_dead_letters_with_the_reason(bus: InProcessBus) -> None:
    poison = message(INBOUND_EXCHANGE, "city-210100.case-record.v1", headers={"x-case": "210102-1"})
    bus.publish(poison)
    seen, handler = recorder(lambda _m: Outcome.reject("wrong region: 210200 is not city-210100's"))
    with consuming(bus, handler):
        wait_for(lambda: bool(bus.messages(DEAD_LETTER_QUEUE)), timeout_s=5, what="the dead letter")
    [dead] = bus.messages(DEAD_LETTER_QUEUE)
    assert dead.message_id == poison.message_id and dead.body == poison.body
    assert dead.reason == "wrong region: 210200 is not city-210100's"
    assert dead.headers[ORIGINAL_ROUTING_KEY_HEADER] == "city-210100.case-record.v1"
    assert dead.headers[SOURCE_HEADER] == "hub"
    assert dead.headers["x-case"] == "210102-1"
    assert len(seen) == 1


def test_exceptions_are_retried_up_to_the_limit_then_dead_lettered(bus: InProcessBus) -> None:
    poison = message(INBOUND_EXCHANGE)

    def explode(delivered: InboundMessage) -> Outcome:
        if delivered.message_id == poison.message_id:
            raise KeyError("payload")
        return Outcome.ACK

    seen, handler = recorder(explode)
    bus.publish(poison)
    with consuming(bus, handler):
        wait_for(lambda: bool(bus.messages(DEAD_LETTER_QUEUE)), timeout_s=5, what="the dead letter")
        good = message(INBOUND_EXCHANGE)
        # The consumer keeps running after the poison message.
        bus.publish(good)
        wait_for(lambda: any(m.message_id == good.message_id for m in seen), timeout_s=5, what="the next message")
    [dead] = bus.messages(DEAD_LETTER_QUEUE)
    assert [m.delivery_count for m in seen[:-1]] == list(range(LIMIT + 1))
    assert [m.redelivered for m in seen[:2]] == [False, True]
    assert dead.reason == f"retries exhausted after {LIMIT + 1} deliveries; last: handler raised KeyError"
    assert dead.headers[DELIVERY_COUNT_HEADER] == LIMIT + 1


def test_a_foreign_user_id_is_refused_and_unroutable_messages_are_reported(bus: InProcessBus) -> None:
    forged = message(INBOUND_EXCHANGE, user_id="city-210100")
    with pytest.raises(PublishRefused) as refused:
        bus.publish(forged)
    assert refused.value.reply_code == 406 and "user_id property set to 'city-210100'" in refused.value.reply_text

    routable, nowhere = message(INBOUND_EXCHANGE), message(EVENTS_EXCHANGE, "case.accepted.v1")
    with pytest.raises(PublishUnroutable) as unroutable:
        bus.publish_many([routable, nowhere])
    assert unroutable.value.confirmed == (routable.message_id,)
    assert unroutable.value.failed == {nowhere.message_id: "unroutable"}

    with pytest.raises(PublishRefused) as missing:
        bus.publish(message("no-such-exchange"))
    assert missing.value.reply_code == 404


def test_partner_queues_bind_to_events_with_topic_patterns(bus: InProcessBus) -> None:
    bus.bind(bus.declare_queue("partner.city-210100.events"), EVENTS_EXCHANGE, "case.*.v1")
    bus.publish(message(EVENTS_EXCHANGE, "case.accepted.v1"))
    with pytest.raises(PublishUnroutable):
        bus.publish(message(EVENTS_EXCHANGE, "catalog.changed.v1"))
    assert [m.routing_key for m in bus.messages("partner.city-210100.events")] == ["case.accepted.v1"]
    assert bus.purge("partner.city-210100.events") == 1


@pytest.mark.parametrize(("pattern", "key", "matches"), [
    ("#", "city-210100.case-record.v1", True),
    ("#", "", True),
    ("city-210100.#", "city-210100.case-record.v1", True),
    ("city-210100.#", "city-210100", True),
    ("*.case-record.*", "city-210100.case-record.v1", True),
    ("*.case-record.*", "city-210100.case-event.v1", False),
    ("case.*", "case.accepted.v1", False),
    ("case.#.v1", "case.accepted.v1", True),
    ("a.*.c", "a.c", False),
])
def test_topic_matching_follows_amqp(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


def test_settlement_dead_letters_on_the_last_allowed_delivery() -> None:
    def delivered(count: int) -> InboundMessage:
        return InboundMessage(body=b"", routing_key="k", exchange="x", queue="q", message_id="m", user_id=None,
                              type=None, correlation_id=None, content_type=None, timestamp=None, headers={},
                              redelivered=count > 0, delivery_count=count)

    def settled(count: int, outcome: Outcome) -> Settlement:
        return settle(delivered(count), outcome, LIMIT, dead_letter_exchange="hub.dlx")

    assert settled(LIMIT - 1, Outcome.RETRY).action is Action.REQUEUE
    assert settled(LIMIT, Outcome.retry("busy")) == Settlement(
        Action.DEAD_LETTER, f"retries exhausted after {LIMIT + 1} deliveries; last: busy")
    assert settled(0, Outcome.ACK).action is Action.ACK
    assert settled(0, Outcome.reject("bad")) == Settlement(Action.DEAD_LETTER, "bad")
    # A dead letter is never dead-lettered again: it stays in its queue.
    assert settle(delivered(LIMIT), Outcome.reject("bad"), LIMIT, dead_letter_exchange="x").action is Action.REQUEUE
    with pytest.raises(ValueError):
        Outcome.reject("")


def test_retries_back_off_exponentially_up_to_the_cap() -> None:
    policy = ResiliencePolicy(backoff_initial_s=0.5, backoff_max_s=10.0)

    def delay(count: int) -> float:
        return retry_delay_s(dataclasses.replace(message_in_queue, delivery_count=count), policy)

    message_in_queue = InboundMessage(body=b"", routing_key="k", exchange="x", queue="q", message_id="m",
                                      user_id=None, type=None, correlation_id=None, content_type=None,
                                      timestamp=None, headers={}, redelivered=False, delivery_count=0)
    assert 0.5 <= delay(0) <= 1.0
    assert 2.0 <= delay(2) <= 2.5
    assert delay(10) == 10.0


def test_a_dead_letter_whose_handler_fails_stays_queued_with_its_reason(bus: InProcessBus) -> None:
    bus.publish(message(INBOUND_EXCHANGE))
    with consuming(bus, lambda _m: Outcome.reject("schema violation")):
        wait_for(lambda: bool(bus.messages(DEAD_LETTER_QUEUE)), timeout_s=5, what="the dead letter")

    attempts: list[InboundMessage] = []

    def store_dead_letter(delivered: InboundMessage) -> Outcome:
        attempts.append(delivered)
        if len(attempts) <= LIMIT + 2:
            raise ConnectionError("database unavailable")
        return Outcome.ACK

    with consuming(bus, store_dead_letter, queue=DEAD_LETTER_QUEUE):
        wait_for(lambda: len(attempts) == LIMIT + 3, timeout_s=5, what="the dead letter to be stored at last")
    assert {a.reason for a in attempts} == {"schema violation"}
    assert bus.messages(DEAD_LETTER_QUEUE) == []


def test_without_an_amqp_url_the_hub_gets_the_in_process_bus() -> None:
    assert isinstance(make_bus(None), InProcessBus)
    assert isinstance(make_bus("", delivery_limit=7), InProcessBus)
    assert make_bus(None, delivery_limit=7).delivery_limit == 7  # type: ignore[union-attr]


def test_a_deferred_message_is_handed_over_again_first_and_uncounted(bus: InProcessBus) -> None:
    sent = [message(INBOUND_EXCHANGE, body=b'{"n": %d}' % i) for i in range(6)]
    held = sent[0].message_id
    batches: list[list[InboundMessage]] = []

    class Deferring:
        batch_size, batch_wait_s = 3, 0.0

        def __call__(self, delivered: InboundMessage) -> Outcome:
            return self.handle_batch([delivered])[0]

        def handle_batch(self, messages: list[InboundMessage]) -> list[Outcome]:
            batches.append(list(messages))
            first_time = sum(m.message_id == held for batch in batches for m in batch) == 1
            return [Outcome.DEFER if m.message_id == held and first_time else Outcome.ACK for m in messages]

    bus.publish_many(sent)
    with consuming(bus, Deferring()):  # type: ignore[arg-type]
        wait_for(lambda: sum(len(b) for b in batches) >= len(sent) + 1, timeout_s=10, what="every message acked")
    assert Counter(m.message_id for b in batches for m in b) == Counter(
        {**{m.message_id: 1 for m in sent}, held: 2})
    assert batches[1][0].message_id == held
    assert {(m.delivery_count, m.redelivered) for b in batches for m in b if m.message_id == held} == {(0, False)}
    assert bus.messages(INBOUND_QUEUE) == [] and bus.messages(DEAD_LETTER_QUEUE) == []
