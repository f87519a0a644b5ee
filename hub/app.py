"""The FastAPI application: routers, problem mapping, metrics; state lives in app.state."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from sqlalchemy.engine import Engine

from adapters.registries import Registries
from hub import apidocs, refcache
from hub.auth.router import router as auth_router
from hub.calendar.router import router as calendar_router
from hub.cases.router import applications, cases
from hub.catalog.router import router as catalog_router
from hub.clock import Clock, SystemClock
from hub.contracts.router import router as contracts_router
from hub.db import make_process_engine, make_session_factory
from hub.exchange.router import router as exchange_router
from hub.health.router import router as health_router
from hub.legacy.router import router as legacy_soap_router
from hub.payments.fees_router import router as fees_router
from hub.payments.gateways import Gateways
from hub.payments.reconciliation_router import router as payments_officers_router
from hub.payments.router import router as payments_router
from hub.problems import MEDIA_TYPE, Problem
from hub.problems import install as install_problems
from hub.request_guard import RequestGuardMiddleware
from hub.settings import Settings, get_settings
from hub.supervision.metrics_router import router as supervision_metrics_router
from hub.supervision.ratings_router import applicant_ratings, follow_ups
from hub.supervision.router import router as supervision_router
from hub.throttle.http import BodyLimits
from hub.transparency.router import router as transparency_router
from hub.verification import registries as registry_setup
from hub.verification.router import router as verification_router
from hub.window.router import router as window_router

REQUESTS = Counter("hub_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("hub_http_request_seconds", "HTTP request latency", ["method", "route"])
log = logging.getLogger("hub.http")

DESCRIPTION = """
省级网上审批平台数据交换中心 — the provincial approval exchange hub.

Applicants search the catalogue (事项目录), submit applications and follow their cases with the
tracking number and query code; officers sign in (OAuth2 password flow) and act on cases of their
department; the public sees every case's steps and result with personal data masked.
Errors are RFC 9457 problem documents naming the field and the rule.
"""


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, engine: Engine | None = None,
    registries: Registries | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Provincial approval exchange hub", version="1.0.0", description=DESCRIPTION,
        openapi_url="/openapi.json", lifespan=registry_setup.lifespan,
        docs_url=None, redoc_url=None,  # FastAPI's pages load from CDNs: the hub serves its own (hub.apidocs)
        # The hub exports its own metrics (MetricsMiddleware, /metrics) and configures no OpenTelemetry; FastAPI's
        # native telemetry would look up the global OpenTelemetry providers on every request to find that out.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    refcache.configure(ttl_s=settings.reference_cache_ttl_s)
    app.state.clock = clock or SystemClock()
    app.state.engine = engine or make_process_engine(settings)  # HUB_DB_POOL_SIZE/_MAX_OVERFLOW
    app.state.session_factory = make_session_factory(app.state.engine)
    registry_setup.install(app, settings, registries)  # app.state.registries; None: not configured
    app.state.payment_gateways = Gateways.from_settings(settings)  # issue 12: one registry per process
    install_problems(app)
    # The submission's router first: FastAPI tries the routers in order, each by matching its own routes, so
    # every router ahead of it cost each submission ≈8 µs per route (no two routers' paths overlap).
    for router in (
        applications, health_router, auth_router, catalog_router, cases, transparency_router,
        calendar_router, exchange_router, window_router, supervision_router,
    ):
        app.include_router(router)
    app.include_router(verification_router)  # prefill, access log, /admin/registries
    app.include_router(legacy_soap_router)  # SOAP department-exchange for legacy systems (WSDL-first)
    app.include_router(supervision_metrics_router)  # performance metrics and ranking (electronic supervision)
    app.include_router(applicant_ratings)  # 好差评: the applicant's rating of a completed case
    app.include_router(follow_ups)  # bad ratings' follow-ups (hub/supervision/ratings.py)
    app.include_router(payments_officers_router)  # reconciliations, refunds: before /payments/{order_no}
    app.include_router(payments_router)  # issue 12: payment orders, notifications, the browser's return
    app.include_router(contracts_router)  # /schemas/<path of $id>, /asyncapi.json: no authentication
    app.include_router(fees_router)  # issue 12: a case's fee and its waiver (hub/payments/fees_router.py)
    apidocs.install(app)  # /docs, /redoc and their assets, offline (after the API's routes: matched last)
    # Outside every body reader: oversized bodies are refused before parsing, NUL characters before the
    # database; one pass over each request (hub.request_guard).
    app.add_middleware(RequestGuardMiddleware, limits=BodyLimits.from_settings(settings))
    app.add_middleware(MetricsMiddleware)
    document_common_problems(app)
    return app


def document_common_problems(app: FastAPI) -> None:
    """Every operation that takes a body may answer 400 (unparseable) and 422 (invalid)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = original()
        problem = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path in document.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                if "requestBody" in operation:
                    responses.setdefault("400", {"description": "请求格式错误", "content": problem})
                    responses.setdefault("422", {"description": "数据未通过校验", "content": problem})
                if "422" in responses:
                    # FastAPI documents its own validation error; the hub answers with a problem.
                    responses["422"] = {"description": "数据未通过校验", "content": problem}
        document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
            Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        defs = document["components"]["schemas"]["Problem"].pop("$defs", {})
        document["components"]["schemas"].update(defs)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


class MetricsMiddleware:
    """A plain ASGI middleware: counts and times requests without wrapping the body."""

    def __init__(self, app: Any) -> None:
        self.app = app
        # (method, route, status) → its labelled counter and histogram: prometheus_client's labels() takes a
        # lock and validates the labels on every call; the set of routes is small and fixed.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            key = (scope["method"], name, status)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = (REQUESTS.labels(key[0], name, str(status)), LATENCY.labels(key[0], name))
            series[0].inc()
            series[1].observe(elapsed)
            # SOAP 1.1 answers every fault with HTTP 500; those are replies, not hub failures.
            if status >= 500 and not scope["path"].startswith("/soap/"):
                log.error("request failed", extra={"path": name, "status": status})
