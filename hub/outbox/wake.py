"""Wakes the outbox relay when outbox rows are committed, so an idle relay sleeps instead of polling.

* Same process (`hub up`, tests): once a Session's transaction that inserted outbox rows has committed,
  every subscribed relay's event is set. hub/db.py sees the writes at the engine, so ORM adds and Core
  inserts alike count, whichever thread commits (a request's dependency may commit in another thread than
  the endpoint ran in); a released savepoint is not a commit.
* Other processes on PostgreSQL: after such a commit, this process's announcer thread sends ``NOTIFY
  hub_outbox`` in a transaction of its own, and a relay's ``PgListener`` subscription to its process's one
  LISTEN thread (hub/listen.py) sets its event. A bare Connection's commit (no Session) sends it inside the
  committing transaction instead, just before the COMMIT.
* Other processes on SQLite, or any write this misses (raw SQL), or an announcement lost (the announcer's
  connection failed, the server crashed before it): the relay's long fallback poll (``outbox_relay_fallback_s``).

Why after the commit and not inside it: PostgreSQL serialises the commits of all transactions that NOTIFY in a
database — the first takes a lock on the notification queue at its commit and holds it until the commit is
durable (its WAL flushed), so that notifications are queued in commit order. Every submission carried one, so
concurrent submissions committed one at a time through that lock: on a 2-core machine with two `hub api`
workers the hub stalled at ≈210 submissions/s with a third of the CPU idle, its backends waiting on the lock
(``Lock:object``) and on each other's WAL flushes; without the NOTIFY the same run did 321/s (docs/performance.md,
thirteenth session). The announcer's own transaction commits asynchronously (``synchronous_commit`` off for it
alone): it writes nothing but the notification, so it holds the lock only for a moment and never waits on the
disk, and a crash that loses it loses nothing the fallback poll does not find. Commits that arrive while an
announcement is being sent, or within ``ANNOUNCE_INTERVAL_S`` of the last one, share the next one (one NOTIFY for
many commits under load; a commit after a quiet spell is announced at once).

A Session's commit wakes this process's relays twice that way: at once, and again when its own NOTIFY comes back
through the LISTEN thread — by then the relay has usually taken the rows, so the second wake was an empty pass
(a SELECT … FOR UPDATE and a COMMIT, ≈0.6–1 ms of CPU: 63 of 160 passes for 5,000 partner records). So the
announcer's NOTIFY carries this process's sender id as its payload, and a ``PgListener`` whose event the commit
has already set (one subscribed here) passes over it. A NOTIFY of a bare Connection's commit or of another
process still wakes it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable

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


def _announce_bare_commit(conn: Connection, writes: frozenset[Write]) -> None:
    # A bare Connection's commit has no after-commit hook: just before its DBAPI commit, on the committing
    # connection (delivered with the commit, and only if it is). A Session's commit is announced after it.
    if INSERTED in writes and conn.dialect.name == "postgresql" and not committed_by_session(conn):
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(f"NOTIFY {CHANNEL}")
        finally:
            cursor.close()


def _after_session_commit(session: Session, writes: frozenset[Write]) -> None:
    if INSERTED not in writes:
        return
    notify()
    engine = session.get_bind()
    if isinstance(engine, Engine) and engine.dialect.name == "postgresql":
        _announcer.announce(engine)


# The announcement is a statement of its own in autocommit: a transaction that writes nothing but the
# notification, committed asynchronously (set_config(..., true) holds for that transaction alone), so that it
# never waits on the disk while it holds the notification queue's lock. The payload says which process sent it.
_ANNOUNCE = f"SELECT set_config('synchronous_commit', 'off', true), pg_notify('{CHANNEL}', %s)"


def _send_announcement(engine: Engine) -> None:
    pooled = engine.raw_connection()  # from the pool, past the engine's statement hooks: nothing is written
    try:
        driver = pooled.driver_connection  # psycopg's connection, idle: the pool rolled it back when returned
        assert driver is not None
        driver.autocommit = True
        try:
            driver.execute(_ANNOUNCE, (_sender,))
        finally:
            driver.autocommit = False
    finally:
        pooled.close()


# The least time between two announcements of one process (how commits share them: the module's docstring). Each is a
# transaction of its own: sent after every commit, as fast as it could go, they cost two `hub api` workers ≈15 % of
# their submissions (docs/performance.md, fifteenth session) — for relays that, under that load, were awake anyway.
ANNOUNCE_INTERVAL_S = 0.1


class _Announcer:
    """This process's thread that sends the NOTIFYs of its Sessions' outbox commits, after them. It blocks while
    there is nothing to announce (no polling) and sends one NOTIFY per database for all the commits that
    arrived since its last one, at most one per ``ANNOUNCE_INTERVAL_S``."""

    def __init__(self, interval_s: float = ANNOUNCE_INTERVAL_S, sleep: Callable[[float], None] = time.sleep) -> None:
        self._pending: set[Engine] = set()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval_s = interval_s
        self._sleep = sleep

    def announce(self, engine: Engine) -> None:
        with self._lock:
            self._pending.add(engine)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hub-outbox-announce", daemon=True)
                self._thread.start()
        self._ready.set()

    def _run(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()
            with self._lock:
                engines, self._pending = self._pending, set()
            for engine in engines:
                try:
                    _send_announcement(engine)
                except Exception as exc:  # the rows wait for the relays' fallback poll; the next commit tries again
                    log.warning("outbox announcement not sent (%s): other processes' relays find the rows at "
                                "their fallback poll", type(exc).__name__)
            # Not a poll: afterwards the thread blocks until a commit asks; one that asked meanwhile is sent at once.
            self._sleep(self._interval_s)


_announcer = _Announcer()


def _new_announcer_in_child() -> None:
    global _announcer
    _announcer = _Announcer()  # the parent's thread is not in the child


os.register_at_fork(after_in_child=_new_announcer_in_child)


def install() -> None:
    """React to committed outbox inserts (hub/db.py watches the writes), once per process."""
    on_commit(before=_announce_bare_commit, after=_after_session_commit)


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
