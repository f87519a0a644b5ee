from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str


@router.get("/health", response_model=Health)
def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
def ready(request: Request) -> Response:
    """Readiness: the database answers and its schema is migrated."""
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1 FROM alembic_version"))
    except Exception as exc:  # any database failure means "not ready", never a 500
        body = Readiness(status="unavailable", database=type(exc).__name__)
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Readiness(status="ready", database="ok").model_dump())


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
