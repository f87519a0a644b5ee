"""Reference data cached per process, invalidated across processes.

Reference data — the catalogue's items (with their department and region), the working calendar's
overrides, the partners, the region tree — is read on every submission and every partner record but
changes a few times a year. Each process keeps what it read, per engine, under a *generation* per kind of
data; a change bumps the kind's generation and the next look-up reads the database again.

How a process learns of a change:

* **Its own commits.** A write to a reference table is seen at the engine (hub/db.py watches every write:
  ORM flushes and Core statements alike — not raw ``text()`` SQL, whose writers call ``changed()``), and
  its kinds are invalidated once the Session's transaction commits. A rolled-back write invalidates nothing.
* **Other processes, on PostgreSQL.** The committing connection sends ``NOTIFY hub_reference, '<kind>'``
  just before its COMMIT (so it is delivered only if the change is), and every process's one LISTEN thread
  (hub/listen.py, shared with the outbox relay) bumps the kind. After the listener (re)connects, every kind
  is bumped: what was committed while nobody listened is unknown. While it is not connected, cached values
  are trusted for ``ttl_s`` only.
* **Other processes, on SQLite** (`hub api` + `hub worker`, or a CLI command, on one file): there is no
  NOTIFY, so a process trusts what it cached for ``ttl_s`` (``HUB_REFERENCE_CACHE_TTL_S``, 5 s) and then
  reads again. `hub up` is one process: its own commits invalidate at once.

A generation is bumped only after the commit, and a value loaded under an older generation is never
served, so a change is not hidden by a load that raced with it. (On SQLite a read transaction that began
before another connection's commit still sees the old rows and may cache them under the new generation:
the TTL bounds that too.)

A transaction that wrote a kind reads it from the database until it ends: its uncommitted rows must neither
be hidden from it nor cached for others. Cached values are shared between threads and sessions: treat them
as read-only (an item's ``guide`` and ``form_schema`` dicts too — assign, never mutate in place).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from hub.db import Write, mark_written, on_commit, writes_of
from hub.listen import Subscription, listener_for

CHANNEL = "hub_reference"
ITEMS, CALENDAR, PARTNERS, REGIONS = "items", "calendar", "partners", "regions"
THRESHOLDS = "thresholds"  # electronic supervision's colour thresholds per region (hub/supervision/service.py)
KINDS = (ITEMS, CALENDAR, PARTNERS, REGIONS, THRESHOLDS)
# Which cached kinds a write to a table makes stale: an item's snapshot carries its department and region.
TABLE_KINDS: dict[str, tuple[str, ...]] = {
    "items": (ITEMS,),
    "departments": (ITEMS,),
    "regions": (REGIONS, ITEMS),
    "partners": (PARTNERS,),
    "calendar_overrides": (CALENDAR,),
    "supervision_thresholds": (THRESHOLDS,),
}
# The table that stands for a kind when a writer the engine cannot see says it changed (``changed``).
KIND_TABLES = {ITEMS: "items", CALENDAR: "calendar_overrides", PARTNERS: "partners", REGIONS: "regions",
               THRESHOLDS: "supervision_thresholds"}
DEFAULT_TTL_S = 5.0

T = TypeVar("T")

_ttl_s = DEFAULT_TTL_S


def configure(*, ttl_s: float) -> None:
    """How long a value is trusted without a notification (SQLite; PostgreSQL while not listening)."""
    global _ttl_s
    _ttl_s = ttl_s


# --- the cache ----------------------------------------------------------------------------------


class _Namespace:
    """One engine's cached values: per kind, a generation and a table of ``key -> (generation, time, value)``."""

    def __init__(self, engine: Engine) -> None:
        self.url = _url_key(engine)
        self.generations = dict.fromkeys(KINDS, 0)
        self.tables: dict[str, dict[Hashable, tuple[int, float, Any]]] = {kind: {} for kind in KINDS}
        self._lock = threading.Lock()
        listener = listener_for(engine)
        self.connected = listener.connected if listener is not None else None
        self.subscription: Subscription | None = (
            listener.subscribe(CHANNEL, self._notified) if listener is not None else None
        )

    def trusted(self) -> bool:
        """Told of every change right now (PostgreSQL, listening): no TTL applies."""
        return self.connected is not None and self.connected.is_set()

    def bump(self, kinds: Iterable[str]) -> None:
        with self._lock:
            for kind in kinds:
                self.generations[kind] += 1
                self.tables[kind] = {}  # a load that started before the bump stores into the old table

    def _notified(self, payload: str | None) -> None:
        self.bump(KINDS if payload is None or payload not in KINDS else (payload,))

    def close(self) -> None:
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            subscription.cancel()


