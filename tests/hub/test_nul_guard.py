"""NUL characters are refused with a 422 naming the field, on every backend."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support import example_form, item_code, person


def test_nul_in_a_nested_body_field_is_named(client: TestClient) -> None:
    key = "physician-practice-registration"
    response = client.post("/api/v1/applications", json={
        "item_code": item_code(client, key), "applicant": person(name="张\x00三"),
        "form": example_form(key)})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "applicant.name", "rule": "no_nul_character", "message": "不得包含 NUL 字符"}]


def test_nul_in_a_query_parameter_is_named(client: TestClient) -> None:
    response = client.get("/api/v1/items", params={"q": "食品\x00"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "q"


def test_material_uploads_may_contain_nul_bytes(client: TestClient) -> None:
    from tests.support import submit

    receipt = submit(client, "physician-practice-registration")
    response = client.post(
        f"/api/v1/applications/{receipt['tracking_no']}/materials", data={"key": "application_form"},
        files={"file": ("表.pdf", b"%PDF-1.7\n\x00\x00binary\n%%EOF", "application/pdf")},
        headers={"X-Query-Code": receipt["query_code"]},
    )
    assert response.status_code == 201, response.text


def test_nul_in_a_form_field_is_named(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", data={"username": "ln_admin\x00", "password": "x"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "username"
