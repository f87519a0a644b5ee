"""`hub audit verify` as an operator runs it: a new process, HUB_DATABASE_URL and HUB_AUDIT_KEY, against a
database someone tampered with by SQL. Each tampering is named with its case and event, exit code 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.settings import Settings
from tests.support import officer_of, submit
from tests.tamper import rewrite_with_plain_hashes

KEY = "physician-practice-registration"
AUDIT_KEY = "e2e-audit-key-kept-outside-the-database-5f2c9a7e31d84b06"
HUB = Path(sys.executable).parent / "hub"


@pytest.fixture
def settings(tmp_path: Path, engine: Engine) -> Settings:
    # The hub that wrote the cases ran with this key; the operator's shell has it as HUB_AUDIT_KEY.
    return Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(hide_password=False),
                    log_json=False, audit_key=AUDIT_KEY)


def hub_audit(engine: Engine, tmp_path: Path, *args: str, key: str = AUDIT_KEY) -> tuple[int, str]:
    env = {**os.environ, "HUB_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "HUB_AUDIT_KEY": key, "HUB_SECRET_KEY": "e2e-secret-" + "k" * 48, "HUB_DATA_DIR": str(tmp_path),
           "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([str(HUB), "audit", *args], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    return done.returncode, done.stdout + done.stderr


def rows_for(output: str, number: str) -> list[list[str]]:
    """The findings table's rows of one case, as cells: case, event, problem, detail."""
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in output.splitlines() if number in line]
    return [c for c in cells if len(c) == 4]


def named(output: str, number: str) -> list[tuple[str, str]]:
    return [(row[1], row[2]) for row in rows_for(output, number)]


def act(client: TestClient, officers: Any, number: str, role: str, action: str) -> None:
    response = client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": "同意"},
                           headers=officers.headers(officer_of(KEY, role)))
    assert response.status_code == 200, response.text


@pytest.fixture
def decided(client: TestClient, officers: Any) -> str:
    number = submit(client, KEY)["tracking_no"]
    for role, action in [("intake", "accept"), ("reviewer", "review"), ("approver", "grant")]:
        act(client, officers, number, role, action)
    return number


def sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as c:
        c.execute(text(statement), params)


def case_id(engine: Engine, number: str) -> int:
    with engine.connect() as c:
        return int(c.execute(text("SELECT id FROM cases WHERE tracking_no = :n"), {"n": number}).scalar_one())


def test_intact_chain_passes_in_a_new_process(decided: str, engine: Engine, tmp_path: Path) -> None:
    code, output = hub_audit(engine, tmp_path, "verify", "--tracking-no", decided)
    assert code == 0, output
    assert "4 events verified" in output


def test_edited_event_is_named(decided: str, engine: Engine, tmp_path: Path) -> None:
    sql(engine, "UPDATE case_events SET opinion = '不同意' WHERE case_id = :c AND seq = 3", c=case_id(engine, decided))
    code, output = hub_audit(engine, tmp_path, "verify", "--tracking-no", decided)
    assert code == 1, output
    assert named(output, decided) == [("3", "edited")]


def test_deleted_event_is_named(decided: str, engine: Engine, tmp_path: Path) -> None:
    sql(engine, "DELETE FROM case_events WHERE case_id = :c AND seq = 2", c=case_id(engine, decided))
    code, output = hub_audit(engine, tmp_path, "verify", "--tracking-no", decided)
    assert code == 1, output
    assert ("2", "deleted") in named(output, decided)


def test_chain_recomputed_with_plain_hashes_is_named(
    decided: str, engine: Engine, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    rewrite_with_plain_hashes(engine, session_factory, decided, edit_seq=3)
    code, output = hub_audit(engine, tmp_path, "verify", "--tracking-no", decided)
    assert code == 1, output
    assert named(output, decided) == [("1", "unkeyed"), ("2", "unkeyed"), ("3", "unkeyed"), ("4", "unkeyed")]


def test_case_row_set_to_granted_in_the_database_is_named(
    client: TestClient, officers: Any, engine: Engine, tmp_path: Path
) -> None:
    number = submit(client, KEY)["tracking_no"]
    act(client, officers, number, "intake", "accept")
    sql(engine, "UPDATE cases SET state = 'granted', result = 'granted' WHERE tracking_no = :n", n=number)
    code, output = hub_audit(engine, tmp_path, "verify", "--tracking-no", number)
    assert code == 1, output
    assert named(output, number) == [("2", "case_row_edited")]
    assert "granted" in rows_for(output, number)[0][3]


def test_verify_needs_the_key_the_hub_wrote_with(decided: str, engine: Engine, tmp_path: Path) -> None:
    code, output = hub_audit(engine, tmp_path, "verify", "--tracking-no", decided, key="a-guessed-key-" + "g" * 40)
    assert code == 1, output
    assert {problem for _, problem in named(output, decided)} == {"edited"}


def test_saved_checkpoint_names_a_case_rewritten_since(
    decided: str, engine: Engine, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    saved = tmp_path / "checkpoint.json"
    code, output = hub_audit(engine, tmp_path, "checkpoint", "--save", str(saved))
    assert code == 0, output
    code, output = hub_audit(engine, tmp_path, "verify", "--tracking-no", decided, "--checkpoint", str(saved))
    assert code == 0, output
    # Whoever rewrites the decision and recomputes the chain without the key is caught twice over.
    rewrite_with_plain_hashes(engine, session_factory, decided, edit_seq=4)
    code, output = hub_audit(engine, tmp_path, "verify", "--tracking-no", decided, "--checkpoint", str(saved))
    assert code == 1, output
    assert ("4", "head_changed") in named(output, decided)


def test_reseal_upgrades_a_chain_written_before_the_key(
    decided: str, engine: Engine, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """What migration 0007 leaves: unkeyed events without a row seal, failing until the operator reseals."""
    rewrite_with_plain_hashes(engine, session_factory, decided, drop_row_seal=True)
    code, output = hub_audit(engine, tmp_path, "verify", "--tracking-no", decided)
    assert code == 1 and {p for _, p in named(output, decided)} == {"unkeyed"}, output
    code, output = hub_audit(engine, tmp_path, "reseal", "--tracking-no", decided)
    assert code == 0 and "1 cases, 4 events" in output, output
    code, output = hub_audit(engine, tmp_path, "verify", "--tracking-no", decided)
    assert code == 0, output
