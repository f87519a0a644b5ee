"""scripts/prereqs.sh (sourced by bootstrap.sh, so by both README commands): on a stock Debian machine, where
`python3 -m venv` is unavailable until python3-venv is installed, the commands install it with apt as root,
and say what to run when they are not root. Run with stand-ins for python3, apt-get, id and sudo on PATH.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def machine(tmp_path: Path, *, uid: int, sudo_without_password: bool = False, venv_present: bool = False,
            version: str = "3.11") -> tuple[Path, dict[str, str]]:
    """A bin folder of stand-ins: a python3 that has venv once the marker exists (as after apt installs
    python3-venv), an apt-get that records its calls and creates the marker, `id -u`, `sudo -n`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker, calls = tmp_path / "venv-installed", tmp_path / "apt-calls"
    if venv_present:
        marker.touch()
    major, minor = version.split(".")
    _script(bin_dir / "python3", f"""
if [[ "$1" == -c && "$2" == *ensurepip* ]]; then [[ -e {marker} ]]; exit; fi
if [[ "$1" == -c && "$2" == *version_info* ]]; then
  exec {sys.executable} -c "import sys; sys.version_info = ({major}, {minor}); exec(sys.argv[1])" "$2"
fi
exec {sys.executable} "$@"
""")
    _script(bin_dir / "apt-get", f'echo "$*" >> {calls}\n[[ "$1" == install ]] && touch {marker}\nexit 0\n')
    _script(bin_dir / "id", f'[[ "$1" == -u ]] && echo {uid}\n')
    _script(bin_dir / "sudo", ('[[ "$1" == -n ]] && shift\n"$@"\n' if sudo_without_password else
                               '[[ "$1" == -n ]] && exit 1\necho "password:" >&2; exit 1\n'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    return calls, env


def run(env: dict[str, str], call: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("bash") or "/bin/bash", "-c",
                           f"set -euo pipefail; source {ROOT / 'scripts/prereqs.sh'}; {call}"],
                          env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_root_installs_python3_venv_with_apt_when_venv_is_missing(tmp_path: Path) -> None:
    calls, env = machine(tmp_path, uid=0)
    done = run(env, "ensure_python_venv python3 && echo READY")
    assert done.returncode == 0, done.stderr
    assert "READY" in done.stdout and "installing python3-venv" in done.stdout
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("update") and lines[1].startswith("install") and "python3-venv" in lines[1]


def test_not_root_without_sudo_is_told_what_to_run_and_fails(tmp_path: Path) -> None:
    calls, env = machine(tmp_path, uid=1000)
    done = run(env, "ensure_python_venv python3 && echo READY")
    assert done.returncode != 0 and "READY" not in done.stdout
    assert "sudo apt-get install python3-venv" in done.stderr and "needs root" in done.stderr
    assert not calls.exists()  # nothing was attempted, and nothing prompted for a password


def test_not_root_with_passwordless_sudo_installs_through_sudo(tmp_path: Path) -> None:
    calls, env = machine(tmp_path, uid=1000, sudo_without_password=True)
    done = run(env, "ensure_python_venv python3 && echo READY")
    assert done.returncode == 0, done.stderr
    assert "python3-venv" in calls.read_text()


def test_a_python_that_has_venv_installs_nothing(tmp_path: Path) -> None:
    calls, env = machine(tmp_path, uid=0, venv_present=True)
    done = run(env, "ensure_python_venv python3 && echo READY")
    assert done.returncode == 0 and "READY" in done.stdout and done.stdout.strip() == "READY"
    assert not calls.exists()


def test_python_older_than_3_11_is_refused_with_the_version_named(tmp_path: Path) -> None:
    _, env = machine(tmp_path, uid=0, version="3.9")
    done = run(env, "ensure_python python3 && echo READY")
    assert done.returncode != 0 and "Python >= 3.11" in done.stderr and "Debian 12" in done.stderr


def test_bootstrap_checks_the_venv_module_before_creating_the_environment() -> None:
    bootstrap = (ROOT / "scripts/bootstrap.sh").read_text(encoding="utf-8")
    assert "scripts/prereqs.sh" in bootstrap
    assert bootstrap.index("ensure_python_venv") < bootstrap.index("-m venv")
    for command in ("scripts/up.sh", "scripts/test.sh"):  # README's two commands
        assert "scripts/bootstrap.sh" in (ROOT / command).read_text(encoding="utf-8")
