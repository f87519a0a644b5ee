"""The resilience policy in isolation: breaker state machine, retry classification, backoff, concurrency."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from adapters.errors import (
    AdapterError,
    CircuitOpen,
    MalformedResponse,
    NotFoundInRegistry,
    RegistryBusy,
    RegistryRejected,
    RegistryTimeout,
    RegistryUnavailable,
)
from adapters.resilience import (
    BreakerState,
    CallStats,
    CircuitBreaker,
    RegistryGuard,
    ResiliencePolicy,
    backoff_s,
    call_with_policy,
    exponential_backoff_s,
)
from tests.adapters.conftest import FakeClock

POLICY = ResiliencePolicy(timeout_s=1.0, attempts=3, backoff_initial_s=0.05, backoff_max_s=1.0,
                          breaker_failures=5, breaker_reset_s=30.0, max_concurrency=2)


class Recorder:
    """A callable that fails with the given errors in turn, then succeeds; records the sleeps between."""

    def __init__(self, *errors: AdapterError) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.sleeps: list[float] = []

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def run(fn: Recorder, breaker: CircuitBreaker | None = None, stats: CallStats | None = None) -> str:
    return call_with_policy(fn, registry="tax", policy=POLICY, breaker=breaker or CircuitBreaker(clock=FakeClock()),
                            stats=stats, sleep=fn.sleep)


def unavailable() -> RegistryUnavailable:
    return RegistryUnavailable.because("tax", "HTTP 503")


# --- retries ---------------------------------------------------------------------------------------


def test_the_defaults_are_the_documented_policy() -> None:
    assert ResiliencePolicy() == ResiliencePolicy(timeout_s=2.0, attempts=3, backoff_initial_s=0.05,
                                                  backoff_max_s=1.0, breaker_failures=5, breaker_reset_s=30.0,
                                                  max_concurrency=8)
    with pytest.raises(ValueError):
        ResiliencePolicy(attempts=0)
    with pytest.raises(ValueError):
        ResiliencePolicy(backoff_initial_s=2.0, backoff_max_s=1.0)


@pytest.mark.parametrize("error", [unavailable(), RegistryTimeout.after("tax", 1.0)])
def test_transient_failures_are_retried_until_success(error: AdapterError) -> None:
    fn = Recorder(error, error)
    assert run(fn) == "ok"
    assert fn.calls == 3


def test_retries_stop_after_the_configured_attempts_and_raise_the_last_error() -> None:
    fn = Recorder(*(unavailable() for _ in range(5)))
    with pytest.raises(RegistryUnavailable):
        run(fn)
    assert fn.calls == POLICY.attempts
    assert len(fn.sleeps) == POLICY.attempts - 1


@pytest.mark.parametrize("error", [
    MalformedResponse.because("tax", "not XML"),
    NotFoundInRegistry.for_identifier("tax", "code"),
    RegistryRejected.because("tax", "HTTP 400"),
])
def test_permanent_failures_are_not_retried(error: AdapterError) -> None:
    fn = Recorder(error)
    with pytest.raises(type(error)):
        run(fn)
    assert fn.calls == 1
    assert fn.sleeps == []


def test_unexpected_exceptions_propagate_unretried_and_count_against_the_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=FakeClock())

    def broken() -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        call_with_policy(broken, registry="tax", policy=POLICY, breaker=breaker, sleep=lambda _: None)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 10])
def test_backoff_grows_exponentially_with_bounded_jitter(attempt: int) -> None:
    rng = random.Random(attempt)
    waits = [backoff_s(POLICY, attempt, rng=rng) for _ in range(50)]
    base = POLICY.backoff_initial_s * 2 ** (attempt - 1)
    for wait in waits:
        assert min(base, POLICY.backoff_max_s) <= wait <= min(base + POLICY.backoff_initial_s, POLICY.backoff_max_s)
    if base + POLICY.backoff_initial_s < POLICY.backoff_max_s:
        assert len(set(waits)) > 1  # jittered


@pytest.mark.parametrize(("attempt", "factor", "expected"), [
    (0, 2.0, 0.5), (1, 2.0, 0.5), (2, 2.0, 1.0), (4, 2.0, 4.0), (5, 2.0, 5.0), (9, 2.0, 5.0), (3, 3.0, 4.5),
])
def test_the_one_backoff_formula_without_jitter_is_exact(attempt: int, factor: float, expected: float) -> None:
    assert exponential_backoff_s(attempt, initial_s=0.5, max_s=5.0, factor=factor) == expected


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12])
def test_additive_jitter_never_passes_the_cap_and_proportional_jitter_spreads_capped_waits(attempt: int) -> None:
    rng = random.Random(attempt)
    base = min(8.0, 1.0 * 2 ** (attempt - 1))
    additive = [exponential_backoff_s(attempt, initial_s=1.0, max_s=8.0, jitter_s=1.0, rng=rng) for _ in range(50)]
    assert all(base <= w <= min(8.0, base + 1.0) for w in additive)
    stretched = [exponential_backoff_s(attempt, initial_s=1.0, max_s=8.0, jitter_ratio=0.2, rng=rng)
                 for _ in range(50)]
    assert all(base <= w <= base * 1.2 for w in stretched) and len(set(stretched)) > 1


def test_the_registry_backoff_is_the_one_formula_with_its_policys_numbers() -> None:
    for attempt in (1, 2, 3, 5, 8):
        expected = exponential_backoff_s(attempt, initial_s=POLICY.backoff_initial_s, max_s=POLICY.backoff_max_s,
                                         jitter_s=POLICY.backoff_initial_s, rng=random.Random(attempt))
        assert backoff_s(POLICY, attempt, rng=random.Random(attempt)) == expected


def test_sleeps_between_attempts_follow_the_backoff() -> None:
    fn = Recorder(unavailable(), unavailable())
    run(fn)
    assert 0.05 <= fn.sleeps[0] <= 0.1
    assert 0.1 <= fn.sleeps[1] <= 0.15


# --- breaker inside the policy -------------------------------------------------------------------


def test_open_breaker_fails_fast_without_calling() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=30, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    fn = Recorder()
    with pytest.raises(CircuitOpen) as caught:
        run(fn, breaker)
    assert fn.calls == 0
    assert caught.value.retry_after_s == pytest.approx(30)
    assert caught.value.retryable and not caught.value.retry_now


def test_breaker_opening_mid_retry_stops_the_retries() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=FakeClock())
    fn = Recorder(*(unavailable() for _ in range(3)))
    with pytest.raises(CircuitOpen):
        run(fn, breaker)
    assert fn.calls == 2


def test_not_found_and_rejections_count_as_the_registry_answering() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=FakeClock())
    breaker.record_failure()
    with pytest.raises(NotFoundInRegistry):
        run(Recorder(NotFoundInRegistry.for_identifier("tax", "code")), breaker)
    assert breaker.consecutive_failures == 0


def test_malformed_answers_count_against_the_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=FakeClock())
    for _ in range(2):
        with pytest.raises(MalformedResponse):
            run(Recorder(MalformedResponse.because("tax", "x")), breaker)
    assert breaker.state is BreakerState.OPEN


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrency_is_bounded_per_registry() -> None:
    policy = ResiliencePolicy(timeout_s=0.05, max_concurrency=2, attempts=1)
    guard = RegistryGuard("tax", policy, clock=FakeClock())
    inside = threading.Barrier(3)  # two workers + the test
    release = threading.Event()

    def blocking() -> str:
        inside.wait(5)
        release.wait(5)
        return "ok"

    workers = [threading.Thread(target=guard.call, args=(blocking,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    inside.wait(5)  # both slots are taken now
    try:
        with pytest.raises(RegistryBusy):
            guard.call(lambda: "never runs")
    finally:
        release.set()
        for worker in workers:
            worker.join(5)
    assert guard.call(lambda: "free again") == "free again"
    assert guard.breaker.state is BreakerState.CLOSED


# --- statistics ----------------------------------------------------------------------------------


def test_stats_report_percentiles_and_error_rate_over_the_window() -> None:
    stats = CallStats(window=4)
    for latency, failed in [(100, True), (10, False), (20, False), (30, True), (40, False)]:
        stats.attempt(latency, failed)
    snapshot = stats.snapshot()
    assert snapshot["window"] == 4  # the first attempt fell out of the window
    assert snapshot["error_rate"] == 0.25
    assert snapshot["latency_p50_ms"] == 20
    assert snapshot["latency_p95_ms"] == 40
    assert snapshot["attempts"] == 5 and snapshot["failures"] == 2


def test_stats_of_an_unused_registry_are_empty() -> None:
    assert CallStats().snapshot()["latency_p50_ms"] is None
    assert CallStats().snapshot()["error_rate"] == 0.0


# --- breaker state machine -----------------------------------------------------------------------


def test_breaker_walks_closed_open_half_open_closed() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout_s=10, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance(9.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # one trial only
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


class BreakerMachine(RuleBasedStateMachine):
    """Random sequences of calls, outcomes and clock moves against a reference model of the breaker."""

    @initialize(threshold=st.integers(min_value=1, max_value=5), reset=st.floats(min_value=1, max_value=60))
    def start(self, threshold: int, reset: float) -> None:
        self.clock = FakeClock()
        self.breaker = CircuitBreaker(threshold, reset, clock=self.clock)
        self.threshold, self.reset = threshold, reset
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.trial = False
        self.in_flight = 0

    def _model_state(self) -> str:
        if self.state == "open" and self.clock.now - self.opened_at >= self.reset:
            self.state, self.trial = "half_open", False
        return self.state

    @rule()
    def attempt(self) -> None:
        state = self._model_state()
        expected = state == "closed" or (state == "half_open" and not self.trial)
        assert self.breaker.allow() == expected
        if expected:
            self.in_flight += 1
            if state == "half_open":
                self.trial = True

    @precondition(lambda self: self.in_flight > 0)
    @rule(success=st.booleans())
    def finish(self, success: bool) -> None:
        self.in_flight -= 1
        state = self._model_state()
        (self.breaker.record_success if success else self.breaker.record_failure)()
        if state == "open":
            return
        if success:
            self.state, self.failures, self.trial = "closed", 0, False
        else:
            self.failures += 1
            if state == "half_open" or self.failures >= self.threshold:
                self.state, self.opened_at, self.trial = "open", self.clock.now, False

    @rule(seconds=st.floats(min_value=0, max_value=90))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def same_state_as_the_model(self) -> None:
        if hasattr(self, "breaker"):
            assert self.breaker.state.value == self._model_state()

    @invariant()
    def open_breaker_admits_nothing_before_reset(self) -> None:
        if hasattr(self, "breaker") and self._model_state() == "open":
            assert self.breaker.retry_after_s() > 0


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_breaker_matches_its_model = BreakerMachine.TestCase


def _never(_: float) -> None:
    raise AssertionError("no sleep expected")


def test_a_success_needs_no_sleep() -> None:
    fn: Callable[[], str] = Recorder()
    assert call_with_policy(fn, registry="tax", policy=POLICY, breaker=CircuitBreaker(clock=FakeClock()),
                            sleep=_never) == "ok"
