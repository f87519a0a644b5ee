"""The hub's one ``Registries`` container: built from settings once per process, closed on shutdown.

A registry whose setting is empty is *not configured*: its slot holds an ``UnconfiguredRegistry`` that
raises ``RegistryNotConfigured`` without touching the network, so verification records
``not_configured`` for it. With none of the four configured the container is ``None`` altogether.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, ClassVar

from fastapi import Depends, FastAPI, Request

from adapters.errors import AdapterError, label
from adapters.registries import (
    AdapterOptions,
    HttpEnterpriseRegistry,
    HttpOrganisationRegistry,
    Registries,
    SoapPopulationRegistry,
    SoapTaxRegistry,
)
from adapters.resilience import ResiliencePolicy
from hub.settings import Settings

REGISTRY_NAMES = ("population", "enterprise", "tax", "organisation")


class RegistryNotConfigured(AdapterError):
    """No endpoint is set for this registry (HUB_POPULATION_WSDL and friends)."""

    def __init__(self, registry: str) -> None:
        super().__init__(registry, f"{label(registry)}未接入 ({registry} registry not configured)")


class UnconfiguredRegistry:
    """Stands in for a registry without endpoint: every look-up raises RegistryNotConfigured."""

    configured: ClassVar[bool] = False

    def __init__(self, registry: str) -> None:
        self.registry = registry

    def verify_identity(self, id_number: str, name: str, *, context: Any) -> Any:
        raise RegistryNotConfigured(self.registry)

    def lookup_person(self, id_number: str, *, context: Any) -> Any:
        raise RegistryNotConfigured(self.registry)

    def lookup(self, code: str, *, context: Any) -> Any:
        raise RegistryNotConfigured(self.registry)

    def registration(self, credit_code: str, *, context: Any) -> Any:
        raise RegistryNotConfigured(self.registry)

    def status(self) -> dict[str, Any]:
        return {"breaker": "not_configured"}

    def close(self) -> None:
        """Nothing to release."""


def endpoints_of(settings: Settings) -> dict[str, str | None]:
    return {"population": settings.population_wsdl, "enterprise": settings.enterprise_url,
            "tax": settings.tax_wsdl, "organisation": settings.organisation_url}


def interactive_policy(settings: Settings) -> ResiliencePolicy:
    """For API requests: short, so that a slow registry never holds a submission for long."""
    return ResiliencePolicy(timeout_s=settings.registry_timeout_s, attempts=settings.registry_attempts,
                            breaker_failures=settings.registry_breaker_failures,
                            breaker_reset_s=settings.registry_breaker_reset_s)


def worker_policy(settings: Settings) -> ResiliencePolicy:
    """For the worker's re-verification: nobody waits on it, so it may be patient."""
    return ResiliencePolicy(timeout_s=settings.registry_worker_timeout_s, attempts=settings.registry_worker_attempts,
                            breaker_failures=settings.registry_breaker_failures,
                            breaker_reset_s=settings.registry_breaker_reset_s)


def build_from_settings(settings: Settings, *, worker: bool = False,
                        options: AdapterOptions | None = None) -> Registries | None:
    """The configured registries, or None when none of the four endpoints is set. Touches no network."""
    urls = endpoints_of(settings)
    if not any(urls.values()):
        return None
    policy = worker_policy(settings) if worker else interactive_policy(settings)
    opts = options or AdapterOptions(cache_ttl_s=settings.registry_cache_ttl_s)
    population, enterprise, tax, organisation = (urls[name] for name in REGISTRY_NAMES)
    return Registries(
        population=SoapPopulationRegistry(population, policy, opts) if population
        else UnconfiguredRegistry("population"),  # type: ignore[arg-type]
        enterprise=HttpEnterpriseRegistry(enterprise, policy, opts) if enterprise
        else UnconfiguredRegistry("enterprise"),  # type: ignore[arg-type]
        tax=SoapTaxRegistry(tax, policy, opts) if tax else UnconfiguredRegistry("tax"),  # type: ignore[arg-type]
        organisation=HttpOrganisationRegistry(organisation, policy, opts) if organisation
        else UnconfiguredRegistry("organisation"),  # type: ignore[arg-type]
    )


def member(registries: Registries | None, name: str) -> Any:
    return None if registries is None else getattr(registries, name)


def is_configured(registries: Registries | None, name: str) -> bool:
    found = member(registries, name)
    return found is not None and not isinstance(found, UnconfiguredRegistry)


def install(app: FastAPI, settings: Settings, registries: Registries | None) -> None:
    """Put the container on app.state; one the app built itself is closed when the app shuts down."""
    app.state.owns_registries = registries is None
    app.state.registries = registries if registries is not None else build_from_settings(settings)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        registries = getattr(app.state, "registries", None)
        if registries is not None and getattr(app.state, "owns_registries", False):
            registries.close()


async def get_registries(request: Request) -> Registries | None:
    return getattr(request.app.state, "registries", None)


RegistriesDep = Annotated[Registries | None, Depends(get_registries)]
