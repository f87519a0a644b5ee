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

A Session's commit wakes this process's relays twice that way: at once, and again when its own NOTIFY comes back
through the LISTEN thread — by then the relay has usually taken the rows, so the second wake was an empty pass
(a SELECT … FOR UPDATE and a COMMIT, ≈0.6–1 ms of CPU: 63 of 160 passes for 5,000 partner records). So such a
NOTIFY carries this process's sender id as its payload, and a ``PgListener`` whose event the commit has already
set (one subscribed here) passes over it. A NOTIFY of a bare Connection's commit, of an INSERT that announces
itself (``pg_notify`` in the statement) or of another process still wakes it.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from hub.db import Write, committed_by_session, on_commit
from hub.listen import Listener, Subscription, listener_for

CHANNEL = "hub_outbox"
TABLE = "outbox"
INSERTED: Write = ("insert", TABLE)
log = logging.getLogger("hub.outbox.wake")

_subscribers: set[threading.Event] = set()
_subscribers_lock = threading.Lock()


def _new_sender() -> str:
    return uuid.uuid4().hex


# This process's id in its NOTIFY payloads: random, not the pid (hosts share pids), made again in a forked child.
_sender = _new_sender()


def _forget_sender_in_child() -> None:
    global _sender
    _sender = _new_sender()


os.register_at_fork(after_in_child=_forget_sender_in_child)


def subscribe(wake: threading.Event | None = None) -> threading.Event:
    """An event set after every commit in this process that wrote outbox rows (the relay waits on it): ``wake``, or a
    new one."""
    wake = wake if wake is not None else threading.Event()
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
        # A Session's commit wakes this process's relays itself, after the commit (_wake_this_process): say whose
        # it is, so that they are not woken again by their own NOTIFY (see the module).
        payload = f", '{_sender}'" if committed_by_session(conn) else ""
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(f"NOTIFY {CHANNEL}{payload}")
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

    def _notified(self, payload: str | None) -> None:
        if payload == _sender and self._woken_by_this_process():
            return  # this process's own commit, which set the event already
        self.wake.set()

    def _woken_by_this_process(self) -> bool:
        with _subscribers_lock:
            return self.wake in _subscribers
