"""One way to open a case and append a step (hub/cases/writes.py), whatever the origin: a new case is written
once — in one statement on PostgreSQL for a submission — its chain verifies, its tracking number is unique."""

from __future__ import annotations

import ast
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import InProcessBus
from adapters.amqp.topology import EVENTS_EXCHANGE
from hub.audit.service import verify
from hub.cases import service, tracking
from hub.cases.models import Case, CaseEvent, TrackingSequence
from hub.cases.schemas import ApplicationIn
from hub.cases.tracking import BLOCK
from hub.catalog.models import Item
from hub.clock import FixedClock
from hub.db import make_engine, make_session_factory
from hub.outbox import wake
from hub.outbox.models import OutboxMessage
from hub.settings import DEV_AUDIT_KEY, Settings
from hub.verification.models import CaseVerification
from hub.worker import Worker
from mocks.legacy_department import HubDepartmentExchange
from mocks.registries.seed import Seed
from tests.conftest import DEMO_PASSWORD, Officers
from tests.servers import serving
from tests.support import (
    PARTNER_SECRET,
    case_record,
    citizen_id,
    company,
    envelope,
    example_form,
    item_code,
    officer_of,
    person,
    sent_statements,
    submit,
    wait_until,
)
from workflow import identifiers as ids

KEY = "physician-practice-registration"  # a 沈阳 (210100) item, citizens apply
HUB = Path(__file__).resolve().parents[2] / "hub"
WRITTEN = ("cases", "case_events", "case_verifications", "outbox")


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent meanwhile on the engine's connections, in order, counted at the driver."""
    with sent_statements(engine) as sent:
        seen: list[str] = []
        yield seen
    seen.extend(" ".join(statement.split()) for statement in sent)


def inserts_into(sql: list[str], table: str) -> list[str]:
    return [s for s in sql if re.search(rf"\bINSERT INTO {table}\b", s)]


def updates_of(sql: list[str], table: str) -> list[str]:
    return [s for s in sql if re.match(rf"UPDATE {table}\b", s)]


def reads_of(sql: list[str], table: str) -> list[str]:
    return [s for s in sql if s.startswith("SELECT") and re.search(rf"\bFROM {table}\b", s)]


def chain_findings(session_factory: sessionmaker[Session], number: str) -> tuple[int, list[Any]]:
    with session_factory() as session:
        return verify(session, key=DEV_AUDIT_KEY, tracking_no=number)


# --- a submission ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["online", "window"])
def test_a_submission_writes_its_case_once_and_on_postgresql_in_one_statement(
    client: TestClient, engine: Engine, backend: str, session_factory: sessionmaker[Session], channel: str
) -> None:
    body = {"item_code": item_code(client, KEY), "applicant": person(), "form": example_form(KEY)}
    # A window application is registered by a window officer (hub/window), here one of another region: the
    # forwarded message (case.forwarded.v1) goes in the same statement.
    url, headers = "/api/v1/applications", {}
    if channel == "window":
        url, headers = "/api/v1/window/applications", Officers(client).headers("dl_zwfw_window")
    with statements(engine) as sql:
        response = client.post(url, json=body, headers=headers)
    assert response.status_code == 201, response.text
    number = response.json()["tracking_no"]
    assert len(inserts_into(sql, "cases")) == 1
    assert updates_of(sql, "cases") == []
    if backend == "postgresql":
        (write,) = inserts_into(sql, "cases")
        assert all(inserts_into([write], table) for table in WRITTEN), write
        # No NOTIFY inside the submission's transaction: it would queue the commit behind every other one that
        # NOTIFYs (hub/outbox/wake.py announces the outbox row after the commit).
        assert "notify" not in write.lower()
        assert [s for s in sql if s.startswith(("INSERT", "UPDATE", "DELETE", "WITH"))
                and "tracking_sequences" not in s] == [write]
    # The receipt comes from memory: nothing the request wrote is read back.
    assert [s for table in WRITTEN for s in reads_of(sql, table)] == []
    checked, findings = chain_findings(session_factory, number)
    assert (checked, findings) == (1, [])


