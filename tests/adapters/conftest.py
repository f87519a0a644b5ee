"""Fixtures for the adapter tests: the mock registries on free loopback ports, and fresh adapters per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.registries import AdapterOptions, Registries, RegistryEndpoints, build_registries
from adapters.resilience import ResiliencePolicy
from mocks.registries.seed import Seed
from mocks.runner import RunningMocks
from tests.mocks.support import MockControl, running_mocks

# Short timeout and tiny backoff keep the fault tests fast; the shape of the policy is the production one.
TEST_POLICY = ResiliencePolicy(timeout_s=0.25, attempts=3, backoff_initial_s=0.001, backoff_max_s=0.005,
                               breaker_failures=5, breaker_reset_s=30.0, max_concurrency=4)


class FakeClock:
    """A monotonic clock that only moves when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def mocks() -> Iterator[RunningMocks]:
    with running_mocks() as running:
        yield running


@pytest.fixture(scope="session")
def seed(mocks: RunningMocks) -> Seed:
    return mocks.seed


@pytest.fixture
def control(mocks: RunningMocks) -> Iterator[MockControl]:
    control = MockControl(mocks)
    control.fresh()
    yield control
    control.fresh()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoints(mocks: RunningMocks) -> RegistryEndpoints:
    return RegistryEndpoints(population_wsdl=mocks.population_wsdl, enterprise_url=mocks.enterprise_url,
                             tax_wsdl=mocks.tax_wsdl, organisation_url=mocks.organisation_url)


@pytest.fixture
def registries(endpoints: RegistryEndpoints, clock: FakeClock, control: MockControl) -> Iterator[Registries]:
    built = build_registries(endpoints, TEST_POLICY, AdapterOptions(clock=clock, cache_ttl_s=60.0))
    yield built
    built.close()
