"""The engine's pool (hub/db.py): a connection the database server dropped never fails a request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from hub import db
from hub.app import create_app
from hub.clock import FixedClock
from hub.db import make_engine
from hub.settings import Settings
from tests.support import submit, wait_until

KEY = "physician-practice-registration"


def _pooled_backends(engine: Engine, count: int) -> list[int]:
    """The server processes behind ``count`` connections of the pool (all checked out at once, then returned)."""
    connections = [engine.connect() for _ in range(count)]
    try:
        return [int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in connections]
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("dropped", ["terminated", "server_closed"])
def test_a_submission_after_the_server_dropped_every_pooled_connection_is_stored(
    backend: str, engine: Engine, settings: Settings, clock: FixedClock, dropped: str,
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no server to drop a connection")
    own = make_engine(engine.url.render_as_string(hide_password=False), pool_size=3, max_overflow=0)
    try:
        client = TestClient(create_app(settings, clock=clock, engine=own))
        submit(client, KEY)  # the pool now holds live connections
        pids = _pooled_backends(own, 3)
        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
                          {"pids": pids})

            def gone() -> bool:
                alive = admin.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                                      {"pids": pids}).scalar_one()
                admin.rollback()
                return alive == 0

            assert wait_until(gone)
        if dropped == "server_closed":
            # The client side learns of it too: the sockets are closed under the pool.
            for record_connection in _raw_pooled(own):
                record_connection.pgconn.finish()
        receipt = submit(client, KEY)
        assert receipt["tracking_no"]
    finally:
        own.dispose()


def _raw_pooled(engine: Engine) -> list[Any]:
    connections = [engine.raw_connection() for _ in range(3)]
    drivers = [c.driver_connection for c in connections]
    for connection in connections:
        connection.close()
    return drivers


def _checkout_traced(engine: Engine, tmp_path: Any) -> str:
    """The client/server protocol messages of one checkout and return of the pool's one connection (libpq's
    trace of its socket), after a first checkout that put the connection in the pool."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    trace = tmp_path / "protocol.trace"
    raw = engine.raw_connection()
    pgconn = raw.driver_connection.pgconn  # type: ignore[union-attr]
    raw.close()
    with trace.open("w") as sink:
        pgconn.trace(sink.fileno())
        try:
            with engine.connect():
                pass
        finally:
            pgconn.untrace()
    return trace.read_text()


def test_a_connection_handed_out_again_at_once_is_checked_without_a_round_trip(
    backend: str, engine: Engine, tmp_path: Any
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite's connections are a file: no round trip to save")
    own = make_engine(engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0)
    try:
        assert "Query" not in _checkout_traced(own, tmp_path)
    finally:
        own.dispose()


def test_a_connection_idle_in_the_pool_is_pinged_before_use(
    backend: str, engine: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no server to ping")
    monkeypatch.setattr(db, "QUIET_CHECK_S", 0.0)  # every connection has been idle long enough
    own = make_engine(engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0)
    try:
        assert "Query" in _checkout_traced(own, tmp_path)  # the empty query of the ping
    finally:
        own.dispose()


def _pool_limits(engine: Engine) -> tuple[int, int]:
    pool: Any = engine.pool
    return pool.size(), pool._max_overflow


def test_the_api_and_the_worker_size_their_pool_from_the_settings(backend: str, settings: Settings) -> None:
    """HUB_DB_POOL_SIZE / HUB_DB_MAX_OVERFLOW are the per-process figures the connection budget adds up
    (docs/operations.md); without them a process keeps the defaults (20 + 20)."""
    if backend != "postgresql":
        pytest.skip("SQLite keeps SQLAlchemy's own pool")
    from hub.cli import _build_worker

    sized = settings.model_copy(update={"db_pool_size": 3, "db_max_overflow": 1})
    app = create_app(sized)
    worker = _build_worker(sized)
    try:
        assert _pool_limits(app.state.engine) == (3, 1)
        assert _pool_limits(worker.factory.kw["bind"]) == (3, 1)
    finally:
        app.state.engine.dispose()
        worker.factory.kw["bind"].dispose()
    default = create_app(settings)
    try:
        assert _pool_limits(default.state.engine) == (20, 20)
    finally:
        default.state.engine.dispose()


def test_pool_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DB_POOL_SIZE", "7")
    monkeypatch.setenv("HUB_DB_MAX_OVERFLOW", "0")
    assert (Settings().db_pool_size, Settings().db_max_overflow) == (7, 0)
    monkeypatch.setenv("HUB_DB_POOL_SIZE", "0")
    with pytest.raises(ValueError, match="db_pool_size"):
        Settings()


# --- JSON parameters (json_dumps: a batch's rows by orjson, everything else by the standard library) ----------


def test_a_batchs_rows_are_the_same_documents_in_compact_form() -> None:
    import json
    from datetime import date

    rows = [{"text": "名称 \"quoted\" \\ \n\t\x01", "number": 12, "fraction": 0.1, "none": None,
             "nested": [{"b": 1, "a": [True, False]}], "day": date(2026, 11, 30).isoformat()}]
    written = db.json_dumps(db.JsonRows(rows))
    assert json.loads(written) == rows
    assert written == json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()


def test_rows_orjson_does_not_take_alike_and_other_documents_go_to_the_standard_library() -> None:
    import enum
    import json

    class Kind(enum.StrEnum):
        RECORD = "record"

    for rows in ([{1: "integer key"}], [{"big": 2**70}]):
        assert db.json_dumps(db.JsonRows(rows)) == json.dumps(rows)
    assert json.loads(db.json_dumps(db.JsonRows([{"kind": Kind.RECORD}]))) == [{"kind": "record"}]
    with pytest.raises(TypeError):  # refused, as the standard library refuses it
        db.json_dumps(db.JsonRows([{"at": datetime(2026, 11, 30, tzinfo=UTC)}]))
    # Any other document (a case's form data from an online submission): the standard library, as before — which
    # writes a non-finite number as NaN, refused by PostgreSQL (orjson would write null).
    for document in ({"area": float("nan")}, {"名": [1, None]}, [1.5e16]):
        assert db.json_dumps(document) == json.dumps(document)


def test_postgresql_engines_write_json_parameters_with_json_dumps(backend: str, engine: Engine) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite stores JSON as SQLAlchemy's default serializer writes it")
    assert engine.dialect._json_serializer is db.json_dumps  # type: ignore[attr-defined]
    with engine.connect() as connection:
        statement = text("SELECT CAST(:doc AS jsonb)").bindparams(bindparam("doc", type_=db.JSONType))
        assert connection.execute(statement, {"doc": {"名": [1, None]}}).scalar_one() == {"名": [1, None]}
        rows = db.JsonRows([{"名": [1, None]}, {"n": 2**70}])
        assert connection.execute(statement, {"doc": rows}).scalar_one() == [{"名": [1, None]}, {"n": 2**70}]


def test_loaded_values_read_the_instance_dict_or_load_through_the_attributes(session: Any) -> None:
    from sqlalchemy import select

    from hub.catalog.models import Item

    item = session.scalars(select(Item).order_by(Item.id).limit(1)).one()
    wanted = frozenset({"code", "region_code"})
    loaded = db.loaded_values(item, wanted)
    assert loaded is item.__dict__ and (loaded["code"], loaded["region_code"]) == (item.code, item.region_code)
    session.expire(item)  # nothing loaded: read through the attributes, which load the row again
    reread = db.loaded_values(item, wanted)
    assert reread is not item.__dict__ and reread == {"code": item.code, "region_code": item.region_code}
