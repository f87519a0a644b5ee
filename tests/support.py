"""Helpers the tests share: valid applicants and submissions built from the demo catalogue."""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from importlib.resources import files
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from adapters.amqp import InboundMessage
from adapters.amqp.topology import INBOUND_QUEUE
from hub.seed.service import read_seed
from workflow.identifiers import citizen_id_check_char, credit_code_check_char

ITEM_KEYS = {row["key"]: row for row in read_seed("items")}


def citizen_id(region: str = "210102", born: date = date(1990, 3, 7), seq: int = 123) -> str:
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    return body + citizen_id_check_char(body)


def credit_code(region: str = "210100", org: str = "MA0T4K5L") -> str:
    from workflow.identifiers import organisation_code_check_char

    body = f"91{region}{org}{organisation_code_check_char(org)}"
    return body + credit_code_check_char(body)


def example_form(key: str) -> dict[str, Any]:
    schema = json.loads((files("schemas") / "forms" / ITEM_KEYS[key]["form"]).read_text("utf-8"))
    return dict(schema["examples"][0])


def item_code(client: TestClient, key: str) -> str:
    response = client.get("/api/v1/items", params={"q": key})
    assert response.status_code == 200, response.text
    matches = [i for i in response.json()["items"] if i["key"] == key]
    assert matches, f"item {key} not in catalogue"
    return str(matches[0]["code"])


def person(**overrides: Any) -> dict[str, Any]:
    applicant = {"type": "1", "name": "张三丰", "id_type": "citizen_id",
                 "id_number": citizen_id(), "phone": "13812345678", "region": "210102"}
    applicant.update(overrides)
    return applicant


def company(**overrides: Any) -> dict[str, Any]:
    applicant = {"type": "2", "name": "沈阳北方示范科技有限公司", "id_type": "credit_code",
                 "id_number": credit_code(), "phone": "02423456789", "region": "210100"}
    applicant.update(overrides)
    return applicant


def submit(client: TestClient, key: str, applicant: dict[str, Any] | None = None,
           form: dict[str, Any] | None = None) -> dict[str, Any]:
    row = ITEM_KEYS[key]
    if applicant is None:
        applicant = person() if "1" in row["applicant_types"] else company()
    body = {"item_code": item_code(client, key), "applicant": applicant,
            "form": example_form(key) if form is None else form}
    response = client.post("/api/v1/applications", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def officer_of(key: str, role: str) -> str:
    row = ITEM_KEYS[key]
    for officer in read_seed("officers"):
        if (officer["region"], officer["department"]) == (row["region"], row["department"]) \
                and role in officer["roles"]:
            return str(officer["username"])
    raise LookupError(f"no {role} officer for {key}")


PARTNER_SECRET = "demo-Partner-1"
# For `hub api` / `hub worker` run as processes: production commands refuse the published development keys.
PROCESS_KEYS = {"HUB_SECRET_KEY": "test-secret-key-for-subprocesses-0123456789abcdef",
                "HUB_AUDIT_KEY": "test-audit-key-for-subprocesses-0123456789abcdef"}


def case_record(item_code_value: str, *, external_id: str, version: int = 1, steps: int = 2,
                region: str = "210100", applicant: dict[str, Any] | None = None) -> dict[str, Any]:
    """A city platform's case record with `steps` steps of the standard flow."""
    flow = [("submit", "submitted"), ("accept", "under_review"), ("review", "pending_decision"),
            ("grant", "granted"), ("complete", "completed")]
    chosen = flow[:steps]
    record: dict[str, Any] = {
        "external_id": external_id, "record_version": version, "item_code": item_code_value,
        "region": region, "applicant": applicant or {
            "type": "1", "name": "赵六", "id_type": "citizen_id", "id_number": citizen_id(seq=321)},
        "submitted_at": "2026-03-09T09:00:00+08:00", "state": chosen[-1][1],
        "steps": [step(i + 1, action, state) for i, (action, state) in enumerate(chosen)],
    }
    if steps >= 2:
        record["accepted_at"] = "2026-03-09T10:00:00+08:00"
    return record


def step(seq: int, action: str, to_state: str) -> dict[str, Any]:
    return {"seq": seq, "action": action, "to_state": to_state,
            "at": f"2026-03-{9 + seq:02d}T10:00:00+08:00", "officer": "王科员", "opinion": f"第{seq}步"}


def envelope(payload: dict[str, Any], *, source: str = "shenyang", region: str = "210100",
             record_type: str = "case-record", message_id: str | None = None) -> dict[str, Any]:
    import uuid

    return {"message_id": message_id or str(uuid.uuid4()), "type": record_type, "version": 1,
            "source": source, "region": region, "occurred_at": "2026-03-11T10:00:00+08:00",
            "correlation_id": payload.get("external_id"), "payload": payload}


def inbound_message(document: dict[str, Any], *, user_id: str = "shenyang") -> InboundMessage:
    """An envelope as the consumer receives it from hub.inbound, published by ``user_id``."""
    return InboundMessage(body=json.dumps(document).encode(), routing_key=f"{user_id}.case-record.v1",
                          exchange="hub.inbound", queue=INBOUND_QUEUE, message_id=str(document["message_id"]),
                          user_id=user_id, type="case-record", correlation_id=None,
                          content_type="application/json", timestamp=None, headers={}, redelivered=False,
                          delivery_count=0)


def closed_by_broker(connection: Any) -> bool:
    """Whether RabbitMQ has closed this blocking pika connection (e.g. after its user was deleted): a
    condition for ``wait_until``/``wait_for``."""
    import pika.exceptions

    try:
        connection.process_data_events(time_limit=0)
    except pika.exceptions.AMQPError:
        return True
    return not connection.is_open


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Polls ``condition`` until it holds or ``timeout`` seconds pass; returns its last answer, for the
    test to assert (a busy machine is slow, so tests wait on conditions, never on time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(0.05)
    return True


@contextmanager
def sent_statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent meanwhile on the connections the engine hands out, in order, as the driver
    receives it. On PostgreSQL it is counted at psycopg's cursor, under SQLAlchemy: the submission's one
    statement is sent on the driver's cursor itself (hub/cases/writes.py) and no engine event sees it.
    On SQLite every statement passes through the engine, whose event gives the same text."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    if engine.dialect.driver != "psycopg":
        event.listen(engine, "before_cursor_execute", record)
        try:
            yield seen
        finally:
            event.remove(engine, "before_cursor_execute", record)
        return

    import psycopg

    connections: weakref.WeakSet[Any] = weakref.WeakSet()

    def checked_out(dbapi_connection: Any, *_: Any) -> None:
        connections.add(dbapi_connection)

    def counted(method: Any) -> Any:
        def wrapper(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            if cursor.connection in connections:
                seen.append(query if isinstance(query, str) else str(query))
            return method(cursor, query, *args, **kwargs)

        return wrapper

    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
    event.listen(engine, "checkout", checked_out)
    psycopg.Cursor.execute = counted(execute)  # type: ignore[method-assign]
    psycopg.Cursor.executemany = counted(executemany)  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
        event.remove(engine, "checkout", checked_out)
