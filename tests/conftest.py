"""Shared fixtures: a migrated, seeded database per backend, the app on a fixed clock, clients.

Backends come from HUB_TEST_BACKENDS (default "sqlite"); "postgresql" needs
HUB_TEST_POSTGRES_URL, and a missing URL fails the run rather than skipping it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import delete, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.app import create_app
from hub.clock import FixedClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.migrate import upgrade
from hub.seed.service import seed_demo
from hub.settings import Settings
from mocks.registries.seed import Seed
from mocks.runner import RunningMocks
from tests.mocks.support import MockControl, running_mocks

# Machines here are shared and loaded: timing-based Hypothesis deadlines only make tests flaky.
hypothesis_settings.register_profile("hub", deadline=None)
hypothesis_settings.load_profile("hub")

BACKENDS = [b.strip() for b in os.environ.get("HUB_TEST_BACKENDS", "sqlite").split(",") if b]
# A Wednesday in an ordinary working week, 10:00 China time.
START = datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
DEMO_PASSWORD = "demo-Password-1"


def database_url_for(backend: str, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'hub.db'}"
    if backend == "postgresql":
        url = os.environ.get("HUB_TEST_POSTGRES_URL")
        if not url:
            pytest.fail("HUB_TEST_BACKENDS names postgresql but HUB_TEST_POSTGRES_URL is unset")
        return url
    pytest.fail(f"unknown backend {backend!r}")


def reset_postgres(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def engine(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    tmp = tmp_path_factory.mktemp(f"db-{backend}")
    engine = make_engine(database_url_for(backend, tmp))
    if backend == "postgresql":
        reset_postgres(engine)
    upgrade(engine)
    with unit_of_work(make_session_factory(engine)) as session:
        seed_demo(session, now=START)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session
        session.rollback()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def settings(tmp_path: Path, engine: Engine) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=engine.url.render_as_string(hide_password=False),
        log_json=False,
    )


@pytest.fixture
def app(settings: Settings, clock: FixedClock, engine: Engine) -> Any:
    return create_app(settings, clock=clock, engine=engine)


@pytest.fixture(autouse=True)
def fresh_abuse_counters(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts at the same instant on one shared database: one test's failed sign-ins and
    wrong query codes (hub/throttle) must not lock the next test out."""
    if "app" not in request.fixturenames:
        yield
        return
    factory: sessionmaker[Session] = request.getfixturevalue("session_factory")
    yield
    from hub.throttle.models import AttemptCounter, SeenNonce

    with unit_of_work(factory) as session:
        session.execute(delete(AttemptCounter))
        session.execute(delete(SeenNonce))


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


class Officers:
    """Signs demo officers in and hands out their Authorization headers."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self._tokens: dict[str, str] = {}

    def headers(self, username: str) -> dict[str, str]:
        if username not in self._tokens:
            response = self.client.post(
                "/api/v1/auth/token", data={"username": username, "password": DEMO_PASSWORD}
            )
            assert response.status_code == 200, response.text
            self._tokens[username] = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._tokens[username]}"}


@pytest.fixture
def officers(client: TestClient) -> Officers:
    return Officers(client)


# The mock registries: one set per session on free loopback ports, faults cleared around each test.
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
