"""A batch of partner records updating existing cases (PostgreSQL): one ``UPDATE cases`` for the batch, not one
per case, with the optimistic ``lock_version`` check in SQL — a row changed behind the session's back is still
detected (StaleDataError), as the ORM's own flush would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from adapters.amqp.messages import Outcome
from hub.audit.service import verify
from hub.cases import writes
from hub.cases.models import Case
from hub.exchange.consumer import InboundHandler
from hub.settings import Settings
from tests.support import case_record, envelope, inbound_message, item_code

ITEM = "physician-practice-registration"


@pytest.fixture(autouse=True)
def postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite keeps the ORM's per-row UPDATE (one in-process file: no round trip to save)")




@pytest.fixture
def updates(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE CASES"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    yield seen
    event.remove(engine, "before_cursor_execute", note)


def test_a_batch_updating_existing_cases_sends_one_update_and_bumps_each_lock_version(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], updates: list[str],
    settings: Settings,
) -> None:
    code = item_code(client, ITEM)
    ids = [f"BU-{uuid.uuid4().hex[:10]}" for _ in range(6)]
    batch = [inbound_message(envelope(case_record(code, external_id=x, steps=2))) for x in ids]
    assert handler.handle_batch(batch) == [Outcome.ACK] * 6
    with session_factory() as session:
        before = dict(session.execute(select(Case.external_id, Case.lock_version)
                                      .where(Case.external_id.in_(ids))).all())
    updates.clear()
    later = [inbound_message(envelope(case_record(code, external_id=x, version=2, steps=4))) for x in ids]
    assert handler.handle_batch(later) == [Outcome.ACK] * 6
    assert len(updates) == 1, updates
    with session_factory() as session:
        rows = session.execute(select(Case.external_id, Case.lock_version, Case.state, Case.record_version,
                                      Case.tracking_no).where(Case.external_id.in_(ids))).all()
        assert {x: (v, s, r) for x, v, s, r, _ in rows} == {x: (before[x] + 1, "granted", 2) for x in ids}
        # Each case's chain still seals the row as written: the statement wrote what the ORM would have.
        assert all(verify(session, key=settings.audit_key, tracking_no=number)[1] == []
                   for *_, number in rows)


def test_a_case_changed_behind_the_sessions_back_is_detected(
    client: TestClient, handler: InboundHandler, session_factory: sessionmaker[Session], engine: Engine,
) -> None:
    code = item_code(client, ITEM)
    ids = [f"BU-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    batch = [inbound_message(envelope(case_record(code, external_id=x, steps=2))) for x in ids]
    assert handler.handle_batch(batch) == [Outcome.ACK] * 3
    with session_factory() as session, session.begin():
        cases = list(session.scalars(select(Case).where(Case.external_id.in_(ids))))
        for case in cases:
            case.state = "under_review"
        with engine.begin() as other:  # another transaction wins the race for one of them
            other.execute(text("UPDATE cases SET lock_version = lock_version + 1 WHERE external_id = :x"),
                          {"x": ids[1]})
        with pytest.raises(StaleDataError):
            writes.update_cases(session, cases)
        session.rollback()
