"""What the SOAP adapters for partner systems share (national systems, departments' legacy systems).

Each adapter instance owns one ``RegistryGuard`` — timeout, tenacity retries with backoff and jitter
for retryable failures only, and a circuit breaker — so the hub keeps one adapter per partner and
gets one breaker per partner. Every call carries the exchange identifiers (DESIGN §5) in the SOAP
``Exchange`` header and in the ``X-*`` HTTP headers; the message id is the caller's, reused by every
retry of one exchange, so the partner can recognise a repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from adapters.http import DEFAULT_CLIENT_ID, exchange_headers
from adapters.resilience import Clock, RegistryGuard, ResiliencePolicy
from adapters.soap import call_operation, load_endpoint


@dataclass(frozen=True)
class OutboundContext:
    """One exchange: its message id (a UUID, the same on every retry), on whose behalf, which case."""

    message_id: str
    on_behalf_of: str
    case: str | None = None

    def __post_init__(self) -> None:
        if not self.message_id or not self.on_behalf_of.strip():
            raise ValueError("an outbound exchange needs a message id and on whose behalf it is made")


@dataclass(frozen=True)
class Receipt:
    """The partner's acknowledgement: its id for what it received, and whether it had it already."""

    id: str
    duplicate: bool = False


class SoapPartnerAdapter:
    """Base of the partner adapters: the WSDL (loaded once, inside the guarded call so that a partner
    that is down at start-up counts as down) and the guard."""

    service: ClassVar[str]  # the contract's name, used in the exchange identifiers
    purpose: ClassVar[str]

    def __init__(self, partner: str, wsdl_url: str, policy: ResiliencePolicy | None = None, *,
                 clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 client_id: str = DEFAULT_CLIENT_ID, endpoint_url: str | None = None) -> None:
        self.partner = partner
        self.wsdl_url = wsdl_url
        self.endpoint_url = endpoint_url
        self.policy = policy or ResiliencePolicy()
        self.guard = RegistryGuard(partner, self.policy, clock=clock, sleep=sleep)
        self._client_id = client_id

    def _call(self, operation: str, context: OutboundContext, *, what: str, **params: Any) -> Any:
        service = f"{self.service}.{operation}"
        header = {"messageId": context.message_id, "client": self._client_id, "service": service,
                  "onBehalfOf": context.on_behalf_of}
        if context.case:
            header["case"] = context.case
        http_headers = exchange_headers(message_id=context.message_id, client=self._client_id, service=service,
                                        on_behalf_of=context.on_behalf_of, purpose=self.purpose, case=context.case)

        def once() -> Any:
            endpoint = load_endpoint(self.wsdl_url, registry=self.partner, timeout_s=self.policy.timeout_s,
                                     endpoint_url=self.endpoint_url)
            return call_operation(endpoint, operation, registry=self.partner, what=what,
                                  timeout_s=self.policy.timeout_s, http_headers=http_headers,
                                  soap_headers={"exchange": header}, **params)

        return self.guard.call(once)

    def status(self) -> dict[str, Any]:
        return {"partner": self.partner, **self.guard.status()}
