"""What every registry mock shares: the SOAP app skeleton, REST problem answers, fault application.

Faults are applied in one place per protocol so that every registry behaves the same under the
same switch: latency first, then an injected error, else the real answer, garbled when asked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from lxml import etree

from mocks.control import own_control_router
from mocks.faults import Decision, Exchange
from mocks.registries.soap import XML_CONTENT_TYPE, SoapContract, SoapFault
from mocks.server import MockServer

SoapHandler = Callable[[etree._Element], etree._Element]
PROBLEM_JSON = "application/problem+json"
_HEADER_FIELDS = {"x-message-id": "message_id", "x-client": "client", "x-service": "service",
                  "x-on-behalf-of": "on_behalf_of", "x-case": "case", "x-purpose": "purpose"}
# What a load balancer in front of a dead backend typically answers: HTML, not SOAP or JSON.
_GATEWAY_PAGE = b"<html><head><title>503 Service Unavailable</title></head><body><h1>503</h1></body></html>"
_NOT_XML = b"upstream gateway: internal hiccup (this body is not XML)"
# A response cut off mid-stream: it starts like JSON but is not JSON.
_NOT_JSON = b'{"credit_code": "9121010'


def exchange_from_headers(headers: Mapping[str, str], operation: str) -> Exchange:
    """The exchange identifiers of an HTTP request (values are percent-encoded by clients)."""
    values = {field: unquote(headers[name]) for name, field in _HEADER_FIELDS.items() if name in headers}
    return Exchange(operation=operation, **values)


async def _stall(decision: Decision) -> None:
    if decision.latency_s:
        await asyncio.sleep(decision.latency_s)


# --- SOAP ----------------------------------------------------------------------------------------


def _xml(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type=XML_CONTENT_TYPE)


def _injected_soap_error(contract: SoapContract, decision: Decision) -> Response:
    if decision.error == "soap_fault":
        fault = SoapFault("Server", "UNAVAILABLE",
                          "登记系统暂时不可用 (registry temporarily unavailable; injected fault)")
        return _xml(contract.fault(fault), 500)
    return Response(content=_GATEWAY_PAGE, status_code=decision.error_status, media_type="text/html")


def _soap_answer(contract: SoapContract, payload: etree._Element, decision: Decision) -> Response:
    if decision.malformed == "syntax":
        return _xml(_NOT_XML)
    if decision.malformed == "schema":
        return _xml(contract.response(contract.violates_contract(payload)))
    return _xml(contract.response(payload))


def build_soap_app(server: MockServer, contract: SoapContract, path: str, handlers: Mapping[str, SoapHandler],
                   title: str) -> FastAPI:
    """A SOAP 1.1 endpoint at ``path`` with its WSDL at ``path?wsdl`` and the XSD next to it."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(own_control_router(server))

    @app.get(path)
    def wsdl(request: Request) -> Response:
        if "wsdl" not in request.query_params:
            return Response("SOAP 1.1 endpoint: POST an envelope here, or GET ?wsdl\n", status_code=400,
                            media_type="text/plain")
        endpoint = str(request.base_url).rstrip("/") + path
        return _xml(contract.wsdl_for(endpoint))

    @app.get(f"/{contract.xsd_name}")
    def xsd() -> Response:
        return _xml(contract.xsd_bytes)

    @app.post(path)
    async def endpoint(request: Request) -> Response:
        try:
            call = contract.parse_request(await request.body(), request.headers.get("soapaction"))
        except SoapFault as fault:
            server.faults.count_invalid()
            return _xml(contract.fault(fault), 500)
        decision = server.faults.admit(call.exchange)
        await _stall(decision)
        if decision.fail:
            return _injected_soap_error(contract, decision)
        try:
            payload = handlers[call.operation](call.payload)
        except SoapFault as fault:
            return _xml(contract.fault(fault), 500)
        return _soap_answer(contract, payload, decision)

    return app


# --- REST ----------------------------------------------------------------------------------------


def problem(status: int, title: str, detail: str, kind: str) -> JSONResponse:
    """An RFC 9457 problem document."""
    body = {"type": f"urn:ln:registry:problem:{kind}", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


class RestProblem(Exception):
    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def _violating(record: dict[str, Any]) -> dict[str, Any]:
    # Last field missing and a wrong type where every contract expects a string.
    broken = dict(list(record.items())[:-1])
    broken["name"] = 12345
    return broken


async def rest_answer(server: MockServer, request: Request, operation: str,
                      produce: Callable[[], dict[str, Any]]) -> Response:
    """Apply the faults to one REST request whose normal answer ``produce`` computes."""
    decision = server.faults.admit(exchange_from_headers(request.headers, operation))
    await _stall(decision)
    if decision.fail:
        return problem(decision.error_status, "Service Unavailable",
                       "登记系统暂时不可用 (registry temporarily unavailable; injected fault)", "unavailable")
    try:
        record = produce()
    except RestProblem as exc:
        return exc.response
    if decision.malformed == "syntax":
        return Response(content=_NOT_JSON, media_type="application/json")
    if decision.malformed == "schema":
        record = _violating(record)
    return Response(content=json.dumps(record, ensure_ascii=False), media_type="application/json")
