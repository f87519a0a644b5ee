"""ASGI entry point for uvicorn workers: `uvicorn hub.asgi:app` (a production entry: keys from the environment)."""

from hub import logs
from hub.app import create_app
from hub.keys import KeyRefused, Policy, resolve_keys
from hub.settings import SecretFileRefused, get_settings

try:
    _settings = get_settings()
    logs.configure(_settings.log_level, _settings.log_json)
    resolve_keys(_settings, Policy.PRODUCTION)
except (KeyRefused, SecretFileRefused) as exc:
    raise SystemExit(f"hub: refusing to serve: {exc}") from None
app = create_app(_settings)
