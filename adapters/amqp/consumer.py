"""The consumer runner: deliveries to a handler, settled as the handler says, surviving broker restarts.

``consume(settings, queue, handler, stop_event=...)`` runs until ``stop_event`` is set (``queue`` may be several
queues, consumed on one channel and handed to the handler in the same batches — the shards a worker holds):

* connects (retrying with backoff and jitter for as long as it takes — a broker restart is routine), calls
  ``setup(channel)`` (e.g. ``declare_topology``) on every new connection, sets ``basic_qos(prefetch)`` and
  consumes with manual acks;
* hands a ``BatchHandler`` up to ``batch_size`` deliveries at once (see ``_take_batch``), any other handler one;
* settles each delivery (``settlement.settle``): ACK → basic.ack; DEFER → kept unsettled and handed over
  again first with the next batch; RETRY or a handler exception → after a
  backoff delay (``retry_initial_s`` … ``retry_max_s``), basic.reject(requeue=True), which counts toward
  ``x-delivery-limit``; REJECT, or the last allowed delivery of a retried message → dead letter with the
  reason;
* after a lost connection, reconnects; unacknowledged deliveries return to the queue, so a message may be
  handled twice (the hub deduplicates by ``message_id``) but is never lost.

Dead letters with a reason. ``basic.reject(requeue=False)`` would make the broker dead-letter the message,
but its ``x-death`` header can only say "rejected" or "delivery_limit" and a consumer cannot add headers to
a rejected message. So the runner publishes a copy itself to the dead-letter exchange (hub.dlx) with
``x-hub-reason``, the original exchange, routing key, queue and source, and the first-seen time — on a
confirm channel, and only after the broker confirmed the copy does it ack the original. In that order a
crash in between leaves a duplicate dead letter (same message_id), never a lost one. If the copy is nacked,
unroutable or refused, the runner falls back to basic.reject(requeue=False): the broker's at-least-once
dead-lettering still delivers the message to hub.dlx, only without the reason (which is logged).

A BlockingConnection answers heartbeats only while pika runs, i.e. between handler calls: a handler must
finish well within 2 × ``settings.heartbeat`` or the broker drops the connection (and redelivers).

Apply lanes (adapters/amqp/lanes.py): a ``LanedHandler`` with ``lanes`` > 1 is run on that many threads at once,
each delivery on the lane ``lane_of`` names; this thread only hands deliveries out and settles what the lanes
hand back (pika stays on one thread), so it keeps answering heartbeats however long a batch takes. A
``multiple`` ack then covers only deliveries below the lowest one still unsettled in any lane.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from queue import Empty
from typing import Any

import pika
import pika.exceptions
import pika.spec
from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp.errors import AmqpError, PublishError, PublishInterrupted
from adapters.amqp.lanes import Lanes, Work
from adapters.amqp.messages import (
    JSON,
    BatchHandler,
    Handler,
    InboundMessage,
    OutboundMessage,
    Outcome,
    new_message_id,
    utc_from_epoch,
)
from adapters.amqp.publisher import (
    CONNECTION_ERRORS,
    ChannelRefused,
    ConfirmChannel,
    ConfirmsOverdue,
    basic_properties,
    close_quietly,
    raise_for_state,
)
from adapters.amqp.settings import AmqpSettings, open_connection
from adapters.amqp.settlement import (
    Action,
    FirstSeen,
    Settlement,
    batch_handler,
    dead_letter_headers,
    delivery_count,
    laned_handler,
    retry_delay_s,
    run_batch_handler,
    run_handler,
    settle,
)
from adapters.amqp.topology import DEAD_LETTER_EXCHANGE
from adapters.resilience import backoff_s

log = logging.getLogger(__name__)

POLL_S = 0.25  # how quickly a consumer pausing before a retry notices stop_event
IDLE_WAIT_S = 30.0  # an idle consumer blocks this long at most; deliveries and the stop wake it at once
# A dead letter whose confirm never came: named so the tuple has one exception type for mypy.
_CONFIRM_INTERRUPTIONS: tuple[type[Exception], ...] = (ConfirmsOverdue, *CONNECTION_ERRORS)

Setup = Callable[[BlockingChannel], None]
# Queues to consume too, found anew on every connection (after ``setup``): e.g. retired shard queues to drain.
MoreQueues = Callable[[pika.BlockingConnection], Sequence[str]]
_Delivery = tuple[pika.spec.Basic.Deliver, pika.BasicProperties, bytes]
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def consume(settings: AmqpSettings, queue: str | Sequence[str], handler: Handler | BatchHandler, *,
            stop_event: threading.Event, setup: Setup | None = None, dead_letter_exchange: str = DEAD_LETTER_EXCHANGE,
            clock: Clock = _utcnow, more_queues: MoreQueues | None = None) -> None:
    """Consume ``queue`` (one name, or several) until ``stop_event`` is set. Never raises for broker trouble; it
    reconnects. ``more_queues``: called on every connection, after ``setup``, for queues to consume as well (the
    set may change between connections: a queue deleted cancels the consumer, and the next connection drops it)."""
    queues = (queue,) if isinstance(queue, str) else tuple(queue)
    queue = ", ".join(queues)  # for the log and the lanes' thread names
    first_seen = FirstSeen()
    failures = 0
    waker = _StopWaker(stop_event)
    lanes = _lanes(settings, queue, handler, stop_event, dead_letter_exchange, waker)
    generation = 0  # one per connection: delivery tags are the channel's, never settled on another
    try:
        while not stop_event.is_set():
            generation += 1
            session = _Session(settings, queues, handler, stop_event, dead_letter_exchange, first_seen, clock, waker,
                               lanes=lanes, generation=generation)
            try:
                session.run(setup, more_queues)
            except (pika.exceptions.AMQPError, AmqpError, *CONNECTION_ERRORS) as exc:
                if stop_event.is_set():
                    break
                log.warning("consumer of %s on %s interrupted (%s); reconnecting", queue, settings.where,
                            _describe(exc))
            finally:
                session.close()
            failures = 1 if session.consumed else failures + 1
            if not stop_event.is_set():
                stop_event.wait(backoff_s(settings.backoff_policy, failures))
    finally:
        if lanes is not None:
            lanes.close()
    log.info("consumer of %s stopped", queue)


def _lanes(settings: AmqpSettings, queue: str, handler: Handler | BatchHandler, stop_event: threading.Event,
           dead_letter_exchange: str, waker: _StopWaker) -> Lanes | None:
    """The handler's apply lanes, when it has more than one (they outlive connections: see ``Work``)."""
    laned = laned_handler(handler)
    if laned is None:
        return None

    def settle_one(message: InboundMessage, outcome: Outcome) -> Settlement:
        return settle(message, outcome, settings.delivery_limit, dead_letter_exchange=dead_letter_exchange)

    return Lanes(laned, settle=settle_one, retry_delay_s=lambda m: retry_delay_s(m, settings.retry_policy),
                 stop_event=stop_event, wake=waker.wake, name=f"consumer-{queue}")


