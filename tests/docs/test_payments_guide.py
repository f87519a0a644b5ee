"""docs/payments.md's "Try it with `hub up`" runs as written: its bash blocks marked ``<!-- payments -->`` are run,
in order, by bash against a live ``hub up`` (a subprocess on a free port, its mocks on a free port block, in a
temporary data folder) — the newcomer's way to pay a demo case's fee. ``hub up`` must have started both mock
gateways, written their dev keys under the data folder (mode 0600) and printed the cashiers; the block's order
must end paid through the gateway's notification.
"""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cli_support import ROOT, answers, free_port, free_port_block, hub_executable, operator_env, started

GUIDE = ROOT / "docs" / "payments.md"
BLOCK = re.compile(r"<!-- payments -->\s*\n```bash\n(.*?)\n```", re.DOTALL)
DOCUMENTED_BASE = "http://127.0.0.1:8000"
PREAMBLE = """set -e -o pipefail
curl() { command curl --fail-with-body --show-error "$@"; }
"""


def test_the_guide_has_its_runnable_blocks() -> None:
    blocks = BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) == 2, "docs/payments.md lost its <!-- payments --> blocks"
    assert DOCUMENTED_BASE in blocks[0]
    assert "/api/v1/payments" in blocks[1] and 'id=\\"pay\\"' in blocks[1]


def test_a_newcomer_pays_a_demo_fee_with_hub_up(tmp_path: Path) -> None:
    port, mocks_base = free_port(), free_port_block(9)
    base = f"http://127.0.0.1:{port}"
    env = operator_env(tmp_path / "var", HUB_MOCK_REGISTRIES_BASE_PORT=str(mocks_base))
    script = PREAMBLE + "\n".join(BLOCK.findall(GUIDE.read_text(encoding="utf-8"))).replace(DOCUMENTED_BASE, base)
    work = tmp_path / "work"
    work.mkdir()
    with started([*hub_executable(), "up", "--port", str(port)], env, cwd=tmp_path, log=tmp_path / "up.log") as hub:
        hub.wait_until(lambda: answers(f"{base}/ready"), "the hub answers /ready", timeout_s=180)
        banner = hub.output()
        ran = subprocess.run(["bash", "-x", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                             timeout=300, stdin=subprocess.DEVNULL)
    report = f"exit {ran.returncode}\n--- stdout\n{ran.stdout[-6000:]}\n--- stderr\n{ran.stderr[-6000:]}"
    for gateway, offset in (("alipay", 5), ("unionpay", 6)):
        assert re.search(rf"收银台 cashier\s+{gateway}\s+http://127\.0\.0\.1:{mocks_base + offset}\b", banner), banner
    keys = sorted((tmp_path / "var" / "payments").glob("*.pem"))
    assert len(keys) == 5, keys  # alipay: merchant key, gateway key; unionpay: merchant key and cert, gateway cert
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys), [oct(k.stat().st_mode) for k in keys]
    if ran.returncode != 0:
        pytest.fail(f"the payments guide failed:\n{report}")
    assert "支付结果以支付机构通知为准" in ran.stdout, report
    order = re.search(r"order (P\d{20}): paid\n", ran.stdout)
    assert order, report
    assert '"source": "notification"' in ran.stdout and '"status":"paid"' in ran.stdout.replace(" ", ""), report
