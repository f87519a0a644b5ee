"""An in-memory bus with the AMQP bus's interface and semantics, for ``hub up`` without RabbitMQ.

Same topology names (topic exchanges, bindings with '*' and '#'), same publish errors (unroutable, wrong
``user_id``, unknown exchange), same settlement (``settlement.settle``: requeue after a backoff delay counts
deliveries, dead letters carry ``x-hub-reason`` and the other ``x-hub-*`` headers). Thread-safe: publishers and any
number of consumers per queue may run in different threads.

What it does not pretend: messages live in this process only (gone on exit), there is no prefetch, and
a message is requeued at the tail. A ``BatchHandler`` gets the messages waiting at that moment (up to its
``batch_size``), without waiting for more.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from adapters.amqp.errors import PublishRefused, PublishUnroutable
from adapters.amqp.messages import BatchHandler, Handler, InboundMessage, OutboundMessage
from adapters.amqp.settlement import (
    Action,
    FirstSeen,
    batch_handler,
    dead_letter_headers,
    retry_delay_s,
    run_batch_handler,
    run_handler,
    settle,
)
from adapters.amqp.topology import ALL_ROUTING_KEYS, DEFAULT_DELIVERY_LIMIT, HUB_TOPOLOGY, Topology, topic_matches
from adapters.resilience import ResiliencePolicy

log = logging.getLogger(__name__)

NOT_FOUND = 404
PRECONDITION_FAILED = 406
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Stored:
    message: OutboundMessage
    published_at: datetime
    delivery_count: int = 0
    redelivered: bool = False


class InProcessBus:
    """The hub topology in memory. ``user`` plays the connection's user (checked against ``user_id``)."""

    def __init__(self, *, user: str = "hub", delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
                 topology: Topology = HUB_TOPOLOGY, clock: Clock = _utcnow, retry_initial_s: float = 0.5,
                 retry_max_s: float = 10.0) -> None:
        self.user = user
        self.delivery_limit = delivery_limit
        self.retry_policy = ResiliencePolicy(backoff_initial_s=retry_initial_s, backoff_max_s=retry_max_s)
        self.topology = topology
        self._clock = clock
        self._changed = threading.Condition()
        self._exchanges: set[str] = set()
        self._bindings: list[tuple[str, str, str]] = []  # (exchange, pattern, queue)
        self._queues: dict[str, deque[_Stored]] = {}
        self._first_seen = FirstSeen()
        for exchange in topology.exchanges:
            self.declare_exchange(exchange)
        self.bind(self.declare_queue(topology.inbound_queue), topology.inbound_exchange, ALL_ROUTING_KEYS)
        self.bind(self.declare_queue(topology.dead_letter_queue), topology.dead_letter_exchange, ALL_ROUTING_KEYS)

    def declare_exchange(self, name: str) -> str:
        with self._changed:
            self._exchanges.add(name)
        return name

    def declare_queue(self, name: str) -> str:
        with self._changed:
            self._queues.setdefault(name, deque())
        return name

    def bind(self, queue: str, exchange: str, pattern: str) -> None:
        with self._changed:
            if queue not in self._queues or exchange not in self._exchanges:
                raise KeyError(f"declare {exchange!r} and {queue!r} before binding them")
            if (exchange, pattern, queue) not in self._bindings:
                self._bindings.append((exchange, pattern, queue))

    def publish(self, message: OutboundMessage) -> None:
        self.publish_many([message])

    def publish_many(self, messages: Sequence[OutboundMessage]) -> None:
        """All-or-report like the AMQP publisher: a refusal stops the call (the rest is unconfirmed);
        unroutable messages are reported together at the end."""
        confirmed: list[str] = []
        unroutable: list[str] = []
        for index, message in enumerate(messages):
            refusal = self._refusal(message)
            if refusal is not None:
                failed = {m.message_id: "unconfirmed" for m in messages[index:]}
                failed[message.message_id] = "refused"
                code, text = refusal
                raise PublishRefused(f"消息服务器拒绝发布 (in-process bus refused the publish: {code} {text})",
                                     reply_code=code, reply_text=text, confirmed=tuple(confirmed), failed=failed)
            if self._route(replace(message, user_id=message.user_id or self.user)) or not message.mandatory:
                confirmed.append(message.message_id)
            else:
                unroutable.append(message.message_id)
        if unroutable:
            raise PublishUnroutable(f"消息无法路由 (in-process bus: no queue bound for {len(unroutable)} message(s))",
                                    confirmed=tuple(confirmed), failed=dict.fromkeys(unroutable, "unroutable"))

    def consume(self, queue: str, handler: Handler | BatchHandler, *, stop_event: threading.Event,
                dead_letter_exchange: str | None = None) -> None:
        """Handle messages of ``queue`` until ``stop_event`` is set, settling them like the AMQP consumer."""
        dlx = dead_letter_exchange or self.topology.dead_letter_exchange
        # An idle consumer blocks until a publish or the stop notifies it: no polling (hub up idles for free).
        threading.Thread(target=self._notify_on, args=(stop_event,), name=f"inprocess-stop-{queue}",
                         daemon=True).start()
        batch = batch_handler(handler)
        while not stop_event.is_set():
            taken = self._take(queue, stop_event, batch.batch_size if batch is not None else 1)
            if not taken:
                continue
            messages = [self._inbound(queue, stored) for stored in taken]
            for message in messages:
                self._first_seen.note(message.message_id, self._clock())
            outcomes = (run_batch_handler(batch, messages) if batch is not None
                        else [run_handler(handler, messages[0])])
            requeue: list[tuple[_Stored, InboundMessage]] = []
            deferred: list[_Stored] = []
            for stored, message, outcome in zip(taken, messages, outcomes, strict=True):
                settlement = settle(message, outcome, self.delivery_limit, dead_letter_exchange=dlx)
                if settlement.action is Action.ACK:
                    self._first_seen.forget(message.message_id)
                elif settlement.action is Action.DEFER:
                    deferred.append(stored)
                elif settlement.action is Action.REQUEUE:
                    requeue.append((stored, message))
                else:
                    self._dead_letter(message, settlement.reason or "rejected", dlx)
            if deferred:  # handed over again first, uncounted, as the AMQP consumer does
                with self._changed:
                    self._queues[queue].extendleft(reversed(deferred))
            if requeue:  # one pause for the batch, as the AMQP consumer does
                stop_event.wait(max(retry_delay_s(m, self.retry_policy) for _, m in requeue))
                for stored, _ in requeue:
                    self._put(queue, replace(stored, delivery_count=stored.delivery_count + 1, redelivered=True))

    def messages(self, queue: str) -> list[InboundMessage]:
        """The messages waiting in ``queue`` (not those being handled), oldest first, without consuming."""
        with self._changed:
            return [self._inbound(queue, stored) for stored in self._queues[queue]]

    def purge(self, queue: str) -> int:
        with self._changed:
            count = len(self._queues[queue])
            self._queues[queue].clear()
            return count

    def close(self) -> None:
        """Nothing to release; present so both buses can be closed alike."""

    def as_user(self, user: str) -> InProcessBus:
        """Another connection to the same in-memory broker, authenticated as ``user`` (e.g. a partner)."""
        view = copy.copy(self)
        view.user = user
        return view

    def _refusal(self, message: OutboundMessage) -> tuple[int, str] | None:
        # The same checks, codes and wording as RabbitMQ, so callers handle both buses alike.
        if message.exchange not in self._exchanges:
            return NOT_FOUND, f"NOT_FOUND - no exchange '{message.exchange}'"
        if message.user_id is not None and message.user_id != self.user:
            return (PRECONDITION_FAILED, f"PRECONDITION_FAILED - user_id property set to '{message.user_id}' "
                                         f"but authenticated user was '{self.user}'")
        return None

    def _route(self, message: OutboundMessage) -> bool:
        with self._changed:
            targets = {queue for exchange, pattern, queue in self._bindings
                       if exchange == message.exchange and topic_matches(pattern, message.routing_key)}
            stored = _Stored(message, published_at=message.timestamp or self._clock())
            for queue in targets:
                self._queues[queue].append(stored)
            if targets:
                self._changed.notify_all()
            return bool(targets)

    def _take(self, queue: str, stop_event: threading.Event, most: int) -> list[_Stored]:
        # Up to ``most`` waiting messages; no waiting for more (there is no network to batch against).
        with self._changed:
            items = self._queues[queue]
            self._changed.wait_for(lambda: bool(items) or stop_event.is_set())
            if stop_event.is_set():
                return []
            return [items.popleft() for _ in range(min(most, len(items)))]

    def _notify_on(self, stop_event: threading.Event) -> None:
        stop_event.wait()
        with self._changed:
            self._changed.notify_all()

    def _put(self, queue: str, stored: _Stored) -> None:
        with self._changed:
            self._queues[queue].append(stored)
            self._changed.notify_all()

    def _dead_letter(self, message: InboundMessage, reason: str, dead_letter_exchange: str) -> None:
        now = self._clock()
        headers = dead_letter_headers(message, reason, first_seen=self._first_seen.note(message.message_id, now),
                                      now=now, trusted_publisher=self.user)
        copy = OutboundMessage(exchange=dead_letter_exchange, routing_key=message.routing_key, body=message.body,
                               type=message.type or "", message_id=message.message_id or "",
                               correlation_id=message.correlation_id, headers=headers,
                               content_type=message.content_type or "application/json",
                               timestamp=message.timestamp, user_id=self.user)
        if not self._route(copy):
            log.error("dead letter %s has no queue bound on %s; dropped (reason was: %s)", message.message_id,
                      dead_letter_exchange, reason)
        self._first_seen.forget(message.message_id)

    def _inbound(self, queue: str, stored: _Stored) -> InboundMessage:
        message = stored.message
        return InboundMessage(
            body=message.body, routing_key=message.routing_key, exchange=message.exchange, queue=queue,
            message_id=message.message_id, user_id=message.user_id, type=message.type,
            correlation_id=message.correlation_id, content_type=message.content_type,
            timestamp=stored.published_at.replace(microsecond=0), headers=dict(message.headers),
            redelivered=stored.redelivered, delivery_count=stored.delivery_count)
