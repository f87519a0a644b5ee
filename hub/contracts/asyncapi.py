"""The AsyncAPI 3.0.0 document of the hub's AMQP side, generated — never hand-written — from:

* the topology (adapters/amqp/topology.py): exchange names, their type and durability;
* the record types the consumer accepts (hub/exchange/service.py ``RECORD_TYPES``) and their schemas;
* every event the hub publishes (hub/contracts/events.py) and its payload schema;
* the broker the hub is configured with (``HUB_AMQP_URL``: host, port and vhost — never its credentials).

Everything is written from the partner's point of view: it *sends* records to ``hub.inbound`` and *receives*
events from ``hub.events`` through a queue of its own. Payloads reference the schemas this hub serves
(``<hub>/schemas/<path of $id>``, hub/contracts/router.py), so a partner's tooling resolves every ``$ref``
from the running hub alone. The document is rendered once per (base URL, broker) and cached with its ETag.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

import pika

from adapters.amqp.management import PUBLIC_EVENT_PREFIXES
from adapters.amqp.topology import HUB_TOPOLOGY, Topology
from hub.contracts.catalogue import ID_PREFIX, served_schemas
from hub.contracts.events import PublishedEvent, published_events
from hub.exchange.service import RECORD_TYPES

ASYNCAPI_VERSION = "3.0.0"
BINDING_VERSION = "0.3.0"
DOCUMENT_VERSION = "1.0.0"
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
# The hub's own header on every event: the region the event concerns (hub/outbox/relay.py).
REGION_HEADER = "x-hub-region"


def rendered(*, base_url: str, settings: Any) -> tuple[bytes, str]:
    """The document as JSON bytes and its ETag, for the hub at ``base_url`` (ending in "/")."""
    return _rendered(base_url, settings.amqp_url, settings.public_base_url)


@lru_cache(maxsize=16)
def _rendered(base_url: str, amqp_url: str | None, public_base_url: str) -> tuple[bytes, str]:
    document = build(base_url=base_url, broker=Broker.from_url(amqp_url, fallback_host=public_base_url))
    body = json.dumps(document, ensure_ascii=False, indent=1).encode()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


class Broker:
    """Where partners connect: host, port, vhost, scheme. Built from the hub's AMQP URL without its user or
    password; with no broker configured (the in-process bus of ``hub up``) the public host and port 5672."""

    def __init__(self, *, scheme: str, host: str, port: int, vhost: str, configured: bool) -> None:
        self.scheme, self.host, self.port, self.vhost, self.configured = scheme, host, port, vhost, configured

    @classmethod
    def from_url(cls, amqp_url: str | None, *, fallback_host: str) -> Broker:
        if not amqp_url:
            from urllib.parse import urlsplit

            host = urlsplit(fallback_host).hostname or "127.0.0.1"
            return cls(scheme="amqp", host=host, port=DEFAULT_PORTS["amqp"], vhost="/", configured=False)
        scheme = "amqps" if amqp_url.startswith("amqps:") else "amqp"
        params = pika.URLParameters(amqp_url)
        return cls(scheme=scheme, host=str(params.host), port=int(params.port), vhost=str(params.virtual_host),
                   configured=True)

    @property
    def user_example(self) -> str:
        """A partner's AMQP user: its code on vhost "/", else "<vhost>.<code>" (users are broker-wide)."""
        return "{partner}" if self.vhost == "/" else f"{self.vhost}.{{partner}}"


