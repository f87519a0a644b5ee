"""Poison, foreign regions, foreign routing keys and dead-letter replay, against the real broker and database.

* poison messages (bad JSON, schema violations, bad ID numbers, unknown items, wrong regions, an unknown
  partner, a forged envelope source) are dead-lettered with their reason while the good ones around them keep
  flowing — the consumer keeps running;
* a city reporting another city's case is rejected with ``wrong_region``;
* a city publishing with another city's routing key, or as another city's user, is refused by the broker;
* ``hub dlq replay`` of a dead letter whose cause was fixed (its item added to the catalogue) applies it.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import delete_partner_user, provision_partner_user
from hub.catalog.models import Item
from hub.catalog.service import write_item
from hub.clock import SystemClock
from hub.db import unit_of_work
from hub.exchange.models import DeadLetter
from hub.seed.service import _item_write, read_seed
from hub.settings import Settings
from mocks.city_platform import BrokerRefused, CityPlatform, PartnerPublisher
from tests.adapters.amqp.conftest import wait_for
from tests.exchange.conftest import ROOT, Broker, hub_state, running_workers, wait_until_settled
from workflow.identifiers import build_item_code


@pytest.fixture
def worker(hub_settings: Settings, factory: sessionmaker[Session]) -> Iterator[None]:
    with running_workers(hub_settings, factory) as workers:
        yield
        for thread in workers[0]._threads:
            assert thread.is_alive(), f"worker thread {thread.name} died"


@pytest.fixture
def stranger(broker: Broker) -> Iterator[tuple[str, str]]:
    """A RabbitMQ user with partner permissions whom the hub does not know as a partner."""
    name, secret = f"nobody-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(12)
    provision_partner_user(broker.management_url, broker.admin_user, broker.admin_password, broker.vhost, name, secret)
    yield name, broker.url_for(name, secret)
    delete_partner_user(broker.management_url, broker.admin_user, broker.admin_password, name)


def dead_letters(factory: sessionmaker[Session], message_id: str) -> list[DeadLetter]:
    with factory() as session:
        return list(session.scalars(select(DeadLetter).where(DeadLetter.message_id == message_id)))


def wait_for_dead_letter(factory: sessionmaker[Session], message_id: str) -> DeadLetter:
    wait_for(lambda: bool(dead_letters(factory, message_id)), timeout_s=60, interval_s=0.2,
             what=f"the dead letter of {message_id}")
    return dead_letters(factory, message_id)[0]


def case_exists(factory: sessionmaker[Session], partner: str, external_id: str) -> bool:
    with factory() as session:
        return bool(session.execute(text("select count(*) from cases where origin_partner = :p and external_id = :e"),
                                    {"p": partner, "e": external_id}).scalar_one())


def test_poison_is_dead_lettered_with_its_reason_while_good_records_keep_flowing(
        worker: None, partner_urls: dict[str, str], stranger: tuple[str, str],
        factory: sessionmaker[Session]) -> None:
    platform = CityPlatform(partner_urls["shenyang"], "shenyang", seed=11)
    faults = {"bad_json": 12, "schema": 12, "identifier": 6, "unknown_item": 6, "wrong_region": 6, "duplicate": 10,
              "out_of_order": 5}
    planned = platform.plan(400, faults)  # the poison is spread through the good messages
    platform.publish(planned)
    report = platform.report

    # A user the broker knows but the hub does not, and a partner forging another partner's source.
    name, url = stranger
    record = json.loads(CityPlatform(partner_urls["shenyang"], "shenyang", seed=13).plan(1)[0].body)["payload"]
    forged = platform.planner.envelope("case-record", record, record["region"], record["external_id"])
    forged["source"] = "dalian"
    unknown = {**forged, "message_id": str(uuid.uuid4()), "source": name}
    with PartnerPublisher(url) as publisher:
        publisher.publish(f"{name}.case-record.v1", json.dumps(unknown).encode(), message_id=unknown["message_id"],
                          type_="case-record.v1")
    with PartnerPublisher(partner_urls["shenyang"]) as publisher:
        publisher.publish("shenyang.case-record.v1", json.dumps(forged).encode(), message_id=forged["message_id"],
                          type_="case-record.v1")
    # And after all the poison, one more good record: it is applied, so the consumer is still running.
    last = CityPlatform(partner_urls["shenyang"], "shenyang", seed=12)
    last.publish(last.plan(1))

    state = wait_until_settled(factory, report, timeout_s=120)
    assert state.applied_messages == len(report.expected_apply)
    assert state.cases == report.expected_cases and state.case_events == report.expected_events
    assert state.misplaced_dead_letters == 0 and state.duplicate_steps == 0 and state.pending_events == 0
    for message_id, expected in report.expected_dead.items():
        assert [r.split(":", 1)[0] for r in state.dead_letters[message_id]] == [expected], message_id
    assert wait_for_dead_letter(factory, unknown["message_id"]).reason.startswith("unknown_partner:")
    assert wait_for_dead_letter(factory, forged["message_id"]).reason.startswith("source_mismatch:")
    wait_for(lambda: hub_state(factory, last.report).settled(last.report), timeout_s=30,
             what="the good record sent after the poison")
    letter = dead_letters(factory, next(iter(report.expected_dead)))[0]
    assert letter.headers.get("x-hub-original-routing-key", "").startswith("shenyang.")
    assert letter.source == "shenyang"


def test_a_city_may_not_report_another_citys_case(worker: None, partner_urls: dict[str, str],
                                                  factory: sessionmaker[Session]) -> None:
    shenyang = CityPlatform(partner_urls["shenyang"], "shenyang", seed=21)
    case = json.loads(shenyang.plan(1)[0].body)["payload"]  # a Shenyang case, with a Shenyang item
    dalian = CityPlatform(partner_urls["dalian"], "dalian", seed=22)
    as_own_region = dalian.planner.envelope("case-record", case, "210200", case["external_id"])
    as_its_region = dalian.planner.envelope("case-record", case, "210100", case["external_id"])
    with PartnerPublisher(partner_urls["dalian"]) as publisher:
        for envelope in (as_own_region, as_its_region):
            publisher.publish("dalian.case-record.v1", json.dumps(envelope).encode(),
                              message_id=envelope["message_id"], type_="case-record.v1")
    own = wait_for_dead_letter(factory, as_own_region["message_id"])
    its = wait_for_dead_letter(factory, as_its_region["message_id"])
    assert own.reason.startswith("wrong_region: payload.region 210100"), own.reason
    assert its.reason.startswith("wrong_region: envelope.region 210100"), its.reason
    assert own.source == its.source == "dalian"
    assert not case_exists(factory, "dalian", case["external_id"])


def test_the_broker_refuses_another_citys_routing_key_and_user_id(partner_urls: dict[str, str]) -> None:
    dalian = CityPlatform(partner_urls["dalian"], "dalian", seed=31)
    message = dalian.plan(1)[0]
    with PartnerPublisher(partner_urls["dalian"]) as publisher:
        with pytest.raises(BrokerRefused) as refused:
            publisher.publish("shenyang.case-record.v1", message.body, message_id=message.message_id,
                              type_="case-record.v1")
        assert refused.value.reply_code == 403, refused.value.reply_text  # topic permission: dalian.* only
        with pytest.raises(BrokerRefused) as forged:
            publisher.publish("dalian.case-record.v1", message.body, message_id=message.message_id,
                              type_="case-record.v1", user_id="shenyang")
        assert forged.value.reply_code == 406, forged.value.reply_text  # user_id must be the connection's user
        publisher.publish("dalian.case-record.v1", message.body, message_id=message.message_id,
                          type_="case-record.v1")  # its own routing key is fine


def test_dlq_replay_applies_a_dead_letter_once_its_cause_is_fixed(
        worker: None, partner_urls: dict[str, str], factory: sessionmaker[Session], database_url: str,
        broker: Broker, tmp_path: Path) -> None:
    row = next(r for r in read_seed("items") if r["key"] == "physician-practice-registration")  # a 210100 item
    with factory() as session:
        used = set(session.scalars(select(Item.code)))
    main_item, code = random.choice([
        (main, code) for main in (f"{n:03d}" for n in range(900, 1000))
        if (code := build_item_code(row["region"], row["department"], row["item_type"], main, "000").value)
        not in used])

    platform = CityPlatform(partner_urls["shenyang"], "shenyang", seed=41, unknown_item_codes=[code])
    planned = platform.plan(3, {"unknown_item": 1})
    platform.publish(planned)
    poisoned = next(m for m in planned if m.category == "unknown_item")
    letter = wait_for_dead_letter(factory, poisoned.message_id)
    assert letter.reason.startswith(f"unknown_item: payload.item_code {code}"), letter.reason

    # The cause is fixed: the province adds the item to its catalogue.
    with unit_of_work(factory) as session:
        data = _item_write({**row, "key": f"{row['key']}-{main_item}", "main_item": main_item,
                            "name": f"{row['name']}（新增子项{main_item}）"})
        write_item(session, data=data, now=SystemClock().now())

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=database_url, HUB_AMQP_URL=broker.url, HUB_DATA_DIR=str(tmp_path),
               HUB_LOG_JSON="false", COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "hub.cli", "dlq", "replay", str(letter.id)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replayed 1" in done.stdout, done.stdout

    wait_for(lambda: case_exists(factory, "shenyang", poisoned.external_id or ""), timeout_s=60, interval_s=0.2,
             what="the replayed record applied")
    with factory() as session:
        item_code = session.execute(text(
            "select i.code from cases c join items i on i.id = c.item_id where c.external_id = :e"),
            {"e": poisoned.external_id}).scalar_one()
        replayed = session.get(DeadLetter, letter.id)
        assert replayed is not None and replayed.replayed_at is not None
        inbox = session.execute(text("select outcome from inbox where message_id = :m"),
                                {"m": uuid.UUID(poisoned.message_id)}).scalar_one()
    assert item_code == code
    assert inbox == "applied"
    assert len(dead_letters(factory, poisoned.message_id)) == 1  # it did not fail again
