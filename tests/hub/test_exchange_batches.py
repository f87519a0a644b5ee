"""A batch of partner records through the inbound handler, on every backend: applied optimistically (one
SAVEPOINT for the batch, not one per message), and what the batch's completed cases owe the national
system written once per case, whether the case completes in this batch or was completed before."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp.messages import Outcome
from hub.audit.service import verify
from hub.cases.models import Case
from hub.deliveries.models import Delivery
from hub.deliveries.service import NATIONAL_RESULT
from hub.exchange.consumer import InboundHandler
from hub.settings import Settings
from tests.support import case_record, envelope, inbound_message, item_code, step

REPORTED = "physician-practice-registration"  # 沈阳市卫健委 (210100): results reported nationally




@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    yield seen
    event.remove(engine, "before_cursor_execute", note)


def records(code: str, count: int, *, steps: int = 2) -> list[dict[str, Any]]:
    return [envelope(case_record(code, external_id=f"BT-{uuid.uuid4().hex[:12]}", steps=steps))
            for _ in range(count)]


def test_a_batch_is_applied_in_one_savepoint_not_one_per_message(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], statements: list[str],
) -> None:
    documents = records(item_code(client, REPORTED), 12)
    statements.clear()
    assert handler.handle_batch([inbound_message(d) for d in documents]) == [Outcome.ACK] * 12
    savepoints = [s for s in statements if s.lstrip().upper().startswith("SAVEPOINT")]
    # The batch's look-ups, its writes (and on SQLite the block of tracking numbers): none per message.
    assert len(savepoints) <= 3, savepoints
    with session_factory() as session:
        ids = [d["payload"]["external_id"] for d in documents]
        assert session.scalar(select(func.count()).select_from(Case).where(Case.external_id.in_(ids))) == 12


def test_completed_cases_of_a_batch_owe_one_national_delivery_each(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], settings: Settings,
) -> None:
    code = item_code(client, REPORTED)
    completed = records(code, 3, steps=5)
    open_ = records(code, 2, steps=2)
    # The same case again within the batch (a newer version), and a later batch repeating a completion.
    again = envelope({**completed[0]["payload"], "record_version": 2})
    assert handler.handle_batch([inbound_message(d) for d in [*completed, *open_, again]]) == [Outcome.ACK] * 6
    repeat = envelope({**completed[1]["payload"], "record_version": 3})
    assert handler.handle_batch([inbound_message(repeat)]) == [Outcome.ACK]

    with session_factory() as session:
        def deliveries(document: dict[str, Any]) -> list[str]:
            case = session.scalar(select(Case).where(Case.external_id == document["payload"]["external_id"]))
            assert case is not None
            return list(session.scalars(select(Delivery.kind).where(Delivery.case_id == case.id)))

        assert [deliveries(d) for d in completed] == [[NATIONAL_RESULT]] * 3
        assert [deliveries(d) for d in open_] == [[], []]
        # This test's cases only: the database is shared with tests that tamper with their own chains.
        for document in [*completed, *open_]:
            case = session.scalar(select(Case).where(Case.external_id == document["payload"]["external_id"]))
            assert case is not None
            checked, findings = verify(session, key=settings.audit_key, tracking_no=case.tracking_no)
            assert checked > 0 and findings == [], case.tracking_no


def test_a_batch_writes_its_new_cases_and_their_events_in_one_insert_each_on_postgresql(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], settings: Settings,
    statements: list[str], engine: Engine,
) -> None:
    """Cases whose records set different columns (open, decided, completed) and steps appended to a case of an
    earlier batch: one INSERT per table for the batch — not the ORM's INSERT per run of cases with the same
    columns set — and every chain still verifies, the new cases and the older one alike."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite: the ORM's flush writes them (no round trips to save)")
    code = item_code(client, REPORTED)
    older = records(code, 1, steps=1)[0]
    assert handler.handle_batch([inbound_message(older)]) == [Outcome.ACK]
    batch = [*records(code, 3, steps=1), *records(code, 3, steps=3), *records(code, 3, steps=5),
             envelope({**case_record(code, external_id=older["payload"]["external_id"], version=2, steps=4)})]
    statements.clear()
    assert handler.handle_batch([inbound_message(d) for d in batch]) == [Outcome.ACK] * len(batch)
    inserts = [s.split("(")[0].split()[-1] for s in statements if s.lstrip().upper().startswith("INSERT INTO")]
    assert inserts.count("cases") == 1 and inserts.count("case_events") == 1, inserts
    with session_factory() as session:
        for document in batch:  # the older case by its version 2, with four steps
            case = session.scalar(select(Case).where(Case.external_id == document["payload"]["external_id"]))
            assert case is not None
            checked, findings = verify(session, key=settings.audit_key, tracking_no=case.tracking_no)
            assert findings == [] and checked == case.event_count == len(document["payload"]["steps"])


