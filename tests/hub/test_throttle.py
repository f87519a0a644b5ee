"""Abuse limits over HTTP: sign-in per account and per source address, query codes per tracking number,
constant-time answers for unknown usernames, and counters shared by every process (in the database).

The clock is the hub's test clock: windows end by moving it, never by sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from hub.app import create_app
from hub.auth import service as auth_service
from hub.clock import FixedClock
from hub.db import unit_of_work
from hub.settings import Settings
from hub.throttle.models import AttemptCounter, SeenNonce
from tests.conftest import DEMO_PASSWORD
from tests.servers import serving
from tests.support import submit

KEY = "physician-practice-registration"
OFFICER = "sy_wj_intake"
UNKNOWN_TRACKING_NO = "210100209901010000010"
ACCOUNT_LIMIT, ADDRESS_LIMIT, CODE_LIMIT, WINDOW_S = 3, 5, 3, 600


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "login_account_attempts": ACCOUNT_LIMIT, "login_address_attempts": ADDRESS_LIMIT,
        "login_window_s": WINDOW_S, "query_code_attempts": CODE_LIMIT, "query_code_window_s": WINDOW_S,
    })


@pytest.fixture(autouse=True)
def clean_counters(session_factory: sessionmaker[Session]) -> Iterator[None]:
    """The database is shared by the whole session and every test starts at the same instant: leave no
    counter behind for the next test (and start without the previous tests' failures)."""
    clear_counters(session_factory)
    yield
    clear_counters(session_factory)


def clear_counters(session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as session:
        session.execute(delete(AttemptCounter))
        session.execute(delete(SeenNonce))


def sign_in(client: TestClient, username: str, password: str = DEMO_PASSWORD) -> httpx.Response:
    return client.post("/api/v1/auth/token", data={"username": username, "password": password})


def without_instance(response: httpx.Response) -> tuple[int, dict[str, Any], str | None]:
    body = response.json()
    body.pop("instance", None)
    return response.status_code, body, response.headers.get("retry-after")


# --- sign-in -----------------------------------------------------------------------------------------


def test_failed_sign_ins_lock_the_account_with_429_until_the_window_ends(client: TestClient,
                                                                          clock: FixedClock) -> None:
    for _ in range(ACCOUNT_LIMIT):
        assert sign_in(client, OFFICER, "wrong-Password-9").status_code == 401
    locked = sign_in(client, OFFICER)  # the right password, too late
    assert locked.status_code == 429, locked.text
    assert locked.headers["content-type"].startswith("application/problem+json")
    assert locked.json()["type"].endswith("/too-many-attempts") and locked.json()["title"] == "尝试次数过多"
    assert locked.headers["retry-after"] == str(WINDOW_S)
    clock.advance(seconds=WINDOW_S - 60)
    assert sign_in(client, OFFICER).headers["retry-after"] == "60"
    clock.advance(seconds=60)
    assert sign_in(client, OFFICER).status_code == 200


def test_a_successful_sign_in_clears_the_accounts_failures(client: TestClient) -> None:
    for _ in range(ACCOUNT_LIMIT - 1):
        assert sign_in(client, OFFICER, "wrong-Password-9").status_code == 401
    assert sign_in(client, OFFICER).status_code == 200
    for _ in range(ACCOUNT_LIMIT - 1):
        assert sign_in(client, OFFICER, "wrong-Password-9").status_code == 401
    assert sign_in(client, OFFICER).status_code == 200


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__()
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified.append(str(hash))
        return super().verify(hash, password)


def test_an_unknown_username_gets_the_same_answer_after_the_same_password_check(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = CountingHasher()
    monkeypatch.setattr(auth_service, "_hasher", hasher)
    known = sign_in(client, OFFICER, "wrong-Password-9")
    unknown = sign_in(client, "no_such_officer", "wrong-Password-9")
    # The unknown name costs one argon2 verification as the known one does, so time tells nothing.
    assert len(hasher.verified) == 2 and hasher.verified[1].startswith("$argon2")
    assert without_instance(known) == without_instance(unknown)
    assert known.status_code == 401
    for _ in range(ACCOUNT_LIMIT - 1):
        sign_in(client, "no_such_officer", "wrong-Password-9")
    assert sign_in(client, "no_such_officer", "wrong-Password-9").status_code == 429  # unknown names alike


def test_one_source_address_is_limited_across_accounts(app: Any) -> None:
    with TestClient(app, client=("203.0.113.9", 50000)) as guesser, \
            TestClient(app, client=("198.51.100.4", 50000)) as colleague:
        for n in range(ADDRESS_LIMIT):
            assert sign_in(guesser, f"guess_{n}", "x").status_code == 401
        blocked = sign_in(guesser, OFFICER)
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert sign_in(colleague, OFFICER).status_code == 200  # the account itself is not locked


def test_counters_of_ended_windows_are_purged(client: TestClient, clock: FixedClock,
                                              session_factory: sessionmaker[Session]) -> None:
    assert sign_in(client, "someone_forgotten", "x").status_code == 401
    clock.advance(seconds=WINDOW_S)
    assert sign_in(client, "someone_else", "x").status_code == 401  # opens a window: ended ones go
    with session_factory() as session:
        keys = set(session.scalars(select(AttemptCounter.key)))
    assert "someone_forgotten" not in keys and "someone_else" in keys


def test_two_processes_share_the_counters(settings: Settings, clock: FixedClock) -> None:
    """Two apps, each with its own engine and pool on the same database: what one counts, the other sees."""
    first, second = create_app(settings, clock=clock), create_app(settings, clock=clock)
    try:
        with TestClient(first) as one, TestClient(second) as two:
            for _ in range(ACCOUNT_LIMIT):
                assert sign_in(one, OFFICER, "wrong-Password-9").status_code == 401
            assert sign_in(two, OFFICER).status_code == 429

            receipt = submit(one, KEY)
            number = receipt["tracking_no"]
            for client in (one, two, one):
                assert status(client, number, "WRONGCODE").status_code == 404
            assert status(two, number, receipt["query_code"]).status_code == 429
    finally:
        first.state.engine.dispose()
        second.state.engine.dispose()


# --- query codes -------------------------------------------------------------------------------------


def status(client: TestClient | httpx.Client, number: str, code: str) -> httpx.Response:
    return client.get(f"/api/v1/applications/{number}", headers={"X-Query-Code": code})


def test_wrong_query_codes_lock_the_tracking_number_even_for_the_right_code(client: TestClient,
                                                                             clock: FixedClock) -> None:
    receipt = submit(client, KEY)
    number, code = receipt["tracking_no"], receipt["query_code"]
    other = submit(client, KEY)
    for _ in range(CODE_LIMIT):
        assert status(client, number, "WRONGCODE").status_code == 404
    locked = status(client, number, code)
    assert locked.status_code == 429 and locked.headers["retry-after"] == str(WINDOW_S)
    assert locked.json()["type"].endswith("/too-many-attempts")
    headers = {"X-Query-Code": code}
    assert client.post(f"/api/v1/applications/{number}/withdraw", json={"reason": "不办了"},
                       headers=headers).status_code == 429
    assert client.post(f"/api/v1/applications/{number}/supplement", json={"note": "已补正"},
                       headers=headers).status_code == 429
    assert client.post(f"/api/v1/applications/{number}/materials", data={"key": "x"},
                       files={"file": ("a.pdf", b"%PDF-1.4", "application/pdf")}, headers=headers).status_code == 429
    assert status(client, other["tracking_no"], other["query_code"]).status_code == 200  # per tracking number
    clock.advance(seconds=WINDOW_S)
    assert status(client, number, code).status_code == 200


def test_an_unknown_tracking_number_is_answered_like_a_wrong_code(client: TestClient) -> None:
    number = submit(client, KEY)["tracking_no"]
    for _ in range(CODE_LIMIT + 1):  # the refusals and then the 429
        known, unknown = status(client, number, "WRONGCODE"), status(client, UNKNOWN_TRACKING_NO, "WRONGCODE")
        assert without_instance(known) == without_instance(unknown)
    assert known.status_code == 429


def test_the_right_code_does_not_use_the_budget(client: TestClient) -> None:
    receipt = submit(client, KEY)
    for _ in range(CODE_LIMIT * 3):
        assert status(client, receipt["tracking_no"], receipt["query_code"]).status_code == 200
    assert status(client, receipt["tracking_no"], "WRONGCODE").status_code == 404


def test_concurrent_guesses_cannot_pass_the_limit(app: Any, client: TestClient) -> None:
    """Each guess is counted atomically before it is checked: of many simultaneous wrong codes, exactly
    the limit are checked, the rest refused."""
    number = submit(client, KEY)["tracking_no"]
    guesses = 12
    with serving(app) as base_url, httpx.Client(base_url=base_url, timeout=30, trust_env=False) as http, \
            ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda n: status(http, number, f"GUESS{n:03d}").status_code, range(guesses)))
    assert sorted(answers) == [404] * CODE_LIMIT + [429] * (guesses - CODE_LIMIT)
