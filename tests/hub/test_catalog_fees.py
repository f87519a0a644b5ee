"""Items' fee rules (issue 12, item 1): fixed or per unit, exemptions, the due point — a bad rule is refused
on the item write naming the field and the rule; the original shape stays valid (fixed, due before completion)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from hub.catalog.models import Item
from hub.db import unit_of_work
from hub.payments.fees import compute
from hub.seed.service import read_form, read_seed

ITEMS = read_seed("items")
TEST_KEYS = "%-fee-test-%"


@pytest.fixture(autouse=True)
def no_test_items_left(session_factory: sessionmaker[Session]) -> Iterator[None]:
    """The items written here leave the shared catalogue afterwards: the search tests count its items."""
    yield
    with unit_of_work(session_factory) as session:
        session.execute(delete(Item).where(Item.key.like(TEST_KEYS)))


def item_body(key: str, *, main_item: str, fee: dict[str, Any] | None) -> dict[str, Any]:
    row = copy.deepcopy(next(i for i in ITEMS if i["key"] == key))
    row["form_schema"] = read_form(row.pop("form"))
    row.update(key=f"{key}-fee-test-{main_item}", main_item=main_item, name=f"{row['name']}（收费测试）", fee=fee)
    return row


def write(client: TestClient, officers: Any, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/items", json=body, headers=officers.headers("ln_admin"))


def errors(response: Any) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return {(e["field"], e["rule"]) for e in response.json()["errors"]}


BASIS = "《测试收费依据》第一条"


def test_the_original_fee_shape_is_still_a_fixed_fee_due_before_completion(client: TestClient, officers) -> None:
    body = item_body("food-business-licence", main_item="951",
                     fee={"amount_fen": 1500, "basis": BASIS, "description": "工本费"})
    response = write(client, officers, body)
    assert response.status_code == 201, response.text
    fee = response.json()["guide"]["fee"]
    assert (fee["kind"], fee["amount_fen"], fee["due"], fee["exemptions"]) == ("fixed", 1500, "before_completion", [])
    assert response.json()["fee_fen"] == 1500


def test_the_seeded_items_carry_realistic_rules(client: TestClient) -> None:
    items = {i["key"]: i for i in client.get("/api/v1/items", params={"limit": 100}).json()["items"]}
    id_card = client.get(f"/api/v1/items/{items['id-card-renewal']['code']}").json()
    fee = id_card["guide"]["fee"]
    assert (fee["amount_fen"], fee["due"]) == (2000, "before_acceptance") and "2322号" in fee["basis"]
    assert fee["exemptions"][0]["when"]["form_field"] == "subsistence_allowance_exempt"
    estate = client.get(f"/api/v1/items/{items['real-estate-transfer-registration']['code']}").json()
    assert (estate["guide"]["fee"]["kind"], estate["guide"]["fee"]["unit_fen"], estate["fee_fen"]) == (
        "per_unit", 8000, 8000)


def test_a_per_unit_rule_needs_an_integer_form_field_for_its_count(client: TestClient, officers) -> None:
    body = item_body("real-estate-transfer-registration", main_item="952", fee={
        "kind": "per_unit", "unit_fen": 8000, "unit_field": "building_area_m2", "basis": BASIS})
    assert errors(write(client, officers, body)) == {("fee.unit_field", "integer_form_field")}
    body["fee"] = {"kind": "per_unit", "basis": BASIS, "max_fen": 100}
    assert errors(write(client, officers, body)) == {("fee.unit_fen", "required_for_per_unit"),
                                                     ("fee.unit_field", "required_for_per_unit")}
    body["fee"] = {"kind": "per_unit", "unit_fen": 8000, "unit_field": "registration_units", "max_fen": 5000,
                   "basis": BASIS}
    assert errors(write(client, officers, body)) == {("fee.max_fen", "not_below_unit_fen")}


def test_a_fixed_rule_needs_its_amount_and_no_unit_fields(client: TestClient, officers) -> None:
    body = item_body("food-business-licence", main_item="953", fee={"kind": "fixed", "basis": BASIS,
                                                                     "unit_fen": 100})
    assert errors(write(client, officers, body)) == {("fee.amount_fen", "required_for_fixed"),
                                                     ("fee.kind", "per_unit_fields")}
    body["fee"] = {"kind": "monthly", "amount_fen": 100, "basis": BASIS}
    assert ("fee.kind", "literal_error") in errors(write(client, officers, body))
    body["fee"] = {"amount_fen": 100, "basis": BASIS, "due": "after_completion"}
    assert ("fee.due", "literal_error") in errors(write(client, officers, body))


def test_exemptions_name_a_form_field_of_the_item_or_one_of_its_applicant_types(client: TestClient,
                                                                                  officers) -> None:
    body = item_body("id-card-renewal", main_item="954", fee={"amount_fen": 2000, "basis": BASIS, "exemptions": [
        {"when": {"form_field": "disabled_person"}, "basis": BASIS},
        {"when": {"applicant_type": "2"}, "basis": BASIS},
        {"when": {"form_field": "subsistence_allowance_exempt"}, "basis": BASIS},
        {"when": {}, "basis": BASIS}]})
    assert errors(write(client, officers, body)) == {
        ("fee.exemptions.0.when.form_field", "form_field_exists"),
        ("fee.exemptions.1.when.applicant_type", "applicant_type_of_item"),
        ("fee.exemptions.2.when.equals", "required"),
        ("fee.exemptions.3.when", "one_condition")}


def test_the_amount_of_a_rule() -> None:
    per_unit = {"kind": "per_unit", "unit_fen": 1000, "unit_field": "n", "max_fen": 2500, "basis": BASIS,
                "exemptions": [{"when": {"applicant_type": "2"}, "basis": "免收"},
                               {"when": {"form_field": "poor", "equals": True}, "basis": "低保免收"}]}
    assert compute(per_unit, applicant_type="1", form={"n": 2}).amount_fen == 2000
    assert compute(per_unit, applicant_type="1", form={"n": 7}).amount_fen == 2500  # capped
    assert compute(per_unit, applicant_type="1", form={}).amount_fen == 1000  # one unit at least
    exempt = compute(per_unit, applicant_type="2", form={"n": 2})
    assert (exempt.amount_fen, exempt.exemption) == (0, "免收")
    assert compute(per_unit, applicant_type="1", form={"n": 2, "poor": True}).exemption == "低保免收"
    assert compute(per_unit, applicant_type="1", form={"n": 2, "poor": 1}).exemption is None  # true is not 1
