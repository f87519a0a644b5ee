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
