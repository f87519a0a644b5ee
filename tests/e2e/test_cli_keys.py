"""Keys (hub/keys.py), as processes: production commands refuse to start without real keys; `hub up` keeps
random keys per data folder, and operator commands find them there.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import httpx
import jwt
import pytest

from hub.settings import DEV_AUDIT_KEY, DEV_SECRET
from tests.e2e.cli_support import (
    DEMO_PASSWORD,
    answers,
    free_port,
    free_port_block,
    hub_executable,
    operator_env,
    port_open,
    run_process,
    started,
)
from tests.support import PROCESS_KEYS

GOOD_SECRET = PROCESS_KEYS["HUB_SECRET_KEY"]
GOOD_AUDIT = PROCESS_KEYS["HUB_AUDIT_KEY"]


@pytest.mark.parametrize(("keys", "message"), [
    ({}, "HUB_SECRET_KEY is not set"),
    ({"HUB_SECRET_KEY": "short-but-not-empty", "HUB_AUDIT_KEY": GOOD_AUDIT}, "at least 32"),
    ({"HUB_SECRET_KEY": DEV_SECRET, "HUB_AUDIT_KEY": GOOD_AUDIT}, "published development default"),
    ({"HUB_SECRET_KEY": GOOD_SECRET}, "HUB_AUDIT_KEY is not set"),
    ({"HUB_SECRET_KEY": GOOD_SECRET, "HUB_AUDIT_KEY": DEV_AUDIT_KEY}, "published development default"),
], ids=["unset", "short", "dev-secret", "no-audit-key", "dev-audit-key"])
def test_hub_api_refuses_to_start_without_real_keys(tmp_path: Path, keys: dict[str, str], message: str) -> None:
    port = free_port()
    ran = run_process([*hub_executable(), "api", "--port", str(port)], operator_env(tmp_path / "var", **keys),
                      cwd=tmp_path, timeout_s=60)
    assert ran.code != 0, ran
    assert message in ran.stderr, ran
    assert "Traceback" not in ran.output, ran
    assert not port_open(port)
    assert not (tmp_path / "var" / "hub.db").exists()  # refused before touching the database


def test_hub_worker_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    ran = run_process([*hub_executable(), "worker"], operator_env(tmp_path / "var", HUB_AUDIT_KEY=GOOD_AUDIT),
                      cwd=tmp_path, timeout_s=60)
    assert ran.code != 0, ran
    assert "HUB_SECRET_KEY is not set" in ran.stderr, ran
    assert not (tmp_path / "var" / "hub.db").exists()


def test_uvicorn_on_the_asgi_entry_refuses_a_short_key(tmp_path: Path) -> None:
    port = free_port()
    ran = run_process([sys.executable, "-m", "uvicorn", "hub.asgi:app", "--port", str(port)],
                      operator_env(tmp_path / "var", HUB_SECRET_KEY="x" * 31, HUB_AUDIT_KEY=GOOD_AUDIT),
                      cwd=tmp_path, timeout_s=60)
    assert ran.code != 0, ran
    assert "HUB_SECRET_KEY" in ran.output and "at least 32" in ran.output, ran
    assert not port_open(port)


def forged_with(secret: str, genuine: str) -> str:
    """What anyone reading hub/settings.py could mint: the claims of a genuine token, signed with ``secret``."""
    claims = jwt.decode(genuine, options={"verify_signature": False})
    claims["roles"] = ["admin", "supervisor"]
    return jwt.encode(claims, secret, algorithm="HS256")


def test_hub_up_keeps_random_keys_per_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "var"
    env = operator_env(data, HUB_MOCK_REGISTRIES_BASE_PORT=str(free_port_block(9)))
    secret_file, audit_file = data / "secrets" / "secret_key", data / "secrets" / "audit_key"
    tokens = []
    for start in ("first", "second"):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with started([*hub_executable(), "up", "--port", str(port)], env, cwd=tmp_path,
                     log=tmp_path / f"up-{start}.log") as up:
            up.wait_until(lambda base=base: answers(f"{base}/health"), f"hub up ({start} start) answering /health")
            if start == "first":
                keys = (secret_file.read_text(), audit_file.read_text())
                assert "HUB_SECRET_KEY: generated" in up.output()
            else:
                assert (secret_file.read_text(), audit_file.read_text()) == keys  # reused, not regenerated
                assert "HUB_SECRET_KEY: key file" in up.output()
            for path in (secret_file, audit_file):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert stat.S_IMODE(secret_file.parent.stat().st_mode) == 0o700
            assert len(keys[0].strip()) >= 32 and keys[0] != keys[1]
            assert DEV_SECRET not in keys[0] and DEV_AUDIT_KEY not in keys[1]

            with httpx.Client(base_url=base, timeout=60, trust_env=False) as client:
                signed_in = client.post("/api/v1/auth/token",
                                        data={"username": "sy_wj_intake", "password": DEMO_PASSWORD})
                assert signed_in.status_code == 200, signed_in.text
                tokens.append(signed_in.json()["access_token"])
                for token in tokens:  # the first start's token still holds: same key after the restart
                    queue = client.get("/api/v1/cases/queue", headers={"Authorization": f"Bearer {token}"})
                    assert queue.status_code == 200, queue.text
                forged = client.get("/api/v1/cases/queue",
                                    headers={"Authorization": f"Bearer {forged_with(DEV_SECRET, tokens[0])}"})
                assert forged.status_code == 401, forged.text
            assert up.stop() == 0, up.output()[-3000:]

    # An operator command in a fresh process finds the data folder's audit key without being told.
    verified = run_process([*hub_executable(), "audit", "verify"], env, cwd=tmp_path)
    assert verified.code == 0, verified
    assert "审计通过" in verified.stdout


def test_operator_command_refuses_without_the_hubs_key_once_there_are_chains(tmp_path: Path) -> None:
    env = operator_env(tmp_path / "var")
    assert run_process([*hub_executable(), "db", "upgrade"], env, cwd=tmp_path).code == 0
    fresh = run_process([*hub_executable(), "audit", "verify"], env, cwd=tmp_path)
    assert fresh.code == 0, fresh  # a fresh database holds no chain: nothing needs the key
    assert "0 events verified: no case events yet" in fresh.stdout, fresh

    submit_one_case(tmp_path / "var")
    ran = run_process([*hub_executable(), "audit", "verify"], env, cwd=tmp_path)
    assert ran.code == 1, ran
    assert "HUB_AUDIT_KEY is not set and there is no key file" in ran.stderr, ran


def submit_one_case(data_dir: Path) -> None:
    """One application in the data folder's database, chained with some key the command is not told."""
    from fastapi.testclient import TestClient

    from hub.app import create_app
    from hub.clock import SystemClock
    from hub.db import make_engine, make_session_factory, unit_of_work
    from hub.seed.service import seed_demo
    from hub.settings import Settings
    from tests.support import submit

    settings = Settings(data_dir=data_dir, log_json=False)
    engine = make_engine(settings.resolved_database_url())
    with unit_of_work(make_session_factory(engine)) as session:
        seed_demo(session, now=SystemClock().now())
    with TestClient(create_app(settings, engine=engine)) as client:
        submit(client, "physician-practice-registration")
    engine.dispose()
