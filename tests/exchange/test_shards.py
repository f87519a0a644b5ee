"""Each case's records at one worker (issue 8, part shards; HUB_INGEST_SHARDS, docs/amqp.md "Case shards").

On a real RabbitMQ (with rabbitmq_consistent_hash_exchange enabled: scripts/services.sh) and PostgreSQL, in a
vhost of this module's own (its topology is routed by case; the session's vhost stays as every other test knows
it): records of one case land on one shard queue, a record without correlation_id still lands on one and is
applied; two workers split the shards; a worker killed with SIGKILL hands its shards to the other, no record lost.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import declare_topology, open_connection
from adapters.amqp.topology import INBOUND_QUEUE, Topology
from hub.exchange import shards
from hub.exchange.models import InboxMessage
from hub.exchange.status import exchange_overview
from hub.settings import Settings
from hub.worker import Worker
from mocks.city_platform import CityPlatform
from mocks.city_platform.wire import PartnerPublisher
from tests.adapters.amqp.conftest import wait_for
from tests.exchange.conftest import (
    Broker,
    WorkerProcess,
    item_code,
    partner_vhost,
    running_workers,
    wait_until_settled,
)
from tests.support import PARTNER_SECRET, case_record, envelope

SHARDS = 4
TOPOLOGY = Topology(shards=SHARDS)


@pytest.fixture(scope="module")
def shard_broker(broker: Broker, partner_urls: dict[str, str]) -> Iterator[Broker]:
    """A vhost of its own with the partner ``shenyang`` provisioned (the session's partner users exist)."""
    with partner_vhost(broker, prefix="hub_shards") as own:
        yield own


def drain_shards(broker: Broker) -> dict[str, list[str | None]]:
    """Every message waiting on a shard queue (taken off it), by queue: their correlation ids."""
    connection = open_connection(broker.settings())
    try:
        channel = connection.channel()
        found: dict[str, list[str | None]] = defaultdict(list)
        for queue in TOPOLOGY.shard_queues:
            while True:
                method, properties, _ = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                found[queue].append(properties.correlation_id)
        return found
    finally:
        connection.close()


def declared(broker: Broker) -> None:
    connection = open_connection(broker.settings())
    try:
        declare_topology(connection.channel(), TOPOLOGY)
    finally:
        connection.close()


def test_one_cases_records_land_on_one_shard_and_a_record_without_correlation_id_on_one_too(
    shard_broker: Broker,
) -> None:
    declared(shard_broker)
    cases = [f"SY-{uuid.uuid4().hex[:10]}" for _ in range(12)]
    with PartnerPublisher(shard_broker.url_for("shenyang", PARTNER_SECRET)) as publisher:
        for case in cases * 3:
            publisher.publish("shenyang.case-record.v1", b"{}", message_id=str(uuid.uuid4()), type_="case-record",
                              correlation_id=case)
        for _ in range(3):
            publisher.publish("shenyang.case-record.v1", b"{}", message_id=str(uuid.uuid4()), type_="case-record")
    wait_for(lambda: sum(_depths(shard_broker).values()) == len(cases) * 3 + 3, timeout_s=30,
             what="every message on a shard queue")
    assert _depth(shard_broker, INBOUND_QUEUE) == 0  # unbound from hub.inbound once routing is on
    found = drain_shards(shard_broker)
    shard_of: dict[str | None, set[str]] = defaultdict(set)
    for queue, correlation_ids in found.items():
        for correlation_id in correlation_ids:
            shard_of[correlation_id].add(queue)
    assert all(len(shard_of[case]) == 1 for case in cases), shard_of
    assert len(shard_of[None]) == 1  # no correlation_id: hashed as "no value", one fixed shard
    assert len({q for case in cases for q in shard_of[case]}) > 1  # 12 cases are spread, not all on one shard


def _depths(broker: Broker) -> dict[str, int]:
    return {queue: _depth(broker, queue) for queue in TOPOLOGY.shard_queues}


def _depth(broker: Broker, queue: str) -> int:
    connection = open_connection(broker.settings(), attempts=3)
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def sharded_workers(settings: Settings, factory: sessionmaker[Session], count: int
                    ) -> AbstractContextManager[list[Worker]]:
    return running_workers(settings, factory, count, topology=TOPOLOGY, name="hub-test-shards")


def held(worker: Worker) -> list[int]:
    shards_held = worker.heartbeat().get("shards", [])
    assert isinstance(shards_held, list)
    return shards_held


def test_two_workers_split_the_shards_and_apply_every_record_with_or_without_correlation_id(
    shard_broker: Broker, database_url: str, factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, amqp_url=shard_broker.url, log_json=False,
                        ingest_shards=SHARDS, ingest_shard_rebalance_s=0.2)
    with sharded_workers(settings, factory, 2) as workers:
        wait_for(lambda: sorted(held(workers[0]) + held(workers[1])) == list(range(SHARDS))
                 and len(held(workers[0])) == len(held(workers[1])) == SHARDS // 2,
                 timeout_s=30, what="the shards split between the two workers")
        with factory() as session:
            holders = shards.holders(session.connection())
            assert [h.shard for h in holders] == list(range(SHARDS)) and len({h.pid for h in holders}) == 2
            # What `hub exchange status` shows: each shard and the worker consuming it.
            shown = exchange_overview(session, shards=SHARDS)["case_shards"]
            assert sorted(shown) == [str(s) for s in range(SHARDS)]
            assert all(name.startswith("hub-worker ") for name in shown.values()), shown
        platform = CityPlatform(shard_broker.url_for("shenyang", PARTNER_SECRET), "shenyang", seed=4242)
        platform.publish(platform.plan(300))
        lone = envelope(case_record(item_code(factory), external_id=f"SY-{uuid.uuid4().hex[:10]}"))
        with PartnerPublisher(shard_broker.url_for("shenyang", PARTNER_SECRET)) as publisher:
            publisher.publish("shenyang.case-record.v1", json.dumps(lone).encode(), message_id=lone["message_id"],
                              type_="case-record")  # no correlation_id
        state = wait_until_settled(factory, platform.report, timeout_s=120)
        assert state.applied_messages == len(platform.report.expected_apply)
        assert state.duplicate_steps == 0
        wait_for(lambda: _applied(factory, lone["message_id"]), timeout_s=30,
                 what="the record without correlation_id applied")
        tallies = [w.heartbeat()["inbound"] for w in workers]
        assert all(isinstance(t, dict) and t["acked"] > 0 for t in tallies), tallies  # both did work


def _applied(factory: sessionmaker[Session], message_id: str) -> bool:
    with factory() as session:
        return session.scalar(select(InboxMessage).where(InboxMessage.message_id == uuid.UUID(message_id))) is not None


def test_a_killed_workers_shards_go_to_the_other_and_no_record_is_lost(
    shard_broker: Broker, database_url: str, factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    processes = WorkerProcess(database_url, shard_broker.url, tmp_path)
    processes.env.update(HUB_INGEST_SHARDS=str(SHARDS), HUB_INGEST_SHARD_REBALANCE_S="0.3")
    platform = CityPlatform(shard_broker.url_for("shenyang", PARTNER_SECRET), "shenyang", seed=4343)
    planned = platform.plan(1200)
    try:
        first, second = processes.start(), processes.start()
        wait_for(lambda: _holding_pids(factory) == 2 and len(_holders(factory)) == SHARDS, timeout_s=60,
                 what="both workers holding shards")
        platform.publish(planned)
        wait_for(lambda: _applied_count(factory, platform.report.expected_apply) > 200, timeout_s=60,
                 what="records being applied")
        processes.kill(first)
        wait_for(lambda: _holding_pids(factory) == 1 and len(_holders(factory)) == SHARDS, timeout_s=30,
                 what="the survivor holding every shard")
        state = wait_until_settled(factory, platform.report, timeout_s=180)
        assert second.poll() is None, processes.log(1)
    finally:
        processes.stop_all()
    assert state.applied_messages == len(platform.report.expected_apply)
    assert state.duplicate_steps == 0


def _holders(factory: sessionmaker[Session]) -> list[shards.ShardHolder]:
    with factory() as session:
        return shards.holders(session.connection())


def _holding_pids(factory: sessionmaker[Session]) -> int:
    return len({h.pid for h in _holders(factory)})


def _applied_count(factory: sessionmaker[Session], message_ids: set[str]) -> int:
    with factory() as session:
        ids = [uuid.UUID(m) for m in message_ids]
        return len(session.scalars(select(InboxMessage.message_id).where(InboxMessage.message_id.in_(ids))).all())


