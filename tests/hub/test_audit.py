"""The event chain: `hub audit verify` names the case and event that was edited or deleted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.settings import DEV_AUDIT_KEY, get_settings
from tests.support import officer_of, submit

KEY = "physician-practice-registration"


@pytest.fixture
def decided_case(client: TestClient, officers) -> str:
    number = submit(client, KEY)["tracking_no"]
    for role, action in [("intake", "accept"), ("reviewer", "review"), ("approver", "grant")]:
        response = client.post(f"/api/v1/cases/{number}/actions",
                               json={"action": action, "opinion": "同意"},
                               headers=officers.headers(officer_of(KEY, role)))
        assert response.status_code == 200, response.text
    return number


@pytest.fixture
def cli_env(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HUB_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("HUB_AUDIT_KEY", DEV_AUDIT_KEY)  # the key the test app chains with (tests/conftest.py)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run_verify(number: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["audit", "verify", "--tracking-no", number],
                                env={"COLUMNS": "200"})
    return result.exit_code, result.output


def case_id(engine: Engine, number: str) -> int:
    with engine.connect() as c:
        return int(c.execute(text("SELECT id FROM cases WHERE tracking_no = :n"), {"n": number}).scalar_one())


def test_intact_chain_verifies(decided_case: str, cli_env: None) -> None:
    code, output = run_verify(decided_case)
    assert code == 0, output
    assert "4 events verified" in output


def test_edited_opinion_is_reported_with_case_and_event(
    decided_case: str, engine: Engine, cli_env: None
) -> None:
    with engine.begin() as c:
        c.execute(text("UPDATE case_events SET opinion = '不同意' WHERE case_id = :c AND seq = 3"),
                  {"c": case_id(engine, decided_case)})
    code, output = run_verify(decided_case)
    assert code == 1
    line = next(line for line in output.splitlines() if decided_case in line)
    assert " 3 " in line and "edited" in line


def test_deleted_middle_event_is_reported(decided_case: str, engine: Engine, cli_env: None) -> None:
    with engine.begin() as c:
        c.execute(text("DELETE FROM case_events WHERE case_id = :c AND seq = 2"),
                  {"c": case_id(engine, decided_case)})
    code, output = run_verify(decided_case)
    assert code == 1
    assert "deleted" in output and "2" in output


def test_deleted_last_event_is_reported(decided_case: str, engine: Engine, cli_env: None) -> None:
    with engine.begin() as c:
        c.execute(text("DELETE FROM case_events WHERE case_id = :c AND seq = 4"),
                  {"c": case_id(engine, decided_case)})
    code, output = run_verify(decided_case)
    assert code == 1
    assert "deleted" in output and "4" in output


def test_event_moved_to_another_time_is_reported(
    decided_case: str, engine: Engine, cli_env: None
) -> None:
    with engine.begin() as c:
        c.execute(text("UPDATE case_events SET occurred_at = occurred_at - INTERVAL '1 day' "
                       "WHERE case_id = :c AND seq = 2") if engine.dialect.name == "postgresql" else
                  text("UPDATE case_events SET occurred_at = '2020-01-01 00:00:00.000000' "
                       "WHERE case_id = :c AND seq = 2"),
                  {"c": case_id(engine, decided_case)})
    code, output = run_verify(decided_case)
    assert code == 1
    assert "edited" in output
