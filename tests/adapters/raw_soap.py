"""An independent SOAP 1.1 client: httpx + lxml + a hand-written envelope, no zeep.

It reads the endpoint address, the target namespace, each operation's soapAction and its request
element from the WSDL, exactly as a partner system's developer would, and posts a literal envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

import httpx
from lxml import etree

WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


@dataclass(frozen=True)
class Operation:
    name: str
    soap_action: str
    request_namespace: str
    request_element: str


@dataclass(frozen=True)
class RawFault(Exception):
    faultcode: str
    registry_code: str


@dataclass(frozen=True)
class Service:
    address: str
    operations: dict[str, Operation]


def _qname(element: etree._Element, value: str) -> tuple[str, str]:
    prefix, _, local = value.rpartition(":")
    return element.nsmap[prefix or None], local


def read_wsdl(http: httpx.Client, wsdl_url: str) -> Service:
    wsdl = etree.fromstring(http.get(wsdl_url).content)
    address = wsdl.find(f"{{{WSDL}}}service/{{{WSDL}}}port/{{{WSDL_SOAP}}}address").get("location")
    messages = {m.get("name"): m for m in wsdl.iterfind(f"{{{WSDL}}}message")}
    inputs = {op.get("name"): op.find(f"{{{WSDL}}}input").get("message")
              for op in wsdl.iterfind(f"{{{WSDL}}}portType/{{{WSDL}}}operation")}
    operations = {}
    for op in wsdl.iterfind(f"{{{WSDL}}}binding/{{{WSDL}}}operation"):
        name = op.get("name")
        message = messages[_qname(wsdl, inputs[name])[1]]
        namespace, element = _qname(message, message.find(f"{{{WSDL}}}part").get("element"))
        action = op.find(f"{{{WSDL_SOAP}}}operation").get("soapAction")
        operations[name] = Operation(name, action, namespace, element)
    return Service(address=address, operations=operations)


def call(http: httpx.Client, service: Service, operation: str, params: dict[str, str],
         message_id: str = "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a") -> dict[str, str]:
    """POST one request; the answer's child elements as {local name: text}, or RawFault."""
    op = service.operations[operation]
    fields = "".join(f"<r:{key}>{escape(value)}</r:{key}>" for key, value in params.items())
    envelope = (
        f'<?xml version="1.0" encoding="utf-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:r="{op.request_namespace}">'
        f"<soapenv:Header><r:Exchange><r:messageId>{message_id}</r:messageId><r:client>raw-client</r:client>"
        f"<r:service>{operation}</r:service><r:onBehalfOf>tester</r:onBehalfOf><r:purpose>cross-check</r:purpose>"
        f"</r:Exchange></soapenv:Header>"
        f"<soapenv:Body><r:{op.request_element}>{fields}</r:{op.request_element}></soapenv:Body>"
        f"</soapenv:Envelope>"
    )
    response = http.post(service.address, content=envelope.encode("utf-8"),
                         headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{op.soap_action}"'})
    body = etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body")
    payload = body[0]
    if payload.tag == f"{{{SOAP_ENV}}}Fault":
        raise RawFault(payload.findtext("faultcode") or "", payload.findtext("detail/{*}RegistryFault/{*}code") or "")
    return {etree.QName(child).localname: child.text or "" for child in payload}
