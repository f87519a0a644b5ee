"""ASGI entry point for uvicorn workers: `uvicorn hub.asgi:app` (a production entry: keys from the environment)."""

from hub import logs
from hub.app import create_app
from hub.heap import prepare_heap_for_serving
from hub.keys import KeyRefused, Policy, resolve_keys
from hub.metrics.multiprocess import register_worker_exit
from hub.settings import SecretFileRefused, get_settings

try:
    _settings = get_settings()
    logs.configure(_settings.log_level, _settings.log_json)
    resolve_keys(_settings, Policy.PRODUCTION)
except (KeyRefused, SecretFileRefused) as exc:
    raise SystemExit(f"hub: refusing to serve: {exc}") from None
register_worker_exit()  # multi-process metrics: this worker's live gauges go when it exits
app = create_app(_settings)
prepare_heap_for_serving()  # the collector at a server's pace (hub/heap.py)
