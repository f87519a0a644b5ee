"""The hub's processes as compose runs them (issue 13): migrations once, readiness, clean stops, JSON crashes.

Every test runs `hub …` as a new process (tests/e2e/cli_support.py) on a fresh database of each backend in
HUB_TEST_BACKENDS: a SQLite file, or a new PostgreSQL database created for the test and dropped after it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text

from hub.db import make_engine
from hub.migrate import head_revision
from tests.e2e.cli_support import free_port, fresh_postgres_database, hub_executable, operator_env, run_process, started
from tests.support import PROCESS_KEYS, wait_until


@pytest.fixture
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database: never migrated, nothing in it."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_postgres_database("hub_ops") as url:
        yield url


def env_for(tmp_path: Path, database_url: str, **variables: str) -> dict[str, str]:
    """As compose runs the hub: JSON logs, production keys, the database given."""
    return operator_env(tmp_path / "var", HUB_DATABASE_URL=database_url, HUB_LOG_JSON="true",
                        HUB_LOG_LEVEL="INFO", **PROCESS_KEYS, **variables)


def revision_of(database_url: str) -> str | None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every non-empty line of ``output`` parsed as JSON (fails the test on the first that is not)."""
    parsed = []
    for line in output.splitlines():
        if line.strip():
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON log line: {line!r}\n--- whole output\n{output[-4000:]}")
    return parsed


# --- migrations once ------------------------------------------------------------------------------


def test_two_db_upgrades_started_at_the_same_moment_on_an_empty_database_both_succeed(
        fresh_database: str, tmp_path: Path) -> None:
    env = env_for(tmp_path, fresh_database)
    args = [*hub_executable(), "db", "upgrade"]
    processes = [subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, stdin=subprocess.DEVNULL) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, f"exit {process.returncode}\n{stdout}\n{stderr}"
        assert [line["msg"] for line in json_lines(stdout + stderr)][-1] == "database at head"
    assert revision_of(fresh_database) == head_revision()


def test_the_worker_health_check_never_migrates(fresh_database: str, tmp_path: Path) -> None:
    env = env_for(tmp_path, fresh_database)
    checked = run_process([*hub_executable(), "worker", "--check"], env, cwd=tmp_path)
    assert checked.code == 1, checked
    [line] = json_lines(checked.output)
    assert line["level"] == "error" and "hub db upgrade" in line["msg"], line
    assert revision_of(fresh_database) is None  # the check left the empty database empty

    assert run_process([*hub_executable(), "db", "upgrade"], env, cwd=tmp_path).code == 0
    passed = run_process([*hub_executable(), "worker", "--check"], env, cwd=tmp_path)
    assert passed.code == 0 and "worker check passed" in passed.stdout, passed


def test_a_worker_started_without_migrating_refuses_an_old_schema(fresh_database: str, tmp_path: Path) -> None:
    env = env_for(tmp_path, fresh_database, HUB_MIGRATE_ON_START="false")
    refused = run_process([*hub_executable(), "worker"], env, cwd=tmp_path)
    assert refused.code == 1, refused
    assert "hub db upgrade" in json_lines(refused.output)[-1]["msg"]
    assert revision_of(fresh_database) is None


def test_the_api_started_without_migrating_is_not_ready_until_migrated_and_loaded_then_stops_cleanly(
        fresh_database: str, tmp_path: Path) -> None:
    port = free_port()
    ready = f"http://127.0.0.1:{port}/ready"
    env = env_for(tmp_path, fresh_database)
    with started([*hub_executable(), "api", "--port", str(port), "--no-migrate"], env, cwd=tmp_path,
                  log=tmp_path / "api.log") as api:
        api.wait_until(lambda: _status(ready) is not None, "the API answering", timeout_s=120)
        assert revision_of(fresh_database) is None  # --no-migrate: it did not migrate
        problem = _problem(ready)
        assert (problem["status"], problem["code"], problem.get("head_revision")) == (
            503, "ready.schema", head_revision())
        assert "hub db upgrade" in problem["detail"]

        assert run_process([*hub_executable(), "db", "upgrade"], env, cwd=tmp_path).code == 0
        assert wait_until(lambda: _problem(ready).get("code") == "ready.catalogue", timeout=30), _problem(ready)

        assert run_process([*hub_executable(), "db", "seed"], env, cwd=tmp_path, timeout_s=300).code == 0
        assert wait_until(lambda: _status(ready) == 200, timeout=30)

        assert api.stop(signal.SIGTERM) == 0, api.output()[-3000:]
        lines = json_lines(api.output())
    assert lines[-1]["msg"] == "hub api stopped on SIGTERM", lines[-3:]


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5, trust_env=False).status_code
    except httpx.HTTPError:
        return None


