"""What a verified registry check waives, seen by an applicant and an officer over HTTP: only the
materials about the subject the registry verified — not the spouse's ID card or the household
registers of a marriage, not the shareholders' or the management's proofs of a new enterprise, not
staff qualifications or a qualification certificate."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from hub.catalog.models import Item
from hub.catalog.schemas import ItemWrite
from hub.catalog.service import write_item
from hub.clock import FixedClock
from hub.seed.service import read_form, read_seed
from mocks.registries.seed import Seed
from tests.conftest import Officers
from tests.hub.test_verification import apply, firm, someone
from tests.support import example_form, item_code, officer_of


def view(client: TestClient, key: str, tracking_no: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/cases/{tracking_no}", headers=Officers(client).headers(officer_of(key, "intake")))
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize(("key", "who", "checks", "waived", "still_asked_for"), [
    # Only the applicant is looked up: the other party's ID card and both household registers are not waived.
    ("marriage-registration", "person", {"population.applicant": "verified"}, set(), {"id_cards"}),
    # The applicant enterprise and nobody else: shareholders and the new company's management are not checked.
    ("enterprise-establishment", "company", {"enterprise.applicant": "verified"}, set(),
     {"investor_id", "officer_appointment"}),
    ("human-resources-service-licence", "company", {"enterprise.applicant": "verified"}, {"business_licence"},
     {"staff_qualifications"}),
    ("physician-practice-registration", "person", {"population.applicant": "verified"}, {"id_card"},
     {"qualification_certificate"}),
    ("food-business-licence", "company",
     {"enterprise.applicant": "verified", "population.legal_representative": "verified"},
     {"business_licence", "legal_rep_id"}, {"premises_layout"}),
])
def test_a_verified_check_waives_only_the_materials_about_its_subject(
        key: str, who: str, checks: dict[str, str], waived: set[str], still_asked_for: set[str],
        hub: TestClient, seed: Seed) -> None:
    applicant = someone(seed.normal_person) if who == "person" else firm(seed.active_company)
    receipt = apply(hub, key, applicant)
    assert receipt["verification"] == "verified"
    assert {m["key"] for m in receipt["materials"] if m["replaced_by_registry"]} == waived
    case = view(hub, key, receipt["tracking_no"])
    assert {v["check"]: v["outcome"] for v in case["verifications"]} == checks
    assert still_asked_for <= set(case["missing_materials"])
    assert not waived & set(case["missing_materials"])


def test_a_material_about_the_applicant_replaceable_by_tax_still_gets_the_tax_check(
        hub: TestClient, seed: Seed, session_factory: sessionmaker[Session], clock: FixedClock) -> None:
    # No demo item has one any more (the real-estate tax receipt is about the transfer); a catalogue
    # entry that does still gets the applicant's tax registration checked and waived.
    row = next(r for r in read_seed("items") if r["key"] == "real-estate-transfer-registration")
    data = {k: v for k, v in row.items() if k != "form"}
    data.update(key="tax-registration-test-item", sub_item="097", form_schema=read_form(row["form"]), materials=[
        *row["materials"],
        {"key": "tax_registration", "name": "税务登记证明", "form": "copy", "count": 1, "required": True,
         "subject": "applicant", "replaceable_by": "tax"},
    ])
    with session_factory() as session:
        write_item(session, data=ItemWrite.model_validate(data), now=clock.now())
        session.commit()
    try:
        body = {"item_code": item_code(hub, "tax-registration-test-item"), "applicant": firm(seed.active_company),
                "form": example_form("real-estate-transfer-registration")}
        receipt = hub.post("/api/v1/applications", json=body)
        assert receipt.status_code == 201, receipt.text
        assert {m["key"] for m in receipt.json()["materials"] if m["replaced_by_registry"]} == {
            "business_licence", "tax_registration"}
        arrears = dict(body, applicant=firm(seed.company_with_arrears))
        failed = hub.post("/api/v1/applications", json=arrears).json()
        assert failed["verification"] == "failed"
        assert not any(m["replaced_by_registry"] and m["key"] == "tax_registration" for m in failed["materials"])
    finally:
        with session_factory() as session:  # out of the catalogue again: other tests count its items
            session.execute(update(Item).where(Item.key == "tax-registration-test-item").values(active=False))
            session.commit()
