"""The four registries the hub verifies applicants against, built from their endpoints.

    registries = build_registries(RegistryEndpoints(
        population_wsdl=settings.population_wsdl,      # HUB_POPULATION_WSDL
        enterprise_url=settings.enterprise_url,        # HUB_ENTERPRISE_URL
        tax_wsdl=settings.tax_wsdl,                    # HUB_TAX_WSDL
        organisation_url=settings.organisation_url,    # HUB_ORGANISATION_URL
    ))
    check = registries.population.verify_identity(id_number, name, context=LookupContext(actor, purpose, case))
    registries.status()   # ops view: breaker state, latency, error rate per registry

Nothing is fetched when building: WSDLs load on first use, inside the resilience policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.registries._common import AdapterOptions
from adapters.registries.base import (
    EnterpriseRecord,
    EnterpriseRegistry,
    IdentityCheck,
    LookupContext,
    Monitored,
    OrganisationRecord,
    OrganisationRegistry,
    PersonRecord,
    PopulationRegistry,
    TaxRecord,
    TaxRegistry,
)
from adapters.registries.enterprise import HttpEnterpriseRegistry
from adapters.registries.organisation import HttpOrganisationRegistry
from adapters.registries.population import SoapPopulationRegistry
from adapters.registries.tax import SoapTaxRegistry
from adapters.resilience import ResiliencePolicy

__all__ = [
    "AdapterOptions",
    "EnterpriseRecord",
    "EnterpriseRegistry",
    "HttpEnterpriseRegistry",
    "HttpOrganisationRegistry",
    "IdentityCheck",
    "LookupContext",
    "OrganisationRecord",
    "OrganisationRegistry",
    "PersonRecord",
    "PopulationRegistry",
    "Registries",
    "RegistryEndpoints",
    "SoapPopulationRegistry",
    "SoapTaxRegistry",
    "TaxRecord",
    "TaxRegistry",
    "build_registries",
]


@dataclass(frozen=True)
class RegistryEndpoints:
    """Where the registries are: two WSDL URLs and two REST base URLs (without ``/api/...``)."""

    population_wsdl: str
    enterprise_url: str
    tax_wsdl: str
    organisation_url: str


@dataclass
class Registries:
    """The four registries the hub uses; any implementation of the Protocols will do (e.g. fakes in tests)."""

    population: PopulationRegistry
    enterprise: EnterpriseRegistry
    tax: TaxRegistry
    organisation: OrganisationRegistry

    def _members(self) -> dict[str, object]:
        return {"population": self.population, "enterprise": self.enterprise, "tax": self.tax,
                "organisation": self.organisation}

    def status(self) -> dict[str, dict[str, Any]]:
        """Per registry: breaker state, latency p50/p95 (ms) and error rate over recent attempts, counters."""
        return {name: member.status() if isinstance(member, Monitored) else {"breaker": "unknown"}
                for name, member in self._members().items()}

    def close(self) -> None:
        for member in self._members().values():
            close = getattr(member, "close", None)
            if callable(close):
                close()


def build_registries(endpoints: RegistryEndpoints, policy: ResiliencePolicy | None = None,
                     options: AdapterOptions | None = None) -> Registries:
    """The real implementations (zeep for SOAP, httpx for REST), each with its own breaker and cache."""
    return Registries(
        population=SoapPopulationRegistry(endpoints.population_wsdl, policy, options),
        enterprise=HttpEnterpriseRegistry(endpoints.enterprise_url, policy, options),
        tax=SoapTaxRegistry(endpoints.tax_wsdl, policy, options),
        organisation=HttpOrganisationRegistry(endpoints.organisation_url, policy, options),
    )
