"""The hub as ``bench.submit`` serves it: ``hub.app.create_app`` with explicit settings.

``uvicorn --factory bench.hub_app:app_from_env`` with ``BENCH_DATABASE_URL`` and ``BENCH_DATA_DIR``
set. Settings are built here, ignoring any ``.env`` file (and ``bench.submit`` starts the server
without the caller's ``HUB_*`` variables), so a developer's local configuration cannot change what is
measured: no registry is configured, so a submission makes no network call beyond PostgreSQL.
Logging is configured as ``hub.asgi`` does it, at WARNING (``HUB_LOG_LEVEL``). With ``BENCH_STATS_DIR``
set, the process counts its SQL statements and commits there (``bench.counting``), as the baseline does.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from bench import counting
from hub import logs
from hub.app import create_app
from hub.heap import prepare_heap_for_serving
from hub.settings import Settings


def app_from_env() -> FastAPI:
    counting.install("hub")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]  # a developer's .env must not change what is measured
        database_url=os.environ["BENCH_DATABASE_URL"],
        data_dir=Path(os.environ["BENCH_DATA_DIR"]),
        log_level=os.environ.get("HUB_LOG_LEVEL", "WARNING"),
    )
    logs.configure(settings.log_level, settings.log_json)
    app = create_app(settings)
    prepare_heap_for_serving()  # as hub.asgi does for `hub api`
    return app
