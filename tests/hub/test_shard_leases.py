"""Shard leases and their balancing (hub/exchange/shards.py), without a broker: the consumer is a stand-in that
records which queues it consumes. On PostgreSQL the leases are advisory locks shared between "workers" (each its
own ShardLeases: its own database session); on SQLite a worker holds every shard."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import Engine

from hub.exchange import shards
from hub.exchange.shards import ShardConsumer, ShardLeases, fair_share
from tests.support import wait_until

SHARDS = 4


class Consuming:
    """Stands in for the worker's shard consumer: notes the queues while it runs, until told to stop."""

    def __init__(self) -> None:
        self.queues: list[str] = []
        self.log: list[str] = []

    def __call__(self, queues: Sequence[str], stop: threading.Event) -> None:
        self.queues = list(queues)
        self.log.append("start " + ",".join(queues))
        stop.wait()
        self.log.append("stop " + ",".join(queues))
        self.queues = []


@pytest.fixture
def workers(engine: Engine) -> Iterator[list[tuple[ShardConsumer, Consuming]]]:
    made: list[tuple[ShardConsumer, Consuming]] = []

    def make() -> tuple[ShardConsumer, Consuming]:
        consuming = Consuming()
        made.append((ShardConsumer(ShardLeases(engine, SHARDS), lambda s: f"shard.{s}", consuming), consuming))
        return made[-1]

    yield [make(), make()]
    for consumer, _ in made:
        consumer.stop(timeout=5)


def test_the_fair_share_rounds_up_so_every_shard_has_a_holder() -> None:
    assert [fair_share(4, n) for n in (0, 1, 2, 3, 4, 5)] == [4, 4, 2, 2, 1, 1]


def test_a_lone_worker_consumes_every_shard_on_one_consumer(workers: list[tuple[ShardConsumer, Consuming]]) -> None:
    consumer, consuming = workers[0]
    consumer.balance()
    assert consumer.consuming == list(range(SHARDS))
    assert wait_until(lambda: sorted(consuming.queues) == [f"shard.{s}" for s in range(SHARDS)])


def test_a_second_worker_gets_half_and_the_first_stops_consuming_before_it_gives_its_leases_up(
    backend: str, workers: list[tuple[ShardConsumer, Consuming]], engine: Engine,
) -> None:
    if backend != "postgresql":
        pytest.skip("leases are PostgreSQL advisory locks; on SQLite one worker holds every shard")
    (first, first_consuming), (second, second_consuming) = workers
    first.balance()
    assert first.consuming == [0, 1, 2, 3]
    second.balance()  # joins as a member; every shard is held: it takes none yet
    assert second.consuming == []
    assert wait_until(lambda: len(first_consuming.log) == 1)
    first.balance()  # two members now: it gives up the surplus (its consumer stopped first), consumes the rest
    assert len(first.consuming) == 2
    assert wait_until(lambda: len(first_consuming.log) == 3)
    assert first_consuming.log[:2] == ["start shard.0,shard.1,shard.2,shard.3", "stop shard.0,shard.1,shard.2,shard.3"]
    assert first_consuming.log[2] == "start " + ",".join(f"shard.{s}" for s in first.consuming)
    second.balance()
    assert sorted(first.consuming + second.consuming) == [0, 1, 2, 3] and len(second.consuming) == 2
    with engine.connect() as connection:
        holders = shards.holders(connection)
        assert [h.shard for h in holders] == [0, 1, 2, 3] and len({h.pid for h in holders}) == 2
        assert shards.live_workers(connection) == 2
    assert wait_until(lambda: len(second_consuming.queues) == 2)

    first.stop(timeout=5)  # its session ends: its leases with it
    second.balance()
    assert second.consuming == [0, 1, 2, 3]
