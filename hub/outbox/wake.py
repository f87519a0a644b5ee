"""Wakes the outbox relay when outbox rows are committed, so an idle relay sleeps instead of polling.

* Same process (`hub up`, tests): once a Session's transaction that inserted outbox rows has committed,
  every subscribed relay's event is set. hub/db.py sees the writes at the engine, so ORM adds and Core
  inserts alike count, whichever thread commits (a request's dependency may commit in another thread than
  the endpoint ran in); a released savepoint is not a commit.
* Other processes on PostgreSQL: ``NOTIFY hub_outbox`` is sent inside the committing transaction (just before
  the COMMIT, on the same connection, so it is delivered only if the rows are; or by the INSERT itself — the
  submission's statement, which says so with ``hub.db.mark_written(..., announced=)``), and a relay's
  ``PgListener`` subscription to the process's one LISTEN thread (hub/listen.py) sets its event.
* Other processes on SQLite, or any write this misses (raw SQL): the relay's long fallback poll
  (``outbox_relay_fallback_s``).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from hub.db import Write, on_commit
from hub.listen import Listener, Subscription, listener_for

CHANNEL = "hub_outbox"
TABLE = "outbox"
INSERTED: Write = ("insert", TABLE)
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


def _announce_to_other_processes(conn: Connection, writes: frozenset[Write]) -> None:
    # Just before the DBAPI commit, on the committing connection: delivered with the commit, and only if it is.
    if INSERTED in writes and conn.dialect.name == "postgresql":
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(f"NOTIFY {CHANNEL}")
        finally:
            cursor.close()


def _wake_this_process(_session: Session, writes: frozenset[Write]) -> None:
    if INSERTED in writes:
        notify()


def install() -> None:
    """React to committed outbox inserts (hub/db.py watches the writes), once per process."""
    on_commit(before=_announce_to_other_processes, after=_wake_this_process)


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
