"""The inbound consumer against the real broker and database: who sent a message is what the broker proves,
and a record that can never apply is dead-lettered at once — poison is never redelivered and never holds
back anyone's good records.

* a partner publishing with its own ``user_id`` and a header ``x-hub-source: <another partner>`` gets its
  dead letter stored under its own name, and ``hub dlq replay`` applies it as that partner (so it is
  rejected again: its envelope claims another source) — no case is created for the other partner;
* twenty poison records (garbage timestamp, blank or control-character names, a state contradicting the
  steps, an applicant type contradicting the identifier) each reach the hub exactly once and are dead-lettered
  with their field and rule, while good records of two partners around them are all applied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from hub.catalog.models import Item
from hub.exchange.models import DeadLetter
from hub.settings import Settings
from mocks.city_platform import CityPlatform, PartnerPublisher
from tests.adapters.amqp.conftest import wait_for
from tests.exchange.conftest import ROOT, Broker, running_workers, wait_until_settled
from tests.support import case_record, citizen_id, envelope

DALIAN_ITEM = "real-estate-transfer-registration"
SHENYANG_ITEM = "physician-practice-registration"


@pytest.fixture
def worker(hub_settings: Settings, factory: sessionmaker[Session]) -> Iterator[None]:
    with running_workers(hub_settings, factory):
        yield


def letters(factory: sessionmaker[Session], message_id: str) -> list[DeadLetter]:
    with factory() as session:
        return list(session.scalars(select(DeadLetter).where(DeadLetter.message_id == message_id)
                                    .order_by(DeadLetter.id)))


def item_code_of(factory: sessionmaker[Session], key_prefix: str, region: str) -> str:
    with factory() as session:
        return str(session.scalars(select(Item.code).where(Item.region_code == region, Item.key.like(f"{key_prefix}%"))
                                   .order_by(Item.id)).first())


def cases_of(factory: sessionmaker[Session], partner: str, external_id: str) -> int:
    with factory() as session:
        return int(session.execute(text("select count(*) from cases where origin_partner = :p and external_id = :e"),
                                   {"p": partner, "e": external_id}).scalar_one())


def publish(url: str, routing_key: str, document: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
    with PartnerPublisher(url) as publisher:
        publisher.publish(routing_key, json.dumps(document, ensure_ascii=False).encode(),
                          message_id=document["message_id"], type_=f"{document['type']}.v1", headers=headers)
    return str(document["message_id"])


def test_a_forged_source_header_is_ignored_and_replay_keeps_the_authenticated_source(
        worker: None, partner_urls: dict[str, str], factory: sessionmaker[Session], database_url: str,
        broker: Broker, tmp_path: Path) -> None:
    # Shenyang, logged in as itself, dresses a Dalian case up as Dalian's, headers included.
    external_id = f"DL-{uuid.uuid4().hex[:10]}"
    record = case_record(item_code_of(factory, DALIAN_ITEM, "210200"), external_id=external_id, region="210200")
    forged = envelope(record, source="dalian", region="210200")
    publish(partner_urls["shenyang"], "shenyang.case-record.v1", forged,
            headers={"x-hub-source": "dalian", "x-hub-original-routing-key": "dalian.case-record.v1",
                     "x-hub-replay-of": "1"})

    wait_for(lambda: bool(letters(factory, forged["message_id"])), timeout_s=30, interval_s=0.1,
             what="the forged record's dead letter")
    letter = letters(factory, forged["message_id"])[0]
    assert letter.source == "shenyang", letter.source
    assert letter.routing_key == "shenyang.case-record.v1"
    assert letter.reason.startswith("source_mismatch:") and "field envelope.source" in letter.reason, letter.reason

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=database_url, HUB_AMQP_URL=broker.url, HUB_DATA_DIR=str(tmp_path),
               HUB_LOG_JSON="false", COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "hub.cli", "dlq", "replay", str(letter.id)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    # Replayed as Shenyang, it fails as it did the first time, and stays Shenyang's.
    wait_for(lambda: len(letters(factory, forged["message_id"])) == 2, timeout_s=30, interval_s=0.1,
             what="the replayed record dead-lettered again")
    again = letters(factory, forged["message_id"])[1]
    assert again.source == "shenyang" and again.reason.startswith("source_mismatch:"), (again.source, again.reason)
    assert cases_of(factory, "dalian", external_id) == 0


def _poison(base: dict[str, Any], variant: int) -> tuple[dict[str, Any], str, str]:
    """A Shenyang record broken in one of five ways; returns it with the field and rule the hub must name."""
    record = json.loads(json.dumps(base))
    record["external_id"] = f"PX-{uuid.uuid4().hex[:12]}"
    kind = variant % 5
    if kind == 0:
        record["submitted_at"] = "garbage"
        return record, "payload.submitted_at", "format"
    if kind == 1:
        record["applicant"]["name"] = "\u200b\u3000"
        return record, "payload.applicant.name", "not_blank"
    if kind == 2:
        record["steps"][0]["opinion"] = "收件\u0001"
        return record, "payload.steps.0.opinion", "no_control_characters"
    if kind == 3:
        record["state"] = "completed"
        return record, "payload.state", "follows_steps"
    record["applicant"] = {"type": "9", "name": "赵六", "id_type": "citizen_id", "id_number": citizen_id()}
    return record, "payload.applicant.type", "matches_identifier"


def test_poison_is_dead_lettered_at_once_and_never_holds_back_good_records(
        worker: None, partner_urls: dict[str, str], factory: sessionmaker[Session]) -> None:
    base = case_record(item_code_of(factory, SHENYANG_ITEM, "210100"), external_id="PX-base", steps=2)
    base["applicant"] = {"type": "1", "name": "赵六", "id_type": "citizen_id", "id_number": citizen_id()}
    poison = [(envelope(record), field, rule) for record, field, rule in (_poison(base, i) for i in range(20))]

    with PartnerPublisher(partner_urls["shenyang"]) as publisher:
        for document, _, _ in poison:
            publisher.publish("shenyang.case-record.v1", json.dumps(document, ensure_ascii=False).encode(),
                              message_id=document["message_id"], type_="case-record.v1")
    shenyang = CityPlatform(partner_urls["shenyang"], "shenyang", seed=71)
    dalian = CityPlatform(partner_urls["dalian"], "dalian", seed=72)
    shenyang.publish(shenyang.plan(15))
    dalian.publish(dalian.plan(15))

    for platform in (shenyang, dalian):
        state = wait_until_settled(factory, platform.report, timeout_s=60, stable_s=1.0)
        assert state.applied_messages == len(platform.report.expected_apply)
        assert state.misplaced_dead_letters == 0
    for document, field, rule in poison:
        message_id = document["message_id"]
        wait_for(lambda m=message_id: bool(letters(factory, m)), timeout_s=30, interval_s=0.1,
                 what=f"the dead letter of poison {message_id}")
        stored = letters(factory, message_id)
        assert len(stored) == 1, [s.reason for s in stored]
        # Delivered once, dead-lettered at once: never returned to the queue for another try.
        assert stored[0].headers.get("x-hub-delivery-count") == 1, stored[0].headers
        assert f"field {field}, rule {rule}" in stored[0].reason, stored[0].reason
        assert stored[0].source == "shenyang"
        assert cases_of(factory, "shenyang", document["payload"]["external_id"]) == 0
