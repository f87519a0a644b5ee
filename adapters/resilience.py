"""The one resilience policy for outbound calls: timeout, retries, circuit breaker, bounded concurrency.

Every attempt of every call goes through ``call_with_policy``:

1. take a concurrency slot (at most ``max_concurrency`` calls in flight per registry);
2. ask the registry's ``CircuitBreaker`` (open → fail fast, no network);
3. run the call; the transports enforce ``timeout_s`` (httpx timeouts, zeep ``operation_timeout``);
4. record the outcome in the breaker and the statistics;
5. retry with exponential backoff and jitter (tenacity) only when the error has ``retry_now``
   (timeouts, connection errors, 5xx, SOAP Server faults) — never for 4xx, not-found or malformed
   answers, which would only fail again.

Breakers and caches take an injectable monotonic clock so that tests move time instead of sleeping.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt

from adapters.errors import (
    AdapterError,
    CircuitOpen,
    InvalidIdentifier,
    MalformedResponse,
    NotFoundInRegistry,
    RegistryBusy,
    RegistryRejected,
    RegistryTimeout,
    RegistryUnavailable,
)

__all__ = [
    "AdapterError",
    "BreakerState",
    "CallStats",
    "CircuitBreaker",
    "CircuitOpen",
    "Clock",
    "InvalidIdentifier",
    "MalformedResponse",
    "NotFoundInRegistry",
    "RegistryBusy",
    "RegistryGuard",
    "RegistryRejected",
    "RegistryTimeout",
    "RegistryUnavailable",
    "ResiliencePolicy",
    "backoff_s",
    "call_with_policy",
    "exponential_backoff_s",
]

T = TypeVar("T")
_JITTER = random.Random()
Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class ResiliencePolicy:
    """Numbers of the policy; one instance is shared by all registries unless a caller needs another."""

    timeout_s: float = 2.0
    attempts: int = 3
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    max_concurrency: int = 8

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.backoff_initial_s < 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("timeout must be positive and 0 <= backoff_initial_s <= backoff_max_s")
        if self.attempts < 1 or self.breaker_failures < 1 or self.max_concurrency < 1 or self.breaker_reset_s <= 0:
            raise ValueError("attempts, breaker_failures, max_concurrency and breaker_reset_s must be positive")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """closed → open after ``failure_threshold`` consecutive failures → half-open once ``reset_timeout_s``
    has passed, admitting exactly one trial call → closed on its success, open again on its failure."""

    def __init__(self, failure_threshold: int = 5, reset_timeout_s: float = 30.0, *,
                 clock: Clock = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current()

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failures

    def _current(self) -> BreakerState:
        # Open turns half-open lazily, when someone looks after the reset time.
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
            self._state = BreakerState.HALF_OPEN
            self._trial_in_flight = False
        return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open state only the first caller gets the trial."""
        with self._lock:
            state = self._current()
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def retry_after_s(self) -> float:
        with self._lock:
            if self._current() is not BreakerState.OPEN:
                return 0.0
            # reset - elapsed (not opened + reset - now): the same arithmetic as _current(), so an open
            # breaker never reports zero seconds left through float rounding.
            return self.reset_timeout_s - (self._clock() - self._opened_at)

    def record_success(self) -> None:
        with self._lock:
            state = self._current()
            if state is BreakerState.OPEN:
                return  # a late answer to a call admitted before the breaker opened
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            state = self._current()
            if state is BreakerState.OPEN:
                return
            self._failures += 1
            if state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._trial_in_flight = False