def test_on_postgresql_the_submission_statement_is_parsed_once_not_per_submission(
    client: TestClient, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg keeps the parse of a statement's placeholders only for a text of at most 4096 characters; the
    one statement of a submission must stay within it, or every submission parses its 4 KB again."""
    if backend != "postgresql":
        pytest.skip("the one-statement write and psycopg's parse cache are PostgreSQL's")
    from psycopg import _queries

    parsed_again: list[bytes] = []
    uncached = _queries._query2pg_nocache

    def counting(query: bytes, encoding: str) -> Any:
        parsed_again.append(query)
        return uncached(query, encoding)

    monkeypatch.setattr(_queries, "_query2pg_nocache", counting)
    for _ in range(2):
        submit(client, KEY)
    assert [query[:60] for query in parsed_again if b"INSERT INTO cases" in query] == []


def test_the_receipt_of_a_verified_submission_reads_no_check_back(
    hub: TestClient, engine: Engine, session_factory: sessionmaker[Session], seed: Seed
) -> None:
    """The registry checks run after the commit; their outcomes are kept in memory for the receipt."""
    resident = seed.normal_person
    with statements(engine) as sql:
        receipt = submit(hub, KEY, applicant=person(name=resident.name, id_number=resident.id_number))
    assert receipt["verification"] == "verified"
    assert reads_of(sql, "case_verifications") == []
    assert chain_findings(session_factory, receipt["tracking_no"]) == (1, [])


def test_an_online_submission_commits_with_nothing_in_its_session_and_reads_nothing_back(
    app: Any, client: TestClient, engine: Engine,
) -> None:
    """Without a registry to ask, the case and its checks are only read after the write (receipt, commit
    hooks): they never become persistent objects of the request's session (its cascade, identity map and
    close cost a submission more than its receipt), and nothing is read back."""
    body = {"item_code": item_code(client, KEY), "applicant": person(), "form": example_form(KEY)}
    held: list[str] = []

    def before_commit(session: Session) -> None:
        held.extend(type(obj).__name__ for obj in [*session.identity_map.values(), *session.new]
                    if isinstance(obj, (Case, CaseEvent, CaseVerification)))

    event.listen(app.state.session_factory, "before_commit", before_commit)
    try:
        with statements(engine) as sql:
            response = client.post("/api/v1/applications", json=body)
    finally:
        event.remove(app.state.session_factory, "before_commit", before_commit)
    assert response.status_code == 201, response.text
    assert held == []
    assert response.json()["verification"] == "not_configured" and len(inserts_into(sql, "cases")) == 1
    assert [s for table in WRITTEN for s in reads_of(sql, table)] == []


def test_a_submission_of_a_company_stores_every_planned_check_with_its_case(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    key = "food-business-licence"
    receipt = submit(client, key, applicant=company())
    with session_factory() as session:
        case = service.get_case(session, receipt["tracking_no"])
        checks = sorted((v.check_key, v.outcome, v.case_id) for v in case.verifications)
    assert checks and all(outcome == "not_configured" and case_id == case.id for _, outcome, case_id in checks)
    assert receipt["verification"] == "not_configured"


# --- a partner record and a legacy department's action ---------------------------------------------


def test_a_partner_record_opens_its_case_with_one_insert_and_no_update(
    client: TestClient, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    record = case_record(item_code(client, KEY), external_id=f"SY-{uuid.uuid4().hex[:12]}", steps=3)
    with statements(engine) as sql:
        response = client.post("/api/v1/exchange/records", json={"records": [envelope(record)]},
                               auth=("shenyang", PARTNER_SECRET))
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["status"] == "applied"
    assert len(inserts_into(sql, "cases")) == 1
    assert updates_of(sql, "cases") == []
    # All three steps, the last one sealed over the row as the record left it.
    assert chain_findings(session_factory, result["tracking_no"]) == (3, [])


def test_a_later_record_version_appends_to_the_chain_that_still_verifies(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    code, ext = item_code(client, KEY), f"SY-{uuid.uuid4().hex[:12]}"
    push = [envelope(case_record(code, external_id=ext, version=v, steps=s)) for v, s in ((1, 1), (2, 5))]
    results = [client.post("/api/v1/exchange/records", json={"records": [p]}, auth=("shenyang", PARTNER_SECRET))
               .json()["results"][0] for p in push]
    assert [r["status"] for r in results] == ["applied", "applied"]
    assert chain_findings(session_factory, results[1]["tracking_no"]) == (5, [])


def test_a_legacy_departments_decision_appends_a_step_the_chain_verifies(
    app: Any, client: TestClient, clock: FixedClock, session_factory: sessionmaker[Session]
) -> None:
    number = submit(client, KEY)["tracking_no"]
    with serving(app) as url:
        intake = HubDepartmentExchange(url, officer_of(KEY, "intake"), DEMO_PASSWORD, timeout_s=60, now=clock.now)
        answer = intake.submit_decision(number, "accept", "材料齐全")
    assert (answer.seq, answer.state) == (2, "under_review")
    assert chain_findings(session_factory, number) == (2, [])


def test_an_officers_actions_keep_the_chain_verifying(
    client: TestClient, officers: Officers, session_factory: sessionmaker[Session]
) -> None:
    number = submit(client, KEY)["tracking_no"]
    for role, action in [("intake", "accept"), ("reviewer", "review"), ("approver", "grant")]:
        response = client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": "同意"},
                               headers=officers.headers(officer_of(KEY, role)))
        assert response.status_code == 200, response.text
    assert chain_findings(session_factory, number) == (4, [])


def test_only_the_case_write_module_constructs_cases_and_events() -> None:
    """The rule of issue 8: every origin opens cases and appends steps through hub/cases/writes.py."""
    models = {"Case", "CaseEvent"}

    def named(node: ast.expr, names: set[str]) -> bool:
        return isinstance(node, ast.Name) and node.id in names

    def constructs(node: ast.AST) -> bool:
        # ``Case(...)``, or ``built(Case, ...)`` (hub/db.py: built without attribute events)
        if not isinstance(node, ast.Call):
            return False
        built = named(node.func, {"built"}) and bool(node.args) and named(node.args[0], models)
        return named(node.func, models) or built

    constructing = set()
    for path in HUB.rglob("*.py"):
        if any(constructs(node) for node in ast.walk(ast.parse(path.read_text("utf-8")))):
            constructing.add(str(path.relative_to(HUB.parent)))
    assert constructing == {"hub/cases/writes.py"}


# --- tracking numbers -----------------------------------------------------------------------------


def _submit_many(factory: sessionmaker[Session], data: list[ApplicationIn], clock: FixedClock) -> list[str]:
    numbers = []
    for application in data:
        with factory() as session:
            case, _ = service.submit_application(session, data=application, now=clock.now(),
                                                 audit_key=DEV_AUDIT_KEY)
            session.commit()
            numbers.append(case.tracking_no)
    return numbers


def test_tracking_numbers_are_unique_across_processes_and_increase_within_one(
    engine: Engine, session_factory: sessionmaker[Session], clock: FixedClock, backend: str
) -> None:
    """Threads of two 'processes' (two engines: each keeps its own blocks of numbers) submit to one region
    on one day at once."""
    with session_factory() as session:
        code = session.scalar(select(Item.code).where(Item.key == KEY))
    other = make_engine(engine.url.render_as_string(hide_password=False)) if backend == "postgresql" else engine
    factories = [session_factory, make_session_factory(other)]
    per_thread, threads_per_engine = 12, 3
    results: dict[int, list[str]] = {}

    def run(index: int) -> None:
        data = [ApplicationIn.model_validate({
            "item_code": code, "applicant": person(id_number=citizen_id(seq=100 + index * per_thread + i)),
            "form": example_form(KEY)}) for i in range(per_thread)]
        results[index] = _submit_many(factories[index % 2], data, clock)

    try:
        with statements(engine) as sql, statements(other) as other_sql:
            threads = [threading.Thread(target=run, args=(i,)) for i in range(2 * threads_per_engine)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        if other is not engine:
            other.dispose()
    numbers = [n for index in sorted(results) for n in results[index]]
    assert len(numbers) == 2 * threads_per_engine * per_thread == len(set(numbers))
    for sequence in results.values():
        assert [ids.parse_tracking_number(n)[2] for n in sequence] == sorted(
            ids.parse_tracking_number(n)[2] for n in sequence)
    if backend == "postgresql":
        # Blocks, not a row bump per submission: the sequence row is touched once per BLOCK numbers.
        submissions = threads_per_engine * per_thread
        for log in (sql, other_sql):
            assert len(inserts_into(log, "tracking_sequences")) <= submissions // BLOCK + 2


def test_on_postgresql_a_busy_region_reserves_ever_larger_blocks_and_a_quiet_one_small_ones_again(
    engine: Engine, session_factory: sessionmaker[Session], backend: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block used up quickly is followed by one twice as large (up to MAX_BLOCK): a busy region pays the
    sequence row's round trip once in hundreds of submissions; after a quiet spell blocks are BLOCK again,
    so a stopped process leaves a small gap. The numbers stay consecutive within the process."""
    if backend != "postgresql":
        pytest.skip("SQLite numbers each case in its own transaction, no blocks")
    day, region = date(2031, 1, 1) + timedelta(days=uuid.uuid4().int % 3000), "210100"
    with session_factory() as session, statements(engine) as sql:
        numbers = [tracking.tracking_number(session, region, day) for _ in range(BLOCK * 7 + 1)]
    assert [ids.parse_tracking_number(n)[2] for n in numbers] == list(range(1, BLOCK * 7 + 2))
    assert len(inserts_into(sql, "tracking_sequences")) == 4  # BLOCK, 2 × BLOCK, 4 × BLOCK, 8 × BLOCK

    def reserved() -> int:
        with session_factory() as session:
            return int(session.scalar(select(TrackingSequence.last).where(
                TrackingSequence.region_code == region, TrackingSequence.day == day)) or 0)

    assert reserved() == BLOCK * 15
    later = time.monotonic() + tracking.BUSY_S + 1  # the last block is used up only after a quiet spell
    monkeypatch.setattr(tracking.time, "monotonic", lambda: later)
    with session_factory() as session:
        while tracking.tracking_number(session, region, day) != ids.build_tracking_number(
                region, day, BLOCK * 15 + 1):
            pass
    assert reserved() == BLOCK * 16