class _StopWaker:
    """Wakes the current connection's blocking wait when ``stop_event`` is set, so an idle consumer
    sleeps in pika's I/O wait instead of polling the event."""

    def __init__(self, stop_event: threading.Event) -> None:
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        threading.Thread(target=self._run, args=(stop_event,), name="amqp-consumer-stop", daemon=True).start()

    def attach(self, connection: pika.BlockingConnection | None) -> None:
        with self._lock:
            self._connection = connection

    def wake(self) -> None:
        """Ends the connection's current blocking wait (from any thread; a lane that handed something back)."""
        with self._lock:
            connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(_nothing)
            except Exception:  # closed meanwhile: nothing is waiting on it
                log.debug("consumer connection closed before a lane's wake reached it")

    def _run(self, stop_event: threading.Event) -> None:
        stop_event.wait()
        with self._lock:
            connection = self._connection
        if connection is not None:
            try:  # the only thread-safe call into pika: a no-op callback ends process_data_events
                connection.add_callback_threadsafe(_nothing)
            except Exception:  # closed meanwhile: nothing is waiting on it
                log.debug("consumer connection closed before the stop reached it")


def _nothing() -> None:
    pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker | pika.exceptions.ChannelClosedByBroker):
        return f"{exc.reply_code} {exc.reply_text}"
    if isinstance(exc, AmqpError):
        return exc.message
    return type(exc).__name__