def build(*, base_url: str, broker: Broker, topology: Topology = HUB_TOPOLOGY) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document (a plain dict)."""
    schemas_url = base_url + "schemas/"
    events = published_events()
    inbound = [_record_message(record_type, schemas_url) for record_type in sorted(RECORD_TYPES)]
    outbound = [_event_message(event, schemas_url) for event in events]
    messages = {name: message for name, message, _ in [*inbound, *outbound]}
    schemas = {name: schema for _, _, (name, schema) in [*inbound, *outbound]}
    schemas["Envelope"] = {"$ref": schemas_url + "envelope.v1.json"}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:cn:gov:hub-example:approval-exchange-hub",
        "info": {
            "title": "Provincial approval exchange hub — AMQP",
            "version": DOCUMENT_VERSION,
            "description": _info_description(broker, topology, base_url),
            "externalDocs": {"description": "REST side (OpenAPI 3)", "url": base_url + "openapi.json"},
        },
        "defaultContentType": "application/json",
        "servers": {"hub": _server(broker)},
        "channels": {
            topology.inbound_exchange: _inbound_channel(topology, broker, [name for name, _, _ in inbound]),
            topology.events_exchange: _events_channel(topology, broker, events,
                                                      [name for name, _, _ in outbound]),
        },
        "operations": _operations(topology, broker, inbound, outbound, events),
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": {"partnerUser": {
                "type": "userPassword",
                "description": "The partner's own RabbitMQ user and secret, from `hub partners add CODE --json` "
                               "(`amqp_username`, `secret`); the same secret is the partner's REST password.",
            }},
        },
    }


def _info_description(broker: Broker, topology: Topology, base_url: str) -> str:
    user = broker.user_example.replace("{partner}", "<partner>")
    return "\n".join([
        "How a partner platform (a city platform, a department system, the national system) exchanges records "
        "and events with the provincial hub over RabbitMQ (AMQP 0-9-1).",
        "",
        f"* **Send** records to the topic exchange `{topology.inbound_exchange}` with routing key "
        "`<partner>.<record type>.v<N>` (e.g. `shenyang.case-record.v1`): persistent (`delivery_mode=2`), "
        "`content_type=application/json`, `message_id` = the envelope's `message_id` (a UUID: the deduplication "
        f"key), and **`user_id` = your AMQP user name** (`{user}`, the `amqp_username` of "
        "`hub partners add --json`). RabbitMQ refuses a message whose `user_id` is not the connection's user, so "
        "the hub knows who sent it; the envelope's `source` must be your partner code. Use publisher confirms. "
        "Your topic permissions allow only your own routing keys.",
        "* **Receive** events from the topic exchange "
        f"`{topology.events_exchange}` through a queue of your own: declare `partner.<partner>.<anything>` "
        "(durable) and bind it to your routing keys: `partner.<partner>.#` (your rejections), "
        + ", ".join(f"`{prefix}.#`" for prefix in PUBLIC_EVENT_PREFIXES)
        + " (your user may bind no other keys). "
        f"Declare `{topology.events_exchange}` **passively** (`exchange_declare(..., passive=True)`) or not at "
        "all: a non-passive declaration of a hub exchange is refused with 403 and closes the channel. Events "
        "may arrive twice: deduplicate by `message_id`.",
        "* **Rejections**: every message of yours the hub rejects or dead-letters comes back as "
        "`partner.rejected.v1` on routing key `partner.<partner>.rejected.v1`, naming the message id, the "
        f"field and the rule. `GET {base_url}api/v1/exchange/records/{{message_id}}` tells what became of one "
        "message.",
        f"* Every payload references a JSON Schema this hub serves at `{base_url}schemas/<path>` (the path of "
        f"its `$id`, `{ID_PREFIX}<path>`); the index is `{base_url}schemas`.",
    ])


def _server(broker: Broker) -> dict[str, Any]:
    description = (f"The hub's RabbitMQ broker, virtual host `{broker.vhost}`. Connect as your partner user; "
                   "heartbeats on; TLS where the URL says amqps.")
    if not broker.configured:
        description += (" This hub runs with its in-process bus (no HUB_AMQP_URL): no broker listens here; "
                        "partners use the REST endpoint `POST /api/v1/exchange/records` until one is configured.")
    return {
        "host": f"{broker.host}:{broker.port}",
        "pathname": "/" + broker.vhost.lstrip("/") if broker.vhost != "/" else "/",
        "protocol": broker.scheme,
        "protocolVersion": "0.9.1",
        "description": description,
        "security": [{"$ref": "#/components/securitySchemes/partnerUser"}],
    }


def _exchange_binding(name: str, broker: Broker) -> dict[str, Any]:
    return {"amqp": {
        "is": "routingKey",
        "exchange": {"name": name, "type": "topic", "durable": True, "autoDelete": False, "vhost": broker.vhost},
        "bindingVersion": BINDING_VERSION,
    }}


def _inbound_channel(topology: Topology, broker: Broker, names: list[str]) -> dict[str, Any]:
    record_types = sorted({record_type.rpartition(".v")[0] for record_type in RECORD_TYPES})
    return {
        "address": "{partner}.{recordType}.v1",
        "title": f"Records partners send ({topology.inbound_exchange})",
        "description": (f"Topic exchange `{topology.inbound_exchange}` (durable). The hub consumes it through the "
                        f"quorum queue `{topology.inbound_queue}`; a message it can never apply is dead-lettered to "
                        f"`{topology.dead_letter_exchange}` → `{topology.dead_letter_queue}` with its reason, and "
                        "comes back to the sender as `partner.<partner>.rejected.v1` on "
                        f"`{topology.events_exchange}`. Partners cannot read these queues."),
        "parameters": {
            "partner": {"description": "your partner code (one routing-key word: [a-z0-9][a-z0-9_-]*)"},
            "recordType": {"enum": record_types, "description": "the envelope's `type`; `version` is 1"},
        },
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
        "bindings": _exchange_binding(topology.inbound_exchange, broker),
    }


def _events_channel(topology: Topology, broker: Broker, events: list[PublishedEvent],
                    names: list[str]) -> dict[str, Any]:
    return {
        "address": "{routingKey}",
        "title": f"Events the hub publishes ({topology.events_exchange})",
        "description": (f"Topic exchange `{topology.events_exchange}` (durable); the routing key is the event type "
                        "(`case.<event>.v1`, `alert.<event>.v1`, `catalog.<event>.v1`, `rating.received.v1`, "
                        "`audit.checkpoint.v1`, `payment.<event>.v1`), except a partner's rejections, which travel "
                        "on that partner's own "
                        "key `partner.<partner>.rejected.v1`. Bind a queue named `partner.<partner>.<anything>` "
                        "with the keys you want; declare this exchange passively. Every event's body is the envelope "
                        "(`source: \"hub\"`) and its AMQP `type` property is the event type."),
        "parameters": {"routingKey": {
            "description": "the routing key of one event type; see each message's `x-routing-key`",
            "examples": [event.routing_key.replace("{partner}", "shenyang") for event in events],
        }},
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
        "bindings": _exchange_binding(topology.events_exchange, broker),
    }


def _operations(topology: Topology, broker: Broker, inbound: list[tuple[str, Any, Any]],
                outbound: list[tuple[str, Any, Any]], events: list[PublishedEvent]) -> dict[str, Any]:
    inbound_ref, events_ref = (f"#/channels/{topology.inbound_exchange}", f"#/channels/{topology.events_exchange}")

    def refs(channel: str, names: list[str]) -> list[dict[str, str]]:
        return [{"$ref": f"{channel}/messages/{name}"} for name in names]

    families: dict[str, list[str]] = {}
    for (name, _, _), event in zip(outbound, events, strict=True):
        families.setdefault(event.event_type.split(".")[0], []).append(name)
    titles = {"case": "Receive case events", "alert": "Receive supervision alerts",
              "catalog": "Receive catalogue changes", "rating": "Receive ratings (好差评)",
              "audit": "Receive audit checkpoints", "partner": "Receive your rejections",
              "payment": "Receive fee payment events"}
    operations: dict[str, Any] = {
        "sendRecord": {
            "action": "send",
            "channel": {"$ref": inbound_ref},
            "title": "Send a record or a case step",
            "description": ("Publish with confirms to `hub.inbound`, routing key `<partner>.<record type>.v1`, "
                            "persistent, `user_id` = your AMQP user, `message_id` = the envelope's. Application "
                            "headers are not read: any `x-hub-*` header you set is ignored."),
            "security": [{"$ref": "#/components/securitySchemes/partnerUser"}],
            "messages": refs(inbound_ref, [name for name, _, _ in inbound]),
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "userId": broker.user_example,
                                  "timestamp": True, "bindingVersion": BINDING_VERSION}},
        },
    }
    for family, names in families.items():
        description = ("Consume from your own queue `partner.<partner>.<anything>` bound to "
                       f"`{topology.events_exchange}`; ack after processing; deduplicate by `message_id`.")
        if family not in (*PUBLIC_EVENT_PREFIXES, "partner"):
            # adapters/amqp/management.py: a partner user's topic read on hub.events covers only these keys.
            description += (f" Not for partner users: their binding keys on `{topology.events_exchange}` are "
                            "limited to `partner.<partner>.#` and "
                            + ", ".join(f"`{prefix}.#`" for prefix in PUBLIC_EVENT_PREFIXES)
                            + "; these events go to the hub's supervision and audit consumers.")
        operations[f"receive{family.capitalize()}Events"] = {
            "action": "receive",
            "channel": {"$ref": events_ref},
            "title": titles.get(family, f"Receive {family} events"),
            "description": description,
            "security": [{"$ref": "#/components/securitySchemes/partnerUser"}],
            "messages": refs(events_ref, names),
            "bindings": {"amqp": {"ack": True, "bindingVersion": BINDING_VERSION}},
        }
    return operations


def _camel(text: str) -> str:
    return "".join(word[:1].upper() + word[1:] for word in text.replace("-", ".").replace("_", ".").split("."))


def _envelope_schema(*, envelope_type: str, version: int, payload_ref: str, schemas_url: str,
                     source: str | None) -> dict[str, Any]:
    fixed: dict[str, Any] = {"type": {"const": envelope_type}, "version": {"const": version},
                             "payload": {"$ref": payload_ref}}
    if source is not None:
        fixed["source"] = {"const": source}
    return {"allOf": [{"$ref": schemas_url + "envelope.v1.json"}, {"type": "object", "properties": fixed}]}


# A minimal record of each type, for a partner's first message: a case of the demo catalogue (`hub up`:
# 医师执业注册 of 沈阳市卫健委, region 210100), submitted, then one step (its acceptance). Replace the item code,
# region and ids with yours; tests/contracts/test_asyncapi.py sends both to the hub and checks they apply.
EXAMPLE_ITEM_CODE = "210100007010160005"
EXAMPLE_PAYLOADS: dict[str, dict[str, Any]] = {
    "case-record.v1": {
        "external_id": "SY-2026-000123", "record_version": 1, "item_code": EXAMPLE_ITEM_CODE, "region": "210100",
        "applicant": {"type": "1", "name": "张三", "id_type": "citizen_id", "id_number": "11010519491231002X"},
        "submitted_at": "2026-03-09T09:00:00+08:00", "state": "submitted",
        "steps": [{"seq": 1, "action": "submit", "to_state": "submitted", "at": "2026-03-09T09:00:00+08:00",
                   "officer": "王科员"}],
    },
    "case-event.v1": {
        "external_id": "SY-2026-000123",
        "step": {"seq": 2, "action": "accept", "to_state": "under_review", "at": "2026-03-09T10:00:00+08:00",
                 "officer": "王科员", "opinion": "材料齐全，予以受理"},
    },
}
EXAMPLE_MESSAGE_IDS = {"case-record.v1": "0b6f3f0e-5d7c-4c1e-9a51-6d2f1c3b7a01",
                       "case-event.v1": "0b6f3f0e-5d7c-4c1e-9a51-6d2f1c3b7a02"}


def _record_example(record_type: str) -> dict[str, Any]:
    envelope_type, _, version = record_type.rpartition(".v")
    return {
        "name": f"minimal-{envelope_type}",
        "summary": "partner shenyang's first message; publish with routing key shenyang." + record_type,
        "payload": {
            "message_id": EXAMPLE_MESSAGE_IDS[record_type], "type": envelope_type, "version": int(version),
            "source": "shenyang", "region": "210100", "occurred_at": "2026-03-09T09:00:05+08:00",
            "correlation_id": "SY-2026-000123", "payload": EXAMPLE_PAYLOADS[record_type],
        },
    }


def _record_message(record_type: str, schemas_url: str) -> tuple[str, dict[str, Any], tuple[str, Any]]:
    envelope_type, _, version = record_type.rpartition(".v")
    schema_path = _served_path(RECORD_TYPES[record_type])
    name = _camel(envelope_type)
    schema_name = f"{name}Envelope"
    message = {
        "name": record_type,
        "title": f"{record_type} record",
        "summary": served_schemas()[schema_path].title,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{schema_name}"},
        "headers": {"type": "object", "description": "No application header is read; x-hub-* headers a partner "
                                                     "sets are ignored."},
        "correlationId": {"location": "$message.payload#/message_id",
                          "description": "the envelope's message_id, also the AMQP message_id"},
        "bindings": {"amqp": {"messageType": record_type, "bindingVersion": BINDING_VERSION}},
        "x-routing-key": f"{{partner}}.{record_type}",
    }
    if record_type in EXAMPLE_PAYLOADS:
        message["examples"] = [_record_example(record_type)]
    schema = _envelope_schema(envelope_type=envelope_type, version=int(version), source=None,
                              payload_ref=schemas_url + schema_path, schemas_url=schemas_url)
    return name, message, (schema_name, schema)


def _event_message(event: PublishedEvent, schemas_url: str) -> tuple[str, dict[str, Any], tuple[str, Any]]:
    name = _camel(event.envelope_type)
    schema_name = f"{name}Envelope"
    message = {
        "name": event.event_type,
        "title": event.event_type,
        "summary": event.summary,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{schema_name}"},
        "headers": {"type": "object", "properties": {REGION_HEADER: {
            "type": "string", "pattern": "^\\d{6}$", "description": "the region the event concerns"}}},
        "correlationId": {"location": "$message.payload#/correlation_id",
                          "description": "the case's tracking number (an item's code for catalogue events)"},
        "bindings": {"amqp": {"messageType": event.event_type, "bindingVersion": BINDING_VERSION}},
        "x-routing-key": event.routing_key,
    }
    if "{partner}" in event.routing_key:
        message["description"] = ("Only the partner concerned receives it: bind `partner.<partner>.#` (or "
                                  f"`{event.routing_key.replace('{partner}', '<partner>')}`).")
    schema = _envelope_schema(envelope_type=event.envelope_type, version=event.version, source="hub",
                              payload_ref=schemas_url + event.schema, schemas_url=schemas_url)
    return name, message, (schema_name, schema)


def _served_path(file_name: str) -> str:
    """The served path of a schema file of schemas/ (its ``$id`` path)."""
    for path in served_schemas():
        if path.rpartition("/")[2] == file_name:
            return path
    raise LookupError(f"schemas/{file_name} is not served")

