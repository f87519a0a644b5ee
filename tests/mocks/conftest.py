"""Fixtures for the mock-registry tests: one set of mocks per session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mocks.registries.seed import Seed
from mocks.runner import RunningMocks
from tests.mocks.support import MockControl, running_mocks


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
