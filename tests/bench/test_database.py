"""bench/database.py: a benchmark's throwaway database is dropped, sessions still open on it or not."""

from __future__ import annotations

import contextlib
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from bench.database import drop_database


def test_a_database_with_a_session_still_open_on_it_is_dropped(postgres_url: str) -> None:
    name = f"hub_bench_drop_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        leftover = create_engine(make_url(postgres_url).set(database=name), poolclass=NullPool)
        session = leftover.connect()  # a benchmark's session left open on it
        session.execute(text("SELECT 1"))
        drop_database(admin, name)
        with contextlib.suppress(OperationalError):  # the drop ended it
            session.close()
        with admin.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name}) == 0
        drop_database(admin, name)  # already gone: nothing to do, no error
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
