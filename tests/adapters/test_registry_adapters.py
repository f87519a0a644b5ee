"""Each adapter against its mock over real sockets: typed answers, not-found, identifiers checked first."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from adapters.errors import InvalidIdentifier, NotFoundInRegistry
from adapters.registries import LookupContext, Registries
from mocks.registries.seed import Seed
from tests.adapters.conftest import FakeClock
from tests.mocks.support import MockControl


def ctx(case: str | None = "21010220260311000017") -> LookupContext:
    return LookupContext(actor="intake.shenyang", purpose="申请人身份核验 (applicant verification)", case=case)


def flip_check(code: str) -> str:
    return code[:-1] + ("0" if code[-1] != "0" else "1")


def test_verify_identity_matches_the_registered_name(registries: Registries, seed: Seed) -> None:
    person = seed.normal_person
    check = registries.population.verify_identity(person.id_number, person.name, context=ctx())
    assert (check.match, check.status, check.verified) == (True, "normal", True)


def test_verify_identity_reports_mismatch_deceased_and_unknown(registries: Registries, seed: Seed) -> None:
    wrong = registries.population.verify_identity(seed.normal_person.id_number, "王某某", context=ctx())
    assert (wrong.match, wrong.verified) == (False, False)
    dead = registries.population.verify_identity(seed.deceased_person.id_number, seed.deceased_person.name,
                                                 context=ctx())
    assert (dead.match, dead.status, dead.verified) == (True, "deceased", False)
    unknown = registries.population.verify_identity(seed.unknown_id_number, "王某某", context=ctx())
    assert (unknown.match, unknown.status) == (False, "not_found")


def test_lookup_person_returns_typed_registered_facts(registries: Registries, seed: Seed) -> None:
    person = seed.cancelled_person
    record = registries.population.lookup_person(person.id_number.lower(), context=ctx())
    assert record.id_number == person.id_number
    assert (record.name, record.gender, record.birth_date) == (person.name, person.gender, person.birth_date)
    assert (record.registered_address, record.status) == (person.registered_address, "cancelled")
    assert record.photo_digest == person.photo_digest


def test_enterprise_lookup_returns_typed_record(registries: Registries, seed: Seed) -> None:
    org = seed.active_company
    record = registries.enterprise.lookup(org.credit_code, context=ctx())
    assert record.name == org.name
    assert record.registered_capital == org.registered_capital
    assert isinstance(record.registered_capital, Decimal)
    assert record.legal_representative == seed.normal_person.name
    assert record.legal_representative_id_number == seed.normal_person.id_number
    assert record.established_on == org.established_on
    assert record.active
    assert registries.enterprise.lookup(seed.revoked_company.credit_code, context=ctx()).status == "revoked"


def test_tax_registration_reports_grade_and_arrears(registries: Registries, seed: Seed) -> None:
    good = registries.tax.registration(seed.active_company.credit_code, context=ctx())
    assert (good.registration_status, good.credit_grade, good.arrears, good.in_good_standing) == (
        "normal", "A", False, True)
    owing = registries.tax.registration(seed.company_with_arrears.credit_code, context=ctx())
    assert owing.arrears and not owing.in_good_standing
    assert owing.tax_office == seed.company_with_arrears.tax_office


@pytest.mark.parametrize("form", ["display", "plain", "credit"])
def test_organisation_lookup_accepts_every_code_form(registries: Registries, seed: Seed, form: str) -> None:
    org = seed.cancelled_company
    code = {"display": org.organisation_code, "plain": org.organisation_code.replace("-", ""),
            "credit": org.credit_code}[form]
    record = registries.organisation.lookup(code, context=ctx())
    assert (record.organisation_code, record.credit_code, record.name) == (
        org.organisation_code, org.credit_code, org.name)
    assert record.valid_to == org.status_changed_on
    assert record.valid_to is not None and not record.valid_on(record.valid_to.replace(year=record.valid_to.year + 1))


@pytest.mark.parametrize("registry", ["population", "enterprise", "tax", "organisation"])
def test_unknown_identifier_is_not_found_in_registry(registries: Registries, seed: Seed, registry: str,
                                                     control: MockControl) -> None:
    calls = {
        "population": lambda: registries.population.lookup_person(seed.unknown_id_number, context=ctx()),
        "enterprise": lambda: registries.enterprise.lookup(seed.unknown_credit_code, context=ctx()),
        "tax": lambda: registries.tax.registration(seed.unknown_credit_code, context=ctx()),
        "organisation": lambda: registries.organisation.lookup(seed.unknown_organisation_code, context=ctx()),
    }
    with pytest.raises(NotFoundInRegistry) as caught:
        calls[registry]()
    assert caught.value.registry == registry
    assert not caught.value.retryable
    assert control.requests(registry) == 1  # not retried
    assert registries.status()[registry]["breaker"] == "closed"


@pytest.mark.parametrize("registry", ["population", "enterprise", "tax", "organisation"])
def test_bad_check_character_raises_invalid_identifier_without_any_request(
        registries: Registries, seed: Seed, registry: str, control: MockControl) -> None:
    calls = {
        "population": lambda: registries.population.verify_identity(
            flip_check(seed.normal_person.id_number), seed.normal_person.name, context=ctx()),
        "enterprise": lambda: registries.enterprise.lookup(flip_check(seed.active_company.credit_code),
                                                           context=ctx()),
        "tax": lambda: registries.tax.registration(flip_check(seed.active_company.credit_code), context=ctx()),
        "organisation": lambda: registries.organisation.lookup(flip_check(seed.active_company.organisation_code),
                                                               context=ctx()),
    }
    with pytest.raises(InvalidIdentifier) as caught:
        calls[registry]()
    assert caught.value.rule == "check_character"
    assert caught.value.registry == registry
    assert control.requests(registry) == 0
    assert registries.status()[registry]["calls"] == 0


def test_an_empty_name_is_refused_before_any_request(registries: Registries, seed: Seed,
                                                     control: MockControl) -> None:
    with pytest.raises(InvalidIdentifier):
        registries.population.verify_identity(seed.normal_person.id_number, "  ", context=ctx())
    assert control.requests("population") == 0


@pytest.mark.parametrize("registry", ["population", "enterprise"])
def test_exchange_identifiers_reach_the_registry(registries: Registries, seed: Seed, registry: str,
                                                 control: MockControl) -> None:
    context = ctx()
    if registry == "population":
        registries.population.verify_identity(seed.normal_person.id_number, seed.normal_person.name,
                                              context=context)
    else:
        registries.enterprise.lookup(seed.active_company.credit_code, context=context)
    recent = control.state(registry)["recent"][-1]
    assert recent["message_id"] == context.message_id
    assert recent["client"] == "ln-approval-hub"
    assert recent["on_behalf_of"] == "intake.shenyang"
    assert recent["case"] == "21010220260311000017"
    assert recent["purpose"] == context.purpose
    assert recent["service"].startswith(registry)


def test_answers_are_cached_until_the_ttl_passes(registries: Registries, seed: Seed, control: MockControl,
                                                 clock: FakeClock) -> None:
    code = seed.active_company.credit_code
    first = registries.tax.registration(code, context=ctx())
    assert registries.tax.registration(code, context=ctx()) == first
    assert control.requests("tax") == 1
    assert registries.status()["tax"]["cache_hits"] == 1
    clock.advance(61)
    registries.tax.registration(code, context=ctx())
    assert control.requests("tax") == 2


def test_failures_are_not_cached(registries: Registries, seed: Seed, control: MockControl) -> None:
    for _ in range(2):
        with pytest.raises(NotFoundInRegistry):
            registries.enterprise.lookup(seed.unknown_credit_code, context=ctx())
    assert control.requests("enterprise") == 2


def test_no_personal_data_reaches_the_logs(registries: Registries, seed: Seed,
                                           caplog: pytest.LogCaptureFixture) -> None:
    person = seed.normal_person
    with caplog.at_level(logging.DEBUG):
        registries.population.lookup_person(person.id_number, context=ctx())
        registries.population.verify_identity(person.id_number, person.name, context=ctx())
        registries.enterprise.lookup(seed.active_company.credit_code, context=ctx())
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert person.id_number not in text
    assert person.name not in text
    assert person.registered_address not in text
    assert seed.active_company.credit_code not in text


def test_lookup_context_requires_actor_and_purpose() -> None:
    with pytest.raises(ValueError):
        LookupContext(actor="", purpose="x")
    with pytest.raises(ValueError):
        LookupContext(actor="officer", purpose=" ")
    assert LookupContext("a", "b").message_id != LookupContext("a", "b").message_id
