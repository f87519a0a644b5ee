from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from hub.problems import MEDIA_TYPE, PROBLEM_TYPE_BASE, Problem

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str


class NotReady(Problem):
    """Why the hub is not ready (issue 13): the database unreachable, its schema not at this code's head
    (migrations still running, or not run: `hub db upgrade`), or the catalogue empty (not bootstrapped)."""

    schema_revision: str | None = None
    head_revision: str | None = None


@router.get("/health", response_model=Health)
def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/ready", response_model=Readiness, responses={503: {"model": NotReady, "content": {MEDIA_TYPE: {}}}})
def ready(request: Request) -> Response:
    """Readiness: the database answers, its schema is at this code's head and the catalogue holds items; else
    503 with a problem document saying which (``code``: ready.database, ready.schema, ready.catalogue)."""
    from hub.migrate import schema_state

    try:
        with request.app.state.engine.connect() as connection:
            state = schema_state(connection)
            if not state.at_head:
                return _not_ready("ready.schema", "数据库结构不是最新版本",
                                  f"database schema at {state.current or 'nothing (never migrated)'}, this code needs "
                                  f"{state.head}: run `hub db upgrade` (the compose `migrate` job)",
                                  schema_revision=state.current, head_revision=state.head)
            if connection.execute(text("SELECT 1 FROM items LIMIT 1")).first() is None:
                return _not_ready("ready.catalogue", "事项目录为空",
                                  "the catalogue holds no items: load it (`hub bootstrap`, or `hub db seed` for "
                                  "the demo)", schema_revision=state.current, head_revision=state.head)
    except Exception as exc:  # any database failure means "not ready", never a 500
        return _not_ready("ready.database", "数据库不可用", f"the database did not answer: {type(exc).__name__}")
    return JSONResponse(Readiness(status="ready", database="ok").model_dump())


def _not_ready(code: str, title: str, detail: str, **extra: Any) -> Response:
    body = NotReady(type=f"{PROBLEM_TYPE_BASE}not-ready", title=title, code=code, status=503, detail=detail,
                    instance="/ready", **extra)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503, media_type=MEDIA_TYPE)


@router.get("/metrics", response_class=Response, responses={401: {"model": Problem, "content": {MEDIA_TYPE: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics (docs/metrics.md): with `hub api --workers N`, every worker's figures in one answer.
    When HUB_METRICS_TOKEN is set, only for `Authorization: Bearer <token>` (401 otherwise)."""
    from hub.metrics import exposition

    if not exposition.authorised(request.headers.get("authorization"), request.app.state.settings.metrics_token):
        return Response(exposition.unauthorised_body(), status_code=401, headers=exposition.UNAUTHORISED_HEADERS)
    return Response(exposition.api_text(), media_type=exposition.CONTENT_TYPE)
