"""Officer sign-in: hashed passwords, short-lived tokens checked against the hub's clock."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from hub.auth.models import Officer
from hub.clock import FixedClock
from tests.conftest import DEMO_PASSWORD


def test_wrong_password_is_401_problem(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", data={"username": "ln_admin", "password": "nope"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_passwords_are_stored_hashed(session) -> None:
    officer = session.scalar(select(Officer).where(Officer.username == "ln_admin"))
    assert DEMO_PASSWORD not in officer.password_hash
    assert officer.password_hash.startswith("$argon2")


def test_token_expires_on_the_hub_clock(client: TestClient, officers, clock: FixedClock) -> None:
    headers = officers.headers("ln_admin")
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    clock.advance(minutes=31)
    response = client.get("/api/v1/auth/me", headers=headers)
    assert response.status_code == 401
    assert "过期" in response.json()["detail"]


def test_missing_or_forged_token_is_401(client: TestClient) -> None:
    assert client.get("/api/v1/cases/queue").status_code == 401
    forged = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.x"}
    assert client.get("/api/v1/cases/queue", headers=forged).status_code == 401
