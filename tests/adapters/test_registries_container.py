"""The container the hub holds: built from endpoints, lazy, and reporting status for the ops view."""

from __future__ import annotations

from datetime import date

from adapters.registries import (
    AdapterOptions,
    IdentityCheck,
    LookupContext,
    PersonRecord,
    Registries,
    RegistryEndpoints,
    build_registries,
)
from adapters.resilience import ResiliencePolicy
from mocks.registries.seed import Seed
from tests.adapters.conftest import FakeClock


def test_building_touches_no_network_even_when_registries_are_unreachable() -> None:
    dead = RegistryEndpoints(population_wsdl="http://127.0.0.1:9/population?wsdl", enterprise_url="http://127.0.0.1:9",
                             tax_wsdl="http://127.0.0.1:9/tax?wsdl", organisation_url="http://127.0.0.1:9")
    registries = build_registries(dead, ResiliencePolicy(), AdapterOptions(clock=FakeClock()))
    status = registries.status()
    assert set(status) == {"population", "enterprise", "tax", "organisation"}
    assert all(entry["breaker"] == "closed" and entry["calls"] == 0 for entry in status.values())
    registries.close()


def test_status_has_the_fields_the_ops_view_shows(registries: Registries, seed: Seed) -> None:
    registries.population.verify_identity(seed.normal_person.id_number, seed.normal_person.name,
                                          context=LookupContext("ops", "status check"))
    entry = registries.status()["population"]
    assert {"breaker", "latency_p50_ms", "latency_p95_ms", "error_rate", "calls", "attempts",
            "fast_failures", "cache_hits", "consecutive_failures", "window"} <= set(entry)
    assert entry["calls"] == 1 and entry["error_rate"] == 0.0
    assert entry["latency_p50_ms"] > 0


class FakePopulation:
    """Any object with the Protocol's methods will do, e.g. in the hub's own tests."""

    def verify_identity(self, id_number: str, name: str, *, context: LookupContext) -> IdentityCheck:
        return IdentityCheck(id_number=id_number, match=True, status="normal")

    def lookup_person(self, id_number: str, *, context: LookupContext) -> PersonRecord:
        return PersonRecord(id_number, "张三", "male", date(1990, 1, 1), "辽宁省", "normal", "0" * 64)


def test_registries_accept_fakes_and_report_them_as_unmonitored(registries: Registries) -> None:
    mixed = Registries(population=FakePopulation(), enterprise=registries.enterprise, tax=registries.tax,
                       organisation=registries.organisation)
    status = mixed.status()
    assert status["population"] == {"breaker": "unknown"}
    assert status["enterprise"]["breaker"] == "closed"
    check = mixed.population.verify_identity("x", "y", context=LookupContext("a", "b"))
    assert check.verified
