"""One PostgreSQL LISTEN connection per database per process, shared by whoever wants to hear of other
processes' commits: the outbox relay (channel ``hub_outbox``, hub/outbox/wake.py) and the reference-data
caches (channel ``hub_reference``, hub/refcache.py).

The thread blocks in select() between notifications (no polling) and reconnects after a failure with the
shared backoff. Subscribers are called on the listener thread with the notification's payload, and with
``None`` after every (re)connection: what was committed while nobody listened is unknown, so a subscriber
then assumes everything changed. ``connected`` tells whether notifications are being heard right now.
The thread runs while it has subscribers and stops with the last one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from adapters.resilience import ResiliencePolicy, backoff_s

CHANNELS = ("hub_outbox", "hub_reference")
log = logging.getLogger("hub.listen")

Callback = Callable[[str | None], None]


@dataclass(frozen=True, eq=False)
class Subscription:
    listener: Listener
    channel: str
    callback: Callback

    def cancel(self) -> None:
        self.listener.unsubscribe(self)


class _Run:
    """One run of the listening thread: stopped through a pipe, so the select() returns at once."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.stop_r, self.stop_w = os.pipe()
        self.thread: threading.Thread | None = None

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"x")
        thread = self.thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout=timeout)
        for fd in (self.stop_r, self.stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class Listener:
    """LISTENs on every channel of CHANNELS over one connection and dispatches notifications by channel."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.connected = threading.Event()
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self._run_state: _Run | None = None

    def subscribe(self, channel: str, callback: Callback) -> Subscription:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}: add it to hub.listen.CHANNELS")
        subscription = Subscription(self, channel, callback)
        with self._lock:
            self._subscriptions.append(subscription)
            if self._run_state is None:
                self._start()
        if self.connected.is_set():
            callback(None)  # joined a running listener: it already told the others to start afresh
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        run: _Run | None = None
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            if not self._subscriptions and self._run_state is not None:
                run, self._run_state = self._run_state, None
                _forget(self)
        if run is not None:
            run.stop()
            self.connected.clear()

    def _start(self) -> None:
        run = self._run_state = _Run()
        run.thread = threading.Thread(target=self._run, args=(run,), name="hub-listen", daemon=True)
        run.thread.start()

    def _dispatch(self, channel: str | None, payload: str | None) -> None:
        with self._lock:
            targets = [s for s in self._subscriptions if channel is None or s.channel == channel]
        for subscription in targets:
            try:
                subscription.callback(payload)
            except Exception:  # one subscriber's bug must not deafen the others
                log.exception("LISTEN subscriber on %s failed", subscription.channel)

    def _run(self, run: _Run) -> None:
        import psycopg

        failures = 0
        policy = ResiliencePolicy(backoff_initial_s=1.0, backoff_max_s=30.0)
        while not run.stopped.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    for channel in CHANNELS:
                        conn.execute(f"LISTEN {channel}")
                    failures = 0
                    # Whatever was committed while nobody listened is unknown: subscribers start afresh,
                    # and only then are they told that notifications are heard.
                    self._dispatch(None, None)
                    self.connected.set()
                    self._listen(conn, run)
            except Exception as exc:  # the database restarted or is unreachable: TTLs and fallback polls cover
                failures += 1
                log.warning("LISTEN interrupted (%s); reconnecting", type(exc).__name__)
                if run.stopped.wait(backoff_s(policy, failures)):
                    return
            finally:
                if self._run_state is run or self._run_state is None:
                    self.connected.clear()

    def _listen(self, conn: Any, run: _Run) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), selectors.EVENT_READ, "pg")
            selector.register(run.stop_r, selectors.EVENT_READ, "stop")
            while not run.stopped.is_set():
                for key, _ in selector.select():
                    if key.data == "stop":
                        return
                    for notification in conn.notifies(timeout=0):
                        self._dispatch(notification.channel, notification.payload)


_listeners: dict[str, Listener] = {}
_listeners_lock = threading.Lock()


def _forget_all_in_child() -> None:
    # A forked child inherits the listeners' state but not their threads: it starts its own when needed.
    global _listeners, _listeners_lock
    _listeners = {}
    _listeners_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_all_in_child)


def conninfo_for(engine: Engine) -> str | None:
    """The libpq connection string of a PostgreSQL engine's database; None for any other backend."""
    if engine.dialect.name != "postgresql":
        return None
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def listener_for(engine: Engine) -> Listener | None:
    """This process's listener on the engine's database (None off PostgreSQL); it starts on subscription."""
    conninfo = conninfo_for(engine)
    if conninfo is None:
        return None
    with _listeners_lock:
        listener = _listeners.get(conninfo)
        if listener is None:
            listener = _listeners[conninfo] = Listener(conninfo)
        return listener


def _forget(listener: Listener) -> None:
    with _listeners_lock:
        if _listeners.get(listener.conninfo) is listener:
            del _listeners[listener.conninfo]
