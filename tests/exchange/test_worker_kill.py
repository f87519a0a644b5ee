"""`hub worker` killed with SIGKILL between commit and publish: no event is lost.

Cases keep arriving (records applied through the exchange service, each committing its case.reported event to
the outbox in the same transaction) while a `hub worker` process relays the outbox to hub.events. The worker is
killed with SIGKILL twice, each time at a moment when the relay is inside a publish: events are already on the
test queue whose outbox rows are not yet marked sent (and, of course, rows are committed that nobody published
yet). A new worker takes over each time. In the end every outbox row is sent and every event message id arrived
on a queue bound to hub.events — some twice (at-least-once; consumers deduplicate by message_id), none missing.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import SystemClock
from hub.db import unit_of_work
from hub.exchange import service
from hub.settings import Settings
from mocks.city_platform import CityPlatform
from tests.adapters.amqp.conftest import wait_for
from tests.exchange.conftest import Broker, EventCollector, WorkerProcess

RECORDS = 1500
KILLS = 2


def _count(factory: sessionmaker[Session], sql: str, **params: object) -> int:
    with factory() as session:
        return int(session.execute(text(sql), params).scalar_one())


def test_sigkilled_worker_loses_no_event(broker: Broker, partner_urls: dict[str, str], database_url: str,
                                         factory: sessionmaker[Session], tmp_path: Path) -> None:
    platform = CityPlatform(partner_urls["shenyang"], "shenyang", seed=99)
    planned = platform.plan(RECORDS)  # valid records and events only; the platform publishes nothing here
    first_row = _count(factory, "select coalesce(max(id), 0) from outbox")
    written = [0]
    writer_failed: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        # "The outbox filling": each message applied in its own transaction, as the inbound consumer does.
        try:
            for message in planned:
                if stop.is_set():
                    return
                with unit_of_work(factory) as session:
                    service.ingest(session, envelope=json.loads(message.body), authenticated_source="shenyang",
                                   now=SystemClock().now(), audit_key=Settings().audit_key)
                written[0] += 1
        except BaseException as exc:
            writer_failed.append(exc)

    workers = WorkerProcess(database_url, broker.url, tmp_path)
    kills: list[dict[str, object]] = []
    with EventCollector(broker, f"test.events.{uuid.uuid4().hex[:8]}") as collector:
        baseline_sent = _count(factory, "select count(*) from outbox where sent_at is not null")
        writer = threading.Thread(target=write, name="outbox-writer", daemon=True)
        try:
            writer.start()
            process = workers.start()
            for round_ in range(KILLS):
                wait_for(lambda r=round_: written[0] >= (r + 1) * RECORDS // (KILLS + 2), timeout_s=120,
                         what="records being written")
                # Kill while the relay is inside a publish: an event has reached the test queue but its row is
                # not yet marked sent (checked every few ms; after 30 s it is killed wherever it is).
                deadline, in_publish = time.monotonic() + 30, False
                while time.monotonic() < deadline and not in_publish:
                    marked = _count(factory, "select count(*) from outbox where sent_at is not null") - baseline_sent
                    in_publish = len(collector.ids()) > marked
                    if not in_publish:
                        time.sleep(0.003)
                assert process.poll() is None, f"the worker died on its own:\n{workers.log(len(workers.started) - 1)}"
                workers.kill(process)
                # The relay wakes on every commit (LISTEN/NOTIFY), so it may have caught up just before the kill;
                # the writer goes on while no worker runs, so the restarted one always has rows left to publish.
                wait_for(lambda: _count(factory, "select count(*) from outbox where sent_at is null") > 0,
                         timeout_s=60, what="rows left for the restarted worker")
                kills.append({"in_publish": in_publish, "written": written[0], "unsent": _count(
                    factory, "select count(*) from outbox where sent_at is null")})
                process = workers.start()
            writer.join(timeout=240)
            assert not writer.is_alive() and not writer_failed, f"the writer failed: {writer_failed!r}"

            wait_for(lambda: _count(factory, "select count(*) from outbox where sent_at is null") == 0,
                     timeout_s=120, interval_s=0.2, what="every outbox row marked sent")
            with factory() as session:
                expected = {str(m) for m in session.execute(
                    text("select message_id from outbox where id > :first"), {"first": first_row}).scalars()}
            wait_for(lambda: expected <= collector.ids(), timeout_s=60, interval_s=0.2,
                     what="every event message id on the test queue")
        finally:
            stop.set()
            workers.stop_all()
        deliveries = collector.deliveries()
        received = collector.ids()

    assert written[0] == RECORDS
    assert len(expected) >= RECORDS // 2  # each applied record or event in order wrote one
    assert expected <= received, f"{len(expected - received)} event(s) never published"
    assert all(k["unsent"] for k in kills), f"a kill found nothing left to publish: {kills}"
    assert any(k["in_publish"] for k in kills), f"no kill landed inside a publish: {kills}"
    print(f"\nworker SIGKILLed {len(kills)}× ({kills}); {len(expected)} events, all received; "
          f"{deliveries - len(received)} duplicate deliveries (published again after a kill)")
