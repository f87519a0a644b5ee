"""Switching routing by case on, off, or to another number of shards strands no record (issue 8, part default).

On a real RabbitMQ and PostgreSQL, each test in a vhost of its own: records are published while the broker is
routed as workers of the old setting left it, then workers of the new setting start and every record is applied
(none lost, none applied twice); afterwards the routing is the new setting's (docs/amqp.md "Case shards"):

* off after on (4 → 0): the shard exchange is unbound from hub.inbound, and the shard queues are drained;
* on after off (0 → 4): hub.inbound.records is unbound and drained (part shards' behaviour, kept);
* fewer shards (8 → 4): shard queues 4-7 are unbound from the shard exchange and drained;
* more shards (4 → 8): the new queues are bound, the old ones kept;
* mixed (a worker with shards on and one with them off at once): every record applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import AmqpBus, make_bus, open_connection
from adapters.amqp.topology import INBOUND_QUEUE, MAX_SHARDS, Topology
from hub.settings import Settings
from mocks.city_platform import CityPlatform
from mocks.city_platform.wire import PartnerPublisher
from tests.adapters.amqp.conftest import wait_for
from tests.exchange.conftest import Broker, partner_vhost, running_workers, wait_until_settled
from tests.support import PARTNER_SECRET


@pytest.fixture
def vhost(broker: Broker, partner_urls: dict[str, str]) -> Iterator[Broker]:
    """A vhost of this test's own, with the partner ``shenyang`` provisioned."""
    with partner_vhost(broker, prefix="hub_switch") as own:
        yield own


def route_as_workers_of(broker: Broker, shards: int) -> None:
    """What a worker with HUB_INGEST_SHARDS=``shards`` does to the broker at start (then it stops)."""
    bus = make_bus(broker.url, topology=Topology(shards=shards))
    assert isinstance(bus, AmqpBus)
    bus.declare_topology()
    bus.close()


def depths(broker: Broker) -> dict[str, int]:
    """Messages ready on hub.inbound.records and on every shard queue that exists."""
    connection = open_connection(broker.settings(), attempts=3)
    try:
        found: dict[str, int] = {}
        channel = connection.channel()
        for queue in (INBOUND_QUEUE, *Topology(shards=MAX_SHARDS).shard_queues):
            if not channel.is_open:
                channel = connection.channel()
            try:
                found[queue] = int(channel.queue_declare(queue, passive=True).method.message_count)
            except Exception:  # 404: no such queue (the channel is closed)
                continue
        return found
    finally:
        connection.close()


def publish_and_wait_queued(broker: Broker, count: int, seed: int) -> CityPlatform:
    platform = CityPlatform(broker.url_for("shenyang", PARTNER_SECRET), "shenyang", seed=seed)
    planned = platform.plan(count)
    platform.publish(planned)
    wait_for(lambda: sum(depths(broker).values()) == len(planned), timeout_s=60, what="every record queued")
    return platform


def settings_for(broker: Broker, database_url: str, tmp_path: Path, shards: int) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, amqp_url=broker.url, log_json=False,
                    ingest_shards=shards, ingest_shard_rebalance_s=0.2)


def land(broker: Broker, count: int = 40) -> dict[str, int]:
    """Where ``count`` new messages of as many cases land now (no worker running): queue → how many."""
    before = depths(broker)
    with PartnerPublisher(broker.url_for("shenyang", PARTNER_SECRET)) as publisher:
        for _ in range(count):
            publisher.publish("shenyang.case-record.v1", b"{}", message_id=str(uuid.uuid4()), type_="case-record",
                              correlation_id=f"SY-{uuid.uuid4().hex[:10]}")
    wait_for(lambda: sum(depths(broker).values()) - sum(before.values()) == count, timeout_s=30,
             what="the new messages queued")
    after = depths(broker)
    return {queue: after[queue] - before.get(queue, 0) for queue in after if after[queue] != before.get(queue, 0)}


SWITCHES = [(4, 0), (0, 4), (8, 4), (4, 8)]


