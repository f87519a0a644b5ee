"""What a scrape of /metrics gets, and who may have it: one text for the api (every uvicorn worker's
counters in multi-process mode) and the worker; an optional bearer token for both."""

from __future__ import annotations

import hmac
import json
import os

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from hub.problems import MEDIA_TYPE, PROBLEM_TYPE_BASE, Problem

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    """The directory every process of this api writes its figures to (``hub api --workers N`` sets it before
    uvicorn starts its workers), or None: a single process, its own registry."""
    return os.environ.get(MULTIPROC_ENV) or None


def api_text() -> bytes:
    """The api's metrics: in multi-process mode merged from every worker's files, live or dead (counters of a
    worker that died still count; its live gauges were removed when it was marked dead)."""
    if multiprocess_dir() is None:
        return bytes(generate_latest(REGISTRY))
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return bytes(generate_latest(registry))


def authorised(authorization: str | None, token: str | None) -> bool:
    """Whether a request with this ``Authorization`` header may read metrics: always when no token is set,
    else only with ``Bearer <token>`` (compared in constant time)."""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


UNAUTHORISED_HEADERS = {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": MEDIA_TYPE}


def unauthorised_body(instance: str = "/metrics") -> bytes:
    """The 401 answer: a problem document like every other refusal of the hub (it names no token)."""
    problem = Problem(
        type=f"{PROBLEM_TYPE_BASE}metrics-unauthorised", title="需要监控访问令牌", code="metrics.token", status=401,
        detail="/metrics needs `Authorization: Bearer <token>` (HUB_METRICS_TOKEN)", instance=instance,
    ).model_dump(exclude_none=True)
    return json.dumps(problem, ensure_ascii=False).encode("utf-8")
