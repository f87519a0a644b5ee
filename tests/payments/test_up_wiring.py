"""`hub up` pays through the payment mocks it starts (hub/mocks_cli.configure_payments): the keys the mocks issued
(`GET /_keys`) land under HUB_DATA_DIR/payments/ readable by the owner only, the hub's `payments_*` settings point
at the mocks, the gateway registry builds both adapters from them — and a gateway the operator configured is
never replaced by a mock."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.mocks_cli import configure_payments
from hub.payments.gateways import Gateways
from hub.settings import Settings
from mocks.runner import RunningMocks, start_all


@pytest.fixture(scope="module")
def mocks() -> Iterator[RunningMocks]:
    with start_all(base_port=0) as running:
        yield running


def test_the_hub_is_configured_from_the_payment_mocks_keys(mocks: RunningMocks, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="sqlite://")
    cashiers = configure_payments(settings, mocks, hub_url="http://127.0.0.1:8123")
    assert cashiers == {"alipay": mocks.endpoint("alipay").url, "unionpay": mocks.endpoint("unionpay").url}
    assert settings.payments_alipay_url == cashiers["alipay"] and settings.payments_alipay_app_id
    assert settings.payments_unionpay_url == cashiers["unionpay"] and settings.payments_unionpay_mer_id
    assert settings.payments_public_url == "http://127.0.0.1:8123"  # notifications come back to this hub up
    files = sorted(f for f in (tmp_path / "payments").iterdir() if f.suffix == ".pem")
    assert len(files) == 5 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), files
    assert stat.S_IMODE((tmp_path / "payments").stat().st_mode) == 0o700
    assert all(b"PRIVATE KEY" not in f.read_bytes() or "merchant" in f.name for f in files)  # no gateway secret
    assert sorted(Gateways.from_settings(settings).names()) == ["alipay", "unionpay"]


def test_hub_payments_in_another_terminal_sees_the_gateways_hub_up_chose(mocks: RunningMocks, tmp_path: Path) -> None:
    """The documented way: source HUB_DATA_DIR/payments/hub-up.env, then `hub payments status` (a new process)."""
    configure_payments(Settings(data_dir=tmp_path, database_url="sqlite://"), mocks, hub_url="http://h")
    env_file = tmp_path / "payments" / "hub-up.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    database = f"sqlite:///{tmp_path / 'hub.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")} | {"HUB_DATABASE_URL": database,
                                                                            "HUB_DATA_DIR": str(tmp_path)}
    hub = [sys.executable, "-m", "hub.cli"]
    assert subprocess.run([*hub, "db", "upgrade"], env=env, capture_output=True, timeout=120).returncode == 0
    shown = subprocess.run(["bash", "-c", f"set -a; . {env_file}; set +a; exec \"$@\"", "_", *hub, "payments",
                            "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert sorted(json.loads(shown.stdout)["gateways"]) == ["alipay", "unionpay"]


def test_a_gateway_the_operator_configured_is_not_replaced(mocks: RunningMocks, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="sqlite://", payments_alipay_url="https://pay.example.cn")
    assert configure_payments(settings, mocks, hub_url="http://127.0.0.1:8123") == {}
    assert settings.payments_alipay_url == "https://pay.example.cn" and not settings.payments_unionpay_url
    assert not (tmp_path / "payments").exists()


def test_keys_written_again_on_the_next_start_stay_private(mocks: RunningMocks, tmp_path: Path) -> None:
    folder = tmp_path / "payments"
    folder.mkdir(mode=0o755)
    (folder / "alipay-merchant-private.pem").write_text("old")
    (folder / "alipay-merchant-private.pem").chmod(0o644)
    configure_payments(Settings(data_dir=tmp_path, database_url="sqlite://"), mocks, hub_url="http://h")
    key = folder / "alipay-merchant-private.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and "PRIVATE KEY" in key.read_text()
