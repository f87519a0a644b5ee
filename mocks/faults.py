"""Fault switches and request counters of one mock server.

A mock's request handlers call ``FaultState.admit`` once per operation request; the returned
``Decision`` says how long to stall, whether to fail and whether to garble the answer. The control
API changes the switches at run time. Everything is guarded by a lock because the control plane, the
mock's own event loop and in-process test code may touch the state from different threads.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

WireProtocol = Literal["soap", "rest"]
ErrorKind = Literal["http_5xx", "soap_fault"]
MalformedMode = Literal["syntax", "schema"]

# Developers think in terms of the symptom; map the descriptive names onto the two modes.
MALFORMED_ALIASES: dict[str, MalformedMode] = {
    "syntax": "syntax",
    "invalid_json": "syntax",
    "non_xml": "syntax",
    "schema": "schema",
    "schema_mismatch": "schema",
}
_RECENT = 50


@dataclass(frozen=True)
class Faults:
    """The current switches; the defaults mean "behave normally"."""

    latency_ms: int = 0
    error_rate: float = 0.0
    error: ErrorKind = "http_5xx"
    error_status: int = 503
    malformed: MalformedMode | None = None
    fail_next: int = 0  # the next N requests fail whatever error_rate says (a deterministic error burst)


@dataclass(frozen=True)
class Decision:
    """What to do with one request."""

    latency_s: float
    fail: bool
    error: ErrorKind
    error_status: int
    malformed: MalformedMode | None


@dataclass(frozen=True)
class Exchange:
    """The exchange identifiers a request carried (no personal data: ids, systems and the case number)."""

    operation: str
    message_id: str | None = None
    client: str | None = None
    service: str | None = None
    on_behalf_of: str | None = None
    case: str | None = None
    purpose: str | None = None


class FaultState:
    """Thread-safe switches, counters and the most recent exchange identifiers of one mock."""

    def __init__(self, registry: str, protocol: WireProtocol, *, rng_seed: int = 0) -> None:
        self.registry = registry
        self.protocol = protocol
        self._lock = threading.Lock()
        self._default = Faults(error="soap_fault" if protocol == "soap" else "http_5xx")
        self._faults = self._default
        # A seeded generator makes a given error_rate produce the same pattern on every run.
        self._rng_seed = rng_seed
        self._rng = random.Random(rng_seed)
        self._counts: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._recent: deque[Exchange] = deque(maxlen=_RECENT)
        self.listening = True

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def update(self, changes: dict[str, Any]) -> Faults:
        """Merge ``changes`` into the switches; a value of None restores that switch's default."""
        if changes.get("error") == "soap_fault" and self.protocol != "soap":
            raise ValueError("error 'soap_fault' needs a SOAP mock; this one speaks REST")
        resolved = {key: getattr(self._default, key) if value is None else value for key, value in changes.items()}
        if isinstance(resolved.get("malformed"), str):
            resolved["malformed"] = MALFORMED_ALIASES[resolved["malformed"]]
        with self._lock:
            self._faults = replace(self._faults, **resolved)
            return self._faults

    def clear(self) -> None:
        """Recovery: every switch back to normal (counters are kept; see reset_counts)."""
        with self._lock:
            self._faults = self._default
            self._rng = random.Random(self._rng_seed)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self._injected.clear()
            self._recent.clear()

    def admit(self, exchange: Exchange) -> Decision:
        """Count one operation request and decide which faults it meets."""
        with self._lock:
            faults = self._faults
            self._counts[exchange.operation] += 1
            self._recent.append(exchange)
            fail = faults.fail_next > 0 or (faults.error_rate > 0 and self._rng.random() < faults.error_rate)
            if faults.fail_next > 0:
                self._faults = replace(faults, fail_next=faults.fail_next - 1)
            if faults.latency_ms:
                self._injected["latency"] += 1
            if fail:
                self._injected[faults.error] += 1
            elif faults.malformed:
                self._injected[f"malformed_{faults.malformed}"] += 1
        return Decision(
            latency_s=faults.latency_ms / 1000,
            fail=fail,
            error=faults.error,
            error_status=faults.error_status,
            malformed=None if fail else faults.malformed,
        )

    def count_invalid(self) -> None:
        """A request that broke the contract: counted, but no faults are injected into the answer."""
        with self._lock:
            self._counts["invalid"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "registry": self.registry,
                "protocol": self.protocol,
                "listening": self.listening,
                "faults": asdict(self._faults),
                "requests": {"total": sum(self._counts.values()), "by_operation": dict(self._counts)},
                "injected": dict(self._injected),
                "recent": [asdict(e) for e in self._recent],
            }

    def requests_total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
