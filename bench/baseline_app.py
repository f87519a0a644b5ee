"""The baseline for ``bench.submit``: the least a FastAPI service can do with a submission.

One endpoint, ``POST /submit``, stores the JSON body as it came into one table and answers 201 with
the new id. Same framework, server, database driver, connection pool and database server as the hub,
so the ratio hub/baseline measures what the hub does on top of "parse JSON, insert a row, commit".

Served by ``bench.submit`` as ``uvicorn --factory bench.baseline_app:app_from_env`` with
``BENCH_DATABASE_URL`` set; ``create_app(url)`` is there for use from Python. With ``BENCH_STATS_DIR`` set,
the process counts its SQL statements and commits there (``bench.counting``), as the hub does.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import Body, FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from bench import counting

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS baseline_submissions (
    id bigserial PRIMARY KEY,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT = text("INSERT INTO baseline_submissions (body) VALUES (CAST(:body AS jsonb)) RETURNING id")


def make_engine(url: str) -> Engine:
    # The hub's pool settings (hub.db.make_engine: 20 + 20), so neither side has more connections. At 10 + 10
    # (until 2026-11-30) the baseline opened and closed overflow connections at concurrency 16, ≈8 % of its
    # requests paying a new connection: a slower baseline, a flattering ratio.
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=20)


def create_app(database_url: str) -> FastAPI:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text(TABLE_DDL))

    app = FastAPI(title="bench baseline", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # A plain (sync) function like the hub's submit endpoint: both run in the same threadpool.
    @app.post("/submit", status_code=201)
    def submit(body: dict[str, Any] = Body(...)) -> dict[str, int]:
        with engine.begin() as connection:
            new_id = connection.execute(INSERT, {"body": json.dumps(body, ensure_ascii=False)}).scalar_one()
        return {"id": new_id}

    return app


def app_from_env() -> FastAPI:
    counting.install("baseline")
    return create_app(os.environ["BENCH_DATABASE_URL"])
