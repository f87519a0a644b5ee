"""Fixtures of the registry tests: the API with registries pointed at the mock servers (as `hub up` does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.registries import AdapterOptions, Registries, RegistryEndpoints, build_registries
from adapters.resilience import ResiliencePolicy
from hub.app import create_app
from hub.clock import FixedClock
from hub.exchange.consumer import InboundHandler
from hub.settings import Settings
from mocks.runner import RunningMocks
from tests.conftest import Officers
from tests.mocks.support import ManualMonotonic, MockControl

# Short timeouts, two attempts, no real backoff: the production shape, fast enough for tests.
POLICY = ResiliencePolicy(timeout_s=0.5, attempts=2, backoff_initial_s=0.001, backoff_max_s=0.005,
                          breaker_failures=5, breaker_reset_s=30.0, max_concurrency=4)


def build(mocks: RunningMocks, monotonic: ManualMonotonic | None = None) -> Registries:
    endpoints = RegistryEndpoints(population_wsdl=mocks.population_wsdl, enterprise_url=mocks.enterprise_url,
                                  tax_wsdl=mocks.tax_wsdl, organisation_url=mocks.organisation_url)
    return build_registries(endpoints, POLICY, AdapterOptions(clock=monotonic or ManualMonotonic()))


@pytest.fixture
def monotonic() -> ManualMonotonic:
    return ManualMonotonic()


@pytest.fixture
def registries(mocks: RunningMocks, monotonic: ManualMonotonic, control: MockControl) -> Iterator[Registries]:
    built = build(mocks, monotonic)
    yield built
    built.close()


@pytest.fixture
def hub(settings: Settings, clock: FixedClock, engine: Engine, registries: Registries) -> Iterator[TestClient]:
    """The API with registries pointed at the mocks (as `hub up` does)."""
    with TestClient(create_app(settings, clock=clock, engine=engine, registries=registries)) as client:
        yield client


@pytest.fixture
def staff(hub: TestClient) -> Officers:
    return Officers(hub)


# The partner records' batch handler as `hub worker` runs it (batches of 50): the batch tests share it.
@pytest.fixture
def handler(session_factory: sessionmaker[Session], clock: FixedClock, settings: Settings) -> InboundHandler:
    return InboundHandler(session_factory, clock, "hub", settings.audit_key, batch_size=50)
