"""The one AMQP module of the project (pika, RabbitMQ >= 3.10); see docs/amqp.md.

* ``AmqpSettings`` / ``open_connection`` — heartbeats, timeouts, reconnect backoff with jitter.
* ``declare_topology`` and the names of DESIGN §5 (``INBOUND_EXCHANGE`` …).
* ``Publisher`` — publisher confirms, one message or a batch per round trip.
* ``consume`` — the consumer runner: ACK / REJECT(reason) / RETRY, dead letters with ``x-hub-reason``.
* ``InProcessBus`` — the same interface in memory; ``make_bus`` picks one by HUB_AMQP_URL.
* ``provision_partner_user`` / ``delete_partner_user`` — per-partner users via the management API.
"""

from adapters.amqp.bus import AmqpBus, MessageBus, make_bus
from adapters.amqp.consumer import consume
from adapters.amqp.errors import (
    AmqpError,
    AmqpUnavailable,
    ExchangeTypeMissing,
    ManagementApiError,
    PublishError,
    PublishInterrupted,
    PublishNacked,
    PublishRefused,
    PublishUnroutable,
    TopologyMismatch,
)
from adapters.amqp.inprocess import InProcessBus
from adapters.amqp.management import (
    PartnerPermissions,
    delete_partner_user,
    partner_permissions,
    provision_partner_user,
)
from adapters.amqp.messages import (
    DEAD_LETTERED_AT_HEADER,
    DELIVERY_COUNT_HEADER,
    FIRST_SEEN_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
    SOURCE_HEADER,
    BatchHandler,
    Handler,
    InboundMessage,
    LanedHandler,
    OutboundMessage,
    Outcome,
    OutcomeKind,
    new_message_id,
)
from adapters.amqp.publisher import Publisher
from adapters.amqp.settings import AmqpSettings, open_connection
from adapters.amqp.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    EVENTS_EXCHANGE,
    HUB_TOPOLOGY,
    INBOUND_EXCHANGE,
    INBOUND_QUEUE,
    Topology,
    declare_topology,
    topic_matches,
)

__all__ = [
    "DEAD_LETTERED_AT_HEADER",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "DELIVERY_COUNT_HEADER",
    "EVENTS_EXCHANGE",
    "FIRST_SEEN_HEADER",
    "HUB_TOPOLOGY",
    "INBOUND_EXCHANGE",
    "INBOUND_QUEUE",
    "ORIGINAL_EXCHANGE_HEADER",
    "ORIGINAL_QUEUE_HEADER",
    "ORIGINAL_ROUTING_KEY_HEADER",
    "REASON_HEADER",
    "SOURCE_HEADER",
    "AmqpBus",
    "AmqpError",
    "AmqpSettings",
    "AmqpUnavailable",
    "BatchHandler",
    "ExchangeTypeMissing",
    "Handler",
    "InProcessBus",
    "InboundMessage",
    "LanedHandler",
    "ManagementApiError",
    "MessageBus",
    "OutboundMessage",
    "Outcome",
    "OutcomeKind",
    "PartnerPermissions",
    "PublishError",
    "PublishInterrupted",
    "PublishNacked",
    "PublishRefused",
    "PublishUnroutable",
    "Publisher",
    "Topology",
    "TopologyMismatch",
    "consume",
    "declare_topology",
    "delete_partner_user",
    "make_bus",
    "new_message_id",
    "open_connection",
    "partner_permissions",
    "provision_partner_user",
    "topic_matches",
]
