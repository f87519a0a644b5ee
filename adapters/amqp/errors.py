"""AMQP failures, as part of the one adapter error hierarchy (``adapters.errors``).

The counterpart is always ``rabbitmq``. Messages name the broker's reply code and text (exchange, routing key,
user) and never a message body, because bodies carry personal data and these messages end up in logs.

Publish failures carry what is known about each message of the call: ``confirmed`` message ids are safely in
the broker; ``failed`` maps the others to why (``nacked``, ``unroutable``, ``refused``, ``unconfirmed``). An
``unconfirmed`` message may or may not have arrived — the caller retries it and the consumer deduplicates by
message id.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.errors import AdapterError

BROKER = "rabbitmq"


class AmqpError(AdapterError):
    """Base of every AMQP failure."""

    def __init__(self, message: str) -> None:
        super().__init__(BROKER, message)


class AmqpUnavailable(AmqpError):
    """No connection could be opened (after the backoff), or it was lost while nothing was in flight."""

    retryable = True
    retry_now = True
    counts_as_failure = True

    @classmethod
    def because(cls, reason: str) -> AmqpUnavailable:
        return cls(f"消息服务器暂时无法访问 (rabbitmq unavailable: {reason})")


class TopologyMismatch(AmqpError):
    """An exchange or queue exists with other arguments than the ones this code declares (reply 406)."""

    @classmethod
    def because(cls, reply_text: str) -> TopologyMismatch:
        return cls(f"消息队列配置与现有配置不一致 (rabbitmq topology mismatch: {reply_text})")


class ExchangeTypeMissing(AmqpError):
    """The broker does not know an exchange type the topology declares (RabbitMQ closes the connection with 503
    COMMAND_INVALID "unknown exchange type '…'"): a plugin is not enabled. Not retryable — waiting changes
    nothing; the operator enables the plugin or configures the hub not to need it."""

    def __init__(self, message: str, *, exchange_type: str, reply_text: str) -> None:
        super().__init__(message)
        self.exchange_type = exchange_type
        self.reply_text = reply_text


class PublishError(AmqpError):
    """A publish did not end with a positive confirm for every message."""

    def __init__(self, message: str, *, confirmed: tuple[str, ...] = (),
                 failed: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.confirmed = confirmed
        self.failed: dict[str, str] = dict(failed or {})


class PublishNacked(PublishError):
    """The broker could not take responsibility for a message (basic.nack): e.g. a quorum queue without
    quorum, or a full queue with ``x-overflow: reject-publish``. Worth retrying later."""

    retryable = True
    counts_as_failure = True


class PublishUnroutable(PublishError):
    """No queue is bound for the routing key (mandatory publish returned): a topology or naming error."""


class PublishRefused(PublishError):
    """The broker closed the channel: access refused (permissions, topic permissions), a ``user_id`` that is
    not the connection's user, or a missing exchange. Retrying the same message cannot succeed."""

    def __init__(self, message: str, *, reply_code: int, reply_text: str, confirmed: tuple[str, ...] = (),
                 failed: Mapping[str, str] | None = None) -> None:
        super().__init__(message, confirmed=confirmed, failed=failed)
        self.reply_code = reply_code
        self.reply_text = reply_text


class PublishInterrupted(PublishError):
    """The connection was lost, or confirms did not arrive in time, while messages were in flight."""

    retryable = True
    retry_now = True
    counts_as_failure = True


class ManagementApiError(AmqpError):
    """The management HTTP API refused a request or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
