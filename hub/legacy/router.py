"""The department-exchange SOAP endpoint beside the REST API (thin: the work is in soap.py and service.py).

    GET  /soap/department-exchange?wsdl          the WSDL, soap:address rewritten to this server
    GET  /soap/department-exchange.v1.xsd        its types (the WSDL imports them by relative URL)
    POST /soap/department-exchange               SOAP 1.1 requests

Not part of the OpenAPI document: the WSDL is this endpoint's contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from hub.auth.models import Officer
from hub.auth.service import authenticate
from hub.db import unit_of_work
from hub.legacy import service
from hub.legacy.soap import XML_CONTENT_TYPE, SoapCall, SoapContract, dispatch, fresh_token, replay_fault
from hub.throttle import service as throttle
from hub.throttle.http import source_address

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
    body = await request.body()  # at most HUB_MAX_SOAP_BODY_BYTES: the body-limit middleware saw to it
    answer = await run_in_threadpool(_serve, request.app, body, request.headers.get("soapaction"),
                                     source_address(request))
    return Response(answer.body, status_code=answer.status, media_type=XML_CONTENT_TYPE)


def _serve(app: FastAPI, body: bytes, soap_action: str | None, address: str) -> Any:
    def run(call: SoapCall, render: Callable[[Mapping[str, Any]], bytes]) -> bytes:
        now = app.state.clock.now()
        officer_id = _sign_in(app, call, address=address, now=now)
        # One transaction per request; the answer is rendered (and checked against the XSD) before commit.
        withheld: service.CaseWithheld | None = None
        with unit_of_work(app.state.session_factory) as session:
            officer = session.get(Officer, officer_id)
            assert officer is not None
            try:
                return render(service.handle(session, call, officer=officer, now=now, contract=CONTRACT,
                                             audit_key=app.state.settings.audit_key))
            except service.CaseWithheld as exc:
                withheld = exc  # its alert commits with this unit of work; the fault is answered after
        raise withheld

    return dispatch(CONTRACT, body, soap_action, run)


def _sign_in(app: FastAPI, call: SoapCall, *, address: str, now: datetime) -> int:
    """The UsernameToken's officer: a fresh token (Created within the window, Nonce never seen), within
    the sign-in limits of the account and the address. Its own transactions, committed whatever the
    operation does next, so a failed attempt stays counted and a used nonce stays used."""
    settings, factory, credentials = app.state.settings, app.state.session_factory, call.credentials
    nonce_expires = fresh_token(credentials, now=now, window=timedelta(seconds=settings.wsse_created_window_s))
    with unit_of_work(factory) as session:
        verdict = throttle.begin_login(session, username=credentials.username, address=address,
                                       settings=settings, now=now)
    verdict.raise_if_blocked()
    with unit_of_work(factory) as session:
        officer = authenticate(session, username=credentials.username, password=credentials.password)
        if not throttle.use_nonce(session, username=officer.username, nonce=credentials.nonce or "",
                                  expires_at=nonce_expires, now=now):
            raise replay_fault()
        throttle.login_succeeded(session, username=credentials.username, address=address, settings=settings)
        return officer.id
