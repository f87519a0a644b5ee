"""The relay builds each event from the row's plain columns (hub/outbox/relay.py ``_UNSENT``, ``_event``), not from
an ORM object: every event's body is byte for byte what the row read through the ORM gives (``to_event``), on
SQLite and PostgreSQL alike — for payloads an alternative decoder would get wrong (orjson reads an integer past 64
bits as a float: tried for the relay, docs/performance-amqp-side.md, and not kept)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import FixedClock
from hub.db import unit_of_work
from hub.outbox.models import OutboxMessage
from hub.outbox.relay import OutgoingEvent, relay_once, to_event

PAYLOADS: list[Any] = [
    {},
    {"tracking_no": "210102202612010001", "state": "accepted", "result": None, "event_seq": 3, "ok": True},
    {"名称": "沈阳市和平区 — “引号” \\ / \t\n", "emoji": "🙂", "control": "\u0001\u001f\u007f\u2028"},
    {"big": 2 ** 70, "negative": -(2 ** 64), "u64": 2 ** 64 - 1, "i64": -(2 ** 63)},
    {"floats": [0.1, 1.5, -0.0, 1.0, 100.0, 1e16, 1e22, 1e-7, 5e-324, 0.30000000000000004, 123456789.123456789,
                2.5e-308, 1.7976931348623157e308], "ints": [9007199254740993, 10 ** 18, 10 ** 19, -(10 ** 19)]},
    {"nested": {"a": [1, {"b": [None, False, "x" * 300]}], "empty": {}, "list": []}},
    [1, "two", None],
    "a bare string",
    42,
]


def test_every_event_body_is_what_the_row_read_through_the_orm_gives(
    session_factory: sessionmaker[Session], clock: FixedClock
) -> None:
    ids = [uuid.uuid4() for _ in PAYLOADS]
    with unit_of_work(session_factory) as session:
        session.execute(insert(OutboxMessage), [
            {"message_id": mid, "type": "case.reported.v1", "routing_key": "case.reported.v1",
             "region_code": "210102", "correlation_id": f"corr-{n}", "payload": payload,
             "occurred_at": clock.now(), "attempts": 0}
            for n, (mid, payload) in enumerate(zip(ids, PAYLOADS, strict=True))])
    published: list[OutgoingEvent] = []

    def publish(events: Sequence[OutgoingEvent]) -> None:
        published.extend(events)

    while relay_once(session_factory, publish, now=clock.now()):
        pass
    by_id = {event.message_id: event for event in published}
    with session_factory() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.message_id.in_(ids))).all()
        expected = {str(row.message_id): to_event(row) for row in rows}
    assert len(expected) == len(PAYLOADS)
    for message_id, event in expected.items():
        assert by_id[message_id].body == event.body
        assert by_id[message_id] == event
