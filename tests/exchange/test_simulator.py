"""The city platform simulator on its own (no broker): what it plans is what it claims.

Its messages go straight into the hub's inbound handler here (on the suite's database backends), so every
expectation in its report — applied or dead-lettered with which reason, how many cases and steps — is checked
against the hub's real rules. Its identifiers are checked against workflow.identifiers, an independent
implementation of the same national standards.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp.messages import InboundMessage, OutcomeKind
from hub.clock import SystemClock
from hub.exchange.consumer import InboundHandler
from hub.seed.service import read_seed
from hub.settings import Settings
from hub.validation import shared_validator
from mocks.city_data import CITIES, DEMO_ITEMS
from mocks.city_platform import APPLY, FAULT_KINDS, CityPlatform, Planned, parse_faults
from workflow.identifiers import build_item_code, validate_citizen_id, validate_credit_code

URL = "amqp://127.0.0.1:5672/%2F"  # never contacted: planning needs no broker
FAULTS = {"schema": 24, "wrong_region": 8, "bad_json": 8, "unknown_item": 8, "identifier": 8, "duplicate": 15,
          "out_of_order": 6}


def test_the_demo_items_are_the_hubs_seeded_item_codes() -> None:
    seeded = {build_item_code(r["region"], r["department"], r["item_type"], r["main_item"], r["sub_item"]).value
              for r in read_seed("items")}
    assert {i.code for i in DEMO_ITEMS} <= seeded
    partners = {p["code"]: p["region"] for p in read_seed("partners") if p["kind"] == "city_platform"}
    assert partners == {c.code: c.region for c in CITIES.values()}


def test_a_plan_has_exactly_the_messages_asked_for_and_valid_documents() -> None:
    platform = CityPlatform(URL, "dalian", seed=7)
    planned = platform.plan(1500, FAULTS)
    sent = Counter(m.category for m in planned)
    assert len(planned) == 1500
    assert {k: sent[k] for k in FAULTS} == FAULTS
    report = platform.report
    assert len(report.expected_dead) == sum(v for k, v in FAULTS.items() if k not in ("duplicate", "out_of_order"))
    assert len(report.expected_apply) == 1500 - len(report.expected_dead) - FAULTS["duplicate"]
    assert report.expected_events == sum(c.seq for c in report.cases.values())
    assert sent["new_case"] == report.expected_cases
    for message in planned:
        if message.expect != APPLY:
            continue
        envelope = json.loads(message.body)
        assert not list(shared_validator("envelope.v1.json").iter_errors(envelope))
        assert not list(shared_validator(f"{message.type}.json").iter_errors(envelope["payload"]))
        assert envelope["source"] == "dalian"
        assert envelope["payload"]["external_id"].startswith(report.external_id_prefix)
        applicant = envelope["payload"].get("applicant")
        if applicant and applicant["id_type"] == "citizen_id":
            validate_citizen_id(applicant["id_number"], today=date.today())
        elif applicant:
            validate_credit_code(applicant["id_number"])


def test_the_same_seed_plans_the_same_run() -> None:
    def shape(planned: list[Planned]) -> list[tuple[str, str]]:
        return [(m.category, m.record_type) for m in planned]

    first = CityPlatform(URL, "shenyang", seed=5, run_id="aaaa0001").plan(300, FAULTS)
    again = CityPlatform(URL, "shenyang", seed=5, run_id="aaaa0002").plan(300, FAULTS)
    assert shape(first) == shape(again)


def test_every_expectation_holds_against_the_hubs_inbound_handler(session_factory: sessionmaker[Session]) -> None:
    platform = CityPlatform(URL, "shenyang", seed=3)
    planned = platform.plan(400, FAULTS)
    report = platform.report
    handler = InboundHandler(session_factory, SystemClock(), "hub", Settings().audit_key)
    outcomes: dict[str, list[tuple[OutcomeKind, str]]] = {}
    for message in planned:
        outcome = handler(InboundMessage(
            body=message.body, routing_key=f"shenyang.{message.type}", exchange="hub.inbound",
            queue="hub.inbound.records", message_id=message.message_id, user_id="shenyang", type=message.type,
            correlation_id=message.external_id, content_type="application/json", timestamp=None, headers={},
            redelivered=False, delivery_count=0))
        outcomes.setdefault(message.message_id, []).append((outcome.kind, (outcome.reason or "").split(":")[0]))
    for message_id in report.expected_apply:
        assert {kind for kind, _ in outcomes[message_id]} == {OutcomeKind.ACK}, outcomes[message_id]
    for message_id, reason in report.expected_dead.items():
        assert outcomes[message_id] == [(OutcomeKind.REJECT, reason)], (reason, outcomes[message_id])

    like = report.external_id_prefix + "-%"
    with session_factory() as session:
        rows = session.execute(text(
            "select external_id, partner_event_seq, event_count, state, record_version from cases "
            "where origin_partner = 'shenyang' and external_id like :like"), {"like": like}).all()
        held = session.execute(text("select count(*) from pending_events where external_id like :like"),
                               {"like": like}).scalar_one()
    assert held == 0
    assert {r[0]: tuple(r[1:]) for r in rows} == {
        c.external_id: (c.seq, c.seq, c.state, c.record_version) for c in report.cases.values()}


def test_fault_arguments() -> None:
    assert parse_faults(["schema=3,bad_json=2", "schema=1"]) == {"schema": 4, "bad_json": 2}
    for bad in ("schema", "teleport=1", "schema=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_faults([bad])
    with pytest.raises(ValueError, match="unknown fault"):
        CityPlatform(URL, "shenyang").plan(10, {"teleport": 1})
    with pytest.raises(ValueError, match="too few valid"):
        CityPlatform(URL, "shenyang").plan(10, {"schema": 10})
    assert set(FAULT_KINDS) >= set(FAULTS)
