"""Publishing with publisher confirms, one message or many per round trip.

pika's ``BlockingChannel.confirm_delivery()`` makes every ``basic_publish`` wait for its own confirm: one
broker round trip (a quorum-queue fsync) per message. ``ConfirmChannel`` instead puts the channel into
confirm mode with its own ack/nack callback and tracks delivery tags, so a batch is written at once and the
confirms (often ``multiple=True`` acks) are awaited together. That callback is registered on the
underlying ``pika.channel.Channel`` (``BlockingChannel._impl``), and a batch is published on it too (its
frames queued, then written while the confirms are awaited, instead of one I/O loop pass per message) — the
only use of a private pika attribute in the project, kept in this one class and covered by the broker tests,
so a pika upgrade that breaks it fails loudly. Everything else is pika's public BlockingConnection API.

Error contract (``adapters.amqp.errors``): nack → PublishNacked; mandatory publish returned → PublishUnroutable;
channel closed by the broker (access refused, wrong ``user_id``, missing exchange) → PublishRefused; connection
lost or confirms overdue → PublishInterrupted, and the connection is dropped. Each error lists the message ids
that were confirmed and why the others failed. Nothing is retried inside a call, because an unconfirmed
message may already be in the queue; the next call reconnects (with backoff and jitter) and the caller
republishes — consumers deduplicate by ``message_id``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pika
import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp.errors import (
    AmqpUnavailable,
    PublishError,
    PublishInterrupted,
    PublishNacked,
    PublishRefused,
    PublishUnroutable,
)
from adapters.amqp.messages import PERSISTENT, OutboundMessage, epoch_seconds
from adapters.amqp.settings import AmqpSettings, open_connection

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
# Losing the connection surfaces as one of these; pika raises the Channel* ones when it notices the
# connection died under an open channel.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)


def basic_properties(message: OutboundMessage, user_id: str, app_id: str) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=message.content_type,
        delivery_mode=PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        timestamp=epoch_seconds(message.timestamp),
        user_id=message.user_id or user_id,
        app_id=app_id,
        headers=dict(message.headers) or None,
    )


@dataclass
class ConfirmState:
    """The fate of each message of one call, by message id."""

    outstanding: dict[int, str] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)
    nacked: list[str] = field(default_factory=list)
    returned: set[str] = field(default_factory=set)

    @property
    def confirmed(self) -> tuple[str, ...]:
        return tuple(mid for mid in self.acked if mid not in self.returned)

    def failures(self, unsent: Sequence[str] = ()) -> dict[str, str]:
        failed = {mid: "nacked" for mid in self.nacked}
        failed.update({mid: "unroutable" for mid in self.returned})
        failed.update({mid: "unconfirmed" for mid in self.outstanding.values()})
        failed.update({mid: "unconfirmed" for mid in unsent})
        return failed


class ChannelRefused(Exception):
    """Internal: the broker closed the confirm channel (carries its reply)."""

    def __init__(self, reply_code: int, reply_text: str) -> None:
        super().__init__(reply_code, reply_text)
        self.reply_code = reply_code
        self.reply_text = reply_text


class ConfirmsOverdue(Exception):
    """Internal: confirms did not arrive within the timeout."""


class ConfirmChannel:
    """A channel in confirm mode on a BlockingConnection whose confirms are tracked by delivery tag."""

    def __init__(self, connection: pika.BlockingConnection, *, timeout_s: float) -> None:
        self._connection = connection
        self._channel = connection.channel()
        self._next_tag = 0
        self._state = ConfirmState()
        self._selected = False
        self._closed_by_broker: pika.exceptions.ChannelClosedByBroker | None = None
        impl = self._channel._impl  # see the module docstring
        impl.add_on_close_callback(self._on_close)
        # Returns on the impl channel too: BlockingChannel queues them until it may dispatch events (never
        # inside a pika callback), but a return must be seen as its frame arrives, before its message's ack.
        impl.add_on_return_callback(self._on_return)
        impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_select_ok)
        self._wait(lambda: self._selected, time.monotonic() + timeout_s)

    @property
    def is_open(self) -> bool:
        return self._channel.is_open and self._closed_by_broker is None

    def publish(self, items: Sequence[tuple[OutboundMessage, pika.BasicProperties]], *,
                timeout_s: float) -> ConfirmState:
        """Publish all items (mandatory unless a message says otherwise), wait for every confirm. Raises ChannelRefused,
        ConfirmsOverdue or a connection error; ``self.state`` then tells what was confirmed."""
        self._state = ConfirmState()
        impl = self._channel._impl  # see the module docstring
        try:
            for message, properties in items:
                self._next_tag += 1
                self._state.outstanding[self._next_tag] = message.message_id
                # On the impl channel: the frames are only queued; the wait for the confirms below writes them
                # all. BlockingChannel.basic_publish ran pika's I/O loop once per message to write its three
                # frames (epoll register, poll, unregister): 0.075 against 0.033 ms of CPU per message.
                impl.basic_publish(message.exchange, message.routing_key, message.body, properties,
                                   mandatory=message.mandatory)
                self._raise_if_refused()
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise ChannelRefused(exc.reply_code, exc.reply_text) from None
        except pika.exceptions.ChannelWrongStateError:
            self._raise_if_refused()  # closed by the broker under us: say why
            raise
        write_as_one(self._channel)
        # A basic.return always precedes the ack of its message, and both are handled as their frames
        # arrive, so once nothing is outstanding every return has been seen.
        self._wait(lambda: not self._state.outstanding, time.monotonic() + timeout_s)
        return self._state

    @property
    def state(self) -> ConfirmState:
        return self._state

    def _wait(self, done: Callable[[], bool], deadline: float) -> None:
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConfirmsOverdue()
            self._connection.process_data_events(time_limit=min(remaining, 1.0))
            self._raise_if_refused()

    def _raise_if_refused(self) -> None:
        if self._closed_by_broker is not None:
            raise ChannelRefused(self._closed_by_broker.reply_code, self._closed_by_broker.reply_text)

    def _wake(self) -> None:
        # A 0-delay timer ends process_data_events at once instead of at its time limit.
        self._connection.call_later(0, _noop)

    def _on_select_ok(self, _frame: pika.frame.Method[Any]) -> None:
        self._selected = True
        self._wake()

    def _on_confirm(self, frame: pika.frame.Method[Any]) -> None:
        method = frame.method
        tags = ([tag for tag in self._state.outstanding if tag <= method.delivery_tag] if method.multiple
                else [method.delivery_tag])
        target = self._state.nacked if isinstance(method, pika.spec.Basic.Nack) else self._state.acked
        for tag in tags:
            message_id = self._state.outstanding.pop(tag, None)
            if message_id is not None:
                target.append(message_id)
        if not self._state.outstanding:
            self._wake()

    def _on_return(self, _channel: Any, _method: Any, properties: pika.BasicProperties, _body: bytes) -> None:
        if properties.message_id:
            self._state.returned.add(properties.message_id)

    def _on_close(self, _channel: Any, reason: Exception) -> None:
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            self._closed_by_broker = reason
            self._wake()


def _noop() -> None:
    pass


def write_as_one(channel: BlockingChannel) -> None:
    """Join the frames pika has queued on ``channel``'s connection into one buffer, so they go out in one
    ``send()`` instead of one per frame.

    pika queues every frame as its own buffer and its transport writes each with its own ``send()``: a message is
    three (method, header, body), so a batch of 60 events was 180 system calls, each through the loopback TCP
    stack — a third of the relay's CPU per event (bench/relay_passes.py). The bytes and their order are
    unchanged; a partial ``send()`` of the joined buffer is requeued by pika as for any buffer. Private pika
    attributes (the transport's ``_tx_buffers``), like ``_impl`` above: if a pika upgrade renames them, this does
    nothing and the frames go out one by one, as before (tests/adapters/amqp/test_publisher.py says so).
    """
    transport = getattr(channel._impl.connection, "_transport", None)
    buffers = getattr(transport, "_tx_buffers", None)
    if isinstance(buffers, deque) and len(buffers) > 1:
        joined = b"".join(buffers)
        buffers.clear()
        buffers.append(joined)


def raise_for_state(state: ConfirmState) -> None:
    """Turn nacks and returns into the matching error; the worse failure (unroutable) wins."""
    failed = state.failures()
    if not failed:
        return
    ids = ", ".join(sorted(failed)[:5]) + (" …" if len(failed) > 5 else "")
    if state.returned:
        raise PublishUnroutable(f"消息无法路由 (rabbitmq: no queue bound for {len(state.returned)} message(s): {ids})",
                                confirmed=state.confirmed, failed=failed)
    raise PublishNacked(f"消息服务器拒收 (rabbitmq nacked {len(state.nacked)} message(s): {ids})",
                        confirmed=state.confirmed, failed=failed)


class Publisher:
    """Publishes with confirms over one connection, reconnecting on the next call after a failure.

    Not thread-safe (no pika connection is): give each thread its own Publisher, or share one behind a lock
    (``AmqpBus`` does).
    """

    def __init__(self, settings: AmqpSettings, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.settings = settings
        self.batch_size = batch_size
        self._connection: pika.BlockingConnection | None = None
        self._channel: ConfirmChannel | None = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def publish(self, message: OutboundMessage) -> None:
        self.publish_many([message])

    def publish_many(self, messages: Sequence[OutboundMessage]) -> None:
        """Publish all messages, ``batch_size`` in flight at a time; return when every one is confirmed.
        On failure the error's ``confirmed`` lists every message id confirmed by this call."""
        confirmed: list[str] = []
        for start in range(0, len(messages), self.batch_size):
            chunk = messages[start:start + self.batch_size]
            try:
                confirmed.extend(self._publish_chunk(chunk))
            except PublishError as exc:
                exc.confirmed = (*confirmed, *exc.confirmed)
                for message in messages[start + len(chunk):]:
                    exc.failed[message.message_id] = "unconfirmed"
                raise

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        close_quietly(connection)

    def _publish_chunk(self, chunk: Sequence[OutboundMessage]) -> tuple[str, ...]:
        channel = self._ready_channel()
        items = [(m, basic_properties(m, self.settings.username, self.settings.connection_name)) for m in chunk]
        try:
            state = channel.publish(items, timeout_s=self.settings.confirm_timeout_s)
        except ChannelRefused as exc:
            self._channel = None
            state = channel.state
            raise PublishRefused(
                f"消息服务器拒绝发布 (rabbitmq refused the publish: {exc.reply_code} {exc.reply_text})",
                reply_code=exc.reply_code, reply_text=exc.reply_text, confirmed=state.confirmed,
                failed=_unsent_too(state, chunk)) from None
        except ConfirmsOverdue:
            self.close()
            raise self._interrupted(channel.state, chunk,
                                    f"confirms overdue after {self.settings.confirm_timeout_s:g} s") from None
        except CONNECTION_ERRORS as exc:
            self.close()
            raise self._interrupted(channel.state, chunk, f"connection lost ({type(exc).__name__})") from None
        raise_for_state(state)
        return state.confirmed

    def _interrupted(self, state: ConfirmState, chunk: Sequence[OutboundMessage], why: str) -> PublishInterrupted:
        failed = _unsent_too(state, chunk)
        log.warning("publish to %s interrupted: %s; %d message(s) unconfirmed", self.settings.where, why,
                    len(failed))
        return PublishInterrupted(f"消息发布中断 (rabbitmq publish interrupted: {why})",
                                  confirmed=state.confirmed, failed=failed)

    def _ready_channel(self) -> ConfirmChannel:
        if self._connection is not None and not _alive(self._connection):
            # Lost while idle: nothing is in flight, so reconnecting now is safe.
            self.close()
        if self._connection is None:
            self._connection = open_connection(self.settings)
        if self._channel is None or not self._channel.is_open:
            try:
                self._channel = ConfirmChannel(self._connection, timeout_s=self.settings.confirm_timeout_s)
            except (pika.exceptions.AMQPError, ConfirmsOverdue, ChannelRefused, *CONNECTION_ERRORS) as exc:
                self.close()
                raise AmqpUnavailable.because(
                    f"cannot open a confirm channel on {self.settings.where} ({type(exc).__name__})") from None
        return self._channel


def _unsent_too(state: ConfirmState, chunk: Sequence[OutboundMessage]) -> dict[str, str]:
    known = set(state.acked) | set(state.nacked) | state.returned | set(state.outstanding.values())
    return state.failures(unsent=[m.message_id for m in chunk if m.message_id not in known])


def _alive(connection: pika.BlockingConnection) -> bool:
    if not connection.is_open:
        return False
    try:
        connection.process_data_events(time_limit=0)
    except (pika.exceptions.AMQPError, *CONNECTION_ERRORS):
        return False
    return bool(connection.is_open)


def close_quietly(connection: pika.BlockingConnection | None) -> None:
    if connection is None or not connection.is_open:
        return
    try:
        connection.close()
    except (pika.exceptions.AMQPError, *CONNECTION_ERRORS):
        pass  # already gone; nothing left to release
