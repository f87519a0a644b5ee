"""The partner adapters deliveries are sent with: one adapter (and so one circuit breaker) per partner.

Kept for the life of the worker process: the breaker and the loaded WSDL live in the adapter. An
adapter is rebuilt when its partner's endpoint changes (``hub mocks`` or an operator re-pointing it).
Tests pass their own ``DeliveryClients`` with fakes, or this one with a short policy and a fake clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from adapters.legacy import LegacyDepartment, SoapLegacyDepartment
from adapters.national import NationalResults, SoapNationalResults
from adapters.resilience import Clock, ResiliencePolicy

# Results and pushes are not interactive: a longer timeout than registry look-ups, a few quick retries;
# the delivery schedule (hub.deliveries.service.DeliveryPolicy) handles the long outages.
DELIVERY_POLICY = ResiliencePolicy(timeout_s=10.0, attempts=3, backoff_initial_s=0.2, backoff_max_s=2.0,
                                   breaker_failures=5, breaker_reset_s=60.0, max_concurrency=4)


class DeliveryClients:
    """Builds and keeps the adapter of each partner, keyed by partner code and endpoint."""

    def __init__(self, policy: ResiliencePolicy = DELIVERY_POLICY, *, clock: Clock = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._adapters: dict[str, tuple[str, Any]] = {}

    def national(self, partner: str, endpoint: str) -> NationalResults:
        return self._adapter(partner, endpoint, SoapNationalResults)  # type: ignore[no-any-return]

    def legacy(self, partner: str, endpoint: str) -> LegacyDepartment:
        return self._adapter(partner, endpoint, SoapLegacyDepartment)  # type: ignore[no-any-return]

    def _adapter(self, partner: str, endpoint: str, factory: Any) -> Any:
        with self._lock:
            known = self._adapters.get(partner)
            if known is None or known[0] != endpoint or not isinstance(known[1], factory):
                adapter = factory(partner, endpoint, self.policy, clock=self._clock, sleep=self._sleep)
                known = (endpoint, adapter)
                self._adapters[partner] = known
            return known[1]

    def status(self) -> dict[str, dict[str, Any]]:
        """Breaker state and call statistics per partner (this process only)."""
        with self._lock:
            adapters = dict(self._adapters)
        return {partner: adapter.status() for partner, (_, adapter) in adapters.items()}
