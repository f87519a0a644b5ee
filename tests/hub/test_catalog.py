"""The catalogue: search, guides, form schemas, blank forms and validated writes."""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient

from hub.seed.service import read_form, read_seed
from workflow.identifiers import parse_item_code

ITEMS = read_seed("items")


def test_every_seeded_item_has_a_valid_province_code(client: TestClient) -> None:
    page = client.get("/api/v1/items", params={"limit": 100}).json()
    assert {i["key"] for i in ITEMS} <= {i["key"] for i in page["items"]}
    for item in page["items"]:
        code = parse_item_code(item["code"])
        assert (code.region, code.department) == (item["region"], item["department"]["code"])


@pytest.mark.parametrize(("params", "expected_keys"), [
    ({"q": "食品"}, {"food-business-licence"}),
    ({"level": "province"}, {i["key"] for i in ITEMS if i["level"] == "province"}),
    ({"region": "210213"}, {i["key"] for i in ITEMS if i["region"] == "210213"}),
    ({"item_type": "07"}, {i["key"] for i in ITEMS if i["item_type"] == "07"}),
    ({"department": "210100007"}, {i["key"] for i in ITEMS if (i["region"], i["department"]) == ("210100", "007")}),
])
def test_search_filters(client: TestClient, params: dict, expected_keys: set[str]) -> None:
    body = client.get("/api/v1/items", params={**params, "limit": 100}).json()
    assert {i["key"] for i in body["items"]} == expected_keys


def test_item_guide_and_form_schema_are_served(client: TestClient) -> None:
    code = client.get("/api/v1/items", params={"q": "食品"}).json()["items"][0]["code"]
    item = client.get(f"/api/v1/items/{code}").json()
    assert item["guide"]["legal_basis"]
    assert item["guide"]["materials"]
    schema = client.get(item["form_schema_url"]).json()
    assert schema["type"] == "object"
    blank = client.get(item["blank_form_url"])
    assert blank.status_code == 200
    assert "attachment" in blank.headers["content-disposition"]
    assert item["name"] in blank.text and "申请表" in blank.text


def test_joint_and_fee_items_are_marked(client: TestClient) -> None:
    summaries = client.get("/api/v1/items", params={"limit": 100}).json()["items"]
    assert any(i["joint"] for i in summaries)
    assert any(i["fee_fen"] for i in summaries)


def test_unknown_item_is_404_problem(client: TestClient) -> None:
    response = client.get("/api/v1/items/210100001010999000X")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def _item_body(key: str = "food-business-licence") -> dict:
    row = copy.deepcopy(next(i for i in ITEMS if i["key"] == key))
    row["form_schema"] = read_form(row.pop("form"))
    return row


def test_admin_writes_an_item_and_a_catalog_event_is_queued(client: TestClient, officers, session) -> None:
    from sqlalchemy import select

    from hub.outbox.models import OutboxMessage

    body = _item_body()
    body.update(key="food-business-licence-test", main_item="901", name="食品经营许可（测试）")
    response = client.post("/api/v1/items", json=body, headers=officers.headers("ln_admin"))
    assert response.status_code == 201, response.text
    code = response.json()["code"]
    assert parse_item_code(code).main_item == "901"
    events = session.scalars(select(OutboxMessage).where(OutboxMessage.correlation_id == code)).all()
    assert [e.type for e in events] == ["catalog.item_created.v1"]


def test_item_write_names_every_bad_field(client: TestClient, officers) -> None:
    body = _item_body()
    body.update(key="bad-item", main_item="902", promised_limit_days=99, national_code="abc*def*ghij",
                department="999")
    response = client.post("/api/v1/items", json=body, headers=officers.headers("ln_admin"))
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"promised_limit_days", "national_code", "department"} <= fields


