"""Wakes the outbox relay when outbox rows are committed, so an idle relay sleeps instead of polling.

* Same process (`hub up`, tests): an INSERT into the outbox marks the Session whose connection ran it; the
  Session's ``after_commit`` then sets every subscribed relay's event. Seen at the engine, so ORM adds and
  Core inserts alike count, whichever thread commits (a request's dependency may commit in another thread
  than the endpoint ran in).
* Other processes on PostgreSQL: ``NOTIFY hub_outbox`` is sent inside the committing transaction (just before
  the COMMIT, on the same connection, so it is delivered only if the rows are), and a relay's
  ``PgListener`` thread LISTENs and sets its event.
* Other processes on SQLite, or any write this misses (raw SQL): the relay's long fallback poll
  (``outbox_relay_fallback_s``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from adapters.resilience import ResiliencePolicy, backoff_s

CHANNEL = "hub_outbox"
TABLE = "outbox"
_NOTIFY_KEY = "hub.outbox.notify"
_SESSION_KEY = "hub.outbox.session"
_WRITTEN_KEY = "hub.outbox.written"
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


def _after_execute(conn: Connection, statement: Any, *_: Any) -> None:
    if _writes_outbox(statement):
        owner = conn.info.get(_SESSION_KEY)
        session = owner() if owner is not None else None
        if session is not None:
            session.info[_WRITTEN_KEY] = True
        if conn.dialect.name == "postgresql":
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
    """LISTENs on PostgreSQL for commits of other processes and sets ``wake``; reconnects after a failure
    (meanwhile the relay's fallback poll still runs). Blocks in select() between notifications: no polling."""

    def __init__(self, url: str, wake: threading.Event) -> None:
        self.conninfo = url
        self.wake = wake
        self._stop_r, self._stop_w = os.pipe()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hub-worker-outbox-listen", daemon=True)

    @classmethod
    def for_engine(cls, engine: Engine, wake: threading.Event) -> PgListener | None:
        if engine.dialect.name != "postgresql":
            return None
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return cls(url, wake)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        import psycopg

        failures = 0
        policy = ResiliencePolicy(backoff_initial_s=1.0, backoff_max_s=30.0)
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    self.wake.set()  # rows may have been committed while nobody listened
                    self._listen(conn)
            except Exception as exc:  # the database restarted or is unreachable: the fallback poll covers
                failures += 1
                log.warning("outbox LISTEN interrupted (%s); reconnecting", type(exc).__name__)
                if self._wait_stop(backoff_s(policy, failures)):
                    return

    def _listen(self, conn: Any) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), selectors.EVENT_READ, "pg")
            selector.register(self._stop_r, selectors.EVENT_READ, "stop")
            while not self._stopped.is_set():
                for key, _ in selector.select():
                    if key.data == "stop":
                        return
                    if list(conn.notifies(timeout=0)):
                        self.wake.set()

    def _wait_stop(self, seconds: float) -> bool:
        return self._stopped.wait(seconds)
