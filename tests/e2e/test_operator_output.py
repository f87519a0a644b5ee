"""What an operator reads, as processes on a fresh SQLite database: `hub up`'s banner without library log
lines in it, `--json` on the status commands (one plain JSON document on stdout), `hub registries status`
never prompting, and progress lines from the long commands when the output is not a terminal.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.exchange import dlq
from tests.e2e.cli_support import (
    DEMO_PASSWORD,
    Ran,
    answers,
    free_port,
    free_port_block,
    hub_executable,
    operator_env,
    run_process,
    started,
)
from tests.support import PROCESS_KEYS, case_record, envelope

LIBRARY_LINES = re.compile(r"alembic|uvicorn|Running upgrade|pika\.|httpx|zeep", re.IGNORECASE)
EXTERNAL_URL = re.compile(r"""https?://[^\s"'<>)]+""")


def newcomer_env(data_dir: Path, **variables: str) -> dict[str, str]:
    """As a newcomer runs it: no HUB_LOG_* setting (JSON logs at INFO, the defaults)."""
    env = operator_env(data_dir, **variables)
    env.pop("HUB_LOG_JSON")
    env.pop("HUB_LOG_LEVEL")
    return env


def hub(env: dict[str, str], cwd: Path, *args: str) -> Ran:
    return run_process([*hub_executable(), *args], env, cwd=cwd)