def test_item_code_already_used_is_rejected(client: TestClient, officers) -> None:
    original = _item_body()
    body = _item_body()
    body.update(key="duplicate-code", main_item=original["main_item"])
    response = client.post("/api/v1/items", json=body, headers=officers.headers("ln_admin"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["rule"] == "unique_code"


def test_only_admins_write_items(client: TestClient, officers) -> None:
    from tests.support import officer_of

    body = _item_body()
    response = client.post("/api/v1/items", json=body,
                           headers=officers.headers(officer_of("food-business-licence", "approver")))
    assert response.status_code == 403


def test_an_item_name_with_control_or_invisible_characters_is_refused(client: TestClient, officers) -> None:
    # Item names go out in every SOAP document about the item's cases.
    for name, rule in (("食品\x01经营许可", "no_control_characters"), ("\u200b\u3000\u200b", "not_blank"),
                       ("食品经营\ufffe许可", "valid_characters")):
        body = _item_body()
        body.update(key="bad-name-item", main_item="903", name=name)
        response = client.post("/api/v1/items", json=body, headers=officers.headers("ln_admin"))
        assert response.status_code == 422, response.text
        assert [(e["field"], e["rule"]) for e in response.json()["errors"]] == [("name", rule)]


# --- joint items: enterprise establishment's branches ------------------------------------------------

JOINT_KEY = "enterprise-establishment"
JOINT_BRANCHES = {"registration": "210100001", "seal_engraving": "210100002", "tax_invoice": "210100011",
                  "social_insurance": "210100009"}


def _joint_item(client: TestClient) -> dict:
    code = next(i["code"] for i in client.get("/api/v1/items", params={"limit": 100}).json()["items"]
                if i["key"] == JOINT_KEY)
    return client.get(f"/api/v1/items/{code}").json()


def test_enterprise_establishment_is_a_joint_item_with_four_departments_as_branches(client: TestClient) -> None:
    item = _joint_item(client)
    assert item["joint"] is True
    assert item["workflow_id"] == "enterprise-establishment.v1"
    assert item["guide"]["branches"] == JOINT_BRANCHES
    branches = {b["name"]: b for b in item["branches"]}
    assert {name: b["department"]["key"] for name, b in branches.items()} == JOINT_BRANCHES
    assert branches["seal_engraving"]["department"]["name"] == "沈阳市公安局"
    assert all(b["label"] for b in branches.values())
    # Each department sees its own part of the one consolidated form, and the common fields.
    assert "seal_engraving" in branches["seal_engraving"]["fields"]
    assert "tax_registration" not in branches["seal_engraving"]["fields"]
    assert "shareholders" in branches["registration"]["fields"]
    assert "shareholders" not in branches["social_insurance"]["fields"]
    assert "enterprise_name" in branches["social_insurance"]["fields"]


def test_a_single_item_has_no_branches_and_the_standard_workflow(client: TestClient) -> None:
    code = client.get("/api/v1/items", params={"q": "食品"}).json()["items"][0]["code"]
    item = client.get(f"/api/v1/items/{code}").json()
    assert (item["joint"], item["branches"], item["workflow_id"]) == (False, [], "standard.v1")


def test_every_field_of_the_consolidated_form_is_tagged_with_known_branches() -> None:
    schema = read_form("enterprise-establishment.v1.json")
    for name, prop in schema["properties"].items():
        assert prop["x-branches"], name
        assert set(prop["x-branches"]) <= set(JOINT_BRANCHES), name
    covered = {b for prop in schema["properties"].values() for b in prop["x-branches"]}
    assert covered == set(JOINT_BRANCHES)


def test_form_part_cuts_only_the_branch_fields(session) -> None:
    from sqlalchemy import select

    from hub.catalog import service as catalog
    from hub.catalog.models import Item

    item = session.scalar(select(Item).where(Item.key == JOINT_KEY))
    form = read_form("enterprise-establishment.v1.json")["examples"][0]
    part = catalog.form_part(item, form, "social_insurance")
    assert set(part) == {"enterprise_name", "domicile", "legal_representative", "social_insurance"}
    assert part["social_insurance"] == form["social_insurance"]
    tax = catalog.form_part(item, form, "tax_invoice")
    assert "tax_registration" in tax and "seal_engraving" not in tax and "shareholders" not in tax
    with pytest.raises(Exception, match="unknown branch"):
        catalog.form_part(item, form, "bank_account")


def test_a_branch_department_that_does_not_exist_is_refused_naming_the_branch(client: TestClient,
                                                                              officers) -> None:
    body = _item_body(JOINT_KEY)
    body.update(key="joint-bad-branch", main_item="904")
    body["branches"] = {**JOINT_BRANCHES, "seal_engraving": "210100999"}
    response = client.post("/api/v1/items", json=body, headers=officers.headers("ln_admin"))
    assert response.status_code == 422, response.text
    assert ("branches.seal_engraving", "department_exists") in {
        (e["field"], e["rule"]) for e in response.json()["errors"]}


def test_a_form_field_tagged_with_an_unknown_branch_is_refused(client: TestClient, officers) -> None:
    body = _item_body(JOINT_KEY)
    body.update(key="joint-bad-tag", main_item="905")
    body["form_schema"]["properties"]["domicile"]["x-branches"] = ["registration", "bank_account"]
    response = client.post("/api/v1/items", json=body, headers=officers.headers("ln_admin"))
    assert response.status_code == 422, response.text
    assert ("form_schema.properties.domicile.x-branches", "known_branch") in {
        (e["field"], e["rule"]) for e in response.json()["errors"]}


def test_every_branch_department_has_intake_reviewer_and_approver_officers() -> None:
    officers = read_seed("officers")
    for key in JOINT_BRANCHES.values():
        roles = {role for o in officers if o["region"] + o["department"] == key for role in o["roles"]}
        assert {"intake", "reviewer", "approver"} <= roles, key


def test_an_unknown_workflow_definition_is_refused_naming_the_field(client: TestClient, officers) -> None:
    body = _item_body()
    body.update(key="unknown-workflow", main_item="906", workflow_id="no-such-flow.v1")
    response = client.post("/api/v1/items", json=body, headers=officers.headers("ln_admin"))
    assert response.status_code == 422, response.text
    assert ("workflow_id", "definition_exists") in {(e["field"], e["rule"]) for e in response.json()["errors"]}


def test_branches_must_be_those_of_the_workflow_definition(client: TestClient, officers) -> None:
    body = _item_body(JOINT_KEY)
    body.update(key="joint-missing-branch", main_item="907")
    del body["branches"]["social_insurance"]
    for prop in body["form_schema"]["properties"].values():
        prop["x-branches"] = [b for b in prop["x-branches"] if b != "social_insurance"]
    response = client.post("/api/v1/items", json=body, headers=officers.headers("ln_admin"))
    assert response.status_code == 422, response.text
    assert ("branches", "matches_definition") in {(e["field"], e["rule"]) for e in response.json()["errors"]}


def test_form_tags_must_say_what_the_definition_cuts(client: TestClient, officers) -> None:
    body = _item_body(JOINT_KEY)
    body.update(key="joint-leaky-tag", main_item="908")
    body["form_schema"]["properties"]["shareholders"]["x-branches"] = ["registration", "seal_engraving"]
    response = client.post("/api/v1/items", json=body, headers=officers.headers("ln_admin"))
    assert response.status_code == 422, response.text
    assert ("form_schema.properties.shareholders.x-branches", "matches_definition") in {
        (e["field"], e["rule"]) for e in response.json()["errors"]}
