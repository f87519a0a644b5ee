"""Engine, sessions and the declarative base shared by every domain's models."""

from __future__ import annotations

import json
import select
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import orjson
from psycopg import pq
from sqlalchemy import JSON, DateTime, MetaData, bindparam, create_engine, event, func, inspect, literal_column
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, configure_mappers, sessionmaker
from sqlalchemy.sql.dml import Insert, Update, UpdateBase
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from hub.settings import Settings

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


def json_row(values: dict[str, Any]) -> dict[str, Any]:
    """A row's values as a JSON document that PostgreSQL's ``jsonb_populate_record(set)`` turns back into the
    values the columns' own types store (instants in UTC, as ``UTCDateTime``; dates and UUIDs as text)."""
    return {name: _json_value(value) if isinstance(value, _CONVERTED) else value for name, value in values.items()}


def json_value(value: Any) -> Any:
    """One value as ``json_row`` gives it."""
    return _json_value(value) if isinstance(value, _CONVERTED) else value


def json_rows(table: str, names: list[str], param: str, *, many: bool) -> Any:
    """The rows of ``table`` given as one JSONB parameter (``json_row`` values), as a FROM-able table whose
    columns PostgreSQL types by the table's own (timestamps, dates, JSONB): a statement of one parameter
    whatever the number of rows, which psycopg parses once and the server keeps prepared."""
    populate = func.jsonb_populate_recordset if many else func.jsonb_populate_record
    rows = populate(literal_column(f"NULL::{table}"), bindparam(param, type_=JSONB))
    return rows.table_valued(*names).alias("r")


_CONVERTED = (date, uuid.UUID)  # datetime is a date
# For a hot loop that tests inline (a row's every column) and converts only these: ``json_value`` in two halves.
JSON_CONVERTED_TYPES = _CONVERTED


