"""An independent SOAP client (raw HTTP + lxml, no zeep) gets the same answers as the zeep adapters."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from adapters.errors import NotFoundInRegistry
from adapters.registries import LookupContext, Registries
from mocks.registries.seed import Seed
from mocks.runner import RunningMocks
from tests.adapters.raw_soap import RawFault, Service, call, read_wsdl


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def population(http: httpx.Client, mocks: RunningMocks) -> Service:
    return read_wsdl(http, mocks.population_wsdl)


@pytest.fixture(scope="module")
def tax(http: httpx.Client, mocks: RunningMocks) -> Service:
    return read_wsdl(http, mocks.tax_wsdl)


def ctx() -> LookupContext:
    return LookupContext(actor="tester", purpose="cross-check")


def test_the_wsdl_tells_the_raw_client_where_and_how_to_call(population: Service, tax: Service,
                                                             mocks: RunningMocks) -> None:
    assert population.address == mocks.endpoint("population").service_url
    assert set(population.operations) == {"VerifyIdentity", "LookupPerson"}
    assert population.operations["LookupPerson"].soap_action == "urn:ln:registry:population:v1/LookupPerson"
    assert tax.operations["GetTaxRegistration"].request_element == "GetTaxRegistration"


@pytest.mark.parametrize("who", ["normal", "deceased", "wrong-name", "unknown"])
def test_verify_identity_answers_agree(http: httpx.Client, population: Service, registries: Registries,
                                       seed: Seed, who: str) -> None:
    number, name = {
        "normal": (seed.normal_person.id_number, seed.normal_person.name),
        "deceased": (seed.deceased_person.id_number, seed.deceased_person.name),
        "wrong-name": (seed.normal_person.id_number, "王某某"),
        "unknown": (seed.unknown_id_number, "王某某"),
    }[who]
    raw = call(http, population, "VerifyIdentity", {"idNumber": number, "name": name})
    adapter = registries.population.verify_identity(number, name, context=ctx())
    assert raw["match"] == ("true" if adapter.match else "false")
    assert raw["status"] == {"not_found": "notFound"}.get(adapter.status, adapter.status)


@pytest.mark.parametrize("index", [0, 1, 2, 50, 399])
def test_lookup_person_answers_agree(http: httpx.Client, population: Service, registries: Registries,
                                     seed: Seed, index: int) -> None:
    number = seed.people[index].id_number
    raw = call(http, population, "LookupPerson", {"idNumber": number})
    record = registries.population.lookup_person(number, context=ctx())
    assert raw == {
        "name": record.name, "gender": record.gender, "birthDate": record.birth_date.isoformat(),
        "registeredAddress": record.registered_address, "status": record.status, "photoDigest": record.photo_digest,
    }


def test_unknown_person_is_a_not_found_fault_for_both(http: httpx.Client, population: Service,
                                                      registries: Registries, seed: Seed) -> None:
    with pytest.raises(RawFault) as raw:
        call(http, population, "LookupPerson", {"idNumber": seed.unknown_id_number})
    assert (raw.value.faultcode, raw.value.registry_code) == ("soap:Client", "NOT_FOUND")
    with pytest.raises(NotFoundInRegistry):
        registries.population.lookup_person(seed.unknown_id_number, context=ctx())


@pytest.mark.parametrize("which", ["active_company", "revoked_company", "cancelled_company",
                                   "company_with_arrears", "institution"])
def test_tax_registration_answers_agree(http: httpx.Client, tax: Service, registries: Registries, seed: Seed,
                                        which: str) -> None:
    code = getattr(seed, which).credit_code
    raw = call(http, tax, "GetTaxRegistration", {"creditCode": code})
    record = registries.tax.registration(code, context=ctx())
    assert raw == {
        "creditCode": record.credit_code, "taxpayerName": record.taxpayer_name,
        "registrationStatus": record.registration_status, "taxOffice": record.tax_office,
        "creditGrade": record.credit_grade, "arrears": "true" if record.arrears else "false",
    }
