"""The hub as ``bench.submit`` serves it: ``hub.app.create_app`` with explicit settings.

``uvicorn --factory bench.hub_app:app_from_env`` with ``BENCH_DATABASE_URL`` and ``BENCH_DATA_DIR``
set. Settings are built here rather than read from ``HUB_*`` variables or a ``.env`` file, so a
developer's local configuration cannot change what is measured; logging is configured as
``hub.asgi`` does it, at WARNING so log lines do not dominate the measurement.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from hub import logs
from hub.app import create_app
from hub.settings import Settings


def app_from_env() -> FastAPI:
    settings = Settings(
        database_url=os.environ["BENCH_DATABASE_URL"],
        data_dir=Path(os.environ["BENCH_DATA_DIR"]),
        log_level=os.environ.get("HUB_LOG_LEVEL", "WARNING"),
    )
    logs.configure(settings.log_level, settings.log_json)
    return create_app(settings)