@pytest.mark.parametrize(("before", "after"), SWITCHES, ids=[f"{b}-to-{a}" for b, a in SWITCHES])
def test_records_queued_before_a_switch_are_all_applied_after_it_and_new_ones_route_the_new_way(
    vhost: Broker, database_url: str, factory: sessionmaker[Session], tmp_path: Path, before: int, after: int,
) -> None:
    route_as_workers_of(vhost, before)
    platform = publish_and_wait_queued(vhost, 240, seed=5000 + 10 * before + after)
    queued = {queue for queue, depth in depths(vhost).items() if depth}
    expected_queues = ({INBOUND_QUEUE} if before == 0 else set(Topology(shards=before).shard_queues))
    assert queued <= expected_queues and len(queued) > (0 if before == 0 else 1), queued

    with running_workers(settings_for(vhost, database_url, tmp_path, after), factory, name="hub-test-switch"):
        state = wait_until_settled(factory, platform.report, timeout_s=120)
        assert state.applied_messages == len(platform.report.expected_apply)
        assert state.duplicate_steps == 0
        wait_for(lambda: sum(depths(vhost).values()) == 0, timeout_s=30, what="every queue drained")

    landed = land(vhost)  # with the workers stopped: where the broker routes now
    if after == 0:
        assert set(landed) == {INBOUND_QUEUE}, landed
    else:
        assert set(landed) <= set(Topology(shards=after).shard_queues), landed
        assert len(landed) > 1, landed  # 40 cases spread over the shards
    if after > before > 0:  # the new queues take their share
        assert set(landed) - set(Topology(shards=before).shard_queues), landed


def test_a_worker_with_shards_on_and_one_with_them_off_at_once_apply_every_record(
    vhost: Broker, database_url: str, factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    """Mixed workers (a rolling change of the setting): each one's start routes hub.inbound its way, and each
    drains both hub.inbound.records and the shard queues — so wherever a record lands it is applied."""
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    on = settings_for(vhost, database_url, tmp_path / "on", 4)
    off = settings_for(vhost, database_url, tmp_path / "off", 0)
    start = partial(running_workers, factory=factory)
    with start(on, name="hub-test-mixed-on"):
        first = CityPlatform(vhost.url_for("shenyang", PARTNER_SECRET), "shenyang", seed=6101)
        first.publish(first.plan(200))
        with start(off, name="hub-test-mixed-off"):
            second = CityPlatform(vhost.url_for("shenyang", PARTNER_SECRET), "shenyang", seed=6102)
            second.publish(second.plan(200))
            for platform in (first, second):
                state = wait_until_settled(factory, platform.report, timeout_s=120)
                assert state.applied_messages == len(platform.report.expected_apply)
                assert state.duplicate_steps == 0
            wait_for(lambda: sum(depths(vhost).values()) == 0, timeout_s=30, what="every queue drained")


def test_hub_worker_stops_at_start_with_one_clear_message_when_the_broker_lacks_the_shards_plugin(
    vhost: Broker, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The shared broker has rabbitmq_consistent_hash_exchange (other suites need it, so it is never disabled
    here): the worker's shard exchange gets a type no broker knows instead, which RabbitMQ 3.10 refuses the same
    way (503 COMMAND_INVALID "unknown exchange type"). `hub worker` (and `hub up`) build the worker here."""
    from hub.cli import _build_worker

    monkeypatch.setattr("hub.worker.Topology", partial(Topology, shard_exchange_type="x-no-such-type"))
    with pytest.raises(SystemExit) as exited:
        _build_worker(settings_for(vhost, database_url, tmp_path, 4))
    assert exited.value.code == 1
    said = capsys.readouterr().err
    assert "unknown exchange type 'x-no-such-type'" in said
    assert "`rabbitmq-plugins enable rabbitmq_consistent_hash_exchange`" in said
    assert "HUB_INGEST_SHARDS=0" in said
    assert "Traceback" not in said and said.count("hub:") == 1, said
