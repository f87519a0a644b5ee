"""Test helpers for the mock registries: start them on free ports and drive their control API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from mocks.runner import RunningMocks, start_all

REGISTRIES = ("population", "enterprise", "tax", "organisation")


class ManualMonotonic:
    """A monotonic clock (breakers, caches) that only moves when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def running_mocks() -> Iterator[RunningMocks]:
    """Every mock on a free loopback port (base_port=0), stopped afterwards."""
    mocks = start_all(host="127.0.0.1", base_port=0)
    try:
        yield mocks
    finally:
        mocks.stop()


class MockControl:
    """The control plane's HTTP API, as a developer would use it with curl."""

    def __init__(self, mocks: RunningMocks) -> None:
        self.mocks = mocks
        self.http = httpx.Client(base_url=mocks.control_url, timeout=60, trust_env=False)

    def state(self, name: str) -> dict[str, Any]:
        return self._ok(self.http.get(f"/{name}"))

    def set_faults(self, name: str, **faults: Any) -> dict[str, Any]:
        return self._ok(self.http.post(f"/{name}/faults", json=faults))

    def refuse(self, name: str, **body: Any) -> dict[str, Any]:
        return self._ok(self.http.post(f"/{name}/refuse", json=body or None))

    def recover(self, name: str) -> dict[str, Any]:
        return self._ok(self.http.post(f"/{name}/recover"))

    def reset_counts(self, name: str) -> dict[str, Any]:
        return self._ok(self.http.post(f"/{name}/reset-counts"))

    def requests(self, name: str) -> int:
        return int(self.state(name)["requests"]["total"])

    def fresh(self) -> None:
        """Every mock listening, without faults, with zeroed counters."""
        self._ok(self.http.post("/recover"))
        for name in REGISTRIES:
            self.reset_counts(name)

    @staticmethod
    def _ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code < 300, response.text
        return dict(response.json())


# One pooled client for raw requests in tests (a new httpx client per request costs ~40 ms of TLS setup).
HTTP = httpx.Client(timeout=60, trust_env=False)
