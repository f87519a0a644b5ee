"""`hub worker` stopped with SIGTERM (`docker stop`) mid-stream under AMQP load: a clean stop, nothing lost.

A city platform publishes valid records and events through RabbitMQ (pika, its own partner user) while a `hub
worker` process applies them. Once part of the stream is applied the worker gets SIGTERM: it must stop taking
deliveries, finish and commit the batch in hand, ack it, close its connections, say so in one JSON log line
and exit 0. What it had not taken stays in the queue; a second worker applies it. In the end every message is
applied exactly once (one inbox row each, no step stored twice) and every case is as the platform left it.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mocks.city_platform import CityPlatform
from tests.adapters.amqp.conftest import wait_for
from tests.exchange.conftest import Broker, WorkerProcess, hub_state, run_cases, wait_until_settled

RECORDS = 3000


def test_sigterm_mid_stream_stops_the_worker_cleanly_and_nothing_is_lost_or_applied_twice(
        broker: Broker, partner_urls: dict[str, str], database_url: str, factory: sessionmaker[Session],
        tmp_path: Path) -> None:
    platform = CityPlatform(partner_urls["shenyang"], "shenyang", seed=1313)
    planned = platform.plan(RECORDS)
    report = platform.report
    workers = WorkerProcess(database_url, broker.url, tmp_path)
    workers.env.update(HUB_LOG_JSON="true", HUB_LOG_LEVEL="INFO", HUB_WORKER_HEARTBEAT_FILE=str(tmp_path / "beat"))
    publishing_failed: list[BaseException] = []

    def publish() -> None:
        try:
            platform.publish(planned)
        except BaseException as exc:
            publishing_failed.append(exc)

    first = workers.start()
    publisher = threading.Thread(target=publish, name="city-platform", daemon=True)
    try:
        wait_for(lambda: "worker started" in workers.log(0), timeout_s=120, what="the first worker started")
        publisher.start()
        wait_for(lambda: hub_state(factory, report).applied_messages >= RECORDS // 10, timeout_s=180,
                 interval_s=0.05, what="a tenth of the stream applied")
        first.send_signal(signal.SIGTERM)
        code = first.wait(timeout=120)
        at_stop = hub_state(factory, report).applied_messages
        log = (tmp_path / "worker-0.log").read_text(encoding="utf-8", errors="replace")
        assert code == 0, log[-3000:]
        lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line JSON
        assert "worker stopped on SIGTERM" in lines[-1]["msg"] and lines[-1]["level"] == "info", lines[-3:]
        assert not [line for line in lines if line["level"] in ("error", "critical")], lines

        workers.start()  # the rest of the stream, and anything the first worker left unacked, to a new one
        publisher.join(timeout=300)
        assert not publisher.is_alive() and not publishing_failed, publishing_failed
        state = wait_until_settled(factory, report, timeout_s=600)
    finally:
        workers.stop_all()

    assert at_stop < len(report.expected_apply), "the stream had ended before the stop: nothing tested"
    assert state.applied_messages == len(report.expected_apply)  # nothing lost
    assert state.duplicate_steps == 0 and state.pending_events == 0  # nothing applied twice, nothing stuck
    assert state.dead_letters == {} and state.misplaced_dead_letters == 0
    assert state.cases == report.expected_cases and state.case_events == report.expected_events
    cases = run_cases(factory, report)
    for external_id, expected in report.cases.items():
        assert cases[external_id][0] == expected.seq, external_id
    print(f"\nSIGTERM after {at_stop} of {len(report.expected_apply)} messages applied: worker exited 0; "
          f"the second worker applied the rest, each once")
