"""An administrator adds officers over the API (issue 13): a bootstrapped hub has only its administrator, and the
demo officers are for `hub up` and the dev profile — without this, nobody could accept or decide a case."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import DEMO_PASSWORD

PATH = "/api/v1/auth/officers"
PASSWORD = "a-long-password-for-tests"


def new_officer(**overrides: Any) -> dict[str, Any]:
    body = {"username": f"t-{uuid.uuid4().hex[:10]}", "name": "测试受理员", "password": PASSWORD,
            "region": "210100", "department": "007", "roles": ["intake"]}
    body.update(overrides)
    return body


def test_an_administrator_adds_an_officer_who_then_signs_in_with_the_roles_given(client: TestClient,
                                                                                  officers) -> None:
    body = new_officer(roles=["intake", "reviewer"])
    created = client.post(PATH, json=body, headers=officers.headers("ln_admin"))
    assert created.status_code == 201, created.text
    assert PASSWORD not in created.text
    assert created.json()["roles"] == ["intake", "reviewer"]
    token = client.post("/api/v1/auth/token", data={"username": body["username"], "password": PASSWORD})
    assert token.status_code == 200, token.text
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert (me.json()["region"], me.json()["department"], me.json()["roles"]) == (
        "210100", "210100007", ["intake", "reviewer"]), me.json()


def test_only_an_administrator_of_the_region_or_above_adds_officers(client: TestClient, officers) -> None:
    assert client.post(PATH, json=new_officer()).status_code == 401
    refused = client.post(PATH, json=new_officer(), headers=officers.headers("sy_wj_intake"))
    assert refused.status_code == 403, refused.text
    # A city's administrator (added by the province's) may not add officers of another city.
    city_admin = new_officer(roles=["admin"])
    assert client.post(PATH, json=city_admin, headers=officers.headers("ln_admin")).status_code == 201
    token = client.post("/api/v1/auth/token", data={"username": city_admin["username"], "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    outside = client.post(PATH, json=new_officer(region="210200", department="004"), headers=headers)
    assert outside.status_code == 403, outside.text
    assert client.post(PATH, json=new_officer(), headers=headers).status_code == 201


def test_bad_officers_are_refused_naming_the_field(client: TestClient, officers) -> None:
    headers = officers.headers("ln_admin")
    cases = [
        (new_officer(department="999"), 422, "department"),
        (new_officer(password=DEMO_PASSWORD), 422, "password"),
        (new_officer(password="short"), 422, "password"),
        (new_officer(roles=["emperor"]), 422, "roles"),
        (new_officer(roles=[]), 422, "roles"),
    ]
    for body, status, field in cases:
        response = client.post(PATH, json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert any(e["field"].split(".")[-1] == field or e["field"].startswith(field)
                   for e in response.json()["errors"]), response.json()
    taken = new_officer()
    assert client.post(PATH, json=taken, headers=headers).status_code == 201
    again = client.post(PATH, json={**taken, "name": "另一人"}, headers=headers)
    assert again.status_code == 409, again.text