def _problem(url: str) -> dict[str, Any]:
    response = httpx.get(url, timeout=5, trust_env=False)
    if response.status_code != 503:
        return {"status": response.status_code}
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    return dict(response.json())


# --- crashes are one JSON line ---------------------------------------------------------------------


@pytest.mark.parametrize("database_url", [
    "postgresql+psycopg://nobody:wrong@127.0.0.1:1/nothing",  # nothing listens there
    "not-a-database-url",
], ids=["unreachable", "malformed"])
@pytest.mark.parametrize("command", [["db", "upgrade"], ["api", "--port", "0"], ["worker"]],
                         ids=["db-upgrade", "api", "worker"])
def test_a_start_up_crash_is_one_json_line_with_the_error_and_a_non_zero_exit(
        command: list[str], database_url: str, tmp_path: Path) -> None:
    ran = run_process([*hub_executable(), *command], env_for(tmp_path, database_url), cwd=tmp_path)
    assert ran.code != 0, ran
    [line] = json_lines(ran.output)
    assert line["level"] in ("error", "critical"), line
    assert ("127.0.0.1:1" in line["msg"] or "URL" in line["msg"]), line
    assert "wrong" not in ran.output  # the password is never printed
    assert "Traceback" not in ran.output and "╭" not in ran.output, ran


# --- the worker's liveness -----------------------------------------------------------------------


def test_the_worker_health_check_reads_its_threads_heartbeat(fresh_database: str, tmp_path: Path) -> None:
    heartbeat = tmp_path / "worker.heartbeat.json"
    env = env_for(tmp_path, fresh_database, HUB_WORKER_HEARTBEAT_FILE=str(heartbeat), HUB_WORKER_HEARTBEAT_S="2")
    alive = [*hub_executable(), "worker", "--alive"]
    before = run_process(alive, env, cwd=tmp_path)
    assert before.code == 1 and "no heartbeat" in before.output, before

    with started([*hub_executable(), "worker"], env, cwd=tmp_path, log=tmp_path / "worker.log") as worker:
        worker.wait_until(heartbeat.exists, "the first heartbeat", timeout_s=120)
        running = run_process(alive, env, cwd=tmp_path)
        assert running.code == 0 and "threads alive" in running.stdout, running
        threads = json.loads(heartbeat.read_text(encoding="utf-8"))["threads"]
        assert {"inbound", "dead-letters", "outbox-relay", "deliveries"} <= set(threads), threads

        # A thread that died (as the file of a worker with a dead consumer says): the check fails naming it.
        dead = tmp_path / "dead.heartbeat.json"
        beat = json.loads(heartbeat.read_text(encoding="utf-8"))
        beat["threads"]["inbound"]["alive"] = False
        beat["written_at"], beat["interval_s"] = time.time(), 600  # fresh: only the dead thread is wrong
        dead.write_text(json.dumps(beat), encoding="utf-8")
        failed = run_process(alive, {**env, "HUB_WORKER_HEARTBEAT_FILE": str(dead)}, cwd=tmp_path)
        assert failed.code == 1 and "inbound" in failed.output, failed

        assert worker.stop(signal.SIGTERM) == 0, worker.output()[-3000:]
        lines = json_lines(worker.output())
    assert "worker stopped on SIGTERM" in lines[-1]["msg"], lines[-3:]
    after = run_process(alive, env, cwd=tmp_path)
    assert after.code == 1, after  # a stopped worker is not alive