def test_hub_up_prints_banner_and_accounts_without_library_log_lines(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = newcomer_env(tmp_path / "var", HUB_MOCK_REGISTRIES_BASE_PORT=str(free_port_block(9)), COLUMNS="80")
    with started([*hub_executable(), "up", "--port", str(port)], env, cwd=tmp_path, log=tmp_path / "up.log") as up:
        up.wait_until(lambda: answers(f"{base}/health"), "hub up answering /health")
        up.wait_until(lambda: "password:" in up.output(), "the banner printed")
        output = up.output()
        banner = output[output.index("审批交换中心已启动"):output.index("password:")]
        assert f"{base}/docs" in banner and f"{base}/openapi.json" in banner and "sy_wj_intake" in banner
        # stdout and stderr go to one log here, as on a terminal: no log line inside the banner, none from
        # a library anywhere (13 migrations and uvicorn's start-up were INFO lines on stderr before).
        assert '"logger"' not in banner, banner
        assert not LIBRARY_LINES.findall(output), output[-4000:]
        assert re.search(r"seeding the demo province: (\d+)/\1", output), output[:3000]
        # 80 columns, not a terminal: addresses are never broken over two lines.
        assert f"ready {base}/ready   metrics {base}/metrics" in banner, banner

        # The running hub's /docs names nothing outside it (the network may be cut).
        page = httpx.get(f"{base}/docs", timeout=60, trust_env=False).text
        assert [u for u in EXTERNAL_URL.findall(page) if not u.startswith(base)] == []

        # registries status: --json for scripts, and never a prompt when no account is given.
        login = ("--base-url", base, "--username", "ln_admin", "--password", DEMO_PASSWORD)
        as_json = hub(env, tmp_path, "registries", "status", *login, "--json")
        assert as_json.code == 0, as_json
        document = json.loads(as_json.stdout)
        assert {r["name"] for r in document["registries"]} >= {"population", "enterprise", "tax"}, document
        unasked = hub(env, tmp_path, "registries", "status", "--base-url", base)
        assert unasked.code == 1, unasked
        assert "HUB_OPS_USERNAME" in unasked.stderr and "HUB_OPS_PASSWORD" in unasked.stderr, unasked
        assert "Username:" not in unasked.output and "Aborted" not in unasked.output, unasked
        assert up.stop() == 0, up.output()[-3000:]


def test_library_log_lines_only_when_asked(tmp_path: Path) -> None:
    quiet = hub(newcomer_env(tmp_path / "quiet", HUB_DATABASE_URL=f"sqlite:///{tmp_path}/quiet.db"),
                tmp_path, "db", "upgrade")
    assert quiet.code == 0 and "database at head" in quiet.output, quiet  # one JSON line (issue 13): on stderr
    assert "Running upgrade" not in quiet.output, quiet

    # Issue 13: `hub worker --check` (a health check) never migrates any more; `hub db upgrade` takes --verbose.
    env = newcomer_env(tmp_path / "verbose", HUB_DATABASE_URL=f"sqlite:///{tmp_path}/verbose.db", **PROCESS_KEYS)
    verbose = hub(env, tmp_path, "db", "upgrade", "--verbose")
    assert verbose.code == 0, verbose
    assert "Running upgrade" in verbose.stderr, verbose  # alembic's INFO lines, asked for

    debug = hub({**env, "HUB_LOG_LEVEL": "DEBUG", "HUB_DATABASE_URL": f"sqlite:///{tmp_path}/debug.db"},
                tmp_path, "db", "upgrade")
    assert debug.code == 0 and "Running upgrade" in debug.stderr, debug


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[dict[str, str], str]:
    database_url = f"sqlite:///{tmp_path}/hub.db"
    env = operator_env(tmp_path / "var", HUB_DATABASE_URL=database_url, **PROCESS_KEYS)
    done = hub(env, tmp_path, "db", "seed")
    assert done.code == 0, done
    return env, database_url


def test_seeding_reports_progress_in_plain_lines(tmp_path: Path, seeded: tuple[dict[str, str], str]) -> None:
    env, _ = seeded
    again = hub(env, tmp_path, "db", "seed")
    assert again.code == 0, again
    lines = [line for line in again.stdout.splitlines() if line.startswith("seeding the demo province:")]
    assert lines[0].endswith(" 0/20") and lines[-1].endswith(" 20/20"), again.stdout
    assert len(lines) <= 12, lines  # about every tenth, not one line per row
    assert "\x1b[" not in again.stdout  # no terminal control sequences in a pipe


def test_status_commands_answer_json(tmp_path: Path, seeded: tuple[dict[str, str], str]) -> None:
    env, _ = seeded
    status = hub(env, tmp_path, "exchange", "status", "--json")
    assert status.code == 0, status
    overview = json.loads(status.stdout)
    assert overview["dead_letters_waiting"] == 0 and overview["inbox"] == {} and "outbox" in overview

    table = hub(env, tmp_path, "exchange", "status")
    assert table.code == 0 and "dead letters waiting" in table.stdout, table
    with pytest.raises(json.JSONDecodeError):
        json.loads(table.stdout)  # for people: a table

    letters = hub(env, tmp_path, "dlq", "list", "--json")
    assert letters.code == 0 and json.loads(letters.stdout) == [], letters
    deliveries = hub(env, tmp_path, "deliveries", "status", "--json")
    assert deliveries.code == 0 and json.loads(deliveries.stdout)["failures"] == [], deliveries
    audit = hub(env, tmp_path, "audit", "verify", "--json")
    assert audit.code == 0, audit
    assert json.loads(audit.stdout) == {"intact": True, "events_checked": 0, "checkpoint_at": None, "findings": []}
    calendar = hub(env, tmp_path, "calendar", "show", "2031", "--json")
    assert calendar.code == 0 and json.loads(calendar.stdout)["year"] == 2031, calendar


def store_letters(database_url: str, count: int) -> list[int]:
    """Dead letters of well-formed Shenyang records (as if their cause had been fixed since)."""
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
        code = db.execute("SELECT code FROM items WHERE key = 'physician-practice-registration'").fetchone()[0]
    engine = make_engine(database_url)
    ids = []
    with unit_of_work(make_session_factory(engine)) as session:
        for n in range(count):
            body = envelope(case_record(code, external_id=f"SY-OPS-{uuid.uuid4().hex[:8]}-{n}"))
            letter = dlq.store(session, body=json.dumps(body, ensure_ascii=False).encode(),
                               routing_key="shenyang.case-record.v1", headers={"type": "case-record"},
                               message_id=body["message_id"], source="shenyang", reason="schema: test",
                               now=SystemClock().now())
            ids.append(letter.id)
    engine.dispose()
    return ids


def test_dead_letters_json_and_replay_progress(tmp_path: Path, seeded: tuple[dict[str, str], str]) -> None:
    env, database_url = seeded
    ids = store_letters(database_url, 3)

    listed = hub(env, tmp_path, "dlq", "list", "--json")
    assert listed.code == 0, listed
    letters = json.loads(listed.stdout)
    assert sorted(letter["id"] for letter in letters) == ids
    assert {letter["source"] for letter in letters} == {"shenyang"} and letters[0]["replayed_at"] is None
    shown = hub(env, tmp_path, "dlq", "show", str(ids[0]), "--json")
    assert shown.code == 0, shown
    one = json.loads(shown.stdout)
    assert one["id"] == ids[0] and one["reason"] == "schema: test" and json.loads(one["body"])["source"] == "shenyang"

    replayed = hub(env, tmp_path, "dlq", "replay", *map(str, ids))
    assert replayed.code == 0, replayed
    progress = [line for line in replayed.stdout.splitlines() if line.startswith("replaying dead letters:")]
    assert progress[0].endswith(" 0/3") and progress[-1].endswith(" 3/3"), replayed.stdout
    assert "replayed 3 dead letter(s)" in replayed.stdout, replayed
    after = json.loads(hub(env, tmp_path, "dlq", "list", "--all", "--json").stdout)
    assert all(letter["replayed_at"] for letter in after), after


def test_delivery_run_reports_progress(tmp_path: Path, seeded: tuple[dict[str, str], str]) -> None:
    env, _ = seeded
    ran = hub(env, tmp_path, "deliveries", "run")
    assert ran.code == 0, ran
    assert "delivering: 0/0" in ran.stdout and "sent 0, failed 0" in ran.stdout, ran