_namespaces: weakref.WeakKeyDictionary[Engine, _Namespace] = weakref.WeakKeyDictionary()
_namespaces_lock = threading.Lock()


def _forget_all_in_child() -> None:
    # A forked child has no LISTEN thread, only a copy of its state: start from nothing.
    global _namespaces, _namespaces_lock
    _namespaces = weakref.WeakKeyDictionary()
    _namespaces_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_all_in_child)


def _url_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind.engine if isinstance(bind, Connection) else bind


def _namespace(engine: Engine) -> _Namespace:
    namespace = _namespaces.get(engine)
    if namespace is None:
        with _namespaces_lock:
            namespace = _namespaces.get(engine)
            if namespace is None:
                namespace = _namespaces[engine] = _Namespace(engine)
                if not event.contains(engine, "engine_disposed", _engine_disposed):
                    event.listen(engine, "engine_disposed", _engine_disposed)
                weakref.finalize(engine, namespace.close)  # an engine dropped without dispose()
    return namespace


def _engine_disposed(engine: Engine) -> None:
    with _namespaces_lock:
        namespace = _namespaces.pop(engine, None)
    if namespace is not None:
        namespace.close()  # the last subscription stops the LISTEN thread (a dropped database is not retried)


def listening(engine: Engine) -> bool:
    """Whether this process hears every change on the engine's database right now (PostgreSQL, LISTEN
    connected): its cached values are then trusted until told otherwise, without a TTL."""
    return _namespace(engine).trusted()


def lookup(session: Session, kind: str, key: Hashable, load: Callable[[], T]) -> T:
    """The cached value of ``key``, or ``load()`` (run on ``session``) cached under the current generation.

    ``load`` may return None for "no such row": that is returned but not cached, so a row inserted later is
    found and unknown keys sent by anyone cannot fill the cache."""
    if writes_pending(session, kind):
        return load()
    namespace = _namespace(_engine_of(session))
    generation = namespace.generations[kind]
    table = namespace.tables[kind]
    entry = table.get(key)
    now = time.monotonic()
    if entry is not None and entry[0] == generation and (namespace.trusted() or now - entry[1] < _ttl_s):
        return entry[2]  # type: ignore[no-any-return]
    value = load()
    if value is not None and not writes_pending(session, kind):
        table[key] = (generation, now, value)
    return value


def writes_pending(session: Session, kind: str) -> bool:
    """Whether the session's open transaction wrote data of this kind (flushed)."""
    return kind in _kinds(writes_of(session))


def invalidate(engine: Engine, kinds: Iterable[str]) -> None:
    """Forget the kinds in every namespace of this process on the engine's database."""
    kinds = tuple(kinds)
    url = _url_key(engine)
    with _namespaces_lock:
        namespaces = [n for n in _namespaces.values() if n.url == url]
    for namespace in namespaces:
        namespace.bump(kinds)


