"""The city platform: plans, publishes and listens; ``run`` does it all in one call."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from mocks.city_data import (
    CITIES,
    CatalogueItem,
    City,
)
from mocks.city_platform.cases import Planned
from mocks.city_platform.catalogue import items_for
from mocks.city_platform.planner import Planner
from mocks.city_platform.report import SimulationReport
from mocks.city_platform.spec import APPLY, SimulatorError
from mocks.city_platform.wire import EventListener, PartnerPublisher, partner_url


class CityPlatform:
    """One city platform: plans a run, publishes it, and listens to the hub's events."""

    def __init__(self, amqp_url: str, partner: str, *, seed: int | None = None, region: str | None = None,
                 items: Iterable[str | CatalogueItem] | None = None, catalogue_url: str | None = None,
                 secret: str | None = None, run_id: str | None = None, events_queue: str | None = None,
                 unknown_item_codes: Sequence[str] = (), now: datetime | None = None,
                 reconnect_timeout_s: float = 300.0) -> None:
        known = CITIES.get(partner)
        if known is None and region is None:
            raise SimulatorError(f"unknown city {partner!r}: give its region")
        if known is None or (region and region != known.region):
            assert region is not None
            known = City(partner, region, known.name if known else partner, known.prefix if known else "CP",
                         (region,))
        self.city = known
        self.partner = partner
        self.url = partner_url(amqp_url, partner, secret or os.environ.get("CITY_PLATFORM_SECRET"))
        self.rng = random.Random(seed)
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.items = items_for(self.city, items, catalogue_url)
        self.events_queue = events_queue or f"partner.{partner}.events"
        self.now = now or datetime.now(UTC)
        self.planner = Planner(self.city, self.items, partner=partner, rng=self.rng, run_id=self.run_id, now=self.now,
                               unknown_item_codes=unknown_item_codes)
        self.report = SimulationReport(partner, self.city.region, self.run_id, self.planner.prefix)
        self.reconnect_timeout_s = reconnect_timeout_s
        self._listener: EventListener | None = None

    def plan(self, count: int, faults: Mapping[str, int] | None = None) -> list[Planned]:
        planned = self.planner.plan(count, dict(faults or {}))
        for message in planned:
            if message.expect == APPLY:
                self.report.expected_apply.add(message.message_id)
            else:
                self.report.expected_dead[message.message_id] = message.reason or "rejected"
        self.report.cases = self.planner.expected_cases()
        return planned

    def publish(self, planned: Sequence[Planned], *, on_progress: Callable[[int], None] | None = None) -> None:
        report = self.report
        report.started_at = time.monotonic()
        with PartnerPublisher(self.url, app_id=f"city-platform-{self.partner}",
                              reconnect_timeout_s=self.reconnect_timeout_s) as publisher:
            try:
                for message in planned:
                    publisher.publish(f"{self.partner}.{message.type}", message.body, message_id=message.message_id,
                                      type_=message.type, correlation_id=message.external_id)
                    report.sent[message.category] += 1
                    if on_progress is not None:
                        on_progress(report.total_sent)
            finally:
                report.published += publisher.published
                report.republished += publisher.republished
                report.reconnects += publisher.reconnects
                report.finished_at = time.monotonic()

    def start_events(self) -> None:
        if self._listener is None:
            self._listener = EventListener(self.url, self.events_queue, self.report)
            self._listener.start()

    def stop_events(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    @contextmanager
    def listening(self) -> Iterator[CityPlatform]:
        self.start_events()
        try:
            yield self
        finally:
            self.stop_events()

    def wait_for_events(self, *, idle_s: float, timeout_s: float) -> None:
        """Until no new hub event arrived for ``idle_s`` (or ``timeout_s`` passed)."""
        deadline = time.monotonic() + timeout_s
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            seen = self.report.event_deliveries
            if seen != last:
                last, quiet_since = seen, time.monotonic()
            elif time.monotonic() - quiet_since >= idle_s:
                return
            time.sleep(0.1)


def run(amqp_url: str, partner: str, count: int, faults: Mapping[str, int] | None = None, seed: int | None = None,
        *, region: str | None = None, items: Iterable[str | CatalogueItem] | None = None,
        catalogue_url: str | None = None, secret: str | None = None, consume_events: bool = True,
        events_idle_s: float = 2.0, events_timeout_s: float = 30.0,
        on_progress: Callable[[int], None] | None = None) -> SimulationReport:
    """Plan ``count`` messages (``faults`` of them faulty, by kind), publish them, and — with
    ``consume_events`` — count the hub's events until none arrived for ``events_idle_s``."""
    platform = CityPlatform(amqp_url, partner, seed=seed, region=region, items=items, catalogue_url=catalogue_url,
                            secret=secret)
    planned = platform.plan(count, faults)
    if not consume_events:
        platform.publish(planned, on_progress=on_progress)
        return platform.report
    with platform.listening():
        platform.publish(planned, on_progress=on_progress)
        platform.wait_for_events(idle_s=events_idle_s, timeout_s=events_timeout_s)
    return platform.report
