"""Helpers the tests share: valid applicants and submissions built from the demo catalogue."""

from __future__ import annotations

import json
from datetime import date
from importlib.resources import files
from typing import Any

from fastapi.testclient import TestClient

from hub.seed.service import read_seed
from workflow.identifiers import citizen_id_check_char, credit_code_check_char

ITEM_KEYS = {row["key"]: row for row in read_seed("items")}


def citizen_id(region: str = "210102", born: date = date(1990, 3, 7), seq: int = 123) -> str:
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    return body + citizen_id_check_char(body)


def credit_code(region: str = "210100", org: str = "MA0T4K5L") -> str:
    from workflow.identifiers import organisation_code_check_char

    body = f"91{region}{org}{organisation_code_check_char(org)}"
    return body + credit_code_check_char(body)


def example_form(key: str) -> dict[str, Any]:
    schema = json.loads((files("schemas") / "forms" / ITEM_KEYS[key]["form"]).read_text("utf-8"))
    return dict(schema["examples"][0])


def item_code(client: TestClient, key: str) -> str:
    response = client.get("/api/v1/items", params={"q": key})
    assert response.status_code == 200, response.text
    matches = [i for i in response.json()["items"] if i["key"] == key]
    assert matches, f"item {key} not in catalogue"
    return str(matches[0]["code"])


def person(**overrides: Any) -> dict[str, Any]:
    applicant = {"type": "1", "name": "张三丰", "id_type": "citizen_id",
                 "id_number": citizen_id(), "phone": "13812345678", "region": "210102"}
    applicant.update(overrides)
    return applicant


def company(**overrides: Any) -> dict[str, Any]:
    applicant = {"type": "2", "name": "沈阳北方示范科技有限公司", "id_type": "credit_code",
                 "id_number": credit_code(), "phone": "02423456789", "region": "210100"}
    applicant.update(overrides)
    return applicant


def submit(client: TestClient, key: str, applicant: dict[str, Any] | None = None,
           form: dict[str, Any] | None = None) -> dict[str, Any]:
    row = ITEM_KEYS[key]
    if applicant is None:
        applicant = person() if "1" in row["applicant_types"] else company()
    body = {"item_code": item_code(client, key), "applicant": applicant,
            "form": example_form(key) if form is None else form}
    response = client.post("/api/v1/applications", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def officer_of(key: str, role: str) -> str:
    row = ITEM_KEYS[key]
    for officer in read_seed("officers"):
        if (officer["region"], officer["department"]) == (row["region"], row["department"]) \
                and role in officer["roles"]:
            return str(officer["username"])
    raise LookupError(f"no {role} officer for {key}")
