"""`hub worker`'s metrics endpoint on PostgreSQL and RabbitMQ (issue 13): the figures are the database's.

A `hub worker` process runs with HUB_WORKER_METRICS_PORT and a metrics token; a city platform publishes records
through RabbitMQ with its own partner user (pika), two of them poison (bad JSON, a schema violation). Once the
stream is applied, one scrape with httpx must show what the database holds: the outbox backlog, the inbox's
outcomes, the dead letters waiting, deliveries failing by partner, held events; and every thread alive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from mocks.city_platform import CityPlatform
from tests.adapters.amqp.conftest import wait_for
from tests.exchange.conftest import Broker, WorkerProcess, wait_until_settled
from tests.servers import free_port
from tests.support import wait_until

TOKEN = "worker-metrics-token-0123456789"
OUTCOMES = ("applied", "duplicate", "stale", "held", "rejected", "dead_lettered")


def scraped(url: str) -> dict[str, Any]:
    """The families the test compares, from one scrape."""
    response = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    figures: dict[str, Any] = {"inbox": dict.fromkeys(OUTCOMES, 0), "failing": {}, "held": {}, "threads": {}}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "hub_outbox_backlog":
                figures["outbox"] = int(sample.value)
            elif sample.name == "hub_inbox_messages_total":
                figures["inbox"][labels["outcome"]] = int(sample.value)
            elif sample.name == "hub_dead_letters_waiting":
                figures["dead_letters"] = int(sample.value)
            elif sample.name == "hub_deliveries_failing" and sample.value:
                figures["failing"][labels["partner"]] = figures["failing"].get(labels["partner"], 0) + int(sample.value)
            elif sample.name == "hub_events_held":
                figures["held"][labels["partner"]] = int(sample.value)
            elif sample.name == "hub_worker_thread_alive":
                figures["threads"][labels["thread"]] = int(sample.value)
            elif sample.name == "hub_worker_database_up":
                figures["database_up"] = int(sample.value)
    return figures


def held_by_database(factory: sessionmaker[Session]) -> dict[str, Any]:
    with factory() as session:
        one = lambda sql: int(session.execute(text(sql)).scalar_one())  # noqa: E731
        inbox = dict.fromkeys(OUTCOMES, 0)
        for table in ("inbox", "partner_rejections"):
            for outcome, count in session.execute(text(f"select outcome, count(*) from {table} group by outcome")):
                inbox[outcome] += int(count)
        failing = {partner: int(count) for partner, count in session.execute(text(
            "select partner_code, count(*) from deliveries where status = 'failed' group by partner_code"))}
        held = {partner: int(count) for partner, count in session.execute(text(
            "select partner_code, count(*) from pending_events group by partner_code"))}
        return {"outbox": one("select count(*) from outbox where sent_at is null"), "inbox": inbox,
                "dead_letters": one("select count(*) from dead_letters where replayed_at is null"),
                "failing": failing, "held": held}


def test_a_scrape_of_the_worker_shows_what_the_database_holds(
        broker: Broker, partner_urls: dict[str, str], database_url: str, factory: sessionmaker[Session],
        tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    workers = WorkerProcess(database_url, broker.url, tmp_path)
    workers.env.update(HUB_WORKER_METRICS_PORT=str(port), HUB_WORKER_METRICS_CACHE_S="0", HUB_METRICS_TOKEN=TOKEN,
                       HUB_WORKER_HEARTBEAT_FILE=str(tmp_path / "beat"))
    platform = CityPlatform(partner_urls["shenyang"], "shenyang", seed=1307)
    planned = platform.plan(60, {"bad_json": 1, "schema": 1})
    try:
        workers.start()
        wait_for(lambda: _answers(url), timeout_s=120, what="the worker's metrics endpoint")
        assert httpx.get(url, timeout=30, trust_env=False).status_code == 401  # the token is required

        platform.publish(planned)
        wait_until_settled(factory, platform.report, timeout_s=300)
        last: dict[str, Any] = {}

        def matches() -> bool:  # the relay may still be marking events sent: wait until one scrape agrees
            nonlocal last
            figures, held = scraped(url), held_by_database(factory)
            last = {"scraped": figures, "database": held}
            return all(figures.get(key) == held[key] for key in held)

        if not wait_until(matches, timeout=120):
            pytest.fail(f"no scrape agreed with the database within 120 s; the last: {last}")
    finally:
        workers.stop_all()
    figures, held = last["scraped"], last["database"]
    assert figures["inbox"]["applied"] >= len(platform.report.expected_apply)
    assert figures["inbox"]["rejected"] + figures["inbox"]["dead_lettered"] >= 2  # the two poison messages
    assert figures["dead_letters"] >= 2 and figures["dead_letters"] == held["dead_letters"]
    assert figures["database_up"] == 1
    assert {"inbound", "dead-letters", "outbox-relay", "deliveries"} <= set(figures["threads"])
    assert set(figures["threads"].values()) == {1}, figures["threads"]
    print(f"\nworker scrape agreed with the database: {figures}")


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=5, trust_env=False)
    except httpx.HTTPError:
        return False
    return True
