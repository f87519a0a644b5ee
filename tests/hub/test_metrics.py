"""/metrics of the api and of the worker (issue 13, hub/metrics/): the optional bearer token, the worker's
families read from the database at most once per cache interval, its threads' liveness and breakers.

The api through TestClient; the worker in this process (the in-process bus, as `hub up` runs it) with its
metrics port set, scraped over HTTP with httpx. Both backends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import InProcessBus
from hub.app import create_app
from hub.clock import FixedClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.exchange.models import DeadLetter
from hub.metrics.worker import MetricsServer, WorkerCollector
from hub.settings import Settings
from hub.worker import Worker
from tests.servers import free_port
from tests.support import sent_statements, wait_until

TOKEN = "metrics-token-0123456789abcdef"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) → value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    found = samples(text).get((name, tuple(sorted(labels.items()))))
    assert found is not None, f"{name}{labels} not in the scrape:\n{text[-3000:]}"
    return found


# --- the api's bearer token ----------------------------------------------------------------------------


@pytest.fixture
def guarded_api(settings: Settings, clock: FixedClock, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"metrics_token": TOKEN}), clock=clock,
                               engine=engine)) as client:
        yield client


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"bearer{TOKEN}"],
                         ids=["none", "wrong", "basic", "empty", "no-space"])
def test_the_api_metrics_answer_401_without_the_bearer_token_when_one_is_set(
        guarded_api: TestClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = guarded_api.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert (problem["status"], problem["code"]) == (401, "metrics.token")
    assert TOKEN not in response.text and "hub_http_requests_total" not in response.text


def test_the_api_metrics_answer_with_the_bearer_token(guarded_api: TestClient) -> None:
    guarded_api.get("/health")
    response = guarded_api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert value(response.text, "hub_http_requests_total", method="GET", route="/health", status="200") >= 1
    assert value(response.text, "hub_http_requests_in_flight") >= 1  # this scrape


def test_the_api_metrics_stay_open_without_a_token(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200 and "hub_http_request_seconds_bucket" in response.text


# --- the worker's endpoint -------------------------------------------------------------------------


@pytest.fixture
def running_worker(settings: Settings, session_factory: sessionmaker[Session],
                   clock: FixedClock, request: pytest.FixtureRequest) -> Iterator[Worker]:
    overrides: dict[str, Any] = {"worker_metrics_port": free_port(), "worker_metrics_cache_s": 3600.0,
                                 **getattr(request, "param", {})}
    worker = Worker(settings=settings.model_copy(update=overrides), factory=session_factory, clock=clock,
                    bus=InProcessBus(user="hub"))
    worker.start()
    yield worker
    worker.stop(timeout=5)


def scrape(worker: Worker, **headers: str) -> httpx.Response:
    assert worker.metrics_server is not None
    return httpx.get(worker.metrics_server.url, headers=headers, timeout=30, trust_env=False)


def test_the_worker_serves_metrics_on_its_port_with_its_threads_liveness(running_worker: Worker) -> None:
    assert running_worker.metrics_server is not None
    assert running_worker.metrics_server.url.startswith("http://127.0.0.1:")
    wait_until(lambda: "outbox-relay" in running_worker._beats and "deliveries" in running_worker._beats)
    response = scrape(running_worker)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for thread in ("inbound", "dead-letters", "outbox-relay", "deliveries"):
        assert value(text, "hub_worker_thread_alive", thread=thread) == 1
    assert value(text, "hub_worker_thread_beat_age_seconds", thread="outbox-relay") >= 0
    assert value(text, "hub_worker_database_up") == 1
    assert "process_cpu_seconds_total" in text  # the process's own figures too
    for outcome in ("applied", "duplicate", "stale", "held", "rejected", "dead_lettered"):
        assert value(text, "hub_inbox_messages_total", outcome=outcome) >= 0
    assert httpx.get(running_worker.metrics_server.url.replace("/metrics", "/other"), timeout=30,
                     trust_env=False).status_code == 404


def test_a_scrape_reads_each_database_family_once_then_serves_the_cache(
        running_worker: Worker, engine: Engine, session_factory: sessionmaker[Session], clock: FixedClock) -> None:
    markers = {"outbox": "min(outbox.occurred_at)", "dead letters": "min(dead_letters.received_at)",
               "inbox": "partner_rejections.outcome", "deliveries": "deliveries.next_attempt_at is null",
               "held": "min(pending_events.received_at)"}

    def family_queries(statements: list[str]) -> dict[str, int]:
        lowered = [" ".join(s.lower().split()) for s in statements]
        return {family: sum(marker in s for s in lowered) for family, marker in markers.items()}

    with sent_statements(engine) as statements:
        first = scrape(running_worker).text
    assert family_queries(statements) == dict.fromkeys(markers, 1)
    with session_factory() as session:
        waiting = session.scalar(select(func.count()).select_from(DeadLetter).where(DeadLetter.replayed_at.is_(None)))
    assert value(first, "hub_dead_letters_waiting") == waiting

    _store_dead_letter(session_factory, clock)
    with sent_statements(engine) as statements:
        for _ in range(5):
            again = scrape(running_worker).text
    assert family_queries(statements) == dict.fromkeys(markers, 0)  # five scrapes, no query: the cache
    assert value(again, "hub_dead_letters_waiting") == waiting


@pytest.mark.parametrize("running_worker", [{"worker_metrics_cache_s": 0.0}], indirect=True)
def test_the_database_figures_follow_the_database_once_the_cache_expired(
        running_worker: Worker, session_factory: sessionmaker[Session], clock: FixedClock) -> None:
    before = scrape(running_worker).text
    _store_dead_letter(session_factory, clock, received_at=clock.now() - timedelta(hours=2))
    after = scrape(running_worker).text
    assert value(after, "hub_dead_letters_waiting") == value(before, "hub_dead_letters_waiting") + 1
    assert value(after, "hub_dead_letters_oldest_age_seconds") >= 7200


def test_the_worker_reports_each_breaker_state_by_target(running_worker: Worker) -> None:
    adapter = running_worker._delivery_clients.national("metrics-partner", "http://127.0.0.1:1/national.wsdl")
    closed = scrape(running_worker).text
    assert value(closed, "hub_circuit_breaker_state", kind="delivery", target="metrics-partner", state="closed") == 1
    assert value(closed, "hub_circuit_breaker_state", kind="delivery", target="metrics-partner", state="open") == 0
    for _ in range(adapter.policy.breaker_failures):  # as many failed calls in a row as the policy allows
        adapter.guard.breaker.record_failure()
    opened = scrape(running_worker).text
    assert value(opened, "hub_circuit_breaker_state", kind="delivery", target="metrics-partner", state="open") == 1
    assert value(opened, "hub_circuit_breaker_state", kind="delivery", target="metrics-partner", state="closed") == 0


@pytest.mark.parametrize("running_worker", [{"metrics_token": TOKEN}], indirect=True)
def test_the_worker_metrics_answer_401_without_the_bearer_token_when_one_is_set(running_worker: Worker) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        refused = scrape(running_worker, **headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["code"] == "metrics.token" and "hub_" not in refused.text
    allowed = scrape(running_worker, Authorization=f"Bearer {TOKEN}")
    assert allowed.status_code == 200 and "hub_outbox_backlog" in allowed.text


def test_the_worker_serves_no_metrics_unless_a_port_is_set(
        settings: Settings, session_factory: sessionmaker[Session], clock: FixedClock) -> None:
    worker = Worker(settings=settings, factory=session_factory, clock=clock, bus=InProcessBus(user="hub"))
    worker.start()
    try:
        assert worker.metrics_server is None
    finally:
        worker.stop(timeout=5)


def _store_dead_letter(factory: sessionmaker[Session], clock: FixedClock, **overrides: Any) -> None:
    fields: dict[str, Any] = {"message_id": str(uuid.uuid4()), "routing_key": "metrics.test", "source": "shenyang",
                              "reason": "metrics test", "headers": {}, "body": "{}", "received_at": clock.now(),
                              **overrides}
    with unit_of_work(factory) as session:
        session.add(DeadLetter(**fields))


class _Idle:
    """A worker with no threads and no breakers: only the database families are under test."""

    def heartbeat(self) -> dict[str, object]:
        return {"written_at": 0.0, "threads": {}}

    def breakers(self) -> dict[tuple[str, str], str]:
        return {}


def test_a_worker_whose_database_is_away_still_answers_the_scrape_and_asks_again_only_after_the_cache(
        tmp_path: Path, clock: FixedClock) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}")  # its folder does not exist
    opened: list[int] = []
    factory = make_session_factory(engine)
    event.listen(engine, "do_connect", lambda *_: opened.append(1))
    server = MetricsServer("127.0.0.1", free_port(), WorkerCollector(factory, clock, _Idle(), cache_s=3600),
                           token=None)
    server.start()
    try:
        first = httpx.get(server.url, timeout=30, trust_env=False)
        assert first.status_code == 200
        assert value(first.text, "hub_worker_database_up") == 0
        assert "hub_outbox_backlog " not in first.text
        tried = len(opened)
        assert tried == 1  # the first family failed: the others were not tried against the same database
        again = httpx.get(server.url, timeout=30, trust_env=False)
        assert value(again.text, "hub_worker_database_up") == 0 and len(opened) == tried  # not asked again yet
    finally:
        server.stop()
        engine.dispose()
