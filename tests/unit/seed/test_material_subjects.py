"""The demo catalogue says whom each material concerns, and a registry check waives only a material
about the subject that registry verified (the applicant, or the applicant enterprise's legal
representative) — never the spouse's, shareholders', staff's documents or a qualification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hub.catalog.schemas import MaterialSpec

DATA = Path(__file__).resolve().parents[3] / "hub" / "seed" / "data"
SUBJECTS = {"applicant", "legal_representative", "both_parties", "shareholders", "management", "staff", "agent",
            "family", "household", "matter"}
# Stated here independently of the code: the only checks the hub runs are of these subjects.
VERIFIED_BY = {"applicant": {"population", "enterprise", "tax", "organisation"},
               "legal_representative": {"population"}}


def materials() -> list[tuple[str, dict[str, Any]]]:
    items = json.loads((DATA / "items.json").read_text(encoding="utf-8"))
    return [(item["key"], m) for item in items for m in item["materials"]]


def test_every_material_names_whom_it_concerns() -> None:
    for item, material in materials():
        assert material.get("subject") in SUBJECTS, (item, material["key"])
        MaterialSpec.model_validate(material)


def test_a_material_is_replaceable_only_by_a_registry_that_verifies_its_subject() -> None:
    for item, material in materials():
        registry = material["replaceable_by"]
        if registry is not None:
            assert registry in VERIFIED_BY.get(material["subject"], set()), (item, material["key"], material["subject"])


def test_an_identity_check_replaces_identity_documents_only() -> None:
    for item, material in materials():
        name = material["name"]
        if material["replaceable_by"] == "population":
            assert "身份证" in name, (item, material["key"])
        if material["replaceable_by"] == "enterprise":
            assert "营业执照" in name, (item, material["key"])
        if any(word in name for word in ("资格", "资质", "职称", "户口", "双方", "股东", "工作人员", "从业人员")):
            assert material["replaceable_by"] is None, (item, material["key"], name)


@pytest.mark.parametrize(("item", "key"), [
    ("marriage-registration", "id_cards"),             # both parties' ID cards: the spouse is never looked up
    ("marriage-registration", "household_registers"),
    ("enterprise-establishment", "investor_id"),       # shareholders, not the applicant's legal representative
    ("enterprise-establishment", "officer_appointment"),
    ("human-resources-service-licence", "staff_qualifications"),
    ("id-card-renewal", "household_register"),
    ("physician-practice-registration", "qualification_certificate"),
    ("real-estate-transfer-registration", "tax_receipt"),  # the transfer's tax, not the tax registration
])
def test_the_over_reaching_entries_are_no_longer_replaceable(item: str, key: str) -> None:
    [material] = [m for i, m in materials() if i == item and m["key"] == key]
    assert material["replaceable_by"] is None


@pytest.mark.parametrize("subject", sorted(SUBJECTS - {"applicant"}))
def test_the_catalogue_refuses_an_identity_check_replacing_someone_elses_document(subject: str) -> None:
    material = {"key": "other_id_card", "name": "对方居民身份证", "form": "copy", "count": 1,
                "subject": subject, "replaceable_by": "population"}
    if subject == "legal_representative":
        MaterialSpec.model_validate(material)  # the representative is looked up
        material["replaceable_by"] = "enterprise"
    with pytest.raises(ValidationError, match="not replaceable"):
        MaterialSpec.model_validate(material)


def test_a_replaceable_material_must_name_its_subject() -> None:
    with pytest.raises(ValidationError, match="must name its subject"):
        MaterialSpec.model_validate({"key": "id_card", "name": "居民身份证", "form": "copy", "count": 1,
                                     "replaceable_by": "population"})
    MaterialSpec.model_validate({"key": "photo", "name": "照片", "form": "electronic", "count": 1})
