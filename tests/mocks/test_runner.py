"""The runner: fixed port layout, addresses for the hub's settings, and the printing ``main``."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from mocks.runner import SPECS, start_all
from tests.mocks.support import HTTP
from tests.servers import free_port_block

ROOT = Path(__file__).resolve().parents[2]




def test_start_all_uses_base_port_then_consecutive_ports() -> None:
    base = free_port_block(len(SPECS) + 1)  # the control plane and every mock
    with start_all(base_port=base) as mocks:
        assert mocks.control_url == f"http://127.0.0.1:{base}/_control"
        assert mocks.population_wsdl == f"http://127.0.0.1:{base + 1}/population?wsdl"
        assert mocks.enterprise_url == f"http://127.0.0.1:{base + 2}"
        assert mocks.tax_wsdl == f"http://127.0.0.1:{base + 3}/tax?wsdl"
        assert mocks.organisation_url == f"http://127.0.0.1:{base + 4}"
        assert HTTP.get(mocks.population_wsdl).status_code == 200
    with socket.socket() as probe:  # stopped: the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", base + 1))


def test_main_prints_every_address_including_wsdls() -> None:
    base = free_port_block(len(SPECS) + 1)  # the control plane and every mock
    process = subprocess.Popen(
        [sys.executable, "-m", "mocks.runner", "--base-port", str(base)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(6)]
        output = "".join(lines)
        assert f"http://127.0.0.1:{base}/_control" in output
        assert f"http://127.0.0.1:{base + 1}/population?wsdl" in output
        assert f"http://127.0.0.1:{base + 3}/tax?wsdl" in output
        assert f"http://127.0.0.1:{base + 2}/api/enterprises" in output
        assert f"http://127.0.0.1:{base + 4}/api/organisations" in output
        # The addresses are printed only once the servers accept connections.
        assert HTTP.get(f"http://127.0.0.1:{base + 1}/population?wsdl").status_code == 200
    finally:
        process.terminate()
        process.wait(10)