class CallStats:
    """Counters and a sliding window of recent attempts, for the ops view."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, bool]] = deque(maxlen=window)
        self.window = window
        self.calls = 0
        self.attempts = 0
        self.failures = 0
        self.fast_failures = 0
        self.cache_hits = 0

    def call(self) -> None:
        with self._lock:
            self.calls += 1

    def attempt(self, latency_ms: float, failed: bool) -> None:
        with self._lock:
            self.attempts += 1
            self.failures += failed
            self._recent.append((latency_ms, failed))

    def fast_failure(self) -> None:
        with self._lock:
            self.fast_failures += 1

    def cache_hit(self) -> None:
        with self._lock:
            self.cache_hits += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            latencies = sorted(latency for latency, _ in self._recent)
            failed = sum(1 for _, f in self._recent if f)
            return {
                "latency_p50_ms": _percentile(latencies, 50),
                "latency_p95_ms": _percentile(latencies, 95),
                "error_rate": round(failed / len(self._recent), 4) if self._recent else 0.0,
                "window": len(self._recent),
                "calls": self.calls,
                "attempts": self.attempts,
                "failures": self.failures,
                "fast_failures": self.fast_failures,
                "cache_hits": self.cache_hits,
            }


def _percentile(ordered: list[float], pct: int) -> float | None:
    # Nearest-rank: always one of the observed values, and defined for a single sample.
    if not ordered:
        return None
    rank = max(1, -(-pct * len(ordered) // 100))
    return round(ordered[rank - 1], 1)


def exponential_backoff_s(attempt: int, *, initial_s: float, max_s: float, factor: float = 2.0,
                          jitter_s: float = 0.0, jitter_ratio: float = 0.0, rng: random.Random | None = None) -> float:
    """The hub's one backoff formula — registries, AMQP reconnects and requeues, deliveries, the worker's jobs.

    Wait after failed ``attempt`` (1-based; 0 counts as 1): ``initial_s·factor^(attempt-1)`` plus up to
    ``jitter_s`` seconds, capped at ``max_s``; then stretched by up to ``jitter_ratio`` of itself. The
    additive jitter never passes the cap (a caller's maximum stays a maximum); the proportional one spreads
    even capped waits. Jitter keeps many processes from retrying a recovering peer in lockstep; without
    any, the wait is exact."""
    wait = initial_s * factor ** max(0, attempt - 1)
    if jitter_s:
        wait += (rng or _JITTER).uniform(0, jitter_s)
    wait = min(max_s, wait)
    if jitter_ratio:
        wait *= 1 + (rng or _JITTER).uniform(0, jitter_ratio)
    return wait


def backoff_s(policy: ResiliencePolicy, attempt: int, *, rng: random.Random | None = None) -> float:
    """Wait after failed ``attempt`` (1-based) under ``policy``: initial·2^(attempt-1) plus up to ``initial``
    of jitter, capped at backoff_max_s."""
    return exponential_backoff_s(attempt, initial_s=policy.backoff_initial_s, max_s=policy.backoff_max_s,
                                 jitter_s=policy.backoff_initial_s, rng=rng)


def _retry_now(exc: BaseException) -> bool:
    return isinstance(exc, AdapterError) and exc.retry_now


def _attempt(fn: Callable[[], T], registry: str, policy: ResiliencePolicy, breaker: CircuitBreaker,
             limiter: threading.BoundedSemaphore, stats: CallStats) -> T:
    # The slot is taken before asking the breaker so that a half-open trial, once granted, always
    # runs and reports back (otherwise a timed-out slot wait would leave the breaker stuck).
    if not limiter.acquire(timeout=policy.timeout_s):
        raise RegistryBusy(registry)
    try:
        if not breaker.allow():
            stats.fast_failure()
            raise CircuitOpen(registry, breaker.retry_after_s())
        started = time.perf_counter()
        failed = True
        try:
            result = fn()
            failed = False
            return result
        except AdapterError as exc:
            failed = exc.counts_as_failure
            raise
        finally:
            stats.attempt((time.perf_counter() - started) * 1000, failed)
            (breaker.record_failure if failed else breaker.record_success)()
    finally:
        limiter.release()


def call_with_policy(fn: Callable[[], T], *, registry: str, policy: ResiliencePolicy, breaker: CircuitBreaker,
                     limiter: threading.BoundedSemaphore | None = None, stats: CallStats | None = None,
                     sleep: Sleep = time.sleep) -> T:
    """Run ``fn`` (one network exchange, raising AdapterError subclasses) under the policy."""
    stats = stats if stats is not None else CallStats()
    limiter = limiter if limiter is not None else threading.BoundedSemaphore(policy.max_concurrency)
    stats.call()
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=lambda state: backoff_s(policy, state.attempt_number),
        retry=retry_if_exception(_retry_now),
        sleep=sleep,
        reraise=True,
    )
    # A closure rather than (_attempt, *args): through tenacity's `*args: Any` the result type would be lost.
    return retrying(lambda: _attempt(fn, registry, policy, breaker, limiter, stats))


class RegistryGuard:
    """One registry's breaker, concurrency limit and statistics under a shared policy."""

    def __init__(self, registry: str, policy: ResiliencePolicy, *, clock: Clock = time.monotonic,
                 sleep: Sleep = time.sleep, window: int = 100) -> None:
        self.registry = registry
        self.policy = policy
        self.breaker = CircuitBreaker(policy.breaker_failures, policy.breaker_reset_s, clock=clock)
        self.limiter = threading.BoundedSemaphore(policy.max_concurrency)
        self.stats = CallStats(window)
        self._sleep = sleep

    def call(self, fn: Callable[[], T]) -> T:
        return call_with_policy(fn, registry=self.registry, policy=self.policy, breaker=self.breaker,
                                limiter=self.limiter, stats=self.stats, sleep=self._sleep)

    def status(self) -> dict[str, Any]:
        return {"breaker": self.breaker.state.value, "consecutive_failures": self.breaker.consecutive_failures,
                **self.stats.snapshot()}
