"""hub/keys.py's policies, in process (the commands are run as processes in tests/e2e/test_cli_keys.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hub.keys import ALL_KEYS, AUDIT_KEY, KeyRefused, Policy, key_file, resolve_keys
from hub.settings import DEV_AUDIT_KEY, DEV_SECRET, Settings

GOOD = "k" * 40


@pytest.fixture(autouse=True)
def no_key_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_SECRET_KEY", raising=False)
    monkeypatch.delenv("HUB_AUDIT_KEY", raising=False)


def test_newcomer_keys_are_generated_once_per_data_folder(tmp_path: Path) -> None:
    first, second = Settings(data_dir=tmp_path), Settings(data_dir=tmp_path)
    assert [k.source.split()[0] for k in resolve_keys(first, Policy.NEWCOMER)] == ["generated", "generated"]
    assert [k.source.split()[0] for k in resolve_keys(second, Policy.NEWCOMER)] == ["key", "key"]
    assert (first.secret_key, first.audit_key) == (second.secret_key, second.audit_key)
    assert first.secret_key not in (DEV_SECRET, first.audit_key)


def test_two_starts_at_once_agree_on_one_key(tmp_path: Path) -> None:
    settings = [Settings(data_dir=tmp_path) for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda s: resolve_keys(s, Policy.NEWCOMER), settings))
    assert len({s.secret_key for s in settings}) == 1
    assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == ["audit_key", "secret_key"]  # no drafts


def test_a_key_file_open_to_other_users_is_refused(tmp_path: Path) -> None:
    resolve_keys(Settings(data_dir=tmp_path), Policy.NEWCOMER)
    key_file(tmp_path, AUDIT_KEY).chmod(0o644)
    with pytest.raises(KeyRefused, match="open to other users"):
        resolve_keys(Settings(data_dir=tmp_path), Policy.OPERATOR, keys=[AUDIT_KEY])


def test_newcomer_refuses_a_short_key_it_was_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SECRET_KEY", "too-short")
    with pytest.raises(KeyRefused, match=r"HUB_SECRET_KEY .* 9 characters long"):
        resolve_keys(Settings(data_dir=tmp_path), Policy.NEWCOMER)
    assert not key_file(tmp_path, ALL_KEYS[0]).exists()


def test_operator_takes_the_key_it_is_given_even_the_development_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A test hub runs on the development default; checking its chains means naming that key explicitly.
    monkeypatch.setenv("HUB_AUDIT_KEY", DEV_AUDIT_KEY)
    settings = Settings(data_dir=tmp_path)
    assert resolve_keys(settings, Policy.OPERATOR, keys=[AUDIT_KEY])[0].source == "environment"
    assert settings.audit_key == DEV_AUDIT_KEY


def test_production_never_reads_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_keys(Settings(data_dir=tmp_path), Policy.NEWCOMER)
    with pytest.raises(KeyRefused, match="HUB_SECRET_KEY is not set"):
        resolve_keys(Settings(data_dir=tmp_path), Policy.PRODUCTION)
    monkeypatch.setenv("HUB_SECRET_KEY", GOOD)
    monkeypatch.setenv("HUB_AUDIT_KEY", GOOD + "a")
    settings = Settings(data_dir=tmp_path)
    resolve_keys(settings, Policy.PRODUCTION)
    assert (settings.secret_key, settings.audit_key) == (GOOD, GOOD + "a")