def test_a_batch_appends_its_steps_as_plain_values_not_session_objects_on_postgresql(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], settings: Settings,
    engine: Engine,
) -> None:
    """Issue 8 (part plain): a batch's steps — the new cases' and those appended to an earlier batch's case — are
    plain values written by the batch's one INSERT, never ``CaseEvent`` objects added to the session (no identity
    map, no flush bookkeeping); the rows and their chains are as before (every chain verifies, every step there)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite: the ORM's flush writes the steps")
    code = item_code(client, REPORTED)
    older = records(code, 1, steps=1)[0]
    assert handler.handle_batch([inbound_message(older)]) == [Outcome.ACK]
    added: list[str] = []

    def note(_session: Session, obj: Any) -> None:
        added.append(type(obj).__name__)

    event.listen(session_factory, "transient_to_pending", note)
    try:
        batch = [*records(code, 4, steps=3),
                 envelope({**case_record(code, external_id=older["payload"]["external_id"], version=2, steps=4)})]
        assert handler.handle_batch([inbound_message(d) for d in batch]) == [Outcome.ACK] * len(batch)
    finally:
        event.remove(session_factory, "transient_to_pending", note)
    assert "Case" in added and "CaseEvent" not in added, added
    assert_each_chain_verifies(session_factory, batch, key=settings.audit_key)


def test_a_batch_whose_writes_fail_after_its_plain_steps_were_written_applies_each_record_once_by_itself(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The optimistic batch fails after ``insert_added`` wrote its plain steps (here: writing its deliveries): its
    savepoint is rolled back, the plain steps forgotten, and every record applied again in a savepoint of its own
    (as ORM events) — each step written once, every chain verifies."""
    code = item_code(client, REPORTED)
    older = records(code, 1, steps=1)[0]
    assert handler.handle_batch([inbound_message(older)]) == [Outcome.ACK]
    from hub.exchange import service

    failures: list[int] = []

    def failing_once(*args: Any, **kwargs: Any) -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("the batch's deliveries could not be written")
        real(*args, **kwargs)

    real = service.deliveries.create_owed
    monkeypatch.setattr(service.deliveries, "create_owed", failing_once)
    batch = [*records(code, 3, steps=3), *records(code, 2, steps=5),
             envelope({**case_record(code, external_id=older["payload"]["external_id"], version=2, steps=4)})]
    assert handler.handle_batch([inbound_message(d) for d in batch]) == [Outcome.ACK] * len(batch)
    assert failures == [1]
    assert_each_chain_verifies(session_factory, batch, key=settings.audit_key)


