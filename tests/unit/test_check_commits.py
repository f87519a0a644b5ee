"""scripts/check_commits.py, run as the test command runs it: on this repository, and on copies of its hub/
with a commit added or removed."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_commits.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_commits", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_commits", module)  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


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


def test_no_router_or_service_is_excused_any_more() -> None:
    # Issue 8 paid the debt off: the allowlist is empty and the repository still passes.
    assert load_script().ALLOWLIST == {}
    assert "(0 allowlisted functions)" in run_check(ROOT).stdout


def test_a_commit_planted_where_routers_used_to_commit_fails(hub_copy: Path) -> None:
    router = hub_copy / "hub" / "cases" / "router.py"
    source = router.read_text(encoding="utf-8")
    anchor = "    return presenters.material_out(material)\n"
    assert source.count(anchor) == 1
    router.write_text(source.replace(anchor, "    session.commit()\n" + anchor), encoding="utf-8")
    result = run_check(hub_copy)
    assert result.returncode == 1
    assert "hub/cases/router.py:" in result.stderr and "upload_material calls commit() 1x, allowed 0x" in result.stderr


def test_another_commit_in_an_allowlisted_function_fails(hub_copy: Path) -> None:
    router = hub_copy / "hub" / "calendar" / "router.py"
    append(router, "\n\ndef twice(session):\n    session.commit()\n    session.commit()\n")
    problems = load_script().check(hub_copy, {("hub/calendar/router.py", "twice"): 1})
    assert len(problems) == 1 and "twice calls commit() 2x, allowed 1x" in problems[0]


def test_an_allowlist_entry_whose_commits_are_gone_fails_as_stale(hub_copy: Path) -> None:
    problems = load_script().check(hub_copy, {("hub/calendar/router.py", "load_notice"): 1})
    assert problems == ["hub/calendar/router.py:load_notice: allowlist entry expects 1 commit() call(s), found 0 "
                        "— lower or delete the entry in scripts/check_commits.py"]


def test_the_transaction_boundaries_may_commit(hub_copy: Path) -> None:
    append(hub_copy / "hub" / "deps.py", "\n\ndef request_done(session):\n    session.commit()\n")
    (hub_copy / "hub" / "cases" / "flows.py").write_text("def after_submit(s):\n    s.commit()\n", encoding="utf-8")
    (hub_copy / "hub" / "exchange" / "consumer.py").write_text("def batch(s):\n    s.commit()\n", encoding="utf-8")
    assert run_check(hub_copy).returncode == 0
