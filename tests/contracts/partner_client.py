"""A new city platform's client of the hub, written from what the hub serves over HTTP and nothing else.

It knows the hub's base URL and the credentials the hub's operator handed over (`hub partners add --json`).
Everything else — the REST path, the exchange and routing keys, the broker's host and vhost, the envelope's
`type` and `version`, the record's required fields and allowed values, the schemas events are checked
against — it reads from ``/openapi.json``, ``/asyncapi.json`` and ``/schemas/…``. It imports nothing of the
project (hub, adapters, workflow, mocks, tests) and reads no file: tests/contracts/test_new_partner.py checks
both on this module's syntax tree. Only the standard library, httpx, pika, jsonschema and referencing (the
latter two: the JSON Schema validator and its ``$ref`` resolution).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urljoin

import httpx
import jsonschema
import pika
import referencing
import referencing.exceptions
from referencing.jsonschema import DRAFT202012


@dataclass(frozen=True)
class Credentials:
    """What the hub's operator hands a new partner (the JSON of `hub partners add --json`)."""

    code: str
    secret: str
    amqp_username: str
    vhost: str
    events_queue_prefix: str

    @classmethod
    def from_json(cls, text: str) -> Credentials:
        data = json.loads(text)
        return cls(data["code"], data["secret"], data["amqp_username"], data["vhost"], data["events_queue_prefix"])


@dataclass
class HubContracts:
    """The hub's published contracts, fetched over HTTP and cached."""

    base_url: str
    http: httpx.Client = field(init=False)
    _documents: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/") + "/"
        self.http = httpx.Client(timeout=30, trust_env=False)

    def get_json(self, url: str) -> Any:
        url = urljoin(self.base_url, url)
        if url not in self._documents:
            answer = self.http.get(url)
            answer.raise_for_status()
            self._documents[url] = answer.json()
        return self._documents[url]

    @property
    def openapi(self) -> dict[str, Any]:
        return dict(self.get_json("openapi.json"))

    @property
    def asyncapi(self) -> dict[str, Any]:
        return dict(self.get_json("asyncapi.json"))

    # --- JSON Schemas ------------------------------------------------------------------------------

    def schema_index(self) -> dict[str, str]:
        """Each served schema's ``$id`` → the URL the hub serves it at (``GET /schemas``)."""
        return {entry["id"]: entry["url"] for entry in self.get_json("schemas")["schemas"]}

    def _retrieve(self, uri: str) -> referencing.Resource[Any]:
        served = self.schema_index().get(uri, uri)
        if not served.startswith(self.base_url):
            raise referencing.exceptions.NoSuchResource(uri)  # only what this hub serves
        return DRAFT202012.create_resource(self.get_json(served))

    def validator(self, schema: dict[str, Any]) -> jsonschema.protocols.Validator:
        """A draft 2020-12 validator whose ``$ref``s resolve against the hub's served schemas only."""
        registry: referencing.Registry[Any] = referencing.Registry(retrieve=self._retrieve)
        return jsonschema.Draft202012Validator(schema, registry=registry,
                                               format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    def errors(self, schema: dict[str, Any], document: Any) -> list[str]:
        return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in self.validator(schema).iter_errors(document)]

    # --- AsyncAPI ------------------------------------------------------------------------------------

    def async_message(self, name: str) -> dict[str, Any]:
        """An AsyncAPI message by its `name` (the AMQP `type`, e.g. ``case-record.v1``)."""
        for message in self.asyncapi["components"]["messages"].values():
            if message.get("name") == name:
                return dict(message)
        raise LookupError(f"the AsyncAPI document has no message named {name}")

    def message_schema(self, name: str) -> dict[str, Any]:
        """The payload schema of an AsyncAPI message (the envelope with its payload), dereferenced locally."""
        payload = self.async_message(name)["payload"]
        pointer = payload.get("$ref", "")
        if pointer.startswith("#/"):
            node: Any = self.asyncapi
            for part in pointer[2:].split("/"):
                node = node[part]
            return dict(node)
        return dict(payload)

    def record_channel(self, name: str) -> tuple[str, str]:
        """(exchange, routing key template) a partner sends the message ``name`` to."""
        for channel in self.asyncapi["channels"].values():
            refs = [m.get("$ref", "") for m in channel.get("messages", {}).values()]
            if any(self._message_name(ref) == name for ref in refs):
                exchange = channel["bindings"]["amqp"]["exchange"]["name"]
                return exchange, self.async_message(name)["x-routing-key"]
        raise LookupError(f"no AsyncAPI channel carries {name}")

    def _message_name(self, ref: str) -> str | None:
        key = ref.rsplit("/", 1)[-1]
        message = self.asyncapi["components"]["messages"].get(key)
        return message.get("name") if message else None

    def broker(self) -> tuple[str, int, str]:
        """(host, port, vhost) of the hub's RabbitMQ, from the AsyncAPI server."""
        server = next(iter(self.asyncapi["servers"].values()))
        host, _, port = server["host"].partition(":")
        return host, int(port or 5672), unquote(server.get("pathname", "/").removeprefix("/")) or "/"

    def envelope_constants(self, name: str) -> dict[str, Any]:
        """The ``const`` values the message's envelope schema pins (``type``, ``version``)."""
        constants: dict[str, Any] = {}
        for part in self.message_schema(name).get("allOf", []):
            for key, rule in part.get("properties", {}).items():
                if "const" in rule:
                    constants[key] = rule["const"]
        return constants

    def payload_schema(self, name: str) -> dict[str, Any]:
        """The schema of the envelope's payload for the message ``name`` (fetched from the hub)."""
        for part in self.message_schema(name).get("allOf", []):
            ref = part.get("properties", {}).get("payload", {}).get("$ref")
            if ref:
                return dict(self.get_json(self.schema_index().get(ref, ref)))
        raise LookupError(f"the AsyncAPI message {name} names no payload schema")

    # --- OpenAPI ------------------------------------------------------------------------------------

    def _component(self, node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            return dict(self.openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]])
        return node

    def records_endpoint(self) -> tuple[str, dict[str, Any]]:
        """The REST path that takes a batch of records (a POST whose body has a ``records`` array), and the
        schema of one record as the OpenAPI document states it."""
        for path, operations in self.openapi["paths"].items():
            body = operations.get("post", {}).get("requestBody", {})
            schema = body.get("content", {}).get("application/json", {}).get("schema")
            if not schema:
                continue
            records = self._component(schema).get("properties", {}).get("records", {})
            if records.get("type") == "array":
                return path, self._component(records.get("items", {}))
        raise LookupError("the OpenAPI document has no records endpoint")

    def record_status_path(self) -> str:
        """The GET path answering what became of one message (``…/{message_id}``)."""
        records_path, _ = self.records_endpoint()
        for path, operations in self.openapi["paths"].items():
            if path.startswith(records_path + "/{") and "get" in operations:
                return path
        raise LookupError("the OpenAPI document has no record status endpoint")