def test_a_batch_reserves_the_tracking_numbers_of_its_new_cases_of_many_days_at_once_on_postgresql(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], statements: list[str],
    engine: Engine,
) -> None:
    """New partner cases are numbered by the day they were submitted: a batch of cases from eight days takes
    their numbers in one round trip to the sequence, not in a transaction per day; every number is unique and
    of its case's own day."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite numbers each case in its own transaction (one writer, no round trips)")
    code = item_code(client, REPORTED)
    documents = []
    for day in range(1, 9):
        record = case_record(code, external_id=f"TN-{uuid.uuid4().hex[:12]}", steps=1)
        record["submitted_at"] = f"2025-06-{day:02d}T09:00:00+08:00"
        documents.append(envelope(record))
    statements.clear()
    assert handler.handle_batch([inbound_message(d) for d in documents]) == [Outcome.ACK] * len(documents)
    reservations = [s for s in statements if "tracking_sequences" in s]
    assert len(reservations) <= 1, reservations
    with session_factory() as session:
        numbers = {d["payload"]["external_id"]: session.scalar(
            select(Case.tracking_no).where(Case.external_id == d["payload"]["external_id"])) for d in documents}
    assert len(set(numbers.values())) == len(documents)
    for day, document in enumerate(documents, start=1):
        assert f"202506{day:02d}" in str(numbers[document["payload"]["external_id"]]), numbers


def test_a_batch_reads_the_ratings_of_its_rated_cases_in_one_query(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], statements: list[str],
) -> None:
    """Platforms send their whole case again with each change: a batch of new versions of rated cases finds the
    ratings held with its other look-ups, not with a query per record, and each new level replaces the held
    one (a bad one opens the follow-up)."""
    from hub.supervision.models import Rating

    code = item_code(client, REPORTED)

    def rated(external_id: str, *, version: int, level: int) -> dict[str, Any]:
        record = case_record(code, external_id=external_id, version=version, steps=5)
        record["result"] = {"at": "2026-03-14T10:00:00+08:00", "outcome": "granted", "satisfaction": level}
        return envelope(record)

    ids = [f"RT-{uuid.uuid4().hex[:12]}" for _ in range(6)]
    assert handler.handle_batch([inbound_message(rated(x, version=1, level=5)) for x in ids]) == [Outcome.ACK] * 6
    statements.clear()
    assert handler.handle_batch([inbound_message(rated(x, version=2, level=1)) for x in ids]) == [Outcome.ACK] * 6
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM ratings" in s]
    assert len(reads) <= 1, reads
    with session_factory() as session:
        held = session.execute(select(Rating.level, Rating.follow_up_status).join(Case, Case.id == Rating.case_id)
                               .where(Case.external_id.in_(ids))).all()
    assert sorted(held) == [(1, "open")] * 6


def test_a_batch_writes_its_new_ratings_by_one_statement_text_whatever_their_number_on_postgresql(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], statements: list[str],
    engine: Engine,
) -> None:
    """Batches rating two and three new completed cases write the ratings with the same short statement (the rows
    one JSONB parameter, after their cases), not the ORM's multi-row VALUES of a new text for every number of
    rows; each case holds its one rating, and a later version of a case in the same batch re-levels it."""
    from hub.supervision.models import Rating

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite: no statement to prepare (one in-process file)")
    code = item_code(client, REPORTED)

    def rated(external_id: str, *, version: int, level: int) -> dict[str, Any]:
        record = case_record(code, external_id=external_id, version=version, steps=5)
        record["result"] = {"at": "2026-03-14T10:00:00+08:00", "outcome": "granted", "satisfaction": level}
        return envelope(record)

    first, second = [f"RN-{uuid.uuid4().hex[:12]}" for _ in range(2)], [f"RN-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    statements.clear()
    assert handler.handle_batch([inbound_message(rated(x, version=1, level=5)) for x in first]) == [Outcome.ACK] * 2
    batch = [*(rated(x, version=1, level=4) for x in second), rated(second[0], version=2, level=1)]
    assert handler.handle_batch([inbound_message(d) for d in batch]) == [Outcome.ACK] * 4
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO RATINGS")]
    assert len(inserts) == 2 and len(set(inserts)) == 1, inserts
    assert inserts[0].count("%(") <= 2, inserts[0]
    with session_factory() as session:
        held = dict(session.execute(select(Case.external_id, Rating.level).join(Case, Case.id == Rating.case_id)
                                    .where(Case.external_id.in_([*first, *second]))).all())
    assert held == {**dict.fromkeys(first, 5), second[0]: 1, second[1]: 4, second[2]: 4}


def test_a_batch_writes_its_deliveries_by_one_statement_text_whatever_their_number_on_postgresql(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], statements: list[str],
    engine: Engine,
) -> None:
    """Batches owing two and three national deliveries write them with the same short statement (the rows one
    JSONB parameter): psycopg parses it once and the server keeps it prepared — the ORM's multi-row VALUES was a
    new statement of a dozen parameters per row for every number of rows, parsed again each time. Each completed
    case still owes exactly one delivery, pending, with a message id of its own."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite: no statement to prepare (one in-process file)")
    code = item_code(client, REPORTED)
    first, second = records(code, 2, steps=5), records(code, 3, steps=5)
    statements.clear()
    assert handler.handle_batch([inbound_message(d) for d in first]) == [Outcome.ACK] * 2
    assert handler.handle_batch([inbound_message(d) for d in second]) == [Outcome.ACK] * 3
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO DELIVERIES")]
    assert len(inserts) == 2 and len(set(inserts)) == 1, inserts
    assert inserts[0].count("%(") <= 2, inserts[0]
    with session_factory() as session:
        ids = [d["payload"]["external_id"] for d in [*first, *second]]
        owed = session.execute(select(Delivery.kind, Delivery.status, Delivery.message_id, Delivery.attempts)
                               .join(Case, Case.id == Delivery.case_id).where(Case.external_id.in_(ids))).all()
    assert sorted((kind, status, attempts) for kind, status, _, attempts in owed) == [
        (NATIONAL_RESULT, "pending", 0)] * 5
    assert len({message_id for _, _, message_id, _ in owed}) == 5


