"""The request's unit of work (hub/deps.py get_session): one COMMIT per request that wrote, none for a
request that only read, a rollback when the endpoint raises, and a failing COMMIT answered as a problem
document instead of a success for something never stored. Seen from the outside: HTTP, and the engine's
own commit events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.deps import NowDep, SessionDep
from hub.errors import Conflict
from hub.throttle.models import AttemptCounter
from tests.support import submit

SCOPE = "test.uow"


def notice(year: int) -> dict[str, Any]:
    return {"year": year, "source": f"国务院办公厅关于{year}年部分节假日安排的通知（测试）",
            "holidays": [{"name": "国庆节", "from": f"{year}-10-01", "to": f"{year}-10-07"}],
            "workdays": []}


@contextmanager
def commits_counted(engine: Engine) -> Iterator[list[str]]:
    """The COMMITs the engine sends while the block runs (one entry each)."""
    seen: list[str] = []

    def on_commit(_conn: Any) -> None:
        seen.append("COMMIT")

    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", on_commit)


@pytest.fixture
def failing_commits(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """While the block runs, every COMMIT fails in the driver (as a full disk or a lost server would)."""

    def refuse(_dbapi_connection: Any) -> None:
        raise engine.dialect.loaded_dbapi.OperationalError("could not write to file: No space left on device")

    @contextmanager
    def failing() -> Iterator[None]:
        with monkeypatch.context() as patch:
            patch.setattr(engine.dialect, "do_commit", refuse)
            yield

    return failing  # type: ignore[return-value]


def counter_keys(session_factory: sessionmaker[Session]) -> set[str]:
    with session_factory() as session:
        return set(session.scalars(select(AttemptCounter.key).where(AttemptCounter.scope == SCOPE)))


@pytest.fixture
def probe(app: Any) -> Iterator[TestClient]:
    """The hub with one more endpoint that writes a row through the request's session and then, when
    asked, refuses — as any endpoint does that finds a problem after its first write."""
    router = APIRouter()

    @router.post("/test/uow/{key}")
    def write_then_maybe_refuse(key: str, session: SessionDep, now: NowDep, refuse: bool = False) -> dict[str, str]:
        session.add(AttemptCounter(scope=SCOPE, key=key, window_start=now, window_end=now + timedelta(hours=1),
                                   count=1))
        session.flush()
        if refuse:
            raise Conflict("refused after writing")
        return {"key": key}

    app.include_router(router)
    # A 500 is answered (the problem document) and then re-raised by Starlette: answers only, here.
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_an_endpoint_that_returns_has_its_writes_committed_without_committing_itself(
    probe: TestClient, session_factory: sessionmaker[Session], engine: Engine,
) -> None:
    with commits_counted(engine) as commits:
        response = probe.post("/test/uow/kept")
    assert response.status_code == 200, response.text
    assert "kept" in counter_keys(session_factory)
    assert commits == ["COMMIT"]


def test_an_endpoint_that_raises_after_writing_leaves_nothing_behind(
    probe: TestClient, session_factory: sessionmaker[Session], engine: Engine,
) -> None:
    with commits_counted(engine) as commits:
        response = probe.post("/test/uow/dropped", params={"refuse": True})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "dropped" not in counter_keys(session_factory)
    assert commits == []


def test_a_failing_commit_is_answered_with_a_problem_not_a_success(
    probe: TestClient, session_factory: sessionmaker[Session], failing_commits: Any,
) -> None:
    with failing_commits():
        response = probe.post("/test/uow/lost")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/internal")
    assert "lost" not in counter_keys(session_factory)


def test_a_real_write_whose_commit_fails_answers_a_problem_and_the_notice_is_not_loaded(
    probe: TestClient, officers: Any, failing_commits: Any,
) -> None:
    headers = officers.headers("ln_admin")
    with failing_commits():
        response = probe.post("/api/v1/calendar/notices", json=notice(2087), headers=headers)
    assert response.status_code == 500 and response.headers["content-type"] == "application/problem+json"
    assert probe.get("/api/v1/calendar/2087").json()["coverage"] == "fallback"


def test_a_writing_request_commits_once_and_reading_requests_never_commit(
    client: TestClient, officers: Any, engine: Engine,
) -> None:
    headers = officers.headers("ln_admin")  # signing in commits its own attempts: before counting
    intake = officers.headers("sy_wj_intake")
    with commits_counted(engine) as commits:
        loaded = client.post("/api/v1/calendar/notices", json=notice(2088), headers=headers)
    assert loaded.status_code == 201, loaded.text
    assert commits == ["COMMIT"]
    with commits_counted(engine) as commits:
        assert client.get("/api/v1/calendar/2088").json()["coverage"] == "override"
        assert client.get("/api/v1/items").status_code == 200
        assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
        assert client.get("/api/v1/cases/queue", headers=intake).status_code == 200
    assert commits == []


def test_a_query_code_look_up_commits_only_its_attempt_and_a_right_code_survives_a_failing_request(
    client: TestClient, engine: Engine,
) -> None:
    receipt = submit(client, "physician-practice-registration")
    status_url = f"/api/v1/applications/{receipt['tracking_no']}"
    code = {"X-Query-Code": receipt["query_code"]}
    with commits_counted(engine) as commits:
        assert client.get(status_url, headers=code).status_code == 200
    assert commits == ["COMMIT"]  # the attempt's own unit of work; the status itself only reads
    assert client.post(f"{status_url}/withdraw", json={"reason": "不再需要"}, headers=code).status_code == 200
    # Each refusal after a right code gives its attempt back, although its request rolls back: far more
    # refusals than the budget of wrong codes (5 by default) never lock the applicant out.
    for _ in range(12):
        again = client.post(f"{status_url}/withdraw", json={"reason": "不再需要"}, headers=code)
        assert again.status_code == 409, again.text
    assert client.get(status_url, headers=code).json()["state"] == "withdrawn"
