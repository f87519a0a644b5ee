"""The hub serves every JSON Schema of schemas/ at the path of its $id, over HTTP, without credentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ID_PREFIX = "https://hub.example.gov.cn/schemas/"


def repository_schemas() -> list[tuple[str, bytes]]:
    found = []
    for path in sorted(SCHEMAS.rglob("*.json")):
        body = path.read_bytes()
        found.append((json.loads(body)["$id"], body))
    return found


def served_path(schema_id: str) -> str:
    assert schema_id.startswith(ID_PREFIX), schema_id
    return "/schemas/" + schema_id.removeprefix(ID_PREFIX)


def test_every_schema_answers_at_the_path_of_its_id_with_that_very_document(client: TestClient) -> None:
    schemas = repository_schemas()
    assert len(schemas) >= 20  # envelope, records, events, workflow definitions, every item form
    for schema_id, body in schemas:
        response = client.get(served_path(schema_id))
        assert response.status_code == 200, (schema_id, response.text)
        assert response.headers["content-type"] == "application/schema+json"
        assert response.content == body
        assert response.json()["$id"] == schema_id


def test_item_forms_are_served_from_their_sub_folder(client: TestClient) -> None:
    response = client.get("/schemas/forms/food-business-licence.v1.json")
    assert response.status_code == 200
    assert response.json()["$id"] == ID_PREFIX + "forms/food-business-licence.v1.json"


def test_the_index_lists_every_schema_with_the_url_this_hub_serves_it_at(client: TestClient) -> None:
    index = client.get("/schemas").json()["schemas"]
    assert {entry["id"] for entry in index} == {schema_id for schema_id, _ in repository_schemas()}
    for entry in index:
        assert entry["url"] == "http://testserver" + served_path(entry["id"])


def test_a_schema_carries_an_etag_and_answers_304_when_unchanged(client: TestClient) -> None:
    first = client.get("/schemas/envelope.v1.json")
    etag = first.headers["etag"]
    assert etag.startswith('"') and "max-age" in first.headers["cache-control"]
    again = client.get("/schemas/envelope.v1.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    other = client.get("/schemas/case-record.v1.json", headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag


@pytest.mark.parametrize("path", [
    "/schemas/no-such.v1.json",
    "/schemas/forms/no-such.v1.json",
    "/schemas/soap/population.v1.wsdl",  # WSDLs are served next to their endpoints, not here
    "/schemas/__init__.py",
    "/schemas/../pyproject.toml",
    "/schemas/..%2Fpyproject.toml",
    "/schemas/%2e%2e/%2e%2e/etc/passwd",
    "/schemas//etc/passwd",
])
def test_an_unknown_path_is_a_404_problem_and_never_reaches_a_file(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, response.text
    if response.headers["content-type"].startswith("application/problem+json"):
        problem: dict[str, Any] = response.json()
        assert problem["status"] == 404 and problem["title"]
    assert b"[project]" not in response.content and b"root:" not in response.content


def test_schemas_need_no_credentials_and_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/schemas/{path}" in paths and "/schemas" in paths and "/asyncapi.json" in paths
    assert "security" not in paths["/schemas/{path}"]["get"]
