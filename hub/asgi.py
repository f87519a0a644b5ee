"""ASGI entry point for uvicorn workers: `uvicorn hub.asgi:app`."""

from hub import logs
from hub.app import create_app
from hub.settings import get_settings

_settings = get_settings()
logs.configure(_settings.log_level, _settings.log_json)
app = create_app(_settings)
