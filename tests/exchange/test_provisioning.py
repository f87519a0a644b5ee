"""A partner's credentials from registration to disabling, as an operator runs them (`hub partners …` as a
process) and as the partner then uses them (REST with HTTP Basic, AMQP with pika against the real broker).

* `add` gives each partner ONE generated secret, shown once, that works for REST and for its own RabbitMQ
  user ``<vhost>.<code>``; the hub's consumer knows that user as the partner;
* `rotate` replaces it on both sides; `disable` refuses REST and closes the partner's AMQP connection;
  `enable` restores the same secret;
* `sync` re-creates a missing user from the stored hash and fixes permissions, never changing another
  partner's password (the demo partners too: their published secret works);
* bad input and an unreachable broker exit 1 with a bilingual message, never a traceback.

Both database backends; the broker part uses a private vhost (tests/exchange/conftest.py ``broker``), and
every user created under it (``<vhost>.…``) is deleted afterwards.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pika
import pika.exceptions
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import (
    DEAD_LETTER_QUEUE,
    INBOUND_EXCHANGE,
    INBOUND_QUEUE,
    AmqpSettings,
    AmqpUnavailable,
    consume,
    open_connection,
)
from hub.clock import SystemClock
from hub.db import unit_of_work
from hub.exchange.consumer import DeadLetterHandler, InboundHandler
from hub.exchange.models import Partner
from hub.settings import Settings
from tests.adapters.amqp.conftest import wait_for
from tests.e2e.cli_support import ROOT, Ran, free_port, hub_executable, operator_env, run_process
from tests.exchange.conftest import Broker
from tests.support import PARTNER_SECRET, case_record, closed_by_broker, envelope, item_code, wait_until

KEY = "physician-practice-registration"  # a 沈阳 (210100) item


@pytest.fixture
def broker_users(broker: Broker, session_factory: sessionmaker[Session]) -> Iterator[None]:
    """Deletes, afterwards, every RabbitMQ user named under the private vhost (the hub's `<vhost>.<code>`),
    and forgets those users in the shared test database: `sync` names the demo partners' users too, and the
    tests after these ones publish as the demo partners under their codes."""
    yield
    with unit_of_work(session_factory) as session:
        session.execute(update(Partner).where(Partner.amqp_username.startswith(f"{broker.vhost}.", autoescape=True))
                        .values(amqp_username=None))
    with httpx.Client(base_url=broker.management_url, auth=(broker.admin_user, broker.admin_password),
                      timeout=60, trust_env=False) as api:
        for user in api.get("/api/users").json():
            if user["name"].startswith(f"{broker.vhost}."):
                api.delete(f"/api/users/{quote(user['name'], safe='')}")


HubCli = Callable[..., Ran]


@pytest.fixture
def hub_cli(engine: Engine, broker: Broker, broker_users: None, tmp_path: Any) -> HubCli:
    """`hub partners …` as an operator runs it, on the test database, with the broker (or ``broker=False``:
    HUB_AMQP_URL unset), or with a management API nobody answers (``management_url=...``)."""
    database_url = engine.url.render_as_string(hide_password=False)

    def run(*args: str, broker_on: bool = True, management_url: str | None = None) -> Ran:
        variables = {"HUB_DATABASE_URL": database_url}
        if broker_on:
            variables.update(HUB_AMQP_URL=broker.url,
                             HUB_RABBITMQ_MANAGEMENT_URL=management_url or broker.management_url)
        return run_process([*hub_executable(), "partners", *args], operator_env(tmp_path, **variables), cwd=ROOT)

    return run


def new_code() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def add(hub_cli: HubCli, code: str, **kwargs: Any) -> dict[str, Any]:
    ran = hub_cli("add", code, "--name", "测试市网上审批平台", "--region", "210100", "--kind", "city_platform",
                  "--json", **kwargs)
    assert ran.code == 0, ran
    return dict(json.loads(ran.stdout))


def push(client: TestClient, code: str, secret: str, external_id: str) -> httpx.Response:
    record = envelope(case_record(item_code(client, KEY), external_id=external_id), source=code)
    return client.post("/api/v1/exchange/records", json={"records": [record]}, auth=(code, secret))


def rest_status(client: TestClient, code: str, secret: str) -> int:
    return push(client, code, secret, f"LC-{uuid.uuid4().hex[:12]}").status_code


def amqp_url(broker: Broker, user: str, secret: str) -> str:
    return broker.url_for(user, secret)


def can_log_in(broker: Broker, user: str, secret: str) -> bool:
    try:
        open_connection(AmqpSettings(url=amqp_url(broker, user, secret)), attempts=1).close()
    except AmqpUnavailable:
        return False
    return True


def case_of(factory: sessionmaker[Session], partner: str, external_id: str) -> bool:
    with factory() as session:
        return bool(session.execute(text("select count(*) from cases where origin_partner = :p and external_id = :e"),
                                    {"p": partner, "e": external_id}).scalar_one())


def dead_letter_source(factory: sessionmaker[Session], message_id: str) -> str | None:
    with factory() as session:
        return session.execute(text("select source from dead_letters where message_id = :m"),
                               {"m": message_id}).scalar()


@pytest.fixture
def inbound_consumer(broker: Broker, session_factory: sessionmaker[Session], one_queue: None) -> Iterator[None]:
    """The hub's inbound and dead-letter consumers (as `hub worker` with HUB_INGEST_SHARDS=0 runs them) on the
    private vhost and the test database."""
    stop = threading.Event()
    handlers = [(INBOUND_QUEUE, InboundHandler(session_factory, SystemClock(), broker.admin_user,
                                               Settings().audit_key)),
                (DEAD_LETTER_QUEUE, DeadLetterHandler(session_factory, SystemClock(), broker.admin_user))]
    threads = [threading.Thread(target=consume, args=(broker.settings(heartbeat=10), queue, handler),
                                kwargs={"stop_event": stop}, daemon=True) for queue, handler in handlers]
    for thread in threads:
        thread.start()
    yield
    stop.set()
    for thread in threads:
        thread.join(timeout=20)


def test_add_gives_the_partner_one_secret_for_rest_and_its_own_rabbitmq_user(
        hub_cli: HubCli, broker: Broker, client: TestClient, session_factory: sessionmaker[Session],
        inbound_consumer: None) -> None:
    code = new_code()
    credentials = add(hub_cli, code)
    secret = credentials["secret"]
    assert credentials == {"code": code, "secret": secret, "amqp_username": f"{broker.vhost}.{code}",
                           "vhost": broker.vhost, "publish_routing_keys": f"{code}.<type>.v1",
                           "events_queue_prefix": f"partner.{code}."}
    assert len(secret) >= 32
    with session_factory() as session:  # stored only hashed
        stored = session.execute(text("select secret_hash, amqp_password_hash from partners where code = :c"),
                                 {"c": code}).one()
    assert secret not in stored[0] and secret not in stored[1]

    # REST: the new partner pushes a record with its code and secret (another process wrote it: the app's
    # partner cache may take a moment to hear of it).
    assert wait_until(lambda: rest_status(client, code, secret) == 200, timeout=60), "the new partner's REST secret"

    # AMQP: its own user, in the hub's vhost, publishing its own routing key; the hub applies the record as
    # the partner (the broker-checked user_id is mapped to the partner's code).
    external_id = f"LC-{uuid.uuid4().hex[:12]}"
    record = envelope(case_record(item_code(client, KEY), external_id=external_id), source=code)
    poison_id = str(uuid.uuid4())
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url(broker, credentials["amqp_username"], secret)))
    try:
        channel = connection.channel()
        for message_id, body in ((record["message_id"], json.dumps(record).encode()), (poison_id, b"{not json")):
            channel.basic_publish(
                INBOUND_EXCHANGE, f"{code}.case-record.v1", body,
                pika.BasicProperties(message_id=message_id, type="case-record.v1", delivery_mode=2,
                                     content_type="application/json", user_id=credentials["amqp_username"]))
    finally:
        connection.close()
    wait_for(lambda: case_of(session_factory, code, external_id), timeout_s=60, interval_s=0.2,
             what="the partner's AMQP record applied as the partner")
    # Its faulty message is dead-lettered under the partner's code (what replay and its feedback go by).
    wait_for(lambda: dead_letter_source(session_factory, poison_id) is not None, timeout_s=60, interval_s=0.2,
             what="the partner's faulty message in dead_letters")
    assert dead_letter_source(session_factory, poison_id) == code

    listed = hub_cli("list", "--json")
    assert listed.code == 0, listed
    row = next(p for p in json.loads(listed.stdout) if p["code"] == code)
    assert row["amqp_username"] == f"{broker.vhost}.{code}" and row["active"] is True
    assert secret not in listed.stdout and stored[0] not in listed.stdout and stored[1] not in listed.stdout
    assert not any("hash" in key for key in row)  # never a secret or a hash


def test_rotate_replaces_the_secret_for_rest_and_rabbitmq(hub_cli: HubCli, broker: Broker,
                                                          client: TestClient) -> None:
    code = new_code()
    old = add(hub_cli, code)
    ran = hub_cli("rotate", code, "--json")
    assert ran.code == 0, ran
    new = json.loads(ran.stdout)
    assert new["secret"] != old["secret"] and new["amqp_username"] == old["amqp_username"]

    assert wait_until(lambda: rest_status(client, code, new["secret"]) == 200, timeout=60), "the new secret over REST"
    assert rest_status(client, code, old["secret"]) == 401
    assert can_log_in(broker, new["amqp_username"], new["secret"])
    assert not can_log_in(broker, old["amqp_username"], old["secret"])

    readable = hub_cli("rotate", code)  # for people: what it did, the secret once
    assert readable.code == 0, readable
    assert "rotated" in readable.stdout and new["amqp_username"] in readable.stdout


def test_disable_refuses_rest_and_closes_the_partners_connection_and_enable_restores_it(
        hub_cli: HubCli, broker: Broker, client: TestClient) -> None:
    code = new_code()
    credentials = add(hub_cli, code)
    user, secret = credentials["amqp_username"], credentials["secret"]
    assert wait_until(lambda: rest_status(client, code, secret) == 200, timeout=60)
    connection = open_connection(AmqpSettings(url=amqp_url(broker, user, secret)))

    ran = hub_cli("disable", code, "--json")
    assert ran.code == 0, ran
    assert json.loads(ran.stdout) == {"code": code, "active": False, "amqp_user_deleted": True, "amqp_username": user}

    wait_for(lambda: closed_by_broker(connection), timeout_s=60,
             what="the broker to close the disabled partner's connection")
    assert wait_until(lambda: rest_status(client, code, secret) == 401, timeout=60), "REST refused once disabled"
    assert not can_log_in(broker, user, secret)

    enabled = hub_cli("enable", code)
    assert enabled.code == 0, enabled
    assert can_log_in(broker, user, secret)  # the same secret: re-created from the stored hash
    assert wait_until(lambda: rest_status(client, code, secret) == 200, timeout=60), "REST accepted again"


def test_sync_recreates_missing_users_from_stored_hashes_and_never_resets_a_password(
        hub_cli: HubCli, broker: Broker) -> None:
    first, second = new_code(), new_code()
    a, b = add(hub_cli, first), add(hub_cli, second)
    with httpx.Client(base_url=broker.management_url, auth=(broker.admin_user, broker.admin_password),
                      timeout=60, trust_env=False) as api:
        api.delete(f"/api/users/{quote(a['amqp_username'], safe='')}").raise_for_status()
        api.put(f"/api/permissions/{broker.vhost}/{quote(b['amqp_username'], safe='')}",
                json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()  # too much

    ran = hub_cli("sync", "--json")
    assert ran.code == 0, ran
    report = {row["code"]: row for row in json.loads(ran.stdout)}
    assert report[first]["status"] == "created"
    assert report[second]["status"] == "permissions_fixed"
    assert can_log_in(broker, a["amqp_username"], a["secret"])  # its own secret, from the stored hash
    assert can_log_in(broker, b["amqp_username"], b["secret"])  # untouched
    assert not can_log_in(broker, b["amqp_username"], a["secret"])
    # The demo partners' users, in this vhost, with the published demo secret (docs/amqp.md).
    assert report["shenyang"]["amqp_username"] == f"{broker.vhost}.shenyang"
    assert can_log_in(broker, f"{broker.vhost}.shenyang", PARTNER_SECRET)

    again = hub_cli("sync")  # nothing left to do; reported per partner for people too
    assert again.code == 0, again
    assert f"ok                {first}" in again.stdout and "partner(s) checked" in again.stdout


@pytest.mark.parametrize(("args", "rule"), [
    (["add", "x.y", "--name", "n", "--region", "210100", "--kind", "city_platform"], "invalid_code"),
    (["add", "{code}", "--name", "n", "--region", "219999", "--kind", "city_platform"], "unknown_region"),
    (["add", "{code}", "--name", "n", "--region", "210100", "--kind", "city"], "unknown_kind"),
    (["add", "{code}", "--name", "n", "--region", "210100", "--kind", "legacy_department",
      "--department", "999"], "unknown_department"),
    (["add", "shenyang", "--name", "n", "--region", "210100", "--kind", "city_platform"], "duplicate_partner"),
    (["rotate", "{code}"], "unknown_partner"),
])
def test_a_refused_command_exits_1_with_its_rule_and_a_bilingual_message(hub_cli: HubCli, args: list[str],
                                                                        rule: str) -> None:
    code = new_code()
    ran = hub_cli(*[a.format(code=code) for a in args], "--json", broker_on=False)
    assert ran.code == 1, ran
    refusal = json.loads(ran.stdout)
    assert refusal["error"] == rule
    assert any("\u4e00" <= ch <= "\u9fff" for ch in refusal["message"]) and rule in refusal["message"]
    assert "Traceback" not in ran.output and refusal["message"] in ran.stderr


def test_an_unreachable_broker_refuses_add_and_creates_nothing(hub_cli: HubCli) -> None:
    code = new_code()
    ran = hub_cli("add", code, "--name", "n", "--region", "210100", "--kind", "city_platform", "--json",
                  management_url=f"http://127.0.0.1:{free_port()}")
    assert ran.code == 1, ran
    assert json.loads(ran.stdout)["error"] == "broker_unreachable" and "Traceback" not in ran.output
    listed = hub_cli("list", "--json", broker_on=False)
    assert code not in {p["code"] for p in json.loads(listed.stdout)}


def test_without_a_broker_add_gives_a_rest_secret_and_sync_says_why_it_cannot_run(
        hub_cli: HubCli, client: TestClient) -> None:
    code = new_code()
    ran = hub_cli("add", code, "--name", "n", "--region", "210100", "--kind", "city_platform", broker_on=False)
    assert ran.code == 0, ran
    assert "HUB_AMQP_URL is not set" in ran.stdout
    secret = next(line.split()[-1] for line in ran.stdout.splitlines() if "secret" in line)
    assert wait_until(lambda: rest_status(client, code, secret) == 200, timeout=60), \
        "the REST secret of a broker-less hub"
    sync = hub_cli("sync", broker_on=False)
    assert sync.code == 1 and "no_broker" in sync.stderr and "Traceback" not in sync.output
