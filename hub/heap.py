"""The serving process's heap: what start-up built is left out of Python's cyclic garbage collection.

A server process builds its application once — every module, SQLAlchemy's mappers, pydantic's validators,
FastAPI's routes, the OpenAPI models: hundreds of thousands of long-lived objects — and then serves requests
that each allocate a few thousand short-lived ones. CPython's collector counts those allocations and, every
so many collections of the young generations, walks the whole old generation: start-up's objects, which
never become garbage, again and again. Measured with callgrind over 300 submissions (bench/callgrind_submit.py)
the collector was 6.7 % of the hub's instructions per submission against 0.7 % for the bare-insert baseline.

``gc.freeze()`` (the recipe of the ``gc`` documentation for servers) moves every object alive at that moment
to a permanent generation the collector does not walk. Reference counting still frees them when released;
only a reference cycle among them would never be collected — start-up's objects live as long as the
process anyway. Called once per serving process, after the app is built and before the first request:
``hub api`` (hub/asgi.py, in each uvicorn worker), ``hub worker``, ``hub up`` and the benchmark's server
(bench/hub_app.py).
Not in tests: a test process builds many apps, each of which must be collectable afterwards.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect start-up's garbage, then leave every surviving object out of later collections."""
    gc.collect()
    gc.freeze()
