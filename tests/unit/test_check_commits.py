"""scripts/check_commits.py, run as the test command runs it: on this repository, and on copies of its hub/
with a commit added or removed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_commits.py"


def run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture
def hub_copy(tmp_path: Path) -> Path:
    """A copy of this repository's hub/ (sources only) to break on purpose."""
    shutil.copytree(ROOT / "hub", tmp_path / "hub", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tmp_path


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_the_repository_passes_with_its_allowlist() -> None:
    result = run_check(ROOT)
    assert result.returncode == 0, result.stderr
    assert "no commit outside the transaction boundaries" in result.stdout


def test_a_new_commit_in_a_router_fails_naming_file_line_and_function(hub_copy: Path) -> None:
    router = hub_copy / "hub" / "health" / "router.py"
    line = len(router.read_text(encoding="utf-8").splitlines()) + 4
    append(router, "\n\ndef sneaky(session):\n    session.commit()\n")
    result = run_check(hub_copy)
    assert result.returncode == 1
    assert f"hub/health/router.py:{line}: sneaky calls commit()" in result.stderr


def test_a_commit_in_any_service_module_fails_even_one_not_named_service(hub_copy: Path) -> None:
    # Services split by concern (hub/verification/…) are still services: only named boundaries may commit.
    replay = hub_copy / "hub" / "exchange" / "replay.py"
    append(replay, "\n\nclass Replayer:\n    def run(self, s):\n        s.commit()\n")
    result = run_check(hub_copy)
    assert result.returncode == 1
    assert "hub/exchange/replay.py:" in result.stderr and "Replayer.run calls commit()" in result.stderr


def test_passing_commit_on_without_calling_it_counts(hub_copy: Path) -> None:
    append(hub_copy / "hub" / "cases" / "service.py", "\n\ndef later(session, run):\n    run(session.commit)\n")
    result = run_check(hub_copy)
    assert result.returncode == 1
    assert "hub/cases/service.py:" in result.stderr and "later calls commit()" in result.stderr


def test_another_commit_in_an_allowlisted_function_fails(hub_copy: Path) -> None:
    router = hub_copy / "hub" / "calendar" / "router.py"
    source = router.read_text(encoding="utf-8")
    assert source.count("    session.commit()\n") == 1
    router.write_text(source.replace("    session.commit()\n", "    session.commit()\n    session.commit()\n"),
                      encoding="utf-8")
    result = run_check(hub_copy)
    assert result.returncode == 1
    assert "load_notice calls commit() 2x, allowed 1x" in result.stderr


def test_a_removed_commit_whose_allowlist_entry_stayed_fails_as_stale(hub_copy: Path) -> None:
    router = hub_copy / "hub" / "calendar" / "router.py"
    router.write_text(router.read_text(encoding="utf-8").replace("    session.commit()\n", ""), encoding="utf-8")
    result = run_check(hub_copy)
    assert result.returncode == 1
    assert "hub/calendar/router.py:load_notice: allowlist entry expects 1 commit() call(s), found 0" in result.stderr


def test_the_transaction_boundaries_may_commit(hub_copy: Path) -> None:
    append(hub_copy / "hub" / "deps.py", "\n\ndef request_done(session):\n    session.commit()\n")
    (hub_copy / "hub" / "cases" / "flows.py").write_text("def after_submit(s):\n    s.commit()\n", encoding="utf-8")
    (hub_copy / "hub" / "exchange" / "consumer.py").write_text("def batch(s):\n    s.commit()\n", encoding="utf-8")
    assert run_check(hub_copy).returncode == 0
