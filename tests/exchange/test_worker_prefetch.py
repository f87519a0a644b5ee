"""`hub worker` prefetches two of its batches per consumer (hub/worker.py ``inbound_prefetch``), so the next batch
is already in the process while one is applied and acked after its commit — read from RabbitMQ itself."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx

from hub.worker import inbound_prefetch
from tests.adapters.amqp.conftest import wait_for
from tests.exchange.conftest import Broker, WorkerProcess


def test_the_prefetch_is_two_batches_and_never_below_the_adapters_default() -> None:
    assert inbound_prefetch(50) == 200
    assert inbound_prefetch(100) == 200
    assert inbound_prefetch(101) == 202
    assert inbound_prefetch(300) == 600


def test_each_consumer_of_a_worker_holds_two_batches_unacknowledged(
        broker: Broker, database_url: str, tmp_path: Path) -> None:
    workers = WorkerProcess(database_url, broker.url, tmp_path)
    workers.env.update(HUB_INGEST_BATCH_SIZE="300")

    def prefetch_counts() -> dict[str, int]:
        with httpx.Client(base_url=broker.management_url, auth=(broker.admin_user, broker.admin_password),
                          timeout=15, trust_env=False) as api:
            consumers = api.get(f"/api/consumers/{quote(broker.vhost, safe='')}").json()
        return {c["queue"]["name"]: c["prefetch_count"] for c in consumers}

    workers.start()
    try:
        wait_for(lambda: any(name.startswith("hub.inbound.shard.") for name in prefetch_counts()), timeout_s=120,
                 what="the worker consuming its shards")
        counts = prefetch_counts()
    finally:
        workers.stop_all()
    inbound = {name: count for name, count in counts.items() if name.startswith("hub.inbound")}
    assert inbound and set(inbound.values()) == {600}, counts
