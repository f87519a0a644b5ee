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

Once start-up is frozen, what is left for the collector is each unit of work's own objects, and the default pace
(a collection of the youngest generation every 700 net allocations of container objects) then walks a batch's
live objects again and again while it is applied: a batch of 200 partner records holds its ORM objects, seals and
findings until its commit, and was collected ≈77 times per 1,000 records — ≈0.06 ms of a worker's ≈1.3 ms of CPU
per record, ≈5 % (gc.callbacks around the collections, bench.ingest_handler's rounds with the heap frozen). So a
serving process collects its youngest generation every ``YOUNG_GENERATION_THRESHOLD`` net allocations instead: at
50,000 a round of 3,000 records saw one collection. What that costs: cyclic garbage (reference counting frees
the rest at once) waits a little longer for its collection — at most the 50,000 young objects, a few MB — and
each young collection walks up to that many objects (milliseconds, once per hundreds of requests or records).
The older generations keep their thresholds, which count young collections, so they run as much less often.

Not in tests: a test process builds many apps, each of which must be collectable afterwards.
"""

from __future__ import annotations

import gc

YOUNG_GENERATION_THRESHOLD = 50_000


def prepare_heap_for_serving() -> None:
    """Collect start-up's garbage, leave every surviving object out of later collections, and collect the young
    generation every ``YOUNG_GENERATION_THRESHOLD`` net allocations."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)
