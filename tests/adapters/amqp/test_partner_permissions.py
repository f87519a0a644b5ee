"""Per-partner RabbitMQ users: a partner writes only its own routing keys and reads only its own queues."""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import Iterator
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from adapters.amqp import (
    EVENTS_EXCHANGE,
    INBOUND_EXCHANGE,
    INBOUND_QUEUE,
    AmqpSettings,
    AmqpUnavailable,
    Publisher,
    PublishRefused,
    declare_topology,
    delete_partner_user,
    open_connection,
    partner_permissions,
    provision_partner_user,
)
from adapters.amqp.management import rabbit_password_hash, rabbit_password_matches
from tests.adapters.amqp.conftest import message, wait_for
from tests.support import closed_by_broker


@dataclasses.dataclass(frozen=True)
class Partner:
    name: str
    settings: AmqpSettings


@pytest.fixture
def hub_topology(channel: BlockingChannel) -> Iterator[None]:
    # The permissions name the real exchanges, so this test uses them (and purges the real queue after).
    declare_topology(channel)
    yield
    channel.queue_purge(INBOUND_QUEUE)


@pytest.fixture
def partner(management_url: str, admin: tuple[str, str, str], settings: AmqpSettings) -> Iterator[Partner]:
    user, password, vhost = admin
    name = f"test-{uuid.uuid4().hex[:8]}"
    secret = secrets.token_urlsafe(16)
    provision_partner_user(management_url, user, password, vhost, name, secret)
    parts = urlsplit(settings.url)
    netloc = f"{quote(name, safe='')}:{quote(secret, safe='')}@{parts.hostname}:{parts.port or 5672}"
    yield Partner(name, dataclasses.replace(settings, url=urlunsplit(parts._replace(netloc=netloc)),
                                            connection_name=f"partner-{name}"))
    delete_partner_user(management_url, user, password, name)


def test_a_partner_publishes_its_own_routing_keys_and_nothing_else(partner: Partner, hub_topology: None,
                                                                   channel: BlockingChannel) -> None:
    own = message(INBOUND_EXCHANGE, f"{partner.name}.case-record.v1")
    with Publisher(partner.settings) as publisher:
        publisher.publish(own)
        for exchange, routing_key in [(INBOUND_EXCHANGE, "city-210200.case-record.v1"),  # topic permission
                                      (EVENTS_EXCHANGE, f"{partner.name}.case-record.v1"),  # write permission
                                      ("", INBOUND_QUEUE)]:  # straight into the queue via the default exchange
            with pytest.raises(PublishRefused) as raised:
                publisher.publish(message(exchange, routing_key))
            assert raised.value.reply_code == 403, raised.value.reply_text
        # And it cannot pretend to be another partner either.
        with pytest.raises(PublishRefused, match="user_id"):
            publisher.publish(message(INBOUND_EXCHANGE, f"{partner.name}.case-record.v1", user_id="city-210200"))

    arrived: dict[str, pika.BasicProperties] = {}

    def find_own() -> bool:
        method, properties, _ = channel.basic_get(INBOUND_QUEUE, auto_ack=True)
        if method is not None:
            arrived[properties.message_id] = properties
        return own.message_id in arrived

    wait_for(find_own, timeout_s=10, what="the partner's message in hub.inbound.records")
    assert arrived[own.message_id].user_id == partner.name  # the broker-checked source


def test_a_partner_may_bind_and_read_only_its_own_queues(partner: Partner, hub_topology: None,
                                                        settings: AmqpSettings, channel: BlockingChannel) -> None:
    own_queue = f"partner.{partner.name}.events"
    connection = open_connection(partner.settings)
    try:
        mine = connection.channel()
        mine.queue_declare(own_queue, durable=True, arguments={"x-queue-type": "quorum"})
        mine.queue_bind(own_queue, EVENTS_EXCHANGE, routing_key="case.#")
        with Publisher(settings) as hub:  # the hub publishes an event; the partner reads it
            hub.publish(message(EVENTS_EXCHANGE, "case.accepted.v1"))
        wait_for(lambda: mine.basic_get(own_queue, auto_ack=True)[0] is not None, timeout_s=10,
                 what="the event in the partner's queue")

        refused = [
            lambda ch: ch.queue_declare("hub.sneaky", durable=True),  # configure: not its name
            lambda ch: ch.queue_bind(own_queue, INBOUND_EXCHANGE, routing_key="#"),  # read: not on hub.inbound
            lambda ch: ch.basic_get(INBOUND_QUEUE),  # read: not the hub's queue
            lambda ch: ch.queue_purge(INBOUND_QUEUE),
        ]
        for attempt in refused:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
                attempt(connection.channel())
            assert raised.value.reply_code == 403, raised.value.reply_text
    finally:
        if connection.is_open:
            connection.close()
        channel.queue_delete(own_queue)


