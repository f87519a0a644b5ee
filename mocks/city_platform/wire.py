"""The wire: publishing as the partner over AMQP, and consuming the hub's events."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import pika.exceptions

from mocks.city_platform.report import SimulationReport
from mocks.city_platform.spec import DEFAULT_SECRET, EVENTS_EXCHANGE, INBOUND_EXCHANGE, BrokerRefused, SimulatorError

log = logging.getLogger("mocks.city_platform")


def partner_url(amqp_url: str, partner: str, secret: str | None = None) -> str:
    """``amqp_url`` with the partner's credentials when it names no user: its RabbitMQ user as
    `hub partners add` names it (the code in vhost "/", else ``<vhost>.<code>``)."""
    parts = urlsplit(amqp_url)
    if parts.username:
        return amqp_url
    host = parts.hostname or "127.0.0.1"
    vhost = unquote(parts.path[1:]) or "/"
    user = partner if vhost == "/" else f"{vhost}.{partner}"
    netloc = f"{quote(user, safe='')}:{quote(secret or DEFAULT_SECRET, safe='')}@{host}:{parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc))


class PartnerPublisher:
    """Publishes as the partner: persistent, mandatory, confirmed, ``user_id`` = the AMQP user. Survives broker
    restarts by reconnecting with backoff and publishing the unconfirmed message again (same message_id)."""

    def __init__(self, amqp_url: str, *, app_id: str = "city-platform", heartbeat: int = 15,
                 reconnect_timeout_s: float = 300.0) -> None:
        self.url = amqp_url
        self.user = unquote(urlsplit(amqp_url).username or "guest")
        self.app_id = app_id
        self.heartbeat = heartbeat
        self.reconnect_timeout_s = reconnect_timeout_s
        self.published = 0
        self.republished = 0
        self.reconnects = 0
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None

    def __enter__(self) -> PartnerPublisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with suppress(pika.exceptions.AMQPError):
                connection.close()

    def _open(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        if self._connection is None or not self._connection.is_open:
            params = pika.URLParameters(self.url)
            params.heartbeat = self.heartbeat
            params.blocked_connection_timeout = 60
            params.socket_timeout = 5
            params.client_properties = {"connection_name": self.app_id}
            self._connection = pika.BlockingConnection(params)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        return self._channel

    def publish(self, routing_key: str, body: bytes, *, message_id: str, type_: str,
                correlation_id: str | None = None, user_id: str | None = None,
                exchange: str = INBOUND_EXCHANGE, headers: Mapping[str, Any] | None = None) -> None:
        properties = pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=message_id, type=type_,
            user_id=user_id or self.user, app_id=self.app_id, correlation_id=correlation_id,
            timestamp=int(time.time()), headers=dict(headers) if headers else None)
        deadline = time.monotonic() + self.reconnect_timeout_s
        failures = 0
        while True:
            try:
                channel = self._open()
                self.published += 1
                if failures:
                    self.republished += 1
                channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
                return
            except pika.exceptions.UnroutableError:
                raise SimulatorError(f"{exchange} routed {routing_key} to no queue: is the hub's topology "
                                     "declared (hub worker)?") from None
            except pika.exceptions.ChannelClosedByBroker as exc:
                self._channel = None
                if exc.reply_code in (403, 404, 406):
                    raise BrokerRefused(exc.reply_code, exc.reply_text) from None
                reason = f"channel closed: {exc.reply_code}"
            except pika.exceptions.ProbableAuthenticationError:
                raise SimulatorError(f"login refused for {self.user}: run `hub partners sync`") from None
            except pika.exceptions.NackError:
                reason = "nacked"  # broker could not take it now (e.g. quorum unavailable): try again
            except (pika.exceptions.AMQPError, OSError) as exc:
                reason = type(exc).__name__
                self.close()
            failures += 1
            if time.monotonic() > deadline:
                raise SimulatorError(f"gave up publishing after {self.reconnect_timeout_s:g} s ({reason})")
            if failures == 1:
                self.reconnects += 1
                log.warning("publish of %s failed (%s); reconnecting", message_id, reason)
            time.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)) * random.uniform(0.5, 1.0))


class EventListener:
    """Reads the hub's events from the partner's own queue, bound to hub.events; reconnects on its own."""

    def __init__(self, amqp_url: str, queue: str, report: SimulationReport, *,
                 binding_keys: Sequence[str] = ("case.#", "catalog.#"), heartbeat: int = 15) -> None:
        self.url = amqp_url
        self.queue = queue
        self.report = report
        self.binding_keys = tuple(binding_keys)
        self.heartbeat = heartbeat
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"city-events-{queue}", daemon=True)
        self.error: BaseException | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        if not self.ready.wait(timeout_s):
            raise SimulatorError(f"could not bind {self.queue} to {EVENTS_EXCHANGE}: {self.error!r}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            connection = None
            try:
                params = pika.URLParameters(self.url)
                params.heartbeat = self.heartbeat
                params.client_properties = {"connection_name": f"{self.queue}-listener"}
                connection = pika.BlockingConnection(params)
                channel = connection.channel()
                channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
                for key in self.binding_keys:
                    channel.queue_bind(self.queue, EVENTS_EXCHANGE, routing_key=key)
                channel.basic_qos(prefetch_count=500)
                channel.basic_consume(self.queue, self._on_event)
                self.ready.set()
                failures = 0
                while not self._stop.is_set():
                    connection.process_data_events(time_limit=0.2)
            except (pika.exceptions.AMQPError, OSError) as exc:
                self.error = exc
                failures += 1
                if isinstance(exc, pika.exceptions.ChannelClosedByBroker) and exc.reply_code == 403:
                    log.error("the broker refused %s: %s", self.queue, exc.reply_text)
                self._stop.wait(min(2.0, 0.05 * 2 ** min(failures, 6)))
            finally:
                if connection is not None and connection.is_open:
                    with suppress(pika.exceptions.AMQPError):
                        connection.close()

    def _on_event(self, channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        message_id = properties.message_id or ""
        with self._lock:
            self.report.event_deliveries += 1
            if message_id not in self.report.event_message_ids:
                self.report.event_message_ids.add(message_id)
                self.report.events_received[properties.type or method.routing_key] += 1
        channel.basic_ack(method.delivery_tag)
