"""`hub mocks` and the mocks `hub up` starts: registries, payment gateways, the national system, a legacy
department.

Ports from the base port: +0 control plane, +1 population (SOAP), +2 enterprise (REST), +3 tax (SOAP),
+4 organisation (REST), +5 Alipay-style gateway, +6 UnionPay-style gateway (mocks/runner.py SPECS, issue 12),
+7 national results (SOAP), +8 legacy department system (SOAP).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

# After the runner's own mocks (+1…+6 since the payment gateways joined them in issue 12).
NATIONAL_OFFSET = 7
LEGACY_OFFSET = 8
NATIONAL_PARTNER = "national-results"
LEGACY_PARTNER = "legacy-sy-wj"


@dataclass
class AllMocks:
    registries: Any
    national: Any
    legacy: Any
    handles: list[Any] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = list(self.registries.describe())
        lines.append(f"national results (SOAP)   {self.national.wsdl_url}")
        lines.append(f"legacy department (SOAP)  {self.legacy.wsdl_url}   (沈阳市卫健委's old system)")
        return lines

    def endpoints(self) -> dict[str, str]:
        """Partner code → WSDL the hub should call."""
        return {NATIONAL_PARTNER: self.national.wsdl_url, LEGACY_PARTNER: self.legacy.wsdl_url}

    def stop(self) -> None:
        for handle in (self.legacy, self.national, self.registries):
            handle.stop()


def start_all_mocks(host: str, base_port: int, *, hub_url: str | None, seed: int = 2026,
                    legacy_interval_s: float | None = 5.0, legacy_decides: bool = False) -> AllMocks:
    """Every mock; the legacy department decides cases through ``hub_url`` only when ``legacy_decides``
    (issue 13: never by default — a mock pointed at a real hub acted as its officers)."""
    from mocks.legacy_department import start_legacy
    from mocks.national import start_national
    from mocks.runner import start_all

    registries = start_all(host, base_port, seed=seed)
    try:
        national = start_national(host, base_port + NATIONAL_OFFSET if base_port else 0)
        legacy = start_legacy(host, base_port + LEGACY_OFFSET if base_port else 0, hub_url=hub_url,
                              interval_s=legacy_interval_s if hub_url else None, decides=legacy_decides)
    except BaseException:
        registries.stop()
        raise
    return AllMocks(registries, national, legacy)


def serve_forever(host: str, base_port: int, hub_url: str | None, seed: int, console: Console, *,
                  legacy_decides: bool = False) -> None:
    mocks = start_all_mocks(host, base_port, hub_url=hub_url, seed=seed, legacy_decides=legacy_decides)
    console.print("[bold]模拟对端 mock counterparts[/] (fault switches: POST <mock>/_control/faults)")
    for line in mocks.describe():
        console.print(f"  {line}", highlight=False)
    deciding = (f"decides cases through {hub_url} as the department's demo officers" if legacy_decides and hub_url
                else "receives pushes only, decides nothing (--legacy-decides and a hub URL switch deciding on)")
    console.print(f"  legacy department: {deciding}", highlight=False, soft_wrap=True)
    console.print("\nPoint the hub at them: HUB_POPULATION_WSDL, HUB_ENTERPRISE_URL, HUB_TAX_WSDL, "
                  "HUB_ORGANISATION_URL, and `hub partners endpoint national-results <wsdl>` / "
                  "`hub partners endpoint legacy-sy-wj <wsdl>`; the payment gateways' dev keys and ids are at "
                  "<gateway>/_keys (HUB_PAYMENTS_*: docs/payments.md).", highlight=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        mocks.stop()


def start_for_up(settings: Any, *, hub_url: str, console: Console) -> AllMocks | None:
    """For `hub up`: when no registry is configured, start every mock and point the hub at them."""
    if any((settings.population_wsdl, settings.enterprise_url, settings.tax_wsdl, settings.organisation_url)):
        return None
    base = settings.mock_registries_base_port
    try:
        # The legacy mock only receives pushes here; it would otherwise decide the demo's cases itself.
        mocks = start_all_mocks("127.0.0.1", base, hub_url=hub_url, legacy_interval_s=None, legacy_decides=False)
    except (OSError, RuntimeError) as exc:
        console.print(f"[yellow]mocks not started[/] ({exc}); free ports {base}–{base + LEGACY_OFFSET} "
                      "or set HUB_MOCK_REGISTRIES_BASE_PORT. Registries stay unconfigured.")
        return None
    settings.population_wsdl = mocks.registries.population_wsdl
    settings.enterprise_url = mocks.registries.enterprise_url
    settings.tax_wsdl = mocks.registries.tax_wsdl
    settings.organisation_url = mocks.registries.organisation_url
    set_partner_endpoints(settings, mocks.endpoints())
    cashiers = configure_payments(settings, mocks.registries, hub_url=hub_url)
    console.print("[bold]模拟对端 mock counterparts[/] (the hub verifies applicants and reports results to them)")
    for line in mocks.describe():
        console.print(f"  {line}", highlight=False)
    for name, url in cashiers.items():
        console.print(f"  收银台 cashier   {name:<9} {url}   (the hub pays demo fees here: POST /api/v1/payments, "
                      "docs/payments.md; keys under HUB_DATA_DIR/payments/)", highlight=False, soft_wrap=True)
    if cashiers:
        env_file = settings.data_dir / "payments" / PAYMENT_ENV_FILE
        console.print(f"  hub payments …   in another terminal: set -a; . {env_file}; set +a", highlight=False,
                      soft_wrap=True)
    return mocks


# Issue 12 (e2e): the payment mocks issue the merchant's keys themselves (GET /_keys); `hub up` writes them where
# the hub's settings point, so a newcomer pays a demo case's fee with no key handling. Dev only: a real merchant's
# key comes from the gateway's merchant portal and is never generated here, never committed.
PAYMENT_GATEWAYS = ("alipay", "unionpay")
PAYMENT_ENV_FILE = "hub-up.env"


def configure_payments(settings: Any, running: Any, *, hub_url: str) -> dict[str, str]:
    """Point the hub at the payment mocks in ``running`` (mocks.runner.RunningMocks) unless a gateway is already
    configured: keys into ``HUB_DATA_DIR/payments/*.pem`` (0600), ``payments_*`` settings set. Returns each
    configured gateway's cashier base URL."""

    names = [name for name in PAYMENT_GATEWAYS if name in getattr(running, "servers", {})]
    if not names or not hasattr(settings, "payments_alipay_url"):
        return {}
    if settings.payments_alipay_url or settings.payments_unionpay_url:
        return {}  # the operator chose the gateways: never replace them with mocks
    configured: dict[str, str] = {}
    for name in names:
        url = running.endpoint(name).url
        for key, value in gateway_settings(name, url, settings.data_dir / "payments").items():
            setattr(settings, key, value)
        configured[name] = url
    if not settings.payments_public_url:
        settings.payments_public_url = hub_url  # notifications and browsers come back to this `hub up`
    _write_environment(settings, settings.data_dir / "payments" / PAYMENT_ENV_FILE)
    return configured


def _write_environment(settings: Any, path: Path) -> None:
    """The gateway settings `hub up` chose, as ``HUB_…=value`` lines: a `hub payments …` command in another
    terminal reads them (``set -a; . $HUB_DATA_DIR/payments/hub-up.env; set +a``) and sees the same gateways."""
    lines = [f"HUB_{name.upper()}={value}" for name, value in sorted(settings.model_dump().items())
             if name.startswith("payments_") and isinstance(value, str | Path) and str(value)]
    _write_secret(path, "\n".join(lines) + "\n")


def gateway_settings(name: str, url: str, folder: Path) -> dict[str, Any]:
    """The ``payments_*`` settings of one mock gateway at ``url``: its ``/_keys`` (the merchant key it issued,
    its own public key or certificate) written under ``folder`` (0600), the ids it expects."""
    import httpx

    keys = httpx.get(f"{url}/_keys", timeout=10, trust_env=False).raise_for_status().json()
    if name == "alipay":
        return {
            "payments_alipay_url": url, "payments_alipay_app_id": keys["app_id"],
            "payments_alipay_seller_id": keys["seller_id"],
            "payments_alipay_private_key_file": _write_secret(folder / "alipay-merchant-private.pem",
                                                              keys["merchant_private_key"]),
            "payments_alipay_public_key_file": _write_secret(folder / "alipay-gateway-public.pem",
                                                             keys["gateway_public_key"]),
        }
    return {
        "payments_unionpay_url": url, "payments_unionpay_mer_id": keys["mer_id"],
        "payments_unionpay_private_key_file": _write_secret(folder / "unionpay-merchant-private.pem",
                                                            keys["merchant_private_key"]),
        "payments_unionpay_cert_file": _write_secret(folder / "unionpay-merchant-cert.pem",
                                                     keys["merchant_certificate"]),
        "payments_unionpay_gateway_cert_file": _write_secret(folder / "unionpay-gateway-cert.pem",
                                                             keys["gateway_certificate"]),
    }


def _write_secret(path: Path, text: str) -> Path:
    """A private key file readable by its owner only (created 0600, never world-readable for an instant)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # an older file keeps its mode through O_TRUNC
    return path


def set_partner_endpoints(settings: Any, endpoints: dict[str, str | None]) -> None:
    from hub.db import make_engine, make_session_factory, unit_of_work
    from hub.exchange.partners import set_endpoint

    engine = make_engine(settings.resolved_database_url())
    with unit_of_work(make_session_factory(engine)) as session:
        for code, url in endpoints.items():
            set_endpoint(session, code=code, endpoint=url)
    engine.dispose()
