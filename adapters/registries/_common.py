"""Plumbing every registry adapter shares: identifier checks, the guard, the cache, exchange identifiers."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

from pydantic import BaseModel, ValidationError

from adapters.cache import TtlCache
from adapters.errors import InvalidIdentifier, MalformedResponse
from adapters.http import DEFAULT_CLIENT_ID, exchange_headers
from adapters.registries.base import LookupContext
from adapters.resilience import Clock, RegistryGuard, ResiliencePolicy
from workflow.identifiers import IdentifierError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def checked(registry: str, validate: Callable[[str], str], value: str) -> str:
    """The normalised identifier, or InvalidIdentifier (bilingual, without echoing the value)."""
    try:
        return validate(value)
    except IdentifierError as exc:
        raise InvalidIdentifier(registry, str(exc), rule=exc.rule) from None


def parse_wire(model: type[M], data: Any, registry: str) -> M:
    """Validate a decoded JSON answer; the error names the fields and rules, never the values."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)[:3]
        ]
        raise MalformedResponse.because(registry, "; ".join(problems)) from None


@dataclass(frozen=True)
class AdapterOptions:
    """What the adapters take besides the policy; tests inject the clock (and a no-op sleep)."""

    clock: Clock = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    cache_ttl_s: float = 60.0
    client_id: str = DEFAULT_CLIENT_ID


class RegistryAdapter:
    """Base of the four implementations: guard (breaker, retries, limits, stats) and a TTL cache."""

    registry: ClassVar[str]

    def __init__(self, policy: ResiliencePolicy | None = None, options: AdapterOptions | None = None) -> None:
        self.policy = policy or ResiliencePolicy()
        opts = options or AdapterOptions()
        self.guard = RegistryGuard(self.registry, self.policy, clock=opts.clock, sleep=opts.sleep)
        self._cache: TtlCache[Hashable, object] = TtlCache(opts.cache_ttl_s, clock=opts.clock)
        self._client_id = opts.client_id

    def _cached(self, key: Hashable, fetch: Callable[[], T]) -> T:
        hit = self._cache.get(key)
        if hit is not None:
            self.guard.stats.cache_hit()
            return cast(T, hit)
        value = self.guard.call(fetch)
        self._cache.put(key, value)
        return value

    def _http_headers(self, context: LookupContext, service: str) -> dict[str, str]:
        return exchange_headers(message_id=context.message_id, client=self._client_id, service=service,
                                on_behalf_of=context.actor, purpose=context.purpose, case=context.case)

    def _soap_exchange(self, context: LookupContext, service: str) -> dict[str, str]:
        header = {"messageId": context.message_id, "client": self._client_id, "service": service,
                  "onBehalfOf": context.actor, "purpose": context.purpose}
        if context.case:
            header["case"] = context.case
        return header

    def status(self) -> dict[str, Any]:
        return {**self.guard.status(), "cache_entries": len(self._cache)}

    def clear_cache(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        """Release connections; the base holds none."""
