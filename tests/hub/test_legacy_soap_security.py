"""WS-Security freshness and sign-in limits of the department-exchange SOAP service, from raw SOAP POSTs:
a UsernameToken needs a Nonce and a Created within the window of the hub's time, a nonce is never
accepted twice, and failed sign-ins lock the account and the address with a TOO_MANY_ATTEMPTS fault."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import FixedClock
from hub.settings import Settings
from hub.throttle.models import SeenNonce
from tests.hub.test_legacy_soap import RawClient, officer, raw_fault
from tests.hub.test_throttle import clear_counters
from tests.servers import serving

OFFICER = "sy_wj_intake"
FETCH = "<d:offset>0</d:offset><d:limit>5</d:limit>"
ACCOUNT_LIMIT, ADDRESS_LIMIT, WINDOW_S, CREATED_WINDOW_S = 3, 5, 600, 300


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "login_account_attempts": ACCOUNT_LIMIT, "login_address_attempts": ADDRESS_LIMIT,
        "login_window_s": WINDOW_S, "wsse_created_window_s": CREATED_WINDOW_S,
    })


@pytest.fixture(autouse=True)
def clean_counters(session_factory: sessionmaker[Session]) -> Iterator[None]:
    clear_counters(session_factory)
    yield
    clear_counters(session_factory)


@pytest.fixture
def hub_url(app: Any, clock: FixedClock) -> Iterator[str]:
    from tests.hub import test_legacy_soap

    with serving(app) as url:
        test_legacy_soap._CLOCKS[url] = clock
        yield url
        test_legacy_soap._CLOCKS.pop(url, None)


@pytest.fixture
def raw(hub_url: str, clock: FixedClock) -> Iterator[RawClient]:
    with httpx.Client(timeout=30, trust_env=False) as http:
        yield RawClient(http, f"{hub_url}/soap/department-exchange?wsdl", clock)


def answer_name(payload: Any) -> str:
    return str(payload.tag).rsplit("}", 1)[-1]


def stamp(clock: FixedClock, **offset: float) -> str:
    return (clock.now() + timedelta(**offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Created and Nonce -----------------------------------------------------------------------------


def test_a_replayed_request_is_refused(raw: RawClient) -> None:
    envelope = raw.envelope("FetchPendingCases", FETCH, username=OFFICER)
    status, payload = raw.post_envelope("FetchPendingCases", envelope)
    assert status == 200 and answer_name(payload) == "FetchPendingCasesResponse"
    status, payload = raw.post_envelope("FetchPendingCases", envelope)  # the same bytes again
    fault = raw_fault(payload)
    assert status == 500 and fault["faultcode"] == "soap:Client"
    assert (fault["code"], fault["rule"], fault["field"]) == ("UNAUTHENTICATED", "nonce_reused", "wsse:Nonce")
    assert fault["faultstring"] == "用户名令牌的 Nonce 已使用过，疑似重放 [nonce_reused]"
    assert "already used" in fault["message"]
    # The same nonce with a new Created is the same replay; a new nonce is a new request.
    _, payload = raw.post("FetchPendingCases", FETCH, username=OFFICER,
                          nonce=envelope.split(b"<wsse:Nonce>")[1].split(b"<")[0].decode())
    assert raw_fault(payload)["rule"] == "nonce_reused"
    status, _ = raw.post("FetchPendingCases", FETCH, username=OFFICER)
    assert status == 200


def test_a_token_without_nonce_and_created_is_refused(raw: RawClient) -> None:
    _, payload = raw.post("FetchPendingCases", FETCH, username=OFFICER, freshness=False)
    fault = raw_fault(payload)
    assert (fault["code"], fault["rule"]) == ("UNAUTHENTICATED", "token_freshness")
    assert "Nonce" in fault["faultstring"] and "Created" in fault["faultstring"]
    assert fault["faultstring"].endswith(" [token_freshness]")


def test_created_must_be_within_the_window_of_the_hubs_time(raw: RawClient, clock: FixedClock) -> None:
    for offset in (-CREATED_WINDOW_S - 1, CREATED_WINDOW_S + 1):
        _, payload = raw.post("FetchPendingCases", FETCH, username=OFFICER, created=stamp(clock, seconds=offset))
        fault = raw_fault(payload)
        assert (fault["code"], fault["rule"], fault["field"]) == ("UNAUTHENTICATED", "created_window", "wsu:Created")
    _, payload = raw.post("FetchPendingCases", FETCH, username=OFFICER, created="yesterday")
    assert raw_fault(payload)["rule"] == "created_format"
    for offset in (-CREATED_WINDOW_S + 10, CREATED_WINDOW_S - 10):  # clocks a little apart are fine
        status, _ = raw.post("FetchPendingCases", FETCH, username=OFFICER, created=stamp(clock, seconds=offset))
        assert status == 200


def test_a_captured_request_is_stale_once_the_window_has_passed(raw: RawClient, clock: FixedClock,
                                                               session_factory: sessionmaker[Session]) -> None:
    envelope = raw.envelope("FetchPendingCases", FETCH, username=OFFICER)
    assert raw.post_envelope("FetchPendingCases", envelope)[0] == 200
    clock.advance(seconds=CREATED_WINDOW_S * 2 + 1)
    assert raw_fault(raw.post_envelope("FetchPendingCases", envelope)[1])["rule"] == "created_window"
    # The next request purges nonces whose tokens can no longer be fresh.
    assert raw.post("FetchPendingCases", FETCH, username=OFFICER)[0] == 200
    with session_factory() as session:
        stale = session.scalar(select(func.count()).select_from(SeenNonce).where(SeenNonce.expires_at <= clock.now()))
        assert stale == 0


def test_the_zeep_client_of_the_legacy_mock_sends_fresh_tokens(hub_url: str) -> None:
    intake = officer(hub_url, OFFICER)
    first, second = intake.fetch_pending_cases(limit=5), intake.fetch_pending_cases(limit=5)
    assert first.total == second.total  # two requests, two nonces: both accepted


# --- sign-in limits ----------------------------------------------------------------------------------


def test_failed_sign_ins_lock_the_account_with_a_clear_fault(raw: RawClient, clock: FixedClock) -> None:
    for _ in range(ACCOUNT_LIMIT):
        _, payload = raw.post("FetchPendingCases", FETCH, username=OFFICER, password="wrong-Password-9")
        assert raw_fault(payload)["code"] == "UNAUTHENTICATED"
    status, payload = raw.post("FetchPendingCases", FETCH, username=OFFICER)  # right password, too late
    fault = raw_fault(payload)
    assert status == 500 and fault["faultcode"] == "soap:Client"
    assert (fault["code"], fault["rule"]) == ("TOO_MANY_ATTEMPTS", "too_many_attempts")
    assert fault["faultstring"] == f"登录失败次数过多，请 {WINDOW_S} 秒后再试 [too_many_attempts]"
    assert f"retry after {WINDOW_S} s" in fault["message"]
    clock.advance(seconds=WINDOW_S)
    assert raw.post("FetchPendingCases", FETCH, username=OFFICER)[0] == 200


def test_rest_and_soap_count_the_same_accounts_failures(client: Any, raw: RawClient) -> None:
    for _ in range(ACCOUNT_LIMIT):
        assert client.post("/api/v1/auth/token",
                           data={"username": OFFICER, "password": "wrong-Password-9"}).status_code == 401
    _, payload = raw.post("FetchPendingCases", FETCH, username=OFFICER)
    assert raw_fault(payload)["code"] == "TOO_MANY_ATTEMPTS"


def test_one_address_is_limited_across_accounts(raw: RawClient) -> None:
    for n in range(ADDRESS_LIMIT):
        _, payload = raw.post("FetchPendingCases", FETCH, username=f"guess_{n}", on_behalf_of=f"guess_{n}")
        assert raw_fault(payload)["code"] == "UNAUTHENTICATED"
    _, payload = raw.post("FetchPendingCases", FETCH, username="sy_wj_approver")
    assert raw_fault(payload)["code"] == "TOO_MANY_ATTEMPTS"
