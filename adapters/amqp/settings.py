"""Connection settings and the one way to open a connection: heartbeats, blocked-connection timeout, and
reconnect attempts with exponential backoff and jitter (``adapters.resilience.backoff_s``)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import cached_property

import pika
import pika.exceptions

from adapters.amqp.errors import AmqpUnavailable
from adapters.resilience import ResiliencePolicy, backoff_s

log = logging.getLogger(__name__)

# Retrying a refused login inside one call cannot help; the caller (or the consumer's outer loop) decides.
_LOGIN_REFUSED = (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError,
                  pika.exceptions.AuthenticationError)


@dataclass(frozen=True)
class AmqpSettings:
    """Everything needed to talk to the broker. ``url`` is an AMQP URI (``amqp://user:pw@host:5672/vhost``).

    * ``heartbeat`` (s): the broker drops a connection after two missed heartbeats. A BlockingConnection only
      answers heartbeats while pika runs, so a consumer handler must finish well within 2 × heartbeat.
    * ``blocked_connection_timeout`` (s): a connection blocked by a broker resource alarm is torn down after
      this long, so a publisher fails instead of hanging forever.
    * ``connection_attempts`` per connect call, waiting ``backoff_s`` between attempts
      (``reconnect_initial_s`` doubling up to ``reconnect_max_s``, plus jitter).
    * ``confirm_timeout_s``: how long a publish waits for its confirms before giving up on the connection.
    * ``prefetch``: unacknowledged deliveries per consumer (basic.qos); 100–300 suits the inbound queue.
    * ``delivery_limit``: the queues' ``x-delivery-limit``; the consumer dead-letters a message itself, with
      the reason, on its last allowed delivery.
    * ``retry_initial_s`` doubling up to ``retry_max_s`` (plus jitter): how long the consumer waits before
      requeueing a message the handler asked to retry, so a database outage of a few seconds does not burn
      through the delivery limit of every waiting message.
    """

    url: str
    heartbeat: int = 30
    blocked_connection_timeout: float = 60
    connection_attempts: int = 5
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    socket_timeout_s: float = 5.0
    confirm_timeout_s: float = 30.0
    prefetch: int = 200
    delivery_limit: int = 5
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0
    connection_name: str = "approval-hub"

    def __post_init__(self) -> None:
        if not 1 <= self.prefetch <= 65535:
            raise ValueError("prefetch must be between 1 and 65535")
        if self.delivery_limit < 1 or self.connection_attempts < 1:
            raise ValueError("delivery_limit and connection_attempts must be at least 1")
        if self.heartbeat < 0 or self.confirm_timeout_s <= 0 or self.socket_timeout_s <= 0:
            raise ValueError("heartbeat must be >= 0; confirm_timeout_s and socket_timeout_s positive")
        # Parse once now so a malformed URL fails at start-up, not at the first publish.
        _ = self._base_parameters

    @cached_property
    def _base_parameters(self) -> pika.URLParameters:
        return pika.URLParameters(self.url)

    @property
    def username(self) -> str:
        """The connection's user: the ``user_id`` the broker expects on every message we publish."""
        credentials = self._base_parameters.credentials
        return str(getattr(credentials, "username", ""))

    @property
    def where(self) -> str:
        """``host:port/vhost`` for logs and errors; never the password."""
        params = self._base_parameters
        return f"{params.host}:{params.port}/{params.virtual_host}"

    @property
    def backoff_policy(self) -> ResiliencePolicy:
        return ResiliencePolicy(backoff_initial_s=self.reconnect_initial_s, backoff_max_s=self.reconnect_max_s)

    @property
    def retry_policy(self) -> ResiliencePolicy:
        return ResiliencePolicy(backoff_initial_s=self.retry_initial_s, backoff_max_s=self.retry_max_s)

    def parameters(self) -> pika.URLParameters:
        params = pika.URLParameters(self.url)
        params.heartbeat = self.heartbeat
        params.blocked_connection_timeout = self.blocked_connection_timeout
        params.socket_timeout = self.socket_timeout_s
        params.stack_timeout = self.socket_timeout_s * 3
        # Attempts and their pacing are ours (with jitter); pika's own retry has a fixed delay.
        params.connection_attempts = 1
        params.client_properties = {"connection_name": self.connection_name}
        return params


def open_connection(settings: AmqpSettings, *, attempts: int | None = None,
                    stop_event: threading.Event | None = None) -> pika.BlockingConnection:
    """Connect, trying ``attempts`` times (default ``settings.connection_attempts``; 0 means until
    ``stop_event`` is set) with backoff between attempts. Raises AmqpUnavailable when out of attempts."""
    limit = settings.connection_attempts if attempts is None else attempts
    attempt = 0
    while True:
        attempt += 1
        try:
            return pika.BlockingConnection(settings.parameters())
        except _LOGIN_REFUSED as exc:
            raise AmqpUnavailable.because(
                f"login refused for user {settings.username!r} at {settings.where} ({type(exc).__name__})") from None
        except pika.exceptions.AMQPError as exc:
            reason = f"cannot connect to {settings.where} ({type(exc).__name__})"
        if (limit and attempt >= limit) or (stop_event is not None and stop_event.is_set()):
            raise AmqpUnavailable.because(f"{reason} after {attempt} attempt(s)")
        delay = backoff_s(settings.backoff_policy, attempt)
        log.info("%s; attempt %d, retrying in %.1f s", reason, attempt, delay)
        if stop_event is not None:
            if stop_event.wait(delay):
                raise AmqpUnavailable.because(f"{reason}; stopped while retrying")
        else:
            time.sleep(delay)