class CityPlatform:
    """The new city platform: builds its records from the served schemas and sends them over REST and AMQP."""

    def __init__(self, contracts: HubContracts, credentials: Credentials, *, region: str) -> None:
        self.contracts = contracts
        self.credentials = credentials
        self.region = region

    def case_record(self, external_id: str, item_code: str, *, id_number: str) -> dict[str, Any]:
        """A minimal record: exactly the required fields of the served case-record schema; the first state
        and the submitting action taken from the schema's own enumerations."""
        schema = self.contracts.payload_schema("case-record.v1")
        definitions = schema["$defs"]
        state = definitions["state"]["enum"][0]  # submitted
        action = definitions["step"]["properties"]["action"]["enum"][0]  # submit
        now = datetime.now(UTC).isoformat(timespec="seconds")
        applicant_schema = schema["properties"]["applicant"]
        applicant = {"type": applicant_schema["properties"]["type"]["enum"][0], "name": "张晓明",
                     "id_type": applicant_schema["properties"]["id_type"]["enum"][0], "id_number": id_number}
        payload = {
            "external_id": external_id, "record_version": 1, "item_code": item_code, "region": self.region,
            "applicant": {k: applicant[k] for k in applicant_schema["required"]}, "submitted_at": now,
            "state": state,
            "steps": [{"seq": 1, "action": action, "to_state": state, "at": now, "officer": "网上申报"}],
        }
        if set(payload) != set(schema["required"]):
            raise AssertionError(f"the served schema requires {sorted(schema['required'])}, not {sorted(payload)}")
        return self.envelope("case-record.v1", payload, case_ref=external_id)

    def envelope(self, message_name: str, payload: dict[str, Any], *, case_ref: str) -> dict[str, Any]:
        constants = self.contracts.envelope_constants(message_name)
        return {"message_id": str(uuid.uuid4()), **constants, "source": self.credentials.code,
                "region": self.region, "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "correlation_id": case_ref, "case_ref": case_ref, "payload": payload}

    # --- REST -------------------------------------------------------------------------------------------

    def post_records(self, envelopes: list[dict[str, Any]]) -> dict[str, Any]:
        path, _ = self.contracts.records_endpoint()
        answer = self.contracts.http.post(urljoin(self.contracts.base_url, path.lstrip("/")),
                                          json={"records": envelopes}, auth=self._basic())
        answer.raise_for_status()
        return dict(answer.json())

    def record_status(self, message_id: str) -> httpx.Response:
        path = self.contracts.record_status_path().replace("{message_id}", message_id)
        return self.contracts.http.get(urljoin(self.contracts.base_url, path.lstrip("/")), auth=self._basic())

    def _basic(self) -> tuple[str, str]:
        return self.credentials.code, self.credentials.secret

    # --- AMQP -------------------------------------------------------------------------------------------

    def connection(self) -> pika.BlockingConnection:
        host, port, vhost = self.contracts.broker()
        return pika.BlockingConnection(pika.ConnectionParameters(
            host=host, port=port, virtual_host=vhost, heartbeat=30,
            credentials=pika.PlainCredentials(self.credentials.amqp_username, self.credentials.secret)))

    def events_queue(self, binding_keys: list[str]) -> str:
        """Declare this platform's own queue on the hub's events exchange (declared passively: it is the
        hub's) and bind it."""
        queue = self.credentials.events_queue_prefix + "events"
        exchange = self._events_exchange()
        with self.connection() as connection:
            channel = connection.channel()
            channel.exchange_declare(exchange, passive=True)
            channel.queue_declare(queue, durable=True)
            for key in binding_keys:
                channel.queue_bind(queue, exchange, routing_key=key)
        return queue

    def _events_exchange(self) -> str:
        for channel in self.contracts.asyncapi["channels"].values():
            refs = [m.get("$ref", "") for m in channel.get("messages", {}).values()]
            if any(self._name(ref) == "case.reported.v1" for ref in refs):
                return str(channel["bindings"]["amqp"]["exchange"]["name"])
        raise LookupError("no AsyncAPI channel carries case.reported.v1")

    def _name(self, ref: str) -> str | None:
        return self.contracts._message_name(ref)

    def publish(self, envelopes: list[bytes | dict[str, Any]], *, message_name: str = "case-record.v1") -> None:
        """Publish with confirms: persistent, message_id = the envelope's, user_id = our AMQP user."""
        exchange, template = self.contracts.record_channel(message_name)
        routing_key = template.replace("{partner}", self.credentials.code)
        with self.connection() as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            for envelope in envelopes:
                body = envelope if isinstance(envelope, bytes) else json.dumps(envelope, ensure_ascii=False).encode()
                message_id = str(uuid.uuid4()) if isinstance(envelope, bytes) else envelope["message_id"]
                channel.basic_publish(exchange, routing_key, body, mandatory=True, properties=pika.BasicProperties(
                    delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json",
                    message_id=message_id, user_id=self.credentials.amqp_username, type=message_name))

    def collect(self, queue: str, done: Any, *, timeout_s: float) -> list[tuple[str, dict[str, Any]]]:
        """(routing key, body) of every event on our queue until ``done(events)`` holds or the time is up."""
        events: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout_s
        with self.connection() as connection:
            channel = connection.channel()
            for method, _properties, body in channel.consume(queue, inactivity_timeout=0.5):
                if method is not None:
                    events.append((method.routing_key, json.loads(body)))
                    channel.basic_ack(method.delivery_tag)
                if done(events) or time.monotonic() > deadline:
                    break
            channel.cancel()
        return events
