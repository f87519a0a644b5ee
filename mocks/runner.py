"""Start every mock counterpart on its own port, plus the control plane.

Ports (``base_port`` = 8100 by default; ``base_port=0`` gives each server a free port instead):

    base+0  control plane   /_control, /_control/{name}/...  (stays up while a mock refuses connections)
    base+1  population      SOAP   /population  (WSDL /population?wsdl)
    base+2  enterprise      REST   /api/enterprises/{credit_code}
    base+3  tax             SOAP   /tax         (WSDL /tax?wsdl)
    base+4  organisation    REST   /api/organisations/{code}
    base+5  alipay          REST   /gateway.do  (Alipay-style payment gateway; keys on /_keys)
    base+6  unionpay        REST   /gateway/api/*.do  (UnionPay-style payment gateway; keys on /_keys)

``python -m mocks.runner`` prints every address and blocks until interrupted.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from fastapi import FastAPI

from mocks.control import plane_control_router
from mocks.faults import WireProtocol
from mocks.payments import alipay, unionpay
from mocks.registries import enterprise, organisation, population, tax
from mocks.registries.seed import DEFAULT_SEED, Seed, build_seed
from mocks.server import MockServer

CONTROL_OFFSET = 0


@dataclass(frozen=True)
class _Spec:
    name: str
    protocol: WireProtocol
    offset: int
    factory: Callable[[MockServer, Seed], Any]
    service_path: str
    wsdl: bool
    summary: str = ""  # what `describe` prints instead of "GET <collection>/{code}" (payment gateways)


SPECS: tuple[_Spec, ...] = (
    _Spec("population", "soap", 1, population.create_app, population.PATH, True),
    _Spec("enterprise", "rest", 2, enterprise.create_app, "/api/enterprises", False),
    _Spec("tax", "soap", 3, tax.create_app, tax.PATH, True),
    _Spec("organisation", "rest", 4, organisation.create_app, "/api/organisations", False),
    _Spec("alipay", "rest", 5, alipay.create_app, alipay.PATH, False,
          "Alipay-style gateway {service_url}  keys {url}/_keys  faults {url}/_control/payment-faults"),
    _Spec("unionpay", "rest", 6, unionpay.create_app, unionpay.PATH, False,
          "UnionPay-style gateway {service_url}/frontTransReq.do  keys {url}/_keys  "
          "faults {url}/_control/payment-faults"),
)


@dataclass(frozen=True)
class MockEndpoint:
    """Where one mock is reached."""

    name: str
    protocol: WireProtocol
    url: str  # scheme://host:port
    service_url: str  # SOAP endpoint, or REST collection
    wsdl_url: str | None
    control_url: str  # on the mock's own port
    plane_control_url: str  # on the control plane (use this to recover from "refuse")


class RunningMocks:
    """The started mocks; ``stop()`` (or leaving the ``with`` block) shuts them all down."""

    def __init__(self, servers: dict[str, MockServer], plane: MockServer, seed: Seed) -> None:
        self.servers = servers
        self.plane = plane
        self.seed = seed

    @property
    def control_url(self) -> str:
        return f"{self.plane.url}/_control"

    def endpoint(self, name: str) -> MockEndpoint:
        spec = next(s for s in SPECS if s.name == name)
        server = self.servers[name]
        service_url = server.url + spec.service_path
        return MockEndpoint(
            name=name, protocol=spec.protocol, url=server.url, service_url=service_url,
            wsdl_url=f"{service_url}?wsdl" if spec.wsdl else None, control_url=server.control_url,
            plane_control_url=f"{self.control_url}/{name}",
        )

    @property
    def endpoints(self) -> dict[str, MockEndpoint]:
        return {name: self.endpoint(name) for name in self.servers}

    # What the hub's settings want (HUB_POPULATION_WSDL, HUB_ENTERPRISE_URL, HUB_TAX_WSDL, HUB_ORGANISATION_URL).
    @property
    def population_wsdl(self) -> str:
        return str(self.endpoint("population").wsdl_url)

    @property
    def enterprise_url(self) -> str:
        return self.servers["enterprise"].url

    @property
    def tax_wsdl(self) -> str:
        return str(self.endpoint("tax").wsdl_url)

    @property
    def organisation_url(self) -> str:
        return self.servers["organisation"].url

    def describe(self) -> list[str]:
        """Human-readable lines: every address, then identities to try."""
        lines = [f"{'control plane':<14} {self.control_url}"]
        for ep in self.endpoints.values():
            summary = next(s.summary for s in SPECS if s.name == ep.name)
            if summary:
                where = summary.format(url=ep.url, service_url=ep.service_url)
            else:
                where = f"WSDL {ep.wsdl_url}" if ep.wsdl_url else f"GET  {ep.service_url}/{{code}}"
            lines.append(f"{ep.name:<14} {ep.protocol.upper():<5}{where}   control {ep.control_url}")
        s = self.seed
        lines += [
            f"seed {s.seed}: {len(s.people)} people, {len(s.organisations)} organisations",
            f"  normal person     {s.normal_person.id_number} {s.normal_person.name}",
            f"  deceased person   {s.deceased_person.id_number} {s.deceased_person.name}",
            f"  active company    {s.active_company.credit_code} {s.active_company.name}",
            f"  revoked company   {s.revoked_company.credit_code} {s.revoked_company.name}",
            f"  tax arrears       {s.company_with_arrears.credit_code} {s.company_with_arrears.name}",
        ]
        return lines

    def stop(self) -> None:
        # Payment mocks resend notifications from their own thread: stop it with the server.
        for server in self.servers.values():
            payment = getattr(server.app.state, "payment", None)
            if payment is not None:
                payment.stop()
        # Signal all first, then wait: each uvicorn shutdown takes a few tenths of a second.
        threads = [t for server in [*self.servers.values(), self.plane] for t in server.signal_stop()]
        MockServer.join(threads)

    def __enter__(self) -> RunningMocks:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _port(base_port: int, offset: int) -> int:
    return 0 if base_port == 0 else base_port + offset


def _plane(host: str, port: int, servers: dict[str, MockServer]) -> MockServer:
    def factory(_: MockServer) -> FastAPI:
        app = FastAPI(title="Mock control plane")
        app.include_router(plane_control_router(servers))
        return app

    return MockServer("control", "rest", factory, host=host, port=port)


def start_all(host: str = "127.0.0.1", base_port: int = 8100, *, seed: int = DEFAULT_SEED) -> RunningMocks:
    """Start the control plane and every registry mock in background threads."""
    data = build_seed(seed)
    servers: dict[str, MockServer] = {}
    started: list[MockServer] = []
    try:
        for spec in SPECS:
            server = MockServer(spec.name, spec.protocol, lambda s, f=spec.factory: f(s, data), host=host,
                                port=_port(base_port, spec.offset))
            server.start()
            started.append(server)
            servers[spec.name] = server
        plane = _plane(host, _port(base_port, CONTROL_OFFSET), servers)
        plane.start()
    except BaseException:
        for server in started:
            server.stop()
        raise
    return RunningMocks(servers, plane, data)


def main(argv: Sequence[str] | None = None) -> int:
    """Print every mock's address (WSDL addresses included) and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="mocks", description="Run the mock registries.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--base-port", type=int, default=8100, help="control plane port; mocks use the next ones")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    mocks = start_all(args.host, args.base_port, seed=args.seed)
    try:
        for line in mocks.describe():
            print(line, flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        mocks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