def insert_rows(session: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (each the same columns) into ``table`` now. On PostgreSQL one short statement whatever
    their number (the rows as one JSONB parameter, typed by the table's own columns): psycopg parses it once and
    the server keeps it prepared, where the ORM's multi-row VALUES is a new statement of hundreds of parameters
    for every number of rows, parsed again by psycopg each time. Elsewhere an executemany."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        from sqlalchemy import insert  # here: the module's ``select`` is the standard library's

        connection.execute(insert(table), rows)
        return
    connection.execute(insert_from_json(table, tuple(rows[0])), {"rows": JsonRows([json_row(row) for row in rows])})


@cache
def insert_from_json(table: Any, names: tuple[str, ...]) -> Any:
    """PostgreSQL's ``INSERT INTO table (names) SELECT … FROM`` the rows given as the JSONB parameter ``rows``
    (``json_row`` each). One statement object per table and columns: SQLAlchemy compiles it once (its cache key
    is stable); callers add ``returning`` or ``on_conflict_do_nothing`` to it (a new statement, this one kept)."""
    from sqlalchemy import select  # here: the module's ``select`` is the standard library's
    from sqlalchemy.dialects.postgresql import insert

    source = json_rows(table.name, list(names), "rows", many=True)
    return insert(table).from_select(list(names), select(*(source.c[name] for name in names)))


def json_converted(value: Any) -> Any:
    """A value of ``JSON_CONVERTED_TYPES`` as ``json_value`` gives it."""
    return _json_value(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).isoformat()
    return str(value)


@dataclass(frozen=True, slots=True)
class JsonRows:
    """The rows a batch writer sends as one JSONB parameter (``json_rows``: ``json_row`` values of the hub's own
    tables), marked for ``json_dumps``' fast encoder."""

    rows: list[dict[str, Any]]


# Types orjson would write where the standard library's encoder refuses: handed back to it, which decides as before.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_dumps(value: Any) -> bytes | str:
    """JSON and JSONB parameters as PostgreSQL receives them (the engine's ``json_serializer``, which SQLAlchemy
    sets as the connections' psycopg dumps). A batch's rows (``JsonRows``): orjson, ≈15× faster than the
    standard library (its encoding was ≈4 % of a partner record's CPU) — the same documents in compact form; what
    orjson does not take as the standard library would (keys that are not strings, integers past 64 bits, the
    types above) goes to the standard library. Everything else as before: the standard library's ``json.dumps``
    (psycopg's default), which also writes a non-finite float as ``NaN`` (PostgreSQL refuses it; orjson would
    write ``null``) — a case's form data from an online submission may hold one; the batch writers' rows, of
    partner records whose schemas admit integers only, do not. Nothing hashed or signed goes through here
    (hub/audit/service.py keeps its own canonical encoder)."""
    if type(value) is JsonRows:
        try:
            return orjson.dumps(value.rows, option=_ORJSON_OPTIONS)
        except TypeError:
            return json.dumps(value.rows)
    return json.dumps(value)


def loaded_values(obj: Any, attributes: frozenset[str]) -> dict[str, Any]:
    """A mapped object's values of ``attributes`` (mapping reads only): its instance dict when every one is
    loaded — the values the mapped attributes would return, without the ORM's descriptor per read (a partner
    batch seals thousands of events and publishes every case, tens of reads each) —, else read through the
    attributes, which load what is missing (an expired object)."""
    values: dict[str, Any] = obj.__dict__
    if attributes.issubset(values):
        return values
    return {name: getattr(obj, name) for name in attributes}


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
    if make_url(url).get_dialect().driver != "psycopg":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    kwargs.setdefault("json_serializer", json_dumps)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "checkout", _ping_psycopg)
    event.listen(engine, "checkin", _note_checkin)
    return engine


def make_process_engine(settings: Settings) -> Engine:
    """The engine of a long-running process (`hub api`, `hub worker`): on PostgreSQL its pool is
    HUB_DB_POOL_SIZE + HUB_DB_MAX_OVERFLOW, the figures the deployment's connection budget adds up."""
    url = settings.resolved_database_url()
    if url.startswith("sqlite"):
        return make_engine(url)
    return make_engine(url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)


# A connection returned to the pool less than this long ago is checked without a round trip (``_quiet``).
QUIET_CHECK_S = 1.0
_CHECKED_IN = "hub.checked_in"


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info[_CHECKED_IN] = time.monotonic()


def _ping_psycopg(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Every connection the pool hands out is alive: a dead one (a restarted server, a dropped socket) is
    replaced before anyone uses it, so it never fails a request. The same round trip as ``pool_pre_ping``
    (an empty query), sent with libpq's own call, which releases the GIL while it waits: the dialect's ping
    switches autocommit on and off around a cursor, ≈20 µs more of CPU and twice the wait per checkout.
    Under load a connection comes back within milliseconds of being returned: then a look at its socket
    (``_quiet``) stands in for the round trip. ``DisconnectionError`` from this hook makes the pool drop the
    connection and check out another."""
    pgconn = dbapi_connection.pgconn
    returned = record.info.get(_CHECKED_IN)
    if returned is not None and time.monotonic() - returned < QUIET_CHECK_S and _quiet(pgconn):
        return
    _ping_round_trip(pgconn)


def _ping_round_trip(pgconn: Any) -> None:
    """The empty query; looked up at each call, so bench/counting.py can count the round trips it sends."""
    try:
        result = pgconn.exec_(b"")
    except Exception as error:  # psycopg.OperationalError: the connection is closed or its socket is gone
        raise DisconnectionError(str(error)) from error
    if result.status != _EMPTY_QUERY:
        raise DisconnectionError(pgconn.error_message.decode(errors="replace") or "connection is not usable")


_EMPTY_QUERY = pq.ExecStatus.EMPTY_QUERY


def _quiet(pgconn: Any) -> bool:
    """Open, idle, and nothing received since it was returned: a server that ends a session (terminated,
    shut down, restarted) sends its FATAL error and closes the socket, which makes the socket readable — a
    readable or closed socket gets the round trip. One poll(2), no wait, no query."""
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        fd = pgconn.socket
    except Exception:  # psycopg.OperationalError: the connection's socket is gone
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)  # an error or a hang-up is reported too, whatever was asked


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
    from hub.supervision import realtime

    realtime.install()  # procedure and anomaly rules on every new event, before each commit

    configure_mappers()


def begin_for_savepoints(session: Session) -> None:
    """Make sure the session's transaction has begun before a SAVEPOINT, on SQLite too.

    pysqlite begins a transaction only before an INSERT/UPDATE/DELETE; a SAVEPOINT issued before that starts
    one of its own, which RELEASE SAVEPOINT then commits. Instead of SQLAlchemy's engine-wide workaround
    (``isolation_level = None`` and an explicit BEGIN on every transaction, which turns every read-then-write
    session into one that fails with SQLITE_BUSY when another connection wrote in between), only the sessions
    that use savepoints begin explicitly: BEGIN IMMEDIATE, taking SQLite's one write lock at once (waiting up
    to the busy timeout) — such a session is about to write anyway."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    dbapi_connection = connection.connection.driver_connection
    if dbapi_connection is not None and not dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


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


# --- rows built on a hot path ------------------------------------------------------------------------

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
    attributes, new_instance = _builder(model)
    if not attributes.issuperset(values):
        raise TypeError(f"{sorted(values.keys() - attributes)} are not attributes of {model.__name__}")
    instance: _T = new_instance()
    instance.__dict__.update(values)
    return instance


@cache
def _builder(model: type[Any]) -> tuple[frozenset[str], Callable[[], Any]]:
    """A model's attribute names and its instrumented constructor without ``__init__``, looked up once."""
    return _attributes(model), inspect(model).class_manager.new_instance


# --- what a transaction wrote -----------------------------------------------------------------------
# One watcher at the engine sees every statement — ORM flushes, Core, session.connection().execute(...) —
# and notes what the transaction wrote, on the Session that runs the connection and on the connection itself.
# Three things react, each from its own module: the request's unit of work commits only when something was
# written (``wrote``), the outbox relay wakes (hub/outbox/wake.py), the reference-data caches forget
# (hub/refcache.py). Any statement other than a SELECT counts (a SAVEPOINT included: erring towards a needless
# COMMIT, never towards a lost write); one the engine cannot name (text SQL) counts as ``UNKNOWN``. Writes
# through the DBAPI connection itself are not seen: ``mark_written``. A savepoint is not a transaction here:
# releasing one commits nothing, rolling one back forgets nothing (erring towards a needless wake-up).

Write = tuple[str, str]  # (verb, table): ("insert", "outbox"), ("update", "items"), …
UNKNOWN: Write = ("?", "?")
BeforeCommit = Callable[[Connection, frozenset[Write]], None]
AfterCommit = Callable[[Session, frozenset[Write]], None]

_before_commit: list[BeforeCommit] = []
_after_commit: list[AfterCommit] = []
_OWNER_KEY = "hub.db.session"  # conn.info: the Session whose transaction the connection runs
_SESSION_WRITES = "hub.db.writes"  # session.info: what its open transaction wrote
_CONNECTION_WRITES = "hub.db.connection_writes"  # conn.info: the same, for the before-commit hooks


def on_commit(*, before: BeforeCommit | None = None, after: AfterCommit | None = None) -> None:
    """React to committed writes: ``before(connection, writes)`` just before the DBAPI COMMIT, on the committing
    connection (a NOTIFY sent there is delivered with the commit, and only if it succeeds); ``after(session,
    writes)`` once a Session's transaction has committed. Each is called only when something was written."""
    if before is not None and before not in _before_commit:
        _before_commit.append(before)
    if after is not None and after not in _after_commit:
        _after_commit.append(after)


def writes_of(session: Session) -> frozenset[Write]:
    """What the session's open transaction has written (flushed) so far."""
    return frozenset(session.info.get(_SESSION_WRITES, ()))


def wrote(session: Session) -> bool:
    """Whether the session's open transaction has written, or holds changes not flushed yet."""
    if not session.in_transaction():
        return False
    return bool(session.info.get(_SESSION_WRITES) or session.new or session.dirty or session.deleted)


def mark_written(session: Session, *writes: Write, connection: Connection | None = None) -> None:
    """For writes the engine cannot see or name (raw DBAPI cursors, text SQL): count them as the session's.
    ``connection``: the session's, when the caller holds it."""
    _note(connection or session.connection(), session, writes or (UNKNOWN,))


def _note(conn: Any, session: Session | None, writes: Iterable[Write]) -> None:
    conn.info.setdefault(_CONNECTION_WRITES, set()).update(writes)
    if session is not None:
        session.info.setdefault(_SESSION_WRITES, set()).update(writes)


def _statement_sent(conn: Any, _cursor: Any, statement: str, _parameters: Any, context: Any, *_: Any) -> None:
    if statement.lstrip()[:6].upper() == "SELECT":
        return
    owner = conn.info.get(_OWNER_KEY)
    _note(conn, owner() if owner is not None else None, (_write_of(context),))


def _write_of(context: Any) -> Write:
    dml = getattr(getattr(context, "compiled", None), "statement", None)
    table = getattr(getattr(dml, "table", None), "name", None)
    if table is None or not isinstance(dml, UpdateBase):
        return UNKNOWN
    verb = "insert" if isinstance(dml, Insert) else "update" if isinstance(dml, Update) else "delete"
    return verb, table


def committed_by_session(conn: Any) -> bool:
    """Whether the transaction committing on ``conn`` is a Session's: then ``on_commit``'s ``after`` hooks run for
    its writes once it has committed (a bare Connection's commit runs only the ``before`` hooks)."""
    owner = conn.info.get(_OWNER_KEY)
    return owner is not None and owner() is not None


def _connection_began(conn: Any) -> None:
    conn.info.pop(_OWNER_KEY, None)  # a session claims it again in its after_begin, right after this
    conn.info.pop(_CONNECTION_WRITES, None)


def _connection_committing(conn: Any) -> None:
    writes = conn.info.pop(_CONNECTION_WRITES, None)
    if writes:
        for hook in _before_commit:
            hook(conn, frozenset(writes))


def _connection_rolled_back(conn: Any) -> None:
    conn.info.pop(_CONNECTION_WRITES, None)


def _transaction_began(session: Session, transaction: Any, connection: Any) -> None:
    if not transaction.nested:
        session.info.pop(_SESSION_WRITES, None)  # a new transaction: nothing written in it yet
    connection.info[_OWNER_KEY] = weakref.ref(session)


def _session_committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a released savepoint: the transaction goes on
    writes = session.info.pop(_SESSION_WRITES, None)
    if writes:
        for hook in _after_commit:
            hook(session, frozenset(writes))


def _session_rolled_back(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_SESSION_WRITES, None)


def _install_write_tracking() -> None:
    if event.contains(Engine, "before_cursor_execute", _statement_sent):
        return
    event.listen(Engine, "begin", _connection_began)
    event.listen(Engine, "before_cursor_execute", _statement_sent)
    event.listen(Engine, "commit", _connection_committing)
    event.listen(Engine, "rollback", _connection_rolled_back)
    event.listen(Session, "after_begin", _transaction_began)
    event.listen(Session, "after_commit", _session_committed)
    event.listen(Session, "after_rollback", _session_rolled_back)


_install_write_tracking()