class _Session:
    """One connection's worth of consuming."""

    def __init__(self, settings: AmqpSettings, queues: Sequence[str], handler: Handler | BatchHandler,
                 stop_event: threading.Event,
                 dead_letter_exchange: str, first_seen: FirstSeen, clock: Clock, waker: _StopWaker, *,
                 lanes: Lanes | None = None, generation: int = 0) -> None:
        self.settings = settings
        self.queues = tuple(queues)
        self.queue = ", ".join(self.queues)  # for the log
        self._queue_of: dict[str, str] = {}  # consumer tag -> its queue
        self.handler = handler
        self.stop_event = stop_event
        self.dead_letter_exchange = dead_letter_exchange
        self.first_seen = first_seen
        self.clock = clock
        self.waker = waker
        self.consumed = False  # reached the consuming state: the next reconnect starts with a short wait
        self._connection: pika.BlockingConnection | None = None
        self._dead_letters: ConfirmChannel | None = None
        self._pending: deque[_Delivery] = deque()
        self.lanes = lanes
        self.generation = generation
        # With lanes: every delivery tag of this channel not settled yet (pending, in a lane, deferred).
        self._unsettled: set[int] = set()

    def run(self, setup: Setup | None, more_queues: MoreQueues | None = None) -> None:
        self._connection = open_connection(self.settings, attempts=1, stop_event=self.stop_event)
        self.waker.attach(self._connection)
        channel = self._connection.channel()
        if setup is not None:
            setup(channel)
        if more_queues is not None:
            extra = [q for q in more_queues(self._connection) if q not in self.queues]
            self.queues = (*self.queues, *extra)
            self.queue = ", ".join(self.queues)
        channel.basic_qos(prefetch_count=self.settings.prefetch)
        self._queue_of = {channel.basic_consume(queue, self._on_delivery): queue for queue in self.queues}
        tags = list(self._queue_of)
        self.consumed = True
        if self.lanes is not None:
            self._run_lanes(channel, tags, self.lanes)
            return
        batch = batch_handler(self.handler)
        while not self.stop_event.is_set():
            if not self._pending:
                self._connection.process_data_events(time_limit=IDLE_WAIT_S)
            if self._pending and batch is not None:
                self._deliver_batch(channel, batch, self._take_batch(batch))
            elif self._pending:
                self._deliver(channel, *self._pending.popleft())
            elif not set(tags) <= set(channel.consumer_tags):
                # Cancelled by the broker (queue deleted, leader moved): reconnect and consume again.
                log.warning("broker cancelled the consumer of %s", self.queue)
                return
        # Cancel first so nothing new arrives; deliveries prefetched but not handled go back to the queue
        # once, when the connection closes. (pika's generator API instead nacks them before its cancel
        # takes effect, so they can come back and be returned twice — on RabbitMQ 3.x every return counts
        # toward x-delivery-limit.)
        for tag in tags:
            channel.basic_cancel(tag)

    def _queue(self, method: pika.spec.Basic.Deliver) -> str:
        return self._queue_of.get(method.consumer_tag, self.queues[0])

    def _on_delivery(self, _channel: BlockingChannel, method: pika.spec.Basic.Deliver,
                     properties: pika.BasicProperties, body: bytes) -> None:
        # Only queue it: handling happens in run(), outside pika's event dispatch, where waiting for the
        # dead-letter confirm can end as soon as the confirm arrives.
        self._pending.append((method, properties, body))
        if self.lanes is not None:
            self._unsettled.add(method.delivery_tag)

    def _run_lanes(self, channel: BlockingChannel, tags: list[str], lanes: Lanes) -> None:
        """Hand deliveries to the lanes and settle what they hand back, until stopped (see the module)."""
        assert self._connection is not None
        lanes.begin(self.generation)
        while not self.stop_event.is_set():
            self._settle_lanes(channel, lanes)
            if self._pending:
                self._submit(lanes)
            elif not set(tags) <= set(channel.consumer_tags):
                log.warning("broker cancelled the consumer of %s", self.queue)
                return  # what the lanes still hold is dropped with this connection's generation
            if lanes.finished.empty() and not self._pending:
                self._connection.process_data_events(time_limit=IDLE_WAIT_S)  # deliveries and lanes wake it
        # Stopping: each lane finishes the batch it holds (commit), its settlements are sent, then the cancel;
        # what no lane started goes back to the queue when the connection closes.
        while lanes.working() or not lanes.finished.empty():
            self._settle_lanes(channel, lanes)
            if lanes.working() and lanes.finished.empty():
                self._connection.process_data_events(time_limit=POLL_S)
        for tag in tags:
            channel.basic_cancel(tag)

    def _submit(self, lanes: Lanes) -> None:
        now = self.clock()
        works: list[Work] = []
        while self._pending:
            method, properties, body = self._pending.popleft()
            message = inbound_message(self._queue(method), method, properties, body)
            self.first_seen.note(message.message_id, now)
            works.append(Work(self.generation, method.delivery_tag, message))
        lanes.submit(works)

    def _settle_lanes(self, channel: BlockingChannel, lanes: Lanes) -> None:
        """Send the broker what the lanes handed back: acks first (``multiple`` below the lowest delivery still
        unsettled anywhere), then dead letters and requeues. Another connection's are dropped, unsent."""
        while True:
            try:
                finished = lanes.finished.get_nowait()
            except Empty:
                return
            settled = [(work, s) for work, s in finished.settled if work.generation == self.generation]
            if len(settled) < len(finished.settled):
                log.info("dropped %d settlement(s) of a closed connection; the broker redelivers those messages",
                         len(finished.settled) - len(settled))
            acks = sorted(work.tag for work, s in settled if s.action is Action.ACK)
            self._unsettled.difference_update(acks)
            lowest = min(self._unsettled, default=None)
            covered = [t for t in acks if lowest is None or t < lowest]
            if covered:  # every unsettled delivery up to covered[-1] is in covered: one ack for them all
                channel.basic_ack(covered[-1], multiple=len(covered) > 1)
            for t in acks[len(covered):]:
                channel.basic_ack(t)
            for work, settlement in settled:
                if settlement.action is Action.ACK:
                    self.first_seen.forget(work.message.message_id)
                elif settlement.action is Action.DEAD_LETTER:
                    self._dead_letter(channel, work.tag, work.message, settlement)
                    self._unsettled.discard(work.tag)
                elif settlement.action is Action.REQUEUE:
                    channel.basic_reject(work.tag, requeue=True)  # reject, not nack: see _deliver
                    self._unsettled.discard(work.tag)

    def close(self) -> None:
        self.waker.attach(None)
        close_quietly(self._connection)
        self._connection = None

    def _deliver(self, channel: BlockingChannel, method: pika.spec.Basic.Deliver,
                 properties: pika.BasicProperties, body: bytes) -> None:
        message = inbound_message(self._queue(method), method, properties, body)
        self.first_seen.note(message.message_id, self.clock())
        settlement = settle(message, run_handler(self.handler, message), self.settings.delivery_limit,
                            dead_letter_exchange=self.dead_letter_exchange)
        tag = method.delivery_tag
        if settlement.action is Action.ACK:
            channel.basic_ack(tag)
            self.first_seen.forget(message.message_id)
        elif settlement.action is Action.DEFER:  # only batch handlers defer; kept, handled again next
            self._pause(POLL_S)
            self._pending.appendleft((method, properties, body))
        elif settlement.action is Action.REQUEUE:
            self._pause(retry_delay_s(message, self.settings.retry_policy))
            # reject, not nack: from RabbitMQ 4.3 only basic.reject(requeue) counts toward x-delivery-limit
            # (basic.nack means "not now", not "failed"); on 3.x both count.
            channel.basic_reject(tag, requeue=True)
        else:
            self._dead_letter(channel, tag, message, settlement)

    def _take_batch(self, handler: BatchHandler) -> list[_Delivery]:
        """Up to ``batch_size`` deliveries: what is prefetched already, and what arrives within ``batch_wait_s``
        of the first (pika's I/O wait returns as soon as a delivery comes in: nothing spins)."""
        assert self._connection is not None
        self._connection.process_data_events(time_limit=0)  # read what the broker has sent meanwhile
        deadline = time.monotonic() + handler.batch_wait_s
        while (len(self._pending) < handler.batch_size and not self.stop_event.is_set()
               and (remaining := deadline - time.monotonic()) > 0):
            self._connection.process_data_events(time_limit=remaining)
        return [self._pending.popleft() for _ in range(min(handler.batch_size, len(self._pending)))]

    def _deliver_batch(self, channel: BlockingChannel, handler: BatchHandler, deliveries: list[_Delivery]) -> None:
        """Handle a batch, then settle it: acks first (one ``multiple`` ack when all succeeded), then dead
        letters, then — after one pause for the whole batch — the requeues. Deferred deliveries go back to the
        front of the pending ones, unsettled, in their order: the next batch starts with them."""
        messages = [inbound_message(self._queue(delivery[0]), *delivery) for delivery in deliveries]
        now = self.clock()
        for message in messages:
            self.first_seen.note(message.message_id, now)
        settlements = [settle(message, outcome, self.settings.delivery_limit,
                              dead_letter_exchange=self.dead_letter_exchange)
                       for message, outcome in zip(messages, run_batch_handler(handler, messages), strict=True)]
        tags = [method.delivery_tag for method, _, _ in deliveries]
        # A ``multiple`` ack settles every earlier delivery of the channel: only when none is left unsettled
        # (a delivery deferred by an earlier batch is in this one, ahead of the rest).
        all_acked = all(s.action is Action.ACK for s in settlements) and all(
            method.delivery_tag > max(tags) for method, _, _ in self._pending)
        if all_acked:
            channel.basic_ack(max(tags), multiple=True)
        for tag, message, settlement in zip(tags, messages, settlements, strict=True):
            if settlement.action is Action.ACK:
                if not all_acked:
                    channel.basic_ack(tag)
                self.first_seen.forget(message.message_id)
            elif settlement.action is Action.DEAD_LETTER:
                self._dead_letter(channel, tag, message, settlement)
        deferred = [delivery for delivery, settlement in zip(deliveries, settlements, strict=True)
                    if settlement.action is Action.DEFER]
        if deferred and len(deferred) == len(deliveries):
            self._pause(POLL_S)  # nothing of the batch could be done now: no busy loop over it
        self._pending.extendleft(reversed(deferred))
        requeue = [(tag, message) for tag, message, settlement in zip(tags, messages, settlements, strict=True)
                   if settlement.action is Action.REQUEUE]
        if requeue:
            self._pause(max(retry_delay_s(message, self.settings.retry_policy) for _, message in requeue))
            for tag, _ in requeue:
                channel.basic_reject(tag, requeue=True)  # reject, not nack: see _deliver

    def _pause(self, seconds: float) -> None:
        # Waits while pika keeps running (heartbeats); new deliveries just queue up in _pending.
        assert self._connection is not None
        deadline = time.monotonic() + seconds
        while not self.stop_event.is_set() and (remaining := deadline - time.monotonic()) > 0:
            self._connection.process_data_events(time_limit=min(remaining, POLL_S))

    def _dead_letter(self, channel: BlockingChannel, tag: int, message: InboundMessage,
                     settlement: Settlement) -> None:
        reason = settlement.reason or "rejected"
        now = self.clock()
        copy = OutboundMessage(
            exchange=self.dead_letter_exchange, routing_key=message.routing_key, body=message.body,
            type=message.type or "", message_id=message.message_id or new_message_id(),
            correlation_id=message.correlation_id, content_type=message.content_type or JSON,
            timestamp=message.timestamp,
            headers=dead_letter_headers(message, reason, first_seen=self.first_seen.note(message.message_id, now),
                                        now=now, trusted_publisher=self.settings.username))
        try:
            self._publish_dead_letter(copy)
        except PublishInterrupted:
            raise  # the connection is gone; the original comes back and is handled again
        except PublishError as exc:
            log.error("could not publish dead letter %s with its reason (%s); rejecting it to the broker's "
                      "dead-lettering instead; reason was: %s", message.message_id, exc.message, reason)
            channel.basic_reject(tag, requeue=False)
            return
        channel.basic_ack(tag)
        self.first_seen.forget(message.message_id)
        log.info("dead-lettered message %s from %s (routing key %s): %s", message.message_id, message.queue,
                 message.routing_key, reason)

    def _publish_dead_letter(self, copy: OutboundMessage) -> None:
        assert self._connection is not None
        timeout_s = self.settings.confirm_timeout_s
        try:
            if self._dead_letters is None or not self._dead_letters.is_open:
                self._dead_letters = ConfirmChannel(self._connection, timeout_s=timeout_s)
            properties = basic_properties(copy, self.settings.username, self.settings.connection_name)
            state = self._dead_letters.publish([(copy, properties)], timeout_s=timeout_s)
        except ChannelRefused as exc:
            self._dead_letters = None
            raise PublishError(f"rabbitmq refused the dead letter: {exc.reply_code} {exc.reply_text}") from None
        except _CONFIRM_INTERRUPTIONS as exc:
            raise PublishInterrupted(f"dead letter not confirmed ({type(exc).__name__})") from None
        raise_for_state(state)


def inbound_message(queue: str, method: pika.spec.Basic.Deliver, properties: pika.BasicProperties,
                    body: bytes) -> InboundMessage:
    headers: dict[str, Any] = dict(properties.headers or {})
    return InboundMessage(
        body=body,
        routing_key=method.routing_key,
        exchange=method.exchange,
        queue=queue,
        message_id=properties.message_id,
        user_id=properties.user_id,
        type=properties.type,
        correlation_id=properties.correlation_id,
        content_type=properties.content_type,
        timestamp=utc_from_epoch(properties.timestamp),
        headers=headers,
        redelivered=bool(method.redelivered),
        delivery_count=delivery_count(headers),
    )
