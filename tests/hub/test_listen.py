"""One LISTEN connection and thread per database per process (hub/listen.py), shared by the outbox relay's
wake (channel hub_outbox) and the reference-data caches (channel hub_reference)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub import refcache
from hub.calendar.service import load_calendar
from hub.db import make_engine
from hub.outbox import wake
from tests.support import wait_until


@pytest.fixture
def notifier(backend: str, engine: Engine) -> Iterator[Engine]:
    """Another connection to the database, sending what another process's commits would."""
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    other = make_engine(engine.url.render_as_string(hide_password=False), pool_size=1)
    yield other
    other.dispose()


def notify(engine: Engine, channel: str, payload: str = "") -> None:
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})


def test_the_outbox_relay_and_the_reference_caches_share_one_listen_thread(
    engine: Engine, session_factory: sessionmaker[Session], notifier: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refcache, "_ttl_s", 3600.0)  # only a notification can refresh the cached calendar
    woken = threading.Event()
    relay = wake.PgListener.for_engine(engine, woken)
    assert relay is not None
    relay.start()
    try:
        assert wait_until(lambda: refcache.listening(engine))
        assert [t.name for t in threading.enumerate()].count("hub-listen") == 1

        woken.clear()
        notify(notifier, "hub_outbox")
        assert wait_until(woken.is_set)

        with session_factory() as session:
            cached = load_calendar(session)
        notify(notifier, "hub_reference", "calendar")

        def reread() -> bool:
            with session_factory() as session:
                return load_calendar(session) is not cached

        assert wait_until(reread)
        assert [t.name for t in threading.enumerate()].count("hub-listen") == 1
    finally:
        relay.stop()
    assert refcache.listening(engine)  # the caches still listen after the relay left


def test_a_reference_write_rolled_back_in_another_process_sends_nothing(
    engine: Engine, session_factory: sessionmaker[Session], notifier: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.org.models import Region
    from hub.org.service import _region_parents

    monkeypatch.setattr(refcache, "_ttl_s", 3600.0)
    assert wait_until(lambda: refcache.listening(engine))
    with session_factory() as session:
        regions, calendar = _region_parents(session), load_calendar(session)
    with sessionmaker(notifier)() as session:
        session.add(Region(code="210197", name="回滚测试区", level="county", parent_code="210100"))
        session.flush()
        session.rollback()
    notify(notifier, "hub_reference", "calendar")  # committed after the rollback: delivered after it would be

    def calendar_reread() -> bool:
        with session_factory() as session:
            return load_calendar(session) is not calendar

    assert wait_until(calendar_reread)
    with session_factory() as session:
        assert _region_parents(session) is regions


def _outbox_row(message_id: str) -> dict[str, object]:
    import uuid
    from datetime import UTC, datetime

    return {"type": "case.idle-probe.v1", "routing_key": "case.idle-probe.v1", "region_code": "210100",
            "payload": {"probe": True}, "occurred_at": datetime.now(UTC), "message_id": uuid.UUID(message_id)}


def test_a_commit_in_this_process_wakes_its_relay_once_not_again_by_its_own_notify(
    engine: Engine, session_factory: sessionmaker[Session], notifier: Engine
) -> None:
    import uuid

    from sqlalchemy import insert

    from hub.db import unit_of_work
    from hub.outbox.models import OutboxMessage

    class CountedEvent(threading.Event):
        def __init__(self) -> None:
            super().__init__()
            self.sets = 0

        def set(self) -> None:
            self.sets += 1
            super().set()

    woken = wake.subscribe(CountedEvent())  # the relay's event: set by this process's commits, and by the listener
    assert isinstance(woken, CountedEvent)
    relay = wake.PgListener.for_engine(engine, woken)
    assert relay is not None
    probes: list[str | None] = []
    announced: list[str | None] = []
    relay.start()
    probe = relay.listener.subscribe("hub_reference", probes.append)
    heard = relay.listener.subscribe("hub_outbox", announced.append)
    try:
        assert wait_until(relay.listener.connected.is_set)
        woken.sets = 0
        with unit_of_work(session_factory) as session:
            session.execute(insert(OutboxMessage).values(**_outbox_row(str(uuid.uuid4()))))
        assert woken.sets == 1  # at the commit, in this process
        # The commit's own NOTIFY (sent after it by this process's announcer, with this process's id) is heard...
        assert wait_until(lambda: wake._sender in announced)
        # ... and the relay's listener, dispatched first on the same thread, has passed over it: once the probe
        # (committed later, so heard later) is heard, no second wake-up can still be on its way.
        # Before, it set the event a second time: the relay's second, empty pass.
        notify(notifier, "hub_reference", "probe")
        assert wait_until(lambda: "probe" in probes)
        assert woken.sets == 1

        # Another process's commit (a NOTIFY without this process's id) still wakes it.
        notify(notifier, "hub_outbox")
        assert wait_until(lambda: woken.sets == 2)
    finally:
        heard.cancel()
        probe.cancel()
        relay.stop()
        wake.unsubscribe(woken)


def test_a_listener_whose_event_this_process_does_not_set_is_woken_by_its_notify(
    engine: Engine, session_factory: sessionmaker[Session], notifier: Engine
) -> None:
    import uuid

    from sqlalchemy import insert

    from hub.db import unit_of_work
    from hub.outbox.models import OutboxMessage

    woken = threading.Event()  # not subscribed to this process's commits: only the NOTIFY can set it
    relay = wake.PgListener.for_engine(engine, woken)
    assert relay is not None
    relay.start()
    try:
        assert wait_until(relay.listener.connected.is_set)
        woken.clear()
        with unit_of_work(session_factory) as session:
            session.execute(insert(OutboxMessage).values(**_outbox_row(str(uuid.uuid4()))))
        assert wait_until(woken.is_set)
    finally:
        relay.stop()
