"""The REST mocks (enterprise, organisation code): answers, problems, consistency with the other registries."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from mocks.registries.seed import Seed
from mocks.runner import RunningMocks
from tests.mocks.support import HTTP


def get(url: str) -> httpx.Response:
    return HTTP.get(url)


def test_enterprise_lookup_returns_every_registered_fact(mocks: RunningMocks, seed: Seed) -> None:
    org = seed.active_company
    response = get(f"{mocks.enterprise_url}/api/enterprises/{org.credit_code}")
    assert response.status_code == 200
    body = response.json()
    assert body["credit_code"] == org.credit_code
    assert body["name"] == org.name
    assert body["legal_representative"] == {"name": seed.normal_person.name, "id_number": seed.normal_person.id_number}
    assert Decimal(body["registered_capital"]) == org.registered_capital
    assert isinstance(body["registered_capital"], str)
    assert body["status"] == "active"
    assert body["established_on"] == org.established_on.isoformat()
    assert set(body) >= {"type", "address", "business_scope"}


def test_enterprise_statuses_include_revoked_and_cancelled(mocks: RunningMocks, seed: Seed) -> None:
    for org, status in ((seed.revoked_company, "revoked"), (seed.cancelled_company, "cancelled")):
        assert get(f"{mocks.enterprise_url}/api/enterprises/{org.credit_code}").json()["status"] == status


def test_unknown_enterprise_is_a_404_problem(mocks: RunningMocks, seed: Seed) -> None:
    for code in (seed.unknown_credit_code, seed.institution.credit_code):
        response = get(f"{mocks.enterprise_url}/api/enterprises/{code}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 404


def test_credit_code_with_wrong_check_character_is_a_400_problem(mocks: RunningMocks, seed: Seed) -> None:
    code = seed.active_company.credit_code
    broken = code[:17] + ("0" if code[17] != "0" else "1")
    response = get(f"{mocks.enterprise_url}/api/enterprises/{broken}")
    assert response.status_code == 400
    assert response.json()["type"].endswith("invalid-identifier")


@pytest.mark.parametrize("form", ["display", "plain", "credit"])
def test_organisation_lookup_accepts_each_code_form(mocks: RunningMocks, seed: Seed, form: str) -> None:
    org = seed.revoked_company
    code = {"display": org.organisation_code, "plain": org.organisation_code.replace("-", ""),
            "credit": org.credit_code}[form]
    response = get(f"{mocks.organisation_url}/api/organisations/{code}")
    assert response.status_code == 200
    body = response.json()
    assert body == {"organisation_code": org.organisation_code, "credit_code": org.credit_code, "name": org.name,
                    "type": "企业法人", "valid_from": org.established_on.isoformat(),
                    "valid_to": org.status_changed_on.isoformat() if org.status_changed_on else None}
    assert body["valid_to"] is not None


def test_institutions_are_known_to_the_organisation_registry(mocks: RunningMocks, seed: Seed) -> None:
    body = get(f"{mocks.organisation_url}/api/organisations/{seed.institution.organisation_code}").json()
    assert body["type"] == "事业单位"
    assert body["valid_to"] is None


def test_organisation_lookup_rejects_bad_codes_and_reports_unknown(mocks: RunningMocks, seed: Seed) -> None:
    assert get(f"{mocks.organisation_url}/api/organisations/12345678-0").status_code in (400, 404)
    assert get(f"{mocks.organisation_url}/api/organisations/ABC").status_code == 400
    response = get(f"{mocks.organisation_url}/api/organisations/{seed.unknown_organisation_code}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_the_same_organisation_has_the_same_name_in_all_registries(mocks: RunningMocks, seed: Seed) -> None:
    for org in seed.enterprises[:20]:
        enterprise = get(f"{mocks.enterprise_url}/api/enterprises/{org.credit_code}").json()
        organisation = get(f"{mocks.organisation_url}/api/organisations/{org.credit_code}").json()
        assert enterprise["name"] == organisation["name"] == org.name
        assert organisation["organisation_code"] == f"{org.credit_code[8:16]}-{org.credit_code[16]}"
