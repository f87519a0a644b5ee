"""Wakes the outbox relay when outbox rows are committed, so an idle relay sleeps instead of polling.

* Same process (`hub up`, tests): an INSERT into the outbox marks the Session whose connection ran it; the
  Session's ``after_commit`` then sets every subscribed relay's event. Seen at the engine, so ORM adds and
  Core inserts alike count, whichever thread commits (a request's dependency may commit in another thread
  than the endpoint ran in).
* Other processes on PostgreSQL: ``NOTIFY hub_outbox`` is sent inside the committing transaction (just before
  the COMMIT, on the same connection, so it is delivered only if the rows are; or by the INSERT itself,
  execution option ``NOTIFIED``), and a relay's ``PgListener`` subscription to the process's one LISTEN
  thread (hub/listen.py) sets its event.
* Other processes on SQLite, or any write this misses (raw SQL): the relay's long fallback poll
  (``outbox_relay_fallback_s``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from hub.listen import Listener, Subscription, listener_for

CHANNEL = "hub_outbox"
TABLE = "outbox"
_NOTIFY_KEY = "hub.outbox.notify"
_SESSION_KEY = "hub.outbox.session"
_WRITTEN_KEY = "hub.outbox.written"
# Execution option of an outbox INSERT that calls pg_notify(CHANNEL) itself (the submission's statement,
# hub/cases/writes.py): no separate NOTIFY round trip before its commit.
NOTIFIED = "hub_outbox_notified"
log = logging.getLogger("hub.outbox.wake")

_subscribers: set[threading.Event] = set()
_subscribers_lock = threading.Lock()


def subscribe() -> threading.Event:
    """An event set after every commit in this process that wrote outbox rows (the relay waits on it)."""
    wake = threading.Event()
    with _subscribers_lock:
        _subscribers.add(wake)
    return wake


def unsubscribe(wake: threading.Event) -> None:
    with _subscribers_lock:
        _subscribers.discard(wake)


def notify() -> None:
    with _subscribers_lock:
        for wake in _subscribers:
            wake.set()


def _writes_outbox(statement: Any) -> bool:
    return isinstance(statement, Insert) and getattr(statement.table, "name", None) == TABLE


def _after_begin(session: Session, _transaction: Any, conn: Connection) -> None:
    conn.info[_SESSION_KEY] = weakref.ref(session)  # whose transaction this connection now runs


def _after_execute(conn: Connection, statement: Any, _multiparams: Any, _params: Any,
                   execution_options: Any, _result: Any) -> None:
    if _writes_outbox(statement):
        owner = conn.info.get(_SESSION_KEY)
        session = owner() if owner is not None else None
        if session is not None:
            session.info[_WRITTEN_KEY] = True
        if conn.dialect.name == "postgresql" and not execution_options.get(NOTIFIED):
            conn.info[_NOTIFY_KEY] = True


def _before_commit(conn: Connection) -> None:
    # Fired just before the DBAPI commit: the NOTIFY joins the transaction and is delivered with it.
    if conn.info.pop(_NOTIFY_KEY, False):
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(f"NOTIFY {CHANNEL}")
        finally:
            cursor.close()


def _after_rollback(conn: Connection) -> None:
    conn.info.pop(_NOTIFY_KEY, None)


def _after_session_rollback(session: Session) -> None:
    # A savepoint's rollback (the events fire for those too) leaves the rows of the rest of the transaction.
    if not session.in_nested_transaction():
        session.info.pop(_WRITTEN_KEY, None)


def _after_session_commit(session: Session) -> None:
    # A released savepoint is not a commit: wake only when the transaction itself commits.
    if not session.in_nested_transaction() and session.info.pop(_WRITTEN_KEY, False):
        notify()


def install() -> None:
    """Register the hooks once per process (every engine, every session)."""
    if event.contains(Engine, "after_execute", _after_execute):
        return
    event.listen(Engine, "after_execute", _after_execute)
    event.listen(Engine, "commit", _before_commit)
    event.listen(Engine, "rollback", _after_rollback)
    event.listen(Session, "after_begin", _after_begin)
    event.listen(Session, "after_commit", _after_session_commit)
    event.listen(Session, "after_rollback", _after_session_rollback)


class PgListener:
    """Sets ``wake`` when another process commits outbox rows on PostgreSQL (NOTIFY hub_outbox), and after the
    LISTEN connection (re)connects, since rows may have been committed while nobody listened. The connection
    and its thread are the process's one listener (hub/listen.py), shared with the reference-data caches."""

    def __init__(self, listener: Listener, wake: threading.Event) -> None:
        self.listener = listener
        self.wake = wake
        self._subscription: Subscription | None = None

    @classmethod
    def for_engine(cls, engine: Engine, wake: threading.Event) -> PgListener | None:
        listener = listener_for(engine)
        return cls(listener, wake) if listener is not None else None

    def start(self) -> None:
        if self._subscription is None:
            self._subscription = self.listener.subscribe(CHANNEL, self._notified)

    def stop(self, timeout: float = 5.0) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.cancel()

    def _notified(self, _payload: str | None) -> None:
        self.wake.set()