def test_a_batch_raises_its_alerts_and_their_messages_by_one_statement_text_whatever_their_number_on_postgresql(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], statements: list[str],
    engine: Engine,
) -> None:
    """Batches of two and of three records that skip acceptance (each raises ``procedure.skipped_step`` in real
    time) insert their alerts with the same short statement, and their ``alert.raised.v1`` outbox rows likewise:
    one text for every number of rows, so psycopg parses it once. Each alert and its message are there."""
    from hub.outbox.models import OutboxMessage
    from hub.supervision.models import Alert

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite: no statement to prepare (one in-process file)")
    code = item_code(client, REPORTED)

    def skipping() -> dict[str, Any]:
        payload = case_record(code, external_id=f"SK-{uuid.uuid4().hex[:12]}", steps=2)
        payload["steps"][1] = step(2, "grant", "granted")
        payload["state"] = "granted"
        del payload["accepted_at"]
        return envelope(payload)

    first, second = [skipping() for _ in range(2)], [skipping() for _ in range(3)]
    statements.clear()
    assert handler.handle_batch([inbound_message(d) for d in first]) == [Outcome.ACK] * 2
    assert handler.handle_batch([inbound_message(d) for d in second]) == [Outcome.ACK] * 3
    for table in ("ALERTS", "OUTBOX"):
        inserts = [s for s in statements if s.lstrip().upper().startswith(f"INSERT INTO {table} ")]
        assert len(set(inserts)) == 1 and inserts[0].count("%(") <= 2, inserts
    with session_factory() as session:
        ids = [d["payload"]["external_id"] for d in [*first, *second]]
        numbers = list(session.scalars(select(Case.tracking_no).where(Case.external_id.in_(ids))))
        rules = session.scalars(select(Alert.rule).join(Case, Case.id == Alert.case_id)
                                .where(Case.external_id.in_(ids))).all()
        raised = session.scalars(select(OutboxMessage.payload).where(
            OutboxMessage.correlation_id.in_(numbers), OutboxMessage.type == "alert.raised.v1")).all()
    assert rules.count("procedure.skipped_step") == 5, rules
    assert sorted(p["tracking_no"] for p in raised if p["rule"] == "procedure.skipped_step") == sorted(numbers)


def assert_each_chain_verifies(session_factory: sessionmaker[Session], batch: list[dict[str, Any]], *, key: str
                               ) -> None:
    """Each record's case holds exactly the record's steps, and its hash chain and MACs verify."""
    with session_factory() as session:
        for document in batch:
            case = session.scalar(select(Case).where(Case.external_id == document["payload"]["external_id"]))
            assert case is not None
            checked, findings = verify(session, key=key, tracking_no=case.tracking_no)
            assert findings == [] and checked == case.event_count == len(document["payload"]["steps"])
