"""The metric names operators rely on (issue 13): the Grafana dashboard (deploy/grafana/hub-dashboard.json)
queries only metrics the hub exports, and docs/metrics.md documents every one of them.

What the hub exports is read from the outside: a scrape of the api's /metrics (TestClient) and of a worker's
metrics port (httpx), on each backend.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import InProcessBus
from hub.clock import FixedClock
from hub.settings import Settings
from hub.worker import Worker
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "hub-dashboard.json"
DOC = ROOT / "docs" / "metrics.md"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("_sum", "_count", "_created"), "info": ("_info",)}
# PromQL's own words: aggregations, functions (followed by "("), modifiers and keywords.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def families(text: str) -> dict[str, str]:
    """Family name → type, of one scrape."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def sample_names(exported: dict[str, str]) -> set[str]:
    return {name + suffix for name, kind in exported.items() for suffix in SUFFIXES.get(kind, ("",))}


@pytest.fixture
def exported(client: TestClient, settings: Settings, session_factory: sessionmaker[Session],
             clock: FixedClock) -> Iterator[dict[str, str]]:
    client.get("/health")
    api = families(client.get("/metrics").text)
    worker = Worker(settings=settings.model_copy(update={"worker_metrics_port": free_port()}),
                    factory=session_factory, clock=clock, bus=InProcessBus(user="hub"))
    worker.start()
    try:
        assert worker.metrics_server is not None
        response = httpx.get(worker.metrics_server.url, timeout=30, trust_env=False)
        assert response.status_code == 200
        yield {**api, **families(response.text)}
    finally:
        worker.stop(timeout=5)


def expressions(document: dict[str, object]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query of every panel, rows' nested panels included."""
    for panel in document.get("panels", []):  # type: ignore[union-attr]
        yield from expressions(panel)
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords or labels."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, legend text
    stripped = re.sub(r"\{[^}]*\}", " ", stripped)  # label matchers
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)  # ranges
    stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", stripped)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped):
        following = stripped[match.end():].lstrip()
        word = match.group(0)
        if following.startswith("(") or word.lower() in PROMQL_WORDS or re.fullmatch(r"\d+(e\d+)?", word):
            continue
        names.add(word)
    return names


def test_the_dashboard_queries_only_metrics_the_hub_exports(exported: dict[str, str]) -> None:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    available = sample_names(exported)
    used: set[str] = set()
    for title, expr in expressions(document):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= available, f"{title}: {sorted(names - available)} not exported by the hub ({expr!r})"
        used |= names
    # What issue 13 asks the dashboard to show: request rate and latency by route, outbox backlog and age,
    # inbox outcomes, dead letters, failing deliveries, breakers.
    assert {"hub_http_requests_total", "hub_http_request_seconds_bucket", "hub_outbox_backlog",
            "hub_outbox_oldest_unsent_age_seconds", "hub_inbox_messages_total", "hub_dead_letters_waiting",
            "hub_deliveries_failing", "hub_circuit_breaker_state"} <= used


def test_the_metric_name_parser_sees_through_promql() -> None:
    assert metric_names('histogram_quantile(0.95, sum by (le, route) (rate(hub_x_bucket{job=~"a"}[5m])))') == {
        "hub_x_bucket"}
    assert metric_names('max by (partner) (hub_a{state="open"}) / on (partner) hub_b') == {"hub_a", "hub_b"}


def test_every_metric_the_hub_exports_is_documented(exported: dict[str, str]) -> None:
    documented = DOC.read_text(encoding="utf-8")
    # The text format gives each counter's and histogram's ``_created`` timestamp as a family of its own.
    hub_families = {name for name in exported if name.startswith("hub_") and not name.endswith("_created")}
    assert len(hub_families) >= 15, sorted(hub_families)
    missing = sorted(name for name, kind in exported.items() if name in hub_families
                     and f"`{name}{SUFFIXES[kind][0] if kind == 'counter' else ''}`" not in documented)
    assert not missing, f"not in docs/metrics.md: {missing}"
