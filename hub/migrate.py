"""Alembic is the only way a schema is created, on SQLite and PostgreSQL alike.

On PostgreSQL every upgrade holds one transaction-level advisory lock (``MIGRATION_LOCK``) for its whole
transaction: processes started together on an empty database (a `migrate` job, API replicas, workers)
migrate one at a time, and each one after the first finds the schema at head and does nothing. Without it
two of them created ``alembic_version`` at once and one crashed (issue 13: ``UniqueViolation …
pg_type_typname_nsp_index``). On SQLite, a lock file beside the database file does the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

# pg_advisory_xact_lock's key: "hubmigr" as a 64-bit integer, one key per database (advisory locks are
# per database, so hubs sharing a server do not wait for each other).
MIGRATION_LOCK = int.from_bytes(b"hubmigr", "big")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("hub") / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with _sqlite_file_lock(engine), engine.begin() as connection:
        lock_migrations(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """SQLite's own lock waits only its busy timeout (10 s), shorter than a migration from scratch on a busy
    machine: processes migrating one SQLite file take turns on a lock file beside it (``<file>.migrate-lock``)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    import fcntl

    with open(f"{database}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_migrations(connection: Connection) -> None:
    """Wait for any other migrating process, then hold the lock until this transaction ends (PostgreSQL; a
    SQLite file has one writer anyway). Read committed: what alembic reads next is what the other committed."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration this code ships (read once per process)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the database's alembic revision; None: never migrated
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def schema_state(connection: Connection) -> SchemaState:
    """Where the database's schema stands against this code's migrations; migrates nothing."""
    current = None
    if inspect(connection).has_table("alembic_version"):
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return SchemaState(current=current, head=head_revision())


def schema_behind(database_url: str) -> str | None:
    """Why a command that never migrates cannot run on this database (its schema is not at this code's head),
    or None. `hub worker --check` / `--no-migrate` and `hub bootstrap` ask it; the `migrate` job runs first."""
    from hub.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            state = schema_state(connection)
    finally:
        engine.dispose()
    if state.at_head:
        return None
    return (f"database schema at {state.current or 'nothing (never migrated)'}, this code needs {state.head}: "
            "run `hub db upgrade` first (the compose `migrate` job)")
