"""The seed data: deterministic, valid identifiers, consistent across the four registries."""

from __future__ import annotations

from collections import Counter
from datetime import date

from mocks.registries.seed import build_seed
from workflow.identifiers import (
    citizen_id_birth_date,
    citizen_id_gender,
    is_valid_citizen_id,
    is_valid_credit_code,
    validate_organisation_code,
)

SEED = build_seed()


def test_same_seed_gives_identical_data_and_another_seed_differs() -> None:
    build_seed.cache_clear()
    again = build_seed(2026)
    assert again.people == SEED.people
    assert again.organisations == SEED.organisations
    assert build_seed(7).people != SEED.people


def test_there_are_hundreds_of_unique_people_and_organisations() -> None:
    assert len(SEED.people) >= 300
    assert len(SEED.organisations) >= 200
    assert len({p.id_number for p in SEED.people}) == len(SEED.people)
    assert len({o.credit_code for o in SEED.organisations}) == len(SEED.organisations)
    assert len({o.organisation_code for o in SEED.organisations}) == len(SEED.organisations)
    assert len({o.name for o in SEED.organisations}) == len(SEED.organisations)


def test_every_id_number_is_a_valid_liaoning_number_matching_gender_and_birth_date() -> None:
    today = date(2026, 1, 1)
    for person in SEED.people:
        assert is_valid_citizen_id(person.id_number, today=today), person
        assert person.id_number.startswith("21")
        assert citizen_id_gender(person.id_number, today=today) == person.gender
        assert citizen_id_birth_date(person.id_number, today=today) == person.birth_date
        assert person.registered_address.startswith("辽宁省")
        assert 2 <= len(person.name) <= 3


def test_some_people_are_deceased_or_cancelled() -> None:
    statuses = Counter(p.status for p in SEED.people)
    assert statuses["normal"] > statuses["deceased"] >= 5
    assert statuses["cancelled"] >= 3


def test_every_credit_code_is_valid_and_embeds_its_organisation_code() -> None:
    for org in SEED.organisations:
        assert is_valid_credit_code(org.credit_code), org
        assert org.credit_code[2:4] == "21"
        embedded = f"{org.credit_code[8:16]}-{org.credit_code[16]}"
        assert validate_organisation_code(org.organisation_code) == embedded == org.organisation_code


def test_legal_representatives_are_living_adults_of_the_population_registry() -> None:
    for org in SEED.organisations:
        rep = SEED.person(org.legal_representative_id)
        assert rep is not None
        assert rep.name == org.legal_representative_name
        assert rep.status == "normal"
        assert org.established_on.year - rep.birth_date.year >= 18


def test_tax_facts_follow_the_enterprise_status() -> None:
    expected = {"active": "normal", "revoked": "abnormal", "cancelled": "cancelled"}
    for org in SEED.organisations:
        assert org.tax_status == expected[org.status]
        assert (org.valid_to is None) == (org.status == "active")
        assert org.valid_to is None or org.valid_to > org.established_on
    assert sum(o.arrears for o in SEED.organisations) >= 10
    assert Counter(o.status for o in SEED.organisations)["revoked"] >= 5


def test_well_known_fixtures_have_the_promised_facts() -> None:
    assert SEED.normal_person.status == "normal"
    assert SEED.deceased_person.status == "deceased"
    assert SEED.cancelled_person.status == "cancelled"
    assert SEED.active_company.status == "active" and not SEED.active_company.arrears
    assert SEED.active_company.credit_grade == "A"
    assert SEED.active_company.legal_representative_id == SEED.normal_person.id_number
    assert SEED.revoked_company.status == "revoked"
    assert SEED.cancelled_company.status == "cancelled"
    assert SEED.company_with_arrears.status == "active" and SEED.company_with_arrears.arrears
    assert SEED.institution.kind == "institution"
    assert all(o.kind == "enterprise" for o in (SEED.active_company, SEED.revoked_company, SEED.company_with_arrears))


def test_unknown_identifiers_are_valid_but_in_no_registry() -> None:
    assert is_valid_citizen_id(SEED.unknown_id_number)
    assert SEED.person(SEED.unknown_id_number) is None
    assert is_valid_credit_code(SEED.unknown_credit_code)
    assert SEED.organisation(SEED.unknown_credit_code) is None
    assert SEED.organisation_by_code(SEED.unknown_organisation_code) is None


def test_organisations_can_be_found_by_code_with_or_without_hyphen() -> None:
    org = SEED.organisations[10]
    assert SEED.organisation_by_code(org.organisation_code) is org
    assert SEED.organisation_by_code(org.organisation_code.replace("-", "")) is org
