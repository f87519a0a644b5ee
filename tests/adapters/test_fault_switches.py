"""Every fault switch of every mock, seen through its adapter: what is retried, what is reported, and how
the circuit breaker opens on a dead registry and closes again after recovery."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from adapters.errors import (
    AdapterError,
    CircuitOpen,
    MalformedResponse,
    RegistryTimeout,
    RegistryUnavailable,
)
from adapters.registries import LookupContext, Registries
from mocks.registries.seed import Seed
from tests.adapters.conftest import TEST_POLICY, FakeClock
from tests.mocks.support import MockControl

REGISTRIES = ["population", "enterprise", "tax", "organisation"]
SOAP = ["population", "tax"]


def known_good_call(registries: Registries, seed: Seed, registry: str) -> Callable[[], object]:
    context = LookupContext(actor="system:verifier", purpose="申请核验 (verification)", case="CASE-1")
    return {
        "population": lambda: registries.population.lookup_person(seed.normal_person.id_number, context=context),
        "enterprise": lambda: registries.enterprise.lookup(seed.active_company.credit_code, context=context),
        "tax": lambda: registries.tax.registration(seed.active_company.credit_code, context=context),
        "organisation": lambda: registries.organisation.lookup(seed.active_company.credit_code, context=context),
    }[registry]


def fails_with(call: Callable[[], object], kind: type[AdapterError]) -> AdapterError:
    with pytest.raises(kind) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("registry", REGISTRIES)
def test_latency_beyond_the_timeout_is_retried_then_reported_as_timeout(
        registries: Registries, seed: Seed, control: MockControl, registry: str) -> None:
    call = known_good_call(registries, seed, registry)
    call()  # loads the WSDL and proves the path works
    _clear_caches(registries)
    control.reset_counts(registry)
    control.set_faults(registry, latency_ms=int(TEST_POLICY.timeout_s * 1000) + 400)
    error = fails_with(call, RegistryTimeout)
    assert error.retryable and error.registry == registry
    assert control.requests(registry) == TEST_POLICY.attempts
    assert "超时" in str(error) and "did not answer" in str(error)


@pytest.mark.parametrize("registry", REGISTRIES)
def test_http_5xx_is_retried_then_reported_unavailable(registries: Registries, seed: Seed,
                                                       control: MockControl, registry: str) -> None:
    control.set_faults(registry, error_rate=1, error="http_5xx", error_status=503)
    error = fails_with(known_good_call(registries, seed, registry), RegistryUnavailable)
    assert type(error) is RegistryUnavailable and error.retryable
    assert control.requests(registry) == TEST_POLICY.attempts
    assert "503" in str(error)


@pytest.mark.parametrize("registry", SOAP)
def test_soap_server_fault_is_retried_then_reported_unavailable(registries: Registries, seed: Seed,
                                                               control: MockControl, registry: str) -> None:
    control.set_faults(registry, error_rate=1, error="soap_fault")
    error = fails_with(known_good_call(registries, seed, registry), RegistryUnavailable)
    assert "SOAP Server fault" in str(error)
    assert control.requests(registry) == TEST_POLICY.attempts


@pytest.mark.parametrize("registry", REGISTRIES)
def test_a_transient_error_is_absorbed_by_a_retry(registries: Registries, seed: Seed, control: MockControl,
                                                  registry: str) -> None:
    control.set_faults(registry, fail_next=TEST_POLICY.attempts - 1)
    known_good_call(registries, seed, registry)()
    assert control.requests(registry) == TEST_POLICY.attempts
    assert registries.status()[registry]["breaker"] == "closed"


@pytest.mark.parametrize("registry", REGISTRIES)
@pytest.mark.parametrize("mode", ["syntax", "schema"])
def test_malformed_answer_is_reported_clearly_and_not_retried(registries: Registries, seed: Seed,
                                                              control: MockControl, registry: str,
                                                              mode: str) -> None:
    control.set_faults(registry, malformed=mode)
    error = fails_with(known_good_call(registries, seed, registry), MalformedResponse)
    assert not error.retryable
    assert control.requests(registry) == 1
    message = str(error)
    assert "不符合接口约定" in message and "malformed" in message
    expected = {
        ("syntax", True): "not XML", ("syntax", False): "not valid JSON",
        ("schema", True): "unexpectedField", ("schema", False): "name",
    }[(mode, registry in SOAP)]
    assert expected in message


@pytest.mark.parametrize("registry", REGISTRIES)
def test_refused_connections_open_the_breaker_which_fails_fast_then_closes_after_recovery(
        registries: Registries, seed: Seed, control: MockControl, clock: FakeClock, registry: str) -> None:
    call = known_good_call(registries, seed, registry)
    call()  # WSDL loaded, breaker closed
    _clear_caches(registries)
    control.refuse(registry)

    # 5 failed attempts open the breaker: 3 in the first call, 2 in the second (whose 3rd attempt fails fast).
    fails_with(call, RegistryUnavailable)
    assert registries.status()[registry]["breaker"] == "closed"
    fails_with(call, CircuitOpen)
    assert registries.status()[registry]["breaker"] == "open"
    attempts = registries.status()[registry]["attempts"]

    # The registry is back, but until the reset time passes nothing touches the network.
    control.recover(registry)
    control.reset_counts(registry)
    error = fails_with(call, CircuitOpen)
    assert error.retryable
    assert control.requests(registry) == 0
    assert registries.status()[registry]["attempts"] == attempts

    clock.advance(TEST_POLICY.breaker_reset_s + 1)
    assert registries.status()[registry]["breaker"] == "half_open"
    call()  # the half-open trial succeeds
    assert control.requests(registry) == 1
    assert registries.status()[registry]["breaker"] == "closed"


@pytest.mark.parametrize("registry", ["population", "enterprise"])
def test_a_failed_half_open_trial_reopens_the_breaker(registries: Registries, seed: Seed, control: MockControl,
                                                      clock: FakeClock, registry: str) -> None:
    call = known_good_call(registries, seed, registry)
    control.set_faults(registry, error_rate=1, error="http_5xx")
    fails_with(call, RegistryUnavailable)
    fails_with(call, CircuitOpen)
    clock.advance(TEST_POLICY.breaker_reset_s + 1)
    control.reset_counts(registry)
    fails_with(call, CircuitOpen)  # trial fails (one request), the retry meets the reopened breaker
    assert control.requests(registry) == 1
    assert registries.status()[registry]["breaker"] == "open"


def test_status_reports_error_rate_and_latency_of_recent_attempts(registries: Registries, seed: Seed,
                                                                  control: MockControl) -> None:
    call = known_good_call(registries, seed, "enterprise")
    call()
    control.set_faults("enterprise", error_rate=1)
    _clear_caches(registries)
    fails_with(call, RegistryUnavailable)
    status = registries.status()["enterprise"]
    assert status["calls"] == 2
    assert status["attempts"] == 1 + TEST_POLICY.attempts
    assert status["error_rate"] == pytest.approx(TEST_POLICY.attempts / (1 + TEST_POLICY.attempts))
    assert status["latency_p50_ms"] is not None and status["latency_p95_ms"] >= status["latency_p50_ms"]


def _clear_caches(registries: Registries) -> None:
    for member in (registries.population, registries.enterprise, registries.tax, registries.organisation):
        member.clear_cache()  # type: ignore[attr-defined]