# --- the outbox row wakes the relay ---------------------------------------------------------------


def test_on_postgresql_a_submission_wakes_the_relay_of_another_process(
    backend: str, settings: Settings, session_factory: sessionmaker[Session], clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The submission's commit is announced by NOTIFY (after it, hub/outbox/wake.py); a relay that sleeps an hour
    publishes at once."""
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite another process's rows wait for the fallback poll")
    # As if the relay ran in another process: this process's own wake-up switched off, and the relay's listener not
    # passing over this process's NOTIFYs (which a relay woken by the commit itself does; hub/outbox/wake.py) — the
    # worker's own jobs (the supervision scan's alerts, audit checkpoints) commit outbox rows meanwhile.
    monkeypatch.setattr(wake, "notify", lambda: None)
    monkeypatch.setattr(wake.PgListener, "_woken_by_this_process", lambda _self: False)
    bus = InProcessBus(user="hub", retry_initial_s=0.01, retry_max_s=0.02)
    bus.bind(bus.declare_queue("partner.test.events"), EVENTS_EXCHANGE, "case.#")
    worker = Worker(settings=settings.model_copy(update={"outbox_relay_fallback_s": 3600.0}),
                    factory=session_factory, clock=clock, bus=bus, consume_inbound=False)
    worker.start()
    try:
        def drained() -> bool:
            with session_factory() as session:
                return session.scalar(select(OutboxMessage.id).where(OutboxMessage.sent_at.is_(None))) is None

        assert wait_until(drained)  # what earlier tests left is published; the relay now sleeps
        with session_factory() as session:
            code = session.scalar(select(Item.code).where(Item.key == KEY))
        data = ApplicationIn.model_validate({"item_code": code, "applicant": person(), "form": example_form(KEY)})
        (number,) = _submit_many(session_factory, [data], clock)
        assert wait_until(lambda: any(m.correlation_id == number for m in bus.messages("partner.test.events")))
    finally:
        worker.stop(timeout=5)


# --- add_case: the new case and its first event left to the flush --------------------------------------------


def _partner_opening(session: Session, item: Item, external_id: str) -> Any:
    from datetime import UTC, datetime

    from hub.cases import writes

    now = datetime(2026, 11, 30, 2, tzinfo=UTC)
    return writes.new_case(
        session, item=item, state="submitted", channel="partner", origin="partner", origin_partner="shenyang",
        external_id=external_id, record_version=1, submitted_at=now, now=now, key=DEV_AUDIT_KEY,
        applicant=writes.Applicant("1", "张三", "passport", "E12345678"),
        first=writes.NewEvent(action="submit", to_state="submitted", actor_type="partner", actor_id="shenyang:x",
                              actor_name="x", occurred_at=now),
    )


@pytest.mark.parametrize("item_in_session", [True, False])
def test_add_case_writes_the_case_and_its_first_event_at_the_flush_with_its_item_in_the_session_or_not(
    session: Session, item_in_session: bool,
) -> None:
    """The cascade-free add (the item and department already in the session) and the cascading one (an item
    of another session: the add brings it in, as ``Session.add`` does) write the same rows."""
    from hub.cases import writes

    if item_in_session:
        item = session.scalars(select(Item).where(Item.key == KEY)).one()
    else:
        with make_session_factory(session.get_bind())() as other:  # type: ignore[arg-type]
            item = other.scalars(select(Item).where(Item.key == KEY)).one()
            other.expunge_all()
    opening = _partner_opening(session, item, f"add-case-{uuid.uuid4()}")
    writes.add_case(session, opening)
    assert opening.case in session.new and opening.event in session.new
    assert item in session and opening.case.department in session
    session.flush()
    stored = session.scalars(select(CaseEvent).where(CaseEvent.case_id == opening.case.id)).all()
    assert [(e.seq, e.hash) for e in stored] == [(1, opening.event.hash)]
    session.commit()
    assert chain_findings(make_session_factory(session.get_bind()), opening.case.tracking_no)[1] == []  # type: ignore[arg-type]