def changed(session: Session, *kinds: str) -> None:
    """For writers the engine hook cannot see (raw ``text()`` SQL): mark the kinds as written by the
    session's transaction — invalidated here on commit, NOTIFYed to other processes with it."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown reference kinds {sorted(unknown)}")
    mark_written(session, *(("update", KIND_TABLES[kind]) for kind in kinds))


# --- snapshots: ORM rows cached as plain values, attached to a session without a query --------------


@dataclass(frozen=True)
class Snapshot:
    """The committed column values of one mapped row and of the many-to-one rows loaded with it."""

    cls: type
    identity: tuple[Any, ...]
    values: dict[str, Any]
    related: dict[str, Snapshot | None]

    @property
    def manager(self) -> Any:
        return inspect(self.cls).class_manager


def row_snapshot(cls: type, row: Mapping[str, Any], *, prefix: str = "",
                 related: dict[str, Snapshot | None] | None = None) -> Snapshot:
    """A snapshot of a row read with Core (``select(table)``, or labelled ``<prefix><column>`` when several
    tables share a statement). Read rows, not ORM instances: an instance already in the session may carry
    its unflushed changes, which must never reach the cache."""
    mapper = inspect(cls)
    values = {attr.key: row[prefix + attr.columns[0].name] for attr in mapper.column_attrs}
    identity = mapper.identity_key_from_primary_key([row[prefix + column.name] for column in mapper.primary_key])
    return Snapshot(mapper.class_, identity, values, related or {})


def read(session: Session, statement: Any) -> list[Any]:
    """The rows of a Core statement, without flushing the session first (see ``row_snapshot``)."""
    with session.no_autoflush:
        return list(session.execute(statement).mappings())


def attach(session: Session, snap: Snapshot) -> Any:
    """A persistent, clean instance of the snapshot's row in ``session``: the one the session already has
    (its identity map), else one built from the snapshot and added without a query (with its related rows,
    by the relationships' save-update cascade: one ``add`` for the whole graph)."""
    existing = session.identity_map.get(snap.identity)
    if existing is not None:
        return existing
    instance = _build(session, snap)
    session.add(instance)
    return instance


def values_of(session: Session, snap: Snapshot) -> Any:
    """The snapshot's row for reading its values: the session's own instance when it has one, else the
    snapshot's one detached instance (with its related rows), built on first use and shared by every
    session and thread of the process while the snapshot is current — no ``add``, so none of its cascade.
    Never to be changed, added to or merged into a session (``is_shared`` tells it; tests/hub/test_refcache.py
    fails when a submission, a window registration or a partner record attaches one); a case may hold it as
    loaded (hub/cases/writes.py)."""
    existing = session.identity_map.get(snap.identity)
    if existing is not None:
        return existing
    shared = snap.__dict__.get("_shared")
    if shared is None:
        # Two threads may both build it: the last one stored wins, and either is a correct read-only copy.
        shared = _build(session, snap, attached=False)
        object.__setattr__(snap, "_shared", shared)  # a frozen dataclass: its fields stay as they were
        for instance in _graph(shared):
            _shared_ids.add(id(instance))
            weakref.finalize(instance, _shared_ids.discard, id(instance))
    return shared


# The ids of the instances ``values_of`` shares (kept while they live).
_shared_ids: set[int] = set()


def is_shared(instance: Any) -> bool:
    """Whether ``instance`` is (part of) a detached instance ``values_of`` shares between sessions."""
    return id(instance) in _shared_ids


def _graph(instance: Any) -> list[Any]:
    """The instance and the many-to-one rows built with it (a snapshot's ``related``, recursively)."""
    found = [instance]
    for value in list(instance.__dict__.values()):
        if value is not None and hasattr(value, "_sa_instance_state") and value is not instance:
            found.extend(_graph(value))
    return found


def _build(session: Session, snap: Snapshot, *, attached: bool = True) -> Any:
    instance = snap.manager.new_instance()  # as the ORM's loading does: no __init__, no attribute events
    state = instance.__dict__
    state.update(snap.values)
    for name, target in snap.related.items():
        if target is None:
            state[name] = None
        elif attached:
            state[name] = session.identity_map.get(target.identity) or _build(session, target)
        else:
            state[name] = _build(session, target, attached=False)
    # What make_transient_to_detached does, minus what a fresh instance does not need: values set in its
    # __dict__ carry no history, and the identity key is known.
    state = inspect(instance)
    state.key = snap.identity
    unloaded = state.unloaded
    if unloaded:
        state._expire_attributes(state.dict, unloaded)
    return instance


# --- reacting to writes (hub/db.py watches them) ----------------------------------------------------


def _kinds(writes: Iterable[Write]) -> set[str]:
    return {kind for _verb, table in writes for kind in TABLE_KINDS.get(table, ())}


def _announce_to_other_processes(conn: Connection, writes: frozenset[Write]) -> None:
    # Just before the DBAPI commit, on the committing connection: delivered with the commit, and only if it is.
    kinds = _kinds(writes)
    if kinds and conn.dialect.name == "postgresql":
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for kind in sorted(kinds):
                cursor.execute(f"NOTIFY {CHANNEL}, '{kind}'")  # kinds are the constants of KINDS
        finally:
            cursor.close()


def _forget_in_this_process(session: Session, writes: frozenset[Write]) -> None:
    kinds = _kinds(writes)
    if kinds:
        invalidate(_engine_of(session), kinds)


def install() -> None:
    """React to committed writes of reference tables, once per process."""
    on_commit(before=_announce_to_other_processes, after=_forget_in_this_process)


install()
