"""Savepoints (the batched ingest applies each record in one) are not commits: an outbox row written inside a
released savepoint wakes the relay when the transaction commits — not at the release, when the relay would
find nothing and sleep through the real commit — and a savepoint rolled back later does not forget it."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import FixedClock
from hub.db import begin_for_savepoints, unit_of_work
from hub.outbox import wake
from hub.outbox.models import OutboxMessage


def test_an_outbox_row_in_a_released_savepoint_wakes_the_relay_at_the_commit(
    session_factory: sessionmaker[Session], clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    wakes: list[str] = []
    monkeypatch.setattr(wake, "notify", lambda: wakes.append("wake"))
    row = {"type": "case.idle-probe.v1", "routing_key": "case.idle-probe.v1", "region_code": "210100",
           "payload": {"probe": True}, "occurred_at": clock.now(), "message_id": uuid.uuid4()}
    with unit_of_work(session_factory) as session:
        begin_for_savepoints(session)
        with session.begin_nested():
            session.execute(insert(OutboxMessage).values(**row))
        assert wakes == []  # released, not committed: nothing to publish yet
        savepoint = session.begin_nested()
        session.execute(insert(OutboxMessage).values(**{**row, "message_id": uuid.uuid4()}))
        savepoint.rollback()
        assert wakes == []
    assert wakes == ["wake"]
