"""`hub mocks` and the mocks `hub up` starts: registries, the national system, a legacy department.

Ports from the base port: +0 control plane, +1 population (SOAP), +2 enterprise (REST), +3 tax (SOAP),
+4 organisation (REST), +5 alipay, +6 unionpay (payment gateways, issue 12), +7 national results (SOAP),
+8 legacy department system (SOAP).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

NATIONAL_OFFSET = 7  # +5 and +6 are the payment gateway mocks (mocks/runner.py)
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
                    legacy_interval_s: float | None = 5.0) -> AllMocks:
    from mocks.legacy_department import start_legacy
    from mocks.national import start_national
    from mocks.runner import start_all

    registries = start_all(host, base_port, seed=seed)
    try:
        national = start_national(host, base_port + NATIONAL_OFFSET if base_port else 0)
        legacy = start_legacy(host, base_port + LEGACY_OFFSET if base_port else 0, hub_url=hub_url,
                              interval_s=legacy_interval_s if hub_url else None)
    except BaseException:
        registries.stop()
        raise
    return AllMocks(registries, national, legacy)


def serve_forever(host: str, base_port: int, hub_url: str | None, seed: int, console: Console) -> None:
    mocks = start_all_mocks(host, base_port, hub_url=hub_url, seed=seed)
    console.print("[bold]模拟对端 mock counterparts[/] (fault switches: POST <mock>/_control/faults)")
    for line in mocks.describe():
        console.print(f"  {line}", highlight=False)
    console.print("\nPoint the hub at them: HUB_POPULATION_WSDL, HUB_ENTERPRISE_URL, HUB_TAX_WSDL, "
                  "HUB_ORGANISATION_URL, and `hub partners endpoint national-results <wsdl>` / "
                  "`hub partners endpoint legacy-sy-wj <wsdl>`.")
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
        mocks = start_all_mocks("127.0.0.1", base, hub_url=hub_url, legacy_interval_s=None)
    except (OSError, RuntimeError) as exc:
        console.print(f"[yellow]mocks not started[/] ({exc}); free ports {base}–{base + LEGACY_OFFSET} "
                      "or set HUB_MOCK_REGISTRIES_BASE_PORT. Registries stay unconfigured.")
        return None
    settings.population_wsdl = mocks.registries.population_wsdl
    settings.enterprise_url = mocks.registries.enterprise_url
    settings.tax_wsdl = mocks.registries.tax_wsdl
    settings.organisation_url = mocks.registries.organisation_url
    set_partner_endpoints(settings, mocks.endpoints())
    console.print("[bold]模拟对端 mock counterparts[/] (the hub verifies applicants and reports results to them)")
    for line in mocks.describe():
        console.print(f"  {line}", highlight=False)
    return mocks


def set_partner_endpoints(settings: Any, endpoints: dict[str, str | None]) -> None:
    from hub.db import make_engine, make_session_factory, unit_of_work
    from hub.exchange.partners import set_endpoint

    engine = make_engine(settings.resolved_database_url())
    with unit_of_work(make_session_factory(engine)) as session:
        for code, url in endpoints.items():
            set_endpoint(session, code=code, endpoint=url)
    engine.dispose()
