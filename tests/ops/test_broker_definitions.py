"""deploy/rabbitmq/definitions.json on a real RabbitMQ (the version compose runs): imported as compose's broker
imports it, the hub's user can do everything the hub does and nothing else, the administrator is separate.

The definitions are rendered by deploy/make_secrets.py, then renamed into a private vhost and private user
names (the broker is shared with other tests) and imported through the management API's /api/definitions —
the same importer `load_definitions` runs at boot.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import pika
import pika.exceptions
import pytest

from adapters.amqp.errors import ManagementApiError
from adapters.amqp.management import delete_partner_user, provision_partner_user, read_user
from adapters.amqp.settings import AmqpSettings, open_connection
from adapters.amqp.topology import HUB_TOPOLOGY, declare_topology
from hub.exchange.provisioning import PartnerCommandError, broker_of
from hub.settings import Settings
from tests.ops.test_compose import secret_files_made

ACCESS_REFUSED = 403


@dataclass(frozen=True)
class Imported:
    hub_url: str
    admin: tuple[str, str]
    hub: tuple[str, str]
    management_url: str


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is unset: this test needs the real RabbitMQ (source .testenv)")
    return value


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    base = urlsplit(_env("HUB_TEST_AMQP_URL"))
    management_url = _env("HUB_TEST_RABBITMQ_MANAGEMENT_URL").rstrip("/")
    operator = (unquote(base.username or ""), unquote(base.password or ""))
    folder = tmp_path_factory.mktemp("secrets")
    secret_files_made(folder)
    suffix = uuid.uuid4().hex[:8]
    names = {"hub": f"defs_{suffix}_hub", "admin": f"defs_{suffix}_admin"}
    vhost = f"defs_{suffix}"
    document = json.loads((folder / "rabbitmq_definitions.json").read_text(encoding="utf-8"))
    for user in document["users"]:
        user["name"] = names[user["name"]]
    for grant in document["permissions"]:
        grant["user"], grant["vhost"] = names[grant["user"]], vhost
    document["vhosts"] = [{"name": vhost}]
    passwords = {role: (folder / f"{file}.txt").read_text(encoding="utf-8").strip()
                 for role, file in (("hub", "amqp_password"), ("admin", "rabbitmq_admin_password"))}
    with httpx.Client(base_url=management_url, auth=operator, timeout=15, trust_env=False) as api:
        api.post("/api/definitions", json=document).raise_for_status()
        try:
            netloc = f"{quote(names['hub'], safe='')}:{quote(passwords['hub'], safe='')}@{base.hostname}:" \
                     f"{base.port or 5672}"
            yield Imported(hub_url=urlunsplit(base._replace(netloc=netloc, path=f"/{vhost}")),
                           admin=(names["admin"], passwords["admin"]), hub=(names["hub"], passwords["hub"]),
                           management_url=management_url)
        finally:
            api.delete(f"/api/vhosts/{vhost}")
            for name in names.values():
                api.delete(f"/api/users/{name}")


def _channel(url: str) -> pika.adapters.blocking_connection.BlockingChannel:
    return open_connection(AmqpSettings(url=url), attempts=3).channel()


def test_the_hub_user_declares_publishes_and_consumes_what_the_hub_does(imported: Imported) -> None:
    channel = _channel(imported.hub_url)
    try:
        declare_topology(channel)  # every worker's start: exchanges, quorum queues, bindings
        channel.confirm_delivery()
        for exchange in (HUB_TOPOLOGY.events_exchange, HUB_TOPOLOGY.dead_letter_exchange,
                         HUB_TOPOLOGY.inbound_exchange):  # outbox relay, consumer's dead letters, dlq replay
            channel.basic_publish(exchange, "shenyang.case-record.v1", b"{}", mandatory=False)
        for queue in HUB_TOPOLOGY.queues:  # the two consumers
            method, _properties, _body = channel.basic_get(queue, auto_ack=True)
            assert method is not None, f"nothing to read in {queue}"
    finally:
        channel.connection.close()


@pytest.mark.parametrize("act", ["declare a partner's queue", "read another exchange's queue",
                                 "publish to amq.topic"])
def test_the_hub_user_can_do_nothing_else(imported: Imported, act: str) -> None:
    channel = _channel(imported.hub_url)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            if act == "declare a partner's queue":
                channel.queue_declare("partner.shenyang.events", durable=True)
            elif act == "read another exchange's queue":
                channel.queue_bind(HUB_TOPOLOGY.inbound_queue, HUB_TOPOLOGY.events_exchange, routing_key="#")
            else:
                channel.confirm_delivery()
                channel.basic_publish("amq.topic", "x", b"{}")
        assert refused.value.reply_code == ACCESS_REFUSED
    finally:
        if channel.connection.is_open:
            channel.connection.close()


def test_the_administrator_is_separate_and_the_hub_user_has_no_management_access(imported: Imported) -> None:
    with httpx.Client(base_url=imported.management_url, timeout=60, trust_env=False) as api:
        assert api.get("/api/whoami", auth=imported.admin).json()["tags"] in (["administrator"], "administrator")
        assert api.get("/api/whoami", auth=imported.hub).status_code == 401


def test_partner_users_are_made_with_the_admin_password_file_not_the_hub_user(imported: Imported,
                                                                             tmp_path: Path) -> None:
    """compose's bootstrap: HUB_AMQP_URL as the limited hub user, HUB_RABBITMQ_MANAGEMENT_URL naming the admin
    and HUB_RABBITMQ_MANAGEMENT_PASSWORD_FILE holding its password — a partner's user is provisioned. With the
    hub user's own credentials the management API refuses (it is no administrator)."""
    management = urlsplit(imported.management_url)
    password_file = tmp_path / "rabbitmq_admin_password"
    password_file.write_text(imported.admin[1] + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    partner = f"defs-partner-{uuid.uuid4().hex[:6]}"
    as_admin = broker_of(Settings(
        amqp_url=imported.hub_url, rabbitmq_management_password_file=password_file,
        rabbitmq_management_url=f"http://{quote(imported.admin[0])}@{management.hostname}:{management.port}"))
    as_hub = broker_of(Settings(amqp_url=imported.hub_url, rabbitmq_management_url=imported.management_url))
    assert as_admin is not None and as_hub is not None
    assert (as_admin.admin_user, as_admin.admin_password) == imported.admin
    with pytest.raises(ManagementApiError) as refused:
        provision_partner_user(as_hub.management_url, as_hub.admin_user, as_hub.admin_password, as_hub.vhost,
                               partner, "partner-secret-1234567890")
    assert refused.value.status == 401
    try:
        provision_partner_user(as_admin.management_url, as_admin.admin_user, as_admin.admin_password,
                               as_admin.vhost, partner, "partner-secret-1234567890")
        assert read_user(as_admin.management_url, as_admin.admin_user, as_admin.admin_password, as_admin.vhost,
                         partner).exists
    finally:
        delete_partner_user(as_admin.management_url, as_admin.admin_user, as_admin.admin_password, partner)


def test_the_admin_password_file_is_refused_when_open_to_others_or_doubled(tmp_path: Path) -> None:
    password_file = tmp_path / "rabbitmq_admin_password"
    password_file.write_text("s3cret\n", encoding="utf-8")
    password_file.chmod(0o644)
    settings = Settings(amqp_url="amqp://hub@127.0.0.1/hub", rabbitmq_management_url="http://admin@127.0.0.1:15672",
                        rabbitmq_management_password_file=password_file)
    with pytest.raises(PartnerCommandError, match="open to other users"):
        broker_of(settings)
    password_file.chmod(0o600)
    assert broker_of(settings).admin_password == "s3cret"  # type: ignore[union-attr]
    doubled = settings.model_copy(update={"rabbitmq_management_url": "http://admin:x@127.0.0.1:15672"})
    with pytest.raises(PartnerCommandError, match="both HUB_RABBITMQ_MANAGEMENT_URL"):
        broker_of(doubled)
