"""Fixtures for the adapter tests: the mock registries on free loopback ports, and fresh adapters per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.registries import AdapterOptions, Registries, RegistryEndpoints, build_registries
from adapters.resilience import ResiliencePolicy
from mocks.runner import RunningMocks
from tests.mocks.support import ManualMonotonic, MockControl

# Short timeout and tiny backoff keep the fault tests fast; the shape of the policy is the production one.
TEST_POLICY = ResiliencePolicy(timeout_s=0.25, attempts=3, backoff_initial_s=0.001, backoff_max_s=0.005,
                               breaker_failures=5, breaker_reset_s=30.0, max_concurrency=4)


FakeClock = ManualMonotonic


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
