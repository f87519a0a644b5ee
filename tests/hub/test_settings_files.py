"""Secrets from files (`HUB_<X>_FILE`, hub/settings.py): compose mounts its secrets as files, and a password
never has to sit in an environment variable or a URL. In process for the rules, as processes for the commands
that must start on them (`hub api`, `hub worker`) or refuse.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pika
import pytest
from sqlalchemy.engine import make_url

import hub.settings as settings_module
from hub.keys import SECRET_KEY, KeyRefused, Policy, resolve_keys
from hub.settings import DEV_SECRET, SecretFileRefused, Settings
from tests.e2e.cli_support import free_port, hub_executable, operator_env, port_open, run_process
from tests.support import PROCESS_KEYS

GOOD = "a-good-key-from-a-file-0123456789abcdefghij"


@pytest.fixture(autouse=True)
def no_hub_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HUB_") and not name.startswith("HUB_TEST_"):
            monkeypatch.delenv(name)


def secret(tmp_path: Path, name: str, value: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


def test_a_key_is_read_from_its_file_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SECRET_KEY_FILE", str(secret(tmp_path, "key", f"  {GOOD}  ")))
    monkeypatch.setenv("HUB_AUDIT_KEY_FILE", str(secret(tmp_path, "audit", GOOD[::-1])))
    monkeypatch.setenv("HUB_METRICS_TOKEN_FILE", str(secret(tmp_path, "token", "scrape-token")))
    settings = Settings()
    assert (settings.secret_key, settings.audit_key, settings.metrics_token) == (GOOD, GOOD[::-1], "scrape-token")


@pytest.mark.parametrize("name", ["SECRET_KEY", "AUDIT_KEY", "METRICS_TOKEN"])
def test_a_secret_given_both_ways_is_refused_naming_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(f"HUB_{name}", GOOD)
    monkeypatch.setenv(f"HUB_{name}_FILE", str(secret(tmp_path, "key", GOOD)))
    with pytest.raises(SecretFileRefused, match=f"both HUB_{name} and HUB_{name}_FILE are set"):
        Settings()


@pytest.mark.parametrize(("content", "mode", "message"), [
    (None, 0o600, "does not exist"),
    ("", 0o600, "is empty"),
    ("   \n", 0o600, "is empty"),
    (GOOD, 0o644, "open to other users"),
], ids=["missing", "empty", "blank", "readable-by-others"])
def test_a_secret_file_that_cannot_be_used_is_refused_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, mode: int, message: str) -> None:
    path = tmp_path / "key" if content is None else secret(tmp_path, "key", content, mode)
    monkeypatch.setenv("HUB_AUDIT_KEY_FILE", str(path))
    with pytest.raises(SecretFileRefused, match=message) as refused:
        Settings()
    assert "HUB_AUDIT_KEY_FILE" in str(refused.value) and str(path) in str(refused.value)


def test_compose_secrets_may_be_readable_by_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Docker mounts `secrets:` under /run/secrets, mode 0444: only the container sees that folder.
    monkeypatch.setattr(settings_module, "RUN_SECRETS", tmp_path)
    monkeypatch.setenv("HUB_SECRET_KEY_FILE", str(secret(tmp_path, "hub_secret_key", GOOD, 0o444)))
    assert Settings().secret_key == GOOD


def test_the_database_password_goes_into_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", "postgresql+psycopg://hub@postgres:5432/hub")
    monkeypatch.setenv("HUB_DATABASE_PASSWORD_FILE", str(secret(tmp_path, "db", "p@ss/word:1")))
    url = make_url(Settings().resolved_database_url())
    assert (url.username, url.password, url.host, url.database) == ("hub", "p@ss/word:1", "postgres", "hub")
    assert "p@ss" not in url.render_as_string(hide_password=True)  # how the hub prints a URL


def test_the_broker_password_goes_into_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_AMQP_URL", "amqp://hub@rabbitmq:5672/hub")
    monkeypatch.setenv("HUB_AMQP_PASSWORD_FILE", str(secret(tmp_path, "amqp", "p@ss/word:1")))
    parameters = pika.URLParameters(str(Settings().amqp_url))
    assert (parameters.credentials.username, parameters.credentials.password) == ("hub", "p@ss/word:1")
    assert (parameters.host, parameters.port, parameters.virtual_host) == ("rabbitmq", 5672, "hub")


@pytest.mark.parametrize(("variables", "message"), [
    ({"HUB_DATABASE_URL": "postgresql+psycopg://hub:inline@postgres/hub"},
     "both HUB_DATABASE_URL (with a password) and HUB_DATABASE_PASSWORD_FILE"),
    ({}, "HUB_DATABASE_PASSWORD_FILE is set but HUB_DATABASE_URL is not"),
], ids=["password-twice", "sqlite-default"])
def test_a_database_password_file_the_url_cannot_take_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HUB_DATABASE_PASSWORD_FILE", str(secret(tmp_path, "db", "from-the-file")))
    with pytest.raises(SecretFileRefused, match=re.escape(message)):
        Settings()


@pytest.mark.parametrize(("url", "message"), [
    ("amqp://hub:inline@rabbitmq:5672/hub", "both HUB_AMQP_URL"),
    ("amqp://rabbitmq:5672/hub", "names no user"),
    (None, "HUB_AMQP_URL is not"),
], ids=["password-twice", "no-user", "no-url"])
def test_a_broker_password_file_the_url_cannot_take_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str | None, message: str) -> None:
    if url:
        monkeypatch.setenv("HUB_AMQP_URL", url)
    monkeypatch.setenv("HUB_AMQP_PASSWORD_FILE", str(secret(tmp_path, "amqp", "from-the-file")))
    with pytest.raises(SecretFileRefused, match=message):
        Settings()


def test_the_production_policy_takes_a_key_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = secret(tmp_path, "key", GOOD)
    monkeypatch.setenv("HUB_SECRET_KEY_FILE", str(path))
    settings = Settings(data_dir=tmp_path)
    [resolved] = resolve_keys(settings, Policy.PRODUCTION, keys=[SECRET_KEY])
    assert resolved.source == f"file {path}" and settings.secret_key == GOOD


def test_the_production_policy_refuses_the_development_key_in_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SECRET_KEY_FILE", str(secret(tmp_path, "key", DEV_SECRET)))
    with pytest.raises(KeyRefused, match=r"HUB_SECRET_KEY_FILE .* published development default"):
        resolve_keys(Settings(data_dir=tmp_path), Policy.PRODUCTION, keys=[SECRET_KEY])


# --- the commands -------------------------------------------------------------------------------------------


def key_files(tmp_path: Path, secret_key: str = PROCESS_KEYS["HUB_SECRET_KEY"]) -> dict[str, str]:
    return {"HUB_SECRET_KEY_FILE": str(secret(tmp_path, "secret_key", secret_key)),
            "HUB_AUDIT_KEY_FILE": str(secret(tmp_path, "audit_key", PROCESS_KEYS["HUB_AUDIT_KEY"]))}


def test_hub_worker_starts_on_keys_from_files(tmp_path: Path) -> None:
    env = operator_env(tmp_path / "var", **key_files(tmp_path))
    upgraded = run_process([*hub_executable(), "db", "upgrade"], env, cwd=tmp_path)
    assert upgraded.code == 0, upgraded
    checked = run_process([*hub_executable(), "worker", "--check"], env, cwd=tmp_path)
    assert checked.code == 0 and "worker check passed" in checked.stdout, checked


@pytest.mark.parametrize(("command", "variables", "message"), [
    ("api", {"secret_key": DEV_SECRET}, "HUB_SECRET_KEY_FILE"),
    ("worker", {"secret_key": DEV_SECRET}, "published development default"),
    ("api", {"both": True}, "both HUB_SECRET_KEY and HUB_SECRET_KEY_FILE are set"),
    ("worker", {"missing": True}, "does not exist"),
], ids=["api-dev-key", "worker-dev-key", "api-both", "worker-missing-file"])
def test_hub_api_and_worker_refuse_keys_from_files_they_may_not_use(
        tmp_path: Path, command: str, variables: dict[str, object], message: str) -> None:
    files = key_files(tmp_path, str(variables.get("secret_key", PROCESS_KEYS["HUB_SECRET_KEY"])))
    if variables.get("both"):
        files["HUB_SECRET_KEY"] = PROCESS_KEYS["HUB_SECRET_KEY"]
    if variables.get("missing"):
        files["HUB_SECRET_KEY_FILE"] = str(tmp_path / "no-such-file")
    port = free_port()
    args = [*hub_executable(), command, *(["--port", str(port)] if command == "api" else [])]
    ran = run_process(args, operator_env(tmp_path / "var", **files), cwd=tmp_path, timeout_s=60)
    assert ran.code == 1, ran
    assert message in ran.stderr and "Traceback" not in ran.output, ran
    assert not port_open(port)
    assert not (tmp_path / "var" / "hub.db").exists()  # refused before touching the database
