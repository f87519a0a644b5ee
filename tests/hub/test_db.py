"""The engine's pool (hub/db.py): a connection the database server dropped never fails a request."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

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
