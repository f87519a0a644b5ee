"""Schema-first SOAP 1.1 for the partner mocks (national system, legacy department), lxml only.

The contract is a WSDL + XSD pair in ``schemas/soap/``: served as stored (soap:address replaced by the
address the client used), every request validated against the XSD (body and the ``Exchange`` header,
which is required), every answer validated before it is sent. ``soap_app`` builds the FastAPI app of
one mock with its control API and the shared fault switches (``mocks.faults``): latency, SOAP Server
fault or HTTP 5xx, garbled answers; ``refuse``/``recover`` come with ``mocks.server.MockServer``.

Independent of ``hub/``, ``adapters/`` and ``workflow/`` by design: a mock knows only the contract.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from importlib.resources import files
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from lxml import etree

from mocks.control import own_control_router
from mocks.faults import Decision, Exchange
from mocks.server import MockServer

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XML_CONTENT_TYPE = "text/xml; charset=utf-8"

FaultKind = Literal["Client", "Server"]
_ADDRESS = re.compile(rb'(<soap:address\s+location=")[^"]*(")')
_NAMESPACE = re.compile(r"\{[^}]*\}")
_QUOTED_VALUE = re.compile(r"(value|Value) '[^']*'")
_EXCHANGE_FIELDS = {"messageId": "message_id", "client": "client", "service": "service",
                    "onBehalfOf": "on_behalf_of", "case": "case"}
_GATEWAY_PAGE = b"<html><head><title>Service Unavailable</title></head><body><h1>upstream error</h1></body></html>"
_NOT_XML = b"gateway hiccup: this body is not XML"


class MockSoapFault(Exception):
    def __init__(self, kind: FaultKind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Call:
    operation: str
    values: dict[str, Any]  # the payload as nested dicts: local name -> text, dict, or list when repeated
    exchange: Exchange


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_blank_text=True)


def _clean(message: str) -> str:
    return _NAMESPACE.sub("", _QUOTED_VALUE.sub(r"\1 (redacted)", message))


class Contract:
    """One WSDL + XSD pair of ``schemas/soap/``."""

    def __init__(self, wsdl_name: str, xsd_name: str, *, fault_element: str) -> None:
        root = files("schemas") / "soap"
        self.wsdl_name, self.xsd_name = wsdl_name, xsd_name
        self.wsdl_bytes = (root / wsdl_name).read_bytes()
        self.xsd_bytes = (root / xsd_name).read_bytes()
        xsd = etree.fromstring(self.xsd_bytes, _parser())
        self.namespace: str = xsd.get("targetNamespace") or ""
        self.schema = etree.XMLSchema(xsd)
        self.fault_element = fault_element
        wsdl = etree.fromstring(self.wsdl_bytes, _parser())
        self.soap_actions: dict[str, str] = {}
        for op in wsdl.iterfind(f"{{{WSDL_NS}}}binding/{{{WSDL_NS}}}operation"):
            soap_op = op.find(f"{{{WSDL_SOAP_NS}}}operation")
            self.soap_actions[op.get("name", "")] = soap_op.get("soapAction", "") if soap_op is not None else ""

    def wsdl_for(self, endpoint_url: str) -> bytes:
        return _ADDRESS.sub(lambda m: m.group(1) + endpoint_url.encode() + m.group(2), self.wsdl_bytes)

    def parse(self, body: bytes, soap_action: str | None) -> Call:
        try:
            envelope = etree.fromstring(body, _parser())
        except etree.XMLSyntaxError as exc:
            raise MockSoapFault("Client", "INVALID_REQUEST",
                                f"请求不是合法的XML (not well-formed XML: {_clean(str(exc))})") from None
        if envelope.getroottree().docinfo.doctype or envelope.tag != f"{{{SOAP11_ENV}}}Envelope":
            raise MockSoapFault("Client", "INVALID_REQUEST",
                                "根元素必须是SOAP 1.1 Envelope (SOAP 1.1 Envelope expected)")
        body_el = envelope.find(f"{{{SOAP11_ENV}}}Body")
        children = [] if body_el is None else [c for c in body_el if isinstance(c.tag, str)]
        if len(children) != 1:
            raise MockSoapFault("Client", "INVALID_REQUEST", "Body必须恰好包含一个元素 (Body must hold one element)")
        payload = children[0]
        qname = etree.QName(payload)
        if qname.namespace != self.namespace or qname.localname not in self.soap_actions:
            raise MockSoapFault("Client", "INVALID_REQUEST", f"未知操作 (unknown operation '{qname.localname}')")
        action = (soap_action or "").strip().strip('"')
        if action and action != self.soap_actions[qname.localname]:
            raise MockSoapFault("Client", "INVALID_REQUEST",
                                f"SOAPAction与消息体不一致 (SOAPAction '{action}' does not match {qname.localname})")
        self._validate(payload, "Body")
        header = envelope.find(f"{{{SOAP11_ENV}}}Header/{{{self.namespace}}}Exchange")
        if header is None:
            raise MockSoapFault("Client", "INVALID_REQUEST", "缺少交换标识头 Exchange (SOAP header Exchange required)")
        self._validate(header, "Header")
        ids = {field: header.findtext(f"{{{self.namespace}}}{tag}") for tag, field in _EXCHANGE_FIELDS.items()}
        return Call(qname.localname, values_of(payload), Exchange(operation=qname.localname, **ids))

    def _validate(self, element: etree._Element, where: str) -> None:
        if self.schema.validate(etree.fromstring(etree.tostring(element))):
            return
        error = self.schema.error_log.last_error
        detail = _clean(error.message) if error is not None else "invalid"
        raise MockSoapFault("Client", "INVALID_REQUEST",
                            f"请求不符合接口规范 (request {where} does not match {self.xsd_name}: {detail})")

    def element(self, name: str, value: Mapping[str, Any]) -> etree._Element:
        root = etree.Element(f"{{{self.namespace}}}{name}", nsmap={"tns": self.namespace})
        _fill(root, value, self.namespace)
        return root

    def envelope(self, payload: etree._Element) -> bytes:
        env = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
        etree.SubElement(env, f"{{{SOAP11_ENV}}}Body").append(payload)
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")

    def response(self, name: str, value: Mapping[str, Any]) -> etree._Element:
        payload = self.element(name, value)
        if not self.schema.validate(etree.fromstring(etree.tostring(payload))):
            raise RuntimeError(f"mock answer breaks {self.xsd_name}: {self.schema.error_log.last_error}")
        return payload

    def fault(self, fault: MockSoapFault) -> bytes:
        env = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
        node = etree.SubElement(etree.SubElement(env, f"{{{SOAP11_ENV}}}Body"), f"{{{SOAP11_ENV}}}Fault")
        etree.SubElement(node, "faultcode").text = f"soap:{fault.kind}"
        etree.SubElement(node, "faultstring").text = fault.message
        detail = etree.SubElement(node, "detail")
        detail.append(self.element(self.fault_element, {"code": fault.code, "message": fault.message}))
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")

    def violating(self, payload: etree._Element) -> etree._Element:
        """A copy of a valid answer that breaks the schema (last field dropped, an undeclared one added)."""
        broken = etree.fromstring(etree.tostring(payload))
        children = [c for c in broken if isinstance(c.tag, str)]
        if children:
            broken.remove(children[-1])
        etree.SubElement(broken, f"{{{self.namespace}}}unexpectedField").text = "?"
        return broken


def values_of(element: etree._Element) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        value: Any = values_of(child) if len(child) else (child.text or "")
        if name in result:
            if not isinstance(result[name], list):
                result[name] = [result[name]]
            result[name].append(value)
        else:
            result[name] = value
    return result


def _fill(parent: etree._Element, value: Mapping[str, Any], namespace: str) -> None:
    for key, item in value.items():
        for one in item if isinstance(item, list) else [item]:
            if one is None:
                continue
            child = etree.SubElement(parent, f"{{{namespace}}}{key}")
            if isinstance(one, Mapping):
                _fill(child, one, namespace)
            elif isinstance(one, bool):
                child.text = "true" if one else "false"
            elif isinstance(one, datetime | date):
                child.text = one.isoformat()
            else:
                child.text = str(one)


Handler = Callable[[Call], Mapping[str, Any]]


def _xml(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type=XML_CONTENT_TYPE)


def soap_app(server: MockServer, contract: Contract, path: str, handlers: Mapping[str, Handler],
             title: str) -> FastAPI:
    """The mock's app: ``path`` (POST envelopes, GET ?wsdl), the XSD beside it, and ``/_control``."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(own_control_router(server))
    base = path.rsplit("/", 1)[0]

    @app.get(path)
    def wsdl(request: Request) -> Response:
        if "wsdl" not in request.query_params:
            return Response("SOAP 1.1 endpoint: POST an envelope here, or GET ?wsdl\n", status_code=400,
                            media_type="text/plain")
        return _xml(contract.wsdl_for(str(request.base_url).rstrip("/") + path))

    @app.get(f"{base}/{contract.xsd_name}")
    def xsd() -> Response:
        return _xml(contract.xsd_bytes)

    @app.post(path)
    async def endpoint(request: Request) -> Response:
        try:
            call = contract.parse(await request.body(), request.headers.get("soapaction"))
        except MockSoapFault as fault:
            server.faults.count_invalid()
            return _xml(contract.fault(fault), 500)
        decision = server.faults.admit(call.exchange)
        if decision.latency_s:
            await asyncio.sleep(decision.latency_s)
        if decision.fail:
            return _injected(contract, decision)
        try:
            name, value = f"{call.operation}Response", handlers[call.operation](call)
            payload = contract.response(name, value)
        except MockSoapFault as fault:
            return _xml(contract.fault(fault), 500)
        if decision.malformed == "syntax":
            return _xml(_NOT_XML)
        if decision.malformed == "schema":
            payload = contract.violating(payload)
        return _xml(contract.envelope(payload))

    return app


def _injected(contract: Contract, decision: Decision) -> Response:
    if decision.error == "soap_fault":
        fault = MockSoapFault("Server", "UNAVAILABLE", "系统暂时不可用 (temporarily unavailable; injected fault)")
        return _xml(contract.fault(fault), 500)
    return Response(content=_GATEWAY_PAGE, status_code=decision.error_status, media_type="text/html")
