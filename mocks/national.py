"""Mock national approval-results system (国家政务服务平台办件结果接收), SOAP 1.1, schema-first.

    POST /national-results                 SubmitResult (contract schemas/soap/national-results.v1.wsdl)
    GET  /national-results?wsdl            the WSDL, soap:address pointing here
    GET  /_control                         faults, request counts, recent exchange identifiers
    POST /_control/faults                  {"fail_next": 3, "error": "soap_fault"} / {"error": "http_5xx",
                                           "error_status": 500, "error_rate": 1} / {"latency_ms": 3000} ...
    POST /_control/refuse, /_control/recover
    GET  /_control/received                every result received (duplicates counted, not repeated)
    DELETE /_control/received              forget them

Every request is validated against the XSD; the body's messageId must equal the Exchange header's.
A repeated messageId is answered with the first receipt and ``duplicate=true`` — nothing is recorded twice.

``python -m mocks.national --port 8110`` serves it alone.
"""

from __future__ import annotations

import argparse
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from mocks.server import MockServer
from mocks.soapkit import Call, Contract, MockSoapFault, soap_app

PATH = "/national-results"
CONTRACT = Contract("national-results.v1.wsdl", "national-results.v1.xsd", fault_element="NationalFault")


class NationalState:
    """What the mock received, in arrival order, and the receipt given for each message id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: list[dict[str, Any]] = []
        self._receipts: dict[str, str] = {}
        self.duplicates = 0

    def submit(self, call: Call) -> dict[str, Any]:
        values = call.values
        if values["messageId"].lower() != (call.exchange.message_id or "").lower():
            raise MockSoapFault("Client", "INVALID_REQUEST", "消息体与交换标识头的messageId不一致 "
                                                             "(messageId in the body differs from the Exchange header)")
        with self._lock:
            known = self._receipts.get(values["messageId"].lower())
            if known is not None:
                self.duplicates += 1
                return {"receiptId": known, "duplicate": True}
            receipt = f"NR-{uuid.uuid4().hex[:16].upper()}"
            self._receipts[values["messageId"].lower()] = receipt
            self._results.append({**values, "receiptId": receipt, "receivedAt": datetime.now(UTC).isoformat(),
                                  "exchange": {"client": call.exchange.client, "service": call.exchange.service,
                                               "onBehalfOf": call.exchange.on_behalf_of,
                                               "case": call.exchange.case}})
            return {"receiptId": receipt, "duplicate": False}

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._results]

    def clear(self) -> None:
        with self._lock:
            self._results.clear()
            self._receipts.clear()
            self.duplicates = 0


def create_app(server: MockServer, state: NationalState) -> FastAPI:
    app = soap_app(server, CONTRACT, PATH, {"SubmitResult": state.submit}, "Mock national results system")

    @app.get("/_control/received", tags=["control"])
    def received() -> dict[str, Any]:
        results = state.received()
        return {"count": len(results), "duplicates": state.duplicates, "results": results}

    @app.delete("/_control/received", tags=["control"])
    def forget() -> dict[str, Any]:
        state.clear()
        return {"count": 0}

    return app


class NationalMock:
    """A running national mock: addresses, what it received, fault switches, stop."""

    def __init__(self, server: MockServer, state: NationalState) -> None:
        self.server = server
        self.state = state

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def service_url(self) -> str:
        return self.server.url + PATH

    @property
    def wsdl_url(self) -> str:
        return f"{self.service_url}?wsdl"

    @property
    def control_url(self) -> str:
        return self.server.control_url

    def received(self) -> list[dict[str, Any]]:
        return self.state.received()

    def stop(self) -> None:
        self.server.stop()


def start_national(host: str = "127.0.0.1", port: int = 0) -> NationalMock:
    """Serve the national mock on ``host:port`` (0: a free port) in a background thread."""
    state = NationalState()
    server = MockServer("national-results", "soap", lambda s: create_app(s, state), host=host, port=port)
    server.start()
    return NationalMock(server, state)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mock national results system (SOAP)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8110)
    args = parser.parse_args(argv)
    mock = start_national(args.host, args.port)
    print(f"national results mock  WSDL {mock.wsdl_url}   control {mock.control_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        mock.stop()


if __name__ == "__main__":
    main()
