"""README.md's "A tour of the API" runs as written: its bash blocks marked ``<!-- tour -->`` are executed, in
order, by bash against a live ``hub up`` (a subprocess on a free port, in a temporary data folder), the way a
newcomer pastes them after ``scripts/up.sh``. Each curl fails the run on an HTTP error status (the test wraps
``curl`` with ``--fail-with-body``), each command's exit status counts (``set -e -o pipefail``), and the key
outputs are checked: the URL-encoded search finds the item, the mock registry verifies the applicant, the
supplement follows an officer's request, the case is granted and completed, and the disclosure shows it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cli_support import ROOT, answers, free_port, free_port_block, hub_executable, operator_env, started

README = ROOT / "README.md"
TOUR_BLOCK = re.compile(r"<!-- tour -->\s*\n```bash\n(.*?)\n```", re.DOTALL)
DOCUMENTED_BASE = "http://127.0.0.1:8000"
# Every curl of the tour fails on a 4xx/5xx answer (and still prints the problem document).
PREAMBLE = """set -e -o pipefail
curl() { command curl --fail-with-body --show-error "$@"; }
"""


def tour_blocks(markdown: str) -> list[str]:
    return TOUR_BLOCK.findall(markdown)


def test_the_tour_blocks_are_found_in_the_readme() -> None:
    blocks = tour_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3, "README.md lost its <!-- tour --> blocks"
    assert DOCUMENTED_BASE in blocks[0], "the tour's first block should set H to the hub up address"
    script = "\n".join(blocks)
    for path in re.findall(r"@(docs/examples/[^;']+)", script):
        assert (ROOT / path).is_file(), f"the tour uploads {path}, which the repository does not have"


def test_readme_tour_runs_against_a_live_hub_up(tmp_path: Path) -> None:
    work = tmp_path / "checkout"  # the tour runs from the repository's root: it uploads docs/examples/…
    shutil.copytree(ROOT / "docs" / "examples", work / "docs" / "examples")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The mock registries run inside `hub up`'s own process: on this shared, loaded test machine a look-up can
    # outlast the default 1.5 s per attempt, and the applicant would stay "pending" (grant: 409) for reasons
    # that are the machine's, not the README's. A newcomer's idle machine answers in milliseconds.
    env = operator_env(tmp_path / "var", HUB_MOCK_REGISTRIES_BASE_PORT=str(free_port_block(9)),
                       HUB_REGISTRY_TIMEOUT_S="15", HUB_VERIFICATION_BUDGET_S="30")
    script = PREAMBLE + "\n".join(tour_blocks(README.read_text(encoding="utf-8"))).replace(DOCUMENTED_BASE, base)
    with started([*hub_executable(), "up", "--port", str(port)], env, cwd=tmp_path, log=tmp_path / "up.log") as hub:
        hub.wait_until(lambda: answers(f"{base}/ready"), "the hub answers /ready", timeout_s=180)
        ran = subprocess.run(["bash", "-x", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                             timeout=600, stdin=subprocess.DEVNULL)
    report = f"exit {ran.returncode}\n--- stdout\n{ran.stdout[-6000:]}\n--- stderr (bash -x)\n{ran.stderr[-6000:]}"
    if ran.returncode != 0:
        pytest.fail(f"the README tour failed:\n{report}")
    out = ran.stdout
    assert '"key": "physician-practice-registration"' in out, report  # the URL-encoded search for 医师
    assert '"verification": "verified"' in out, report  # an applicant the mock population registry knows
    assert "\nreview_supplement\n" in out, report  # the applicant saw the officer's request before answering
    for state in ("under_review", "pending_decision", "granted", "completed"):
        assert f'"state":"{state}"' in out, f"no action reached {state}\n{report}"
    assert '"result_code":"granted"' in out and "210105********9747" in out, report  # disclosed, masked
    assert list(work.glob("*-form.html")), "the blank form was not downloaded"
