"""The newcomer's commands: `hub db seed` on a fresh SQLite file, and `hub demo` over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.demo import run_demo
from hub.settings import get_settings
from mocks.registries.seed import build_seed
from tests.servers import serving


def test_db_seed_creates_a_fresh_sqlite_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("HUB_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        first = CliRunner().invoke(cli, ["db", "seed"])
        again = CliRunner().invoke(cli, ["db", "seed"])
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    assert "17 items" in first.output
    assert "0 items" in again.output  # idempotent
    assert (tmp_path / "hub.db").exists()


def test_demo_drives_a_case_to_completion_over_http(app: Any) -> None:
    console = Console(record=True, width=200)
    with serving(app) as base_url:
        code = run_demo(base_url, console)
    output = console.export_text()
    assert code == 0, output
    assert "已办结" in output
    # Without registries the demo applies as the mocks' well-known person too (the check is not_configured).
    name = build_seed().normal_person.name
    assert f"公示：申请人 {name[0]}{'*' * (len(name) - 1)}" in output


def test_demo_says_clearly_when_no_hub_runs() -> None:
    console = Console(record=True, width=200)
    assert run_demo("http://127.0.0.1:9", console) == 1
    assert "hub up" in console.export_text()