def test_deleting_a_partner_closes_its_connection_and_refuses_new_ones(
        management_url: str, admin: tuple[str, str, str], partner: Partner) -> None:
    connection = open_connection(partner.settings)
    assert delete_partner_user(management_url, admin[0], admin[1], partner.name) is True

    wait_for(lambda: closed_by_broker(connection), timeout_s=10,
             what="the broker to close the deleted partner's connection")
    with pytest.raises(AmqpUnavailable, match="login refused"):
        open_connection(partner.settings, attempts=1)
    assert delete_partner_user(management_url, admin[0], admin[1], partner.name) is False


def test_partner_names_must_be_one_plain_routing_key_word() -> None:
    for bad in ["", "city.210100", "City", "a" * 64, "x|.*"]:
        with pytest.raises(ValueError):
            partner_permissions(bad)
    permissions = partner_permissions("city-210100")
    assert permissions.topic_write == r"^city-210100\..*"
    assert permissions.write == r"^(hub\.inbound|partner\.city-210100\..*)$"
    assert permissions.read == r"^(hub\.events|partner\.city-210100\..*)$"
    assert permissions.configure == r"^partner\.city-210100\..*$"


@pytest.fixture
def scoped_partner(management_url: str, admin: tuple[str, str, str], settings: AmqpSettings) -> Iterator[Partner]:
    """A partner whose RabbitMQ user is named ``<vhost>.<code>`` (as a hub outside vhost "/" names it),
    created from RabbitMQ's password hash alone — the hub never sends the secret itself."""
    user, password, vhost = admin
    code = f"test-{uuid.uuid4().hex[:8]}"
    username, secret = f"{vhost}.{code}", secrets.token_urlsafe(24)
    provision_partner_user(management_url, user, password, vhost, username, code=code,
                           password_hash=rabbit_password_hash(secret))
    parts = urlsplit(settings.url)
    netloc = f"{quote(username, safe='')}:{quote(secret, safe='')}@{parts.hostname}:{parts.port or 5672}"
    yield Partner(code, dataclasses.replace(settings, url=urlunsplit(parts._replace(netloc=netloc)),
                                            connection_name=f"partner-{code}"))
    delete_partner_user(management_url, user, password, username)


def test_a_vhost_scoped_user_created_from_a_hash_logs_in_and_publishes_its_codes_keys(
        scoped_partner: Partner, hub_topology: None) -> None:
    username = urlsplit(scoped_partner.settings.url).username
    with Publisher(scoped_partner.settings) as publisher:
        publisher.publish(message(INBOUND_EXCHANGE, f"{scoped_partner.name}.case-record.v1", user_id=unquote(
            username or "")))
        with pytest.raises(PublishRefused) as raised:
            publisher.publish(message(INBOUND_EXCHANGE, f"{username}.case-record.v1"))
        assert raised.value.reply_code == 403


def test_a_partner_binds_only_its_own_and_the_public_keys_of_hub_events(
        scoped_partner: Partner, hub_topology: None, channel: BlockingChannel) -> None:
    code = scoped_partner.name
    own_queue = f"partner.{code}.events"
    connection = open_connection(scoped_partner.settings)
    try:
        mine = connection.channel()
        mine.exchange_declare(EVENTS_EXCHANGE, passive=True)  # checking it exists is allowed
        mine.queue_declare(own_queue, durable=True, arguments={"x-queue-type": "quorum"})
        for key in (f"partner.{code}.#", f"partner.{code}.rejected.v1", "case.#", "catalog.#"):
            mine.queue_bind(own_queue, EVENTS_EXCHANGE, routing_key=key)
        refused = [lambda ch, key=key: ch.queue_bind(own_queue, EVENTS_EXCHANGE, routing_key=key)
                   for key in ("partner.shenyang.#", "partner.#", "#", "alert.#", f"partner.{code}x.#")]
        refused.append(lambda ch: ch.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True))
        for attempt in refused:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
                attempt(connection.channel())
            assert raised.value.reply_code == 403, raised.value.reply_text
    finally:
        if connection.is_open:
            connection.close()
        channel.queue_delete(own_queue)


def test_rabbit_password_hash_is_rabbitmqs_salted_sha256() -> None:
    # The worked example of RabbitMQ's "Credentials and Passwords" guide (salt 908DC60A, password test12).
    assert rabbit_password_hash("test12", salt=bytes.fromhex("908DC60A")) == \
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
    assert rabbit_password_matches(rabbit_password_hash("s3cret"), "s3cret")
    assert not rabbit_password_matches(rabbit_password_hash("s3cret"), "other")
