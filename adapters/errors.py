"""The one error hierarchy for talking to counterparts.

Three questions decide what the hub does with a failure, so each class answers them as class
attributes:

* ``retryable`` — is it worth trying again *later*? (The hub accepts the application and marks it
  "verification pending" instead of rejecting it.)
* ``retry_now`` — is it worth an immediate retry inside the resilience policy?
* ``counts_as_failure`` — does it say the counterpart is unhealthy (circuit breaker, error rate)?

Messages are for officers: Chinese first, English in brackets. They never contain the identifier or
any other personal data, because they end up in logs and problem responses.
"""

from __future__ import annotations

from typing import ClassVar

REGISTRY_LABELS: dict[str, str] = {
    "population": "人口信息库",
    "enterprise": "企业登记信息库",
    "tax": "税务登记信息库",
    "organisation": "组织机构代码库",
}


def label(registry: str) -> str:
    return REGISTRY_LABELS.get(registry, registry)


class AdapterError(Exception):
    """Base of every adapter failure; ``registry`` names the counterpart."""

    retryable: ClassVar[bool] = False
    retry_now: ClassVar[bool] = False
    counts_as_failure: ClassVar[bool] = False

    def __init__(self, registry: str, message: str) -> None:
        super().__init__(message)
        self.registry = registry
        self.message = message


class RegistryUnavailable(AdapterError):
    """Down, overloaded, answering 5xx or a SOAP Server fault, or retries exhausted."""

    retryable = True
    retry_now = True
    counts_as_failure = True

    @classmethod
    def because(cls, registry: str, reason: str) -> RegistryUnavailable:
        return cls(registry, f"{label(registry)}暂时无法访问，请稍后重试 ({registry} registry unavailable: {reason})")


class RegistryTimeout(RegistryUnavailable):
    """No answer within the policy's timeout."""

    @classmethod
    def after(cls, registry: str, timeout_s: float) -> RegistryTimeout:
        return cls(registry, f"{label(registry)}响应超时 ({registry} registry did not answer within {timeout_s:g} s)")


class CircuitOpen(RegistryUnavailable):
    """The breaker is open: failing fast without touching the network."""

    retry_now = False
    counts_as_failure = False

    def __init__(self, registry: str, retry_after_s: float) -> None:
        super().__init__(
            registry,
            f"{label(registry)}暂时无法访问，已暂停调用 ({registry} registry unavailable: circuit breaker open, "
            f"next trial in {retry_after_s:.1f} s)",
        )
        self.retry_after_s = retry_after_s


class RegistryBusy(RegistryUnavailable):
    """Every concurrency slot for this registry stayed taken for the whole timeout."""

    retry_now = False
    counts_as_failure = False

    def __init__(self, registry: str) -> None:
        super().__init__(registry,
                         f"{label(registry)}调用繁忙，请稍后重试 ({registry} registry: too many concurrent calls)")


class MalformedResponse(AdapterError):
    """The answer broke the contract (not JSON/XML, or not matching the schema). Retrying will not fix it."""

    counts_as_failure = True

    @classmethod
    def because(cls, registry: str, what: str) -> MalformedResponse:
        return cls(registry,
                   f"{label(registry)}返回的数据不符合接口约定 ({registry} registry response malformed: {what})")


class NotFoundInRegistry(AdapterError):
    """The registry answered, and it has no record for the identifier."""

    @classmethod
    def for_identifier(cls, registry: str, what: str) -> NotFoundInRegistry:
        return cls(registry,
                   f"{label(registry)}中未查到该{what}的记录 ({registry} registry has no record for this {what})")


class RegistryRejected(AdapterError):
    """The registry refused our request (HTTP 4xx, SOAP Client fault, WSDL missing): a bug or misconfiguration."""

    @classmethod
    def because(cls, registry: str, reason: str) -> RegistryRejected:
        return cls(registry,
                   f"{label(registry)}拒绝了请求 ({registry} registry rejected the request: {reason})")


class InvalidIdentifier(AdapterError):
    """The identifier failed its check before any call was made; ``rule`` says which rule."""

    def __init__(self, registry: str, message: str, *, rule: str) -> None:
        super().__init__(registry, message)
        self.rule = rule
