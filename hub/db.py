"""Engine, sessions and the declarative base shared by every domain's models."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar, TypeVar

from sqlalchemy import JSON, DateTime, MetaData, create_engine, event, inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Session, configure_mappers, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back aware datetimes, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSONType}


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A submission briefly holds two connections (its own and the tracking-number transaction), so the
    # pool must cover twice the thread pool's concurrent requests or it opens and drops connections.
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Every session of every process comes from here, so this is where all mapped models are loaded.

    Relationships name classes by string across domains (a case's verifications, …); a process that imported
    only some domains — a CLI command in a fresh process — would otherwise fail on its first query.
    """
    load_all_models()
    return sessionmaker(engine, expire_on_commit=False, autoflush=True)


def load_all_models() -> None:
    """Import every domain's models (hub/models.py lists them) and resolve their relationships now."""
    import hub.models  # noqa: F401  (imported for its side effect: every mapper registered)
    from hub import refcache

    refcache.install()  # its hooks see every write to reference data, in any process

    configure_mappers()


# --- units of work ---------------------------------------------------------------------------------
# Where a transaction is committed (docs/architecture.md, "Units of work"): the request dependency
# (hub/deps.py) once per request, a consumer once per batch, a job once per tick, a flow (hub/<domain>/flows.py)
# once per step after the commit it follows, a CLI command once. Routers and services only flush;
# scripts/check_commits.py fails the test command when one of them commits.


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """The one place a transaction is committed: services only flush."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def separate_unit_of_work(
    factory: sessionmaker[Session], *, commit_on: tuple[type[BaseException], ...] = (),
) -> Iterator[Session]:
    """A unit of work of its own beside the request's, for writes that must survive the request failing: a
    sign-in attempt, a query-code attempt, the access log of a failed look-up. Committed when the block ends,
    also when it raises one of ``commit_on`` (the refusal those writes record), whatever the request does
    next; rolled back on any other error. Open it before the request's session writes anything (the two
    would otherwise wait on each other's locks)."""
    session = factory()
    try:
        try:
            yield session
        except commit_on:
            session.commit()
            raise
        session.commit()
    except BaseException:
        session.rollback()  # also after a failed COMMIT, which leaves the connection inside the transaction
        raise
    finally:
        session.close()


_T = TypeVar("_T")


@cache
def _attributes(model: type[Any]) -> frozenset[str]:
    return frozenset(inspect(model).attrs.keys())


def built(model: type[_T], **values: Any) -> _T:
    """A new (transient) ``model`` holding ``values``, set as the ORM's loading sets them: into the instance's
    dict, without the per-attribute events of ``model(**values)`` — a new row has no history to record, and a
    flush inserts every column in the dict. For rows built on a hot path (a submission's case, first event,
    checks and outbox message). A many-to-one relationship given here is not synchronised at a flush (its
    foreign key is): set that one through the attribute."""
    unknown = values.keys() - _attributes(model)
    if unknown:
        raise TypeError(f"{sorted(unknown)} are not attributes of {model.__name__}")
    instance: _T = inspect(model).class_manager.new_instance()
    instance.__dict__.update(values)
    return instance


# Whether a session's transaction wrote anything, so that its end needs a COMMIT: seen at the engine, so
# ORM flushes, Core statements and session.connection().execute(...) all count. Any statement other than a
# SELECT counts (a SAVEPOINT included: erring towards a needless COMMIT, never towards a lost write). Writes
# through the DBAPI connection itself (driver_connection.cursor()) are not seen: mark them with
# ``mark_written``.
_OWNER_KEY = "hub.uow.session"
_WROTE_KEY = "hub.uow.wrote"


def wrote(session: Session) -> bool:
    """Whether the session's open transaction has written, or holds changes not flushed yet."""
    if not session.in_transaction():
        return False
    return bool(session.info.get(_WROTE_KEY) or session.new or session.dirty or session.deleted)


def mark_written(session: Session) -> None:
    session.info[_WROTE_KEY] = True


def _transaction_began(session: Session, _transaction: Any, connection: Any) -> None:
    session.info.pop(_WROTE_KEY, None)  # a new transaction: nothing written in it yet
    connection.info[_OWNER_KEY] = weakref.ref(session)


def _statement_sent(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    if statement.lstrip()[:6].upper() == "SELECT":
        return
    owner = conn.info.get(_OWNER_KEY)
    session = owner() if owner is not None else None
    if session is not None:
        session.info[_WROTE_KEY] = True


def _connection_began(conn: Any) -> None:
    conn.info.pop(_OWNER_KEY, None)  # a session claims it again in its after_begin, right after this


def _install_write_tracking() -> None:
    if event.contains(Engine, "before_cursor_execute", _statement_sent):
        return
    event.listen(Engine, "begin", _connection_began)
    event.listen(Engine, "before_cursor_execute", _statement_sent)
    event.listen(Session, "after_begin", _transaction_began)


_install_write_tracking()
