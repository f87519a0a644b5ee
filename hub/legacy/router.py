"""The department-exchange SOAP endpoint beside the REST API (thin: the work is in soap.py and service.py).

    GET  /soap/department-exchange?wsdl          the WSDL, soap:address rewritten to this server
    GET  /soap/department-exchange.v1.xsd        its types (the WSDL imports them by relative URL)
    POST /soap/department-exchange               SOAP 1.1 requests

Not part of the OpenAPI document: the WSDL is this endpoint's contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from hub.db import unit_of_work
from hub.legacy import service
from hub.legacy.soap import XML_CONTENT_TYPE, SoapCall, SoapContract, dispatch

PATH = "/soap/department-exchange"
CONTRACT = SoapContract("department-exchange.v1.wsdl", "department-exchange.v1.xsd", fault_element="ExchangeFault")

router = APIRouter(include_in_schema=False)


@router.get(PATH)
def wsdl(request: Request) -> Response:
    if "wsdl" not in request.query_params:
        return Response("SOAP 1.1 endpoint: POST an envelope here, or GET ?wsdl for the contract\n",
                        status_code=400, media_type="text/plain; charset=utf-8")
    endpoint = str(request.base_url).rstrip("/") + PATH
    return Response(CONTRACT.wsdl_for(endpoint), media_type=XML_CONTENT_TYPE)


@router.get(f"/soap/{CONTRACT.xsd_name}")
def xsd() -> Response:
    return Response(CONTRACT.xsd_bytes, media_type=XML_CONTENT_TYPE)


@router.post(PATH)
async def endpoint(request: Request) -> Response:
    body = await request.body()
    answer = await run_in_threadpool(_serve, request.app, body, request.headers.get("soapaction"))
    return Response(answer.body, status_code=answer.status, media_type=XML_CONTENT_TYPE)


def _serve(app: FastAPI, body: bytes, soap_action: str | None) -> Any:
    def run(call: SoapCall, render: Callable[[Mapping[str, Any]], bytes]) -> bytes:
        # One transaction per request; the answer is rendered (and checked against the XSD) before commit.
        withheld: service.CaseWithheld | None = None
        with unit_of_work(app.state.session_factory) as session:
            try:
                return render(service.handle(session, call, now=app.state.clock.now(), contract=CONTRACT,
                                             audit_key=app.state.settings.audit_key))
            except service.CaseWithheld as exc:
                withheld = exc  # its alert commits with this unit of work; the fault is answered after
        raise withheld

    return dispatch(CONTRACT, body, soap_action, run)
