"""docs/partners.md runs as written: every block marked ``<!-- guide -->`` (or ``<!-- guide: operator -->``) is
executed in order, in one working folder, against a live hub in production shape (`hub api` + `hub worker` on
PostgreSQL and RabbitMQ, tests/docs/live_hub.py) — shell blocks with bash, Python blocks with this
interpreter (which has pika and zeep, as the guide asks the reader to install).

The operator's block runs with the hub's operator environment (database, broker, management API); the
partner's blocks run with only what a partner has: HUB, AMQP_HOST, AMQP_PORT and the files the earlier steps
left in the folder. Each block must exit 0; the key outputs are checked after: the REST record applied, the
AMQP records reported back with their own external ids (the guide's own asserts), the faulty one rejected on
``partner.<code>.rejected.v1``, both message statuses, and the SOAP call answering the reported case.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.live_hub import LiveHub, live_hub
from tests.e2e.cli_support import ROOT

GUIDE = ROOT / "docs" / "partners.md"
BLOCK = re.compile(r"<!-- guide(?P<who>: operator)? -->\s*\n```(?P<lang>bash|python)\n(?P<code>.*?)\n```", re.DOTALL)
BASH_PREAMBLE = "set -e -o pipefail\ncurl() { command curl --show-error \"$@\"; }\n"


@dataclass(frozen=True)
class Snippet:
    index: int
    heading: str  # the guide's section, for the failure message
    operator: bool
    lang: str
    code: str


def snippets(markdown: str) -> list[Snippet]:
    found = []
    for i, match in enumerate(BLOCK.finditer(markdown)):
        headings = re.findall(r"^## (.+)$", markdown[:match.start()], re.MULTILINE)
        found.append(Snippet(i, headings[-1] if headings else "(top)", bool(match["who"]), match["lang"],
                             match["code"]))
    return found


def test_the_guide_has_its_runnable_steps() -> None:
    found = snippets(GUIDE.read_text(encoding="utf-8"))
    assert [s.operator for s in found].count(True) == 1, "one operator step: hub partners add"
    assert {"bash", "python"} <= {s.lang for s in found}
    code = "\n".join(s.code for s in found)
    for needed in ("passive=True", "user_id=", "delivery_mode", "message_id=", "/api/v1/exchange/records/",
                   "zeep", "_soapheaders", "Nonce", "curl"):
        assert needed in code, f"the guide's runnable steps lost {needed!r}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    with live_hub(tmp_path_factory.mktemp("partners-guide-hub")) as live:
        yield live


def run_snippet(snippet: Snippet, hub: LiveHub, folder: Path) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # `hub` and python3
    if snippet.operator:
        env = {**hub.env, "PATH": path}
    else:  # a partner's machine: none of the hub's settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(PATH=path, HUB=hub.base_url, AMQP_HOST=hub.amqp_host, AMQP_PORT=str(hub.amqp_port),
                   PYTHONUNBUFFERED="1")
    if snippet.lang == "bash":
        args = ["bash", "-x", "-c", BASH_PREAMBLE + snippet.code]
    else:
        args = [sys.executable, "-c", snippet.code]
    return subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_partners_guide_runs_against_a_live_hub(hub: LiveHub, tmp_path: Path) -> None:
    outputs: list[str] = []
    for snippet in snippets(GUIDE.read_text(encoding="utf-8")):
        ran = run_snippet(snippet, hub, tmp_path)
        if ran.returncode != 0:
            pytest.fail(f"docs/partners.md, section {snippet.heading!r}, block {snippet.index} ({snippet.lang}) "
                        f"failed with exit {ran.returncode}:\n--- stdout\n{ran.stdout[-4000:]}\n--- stderr\n"
                        f"{ran.stderr[-4000:]}\n{hub.logs()}")
        outputs.append(ran.stdout)
    partner = json.loads((tmp_path / "partner.json").read_text())
    assert partner["code"] == "sy-ywtb" and partner["secret"], partner
    assert partner["amqp_username"] == f"{hub.vhost}.sy-ywtb", partner  # vhost-scoped: not the hub's vhost /
    rest = json.loads((tmp_path / "rest-answer.json").read_text())
    assert rest["results"][0]["status"] == "applied", rest
    reported = json.loads((tmp_path / "reported.json").read_text())
    assert reported["SYYW-2026-000001"] == rest["results"][0]["tracking_no"], (reported, rest)
    assert len(set(reported.values())) == 3, reported  # three cases, three tracking numbers
    everything = "\n".join(outputs)
    assert "partner.sy-ywtb.rejected.v1" in everything and "payload.applicant.id_number" in everything, everything
    assert '"status":"applied"' in everything.replace(" ", ""), everything
    assert '"status":"rejected"' in everything.replace(" ", ""), everything
    assert reported["SYYW-2026-000001"] in outputs[-1], outputs[-1]  # the SOAP GetCase answered the case
