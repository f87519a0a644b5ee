"""Schema-first SOAP 1.1 serving for the mock registries, with lxml only.

The WSDL and XSD in ``schemas/soap/`` are the contract: they are served as they are (only the
soap:address location is replaced by the address the client actually used, as every SOAP server
does), every request is validated against the XSD, and contract violations become SOAP Client faults
that name the element and the rule but never echo the submitted value (it may be personal data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from typing import Literal

from lxml import etree

from mocks.faults import Exchange

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XML_CONTENT_TYPE = "text/xml; charset=utf-8"

FaultCode = Literal["Client", "Server", "VersionMismatch"]
RegistryFaultCode = Literal["INVALID_REQUEST", "NOT_FOUND", "UNAVAILABLE", "INTERNAL_ERROR"]

_ADDRESS = re.compile(rb'(<soap:address\s+location=")[^"]*(")')
# lxml's messages quote the offending value ("The value '2101...' is not ..."); keep the rule, drop the value.
_QUOTED_VALUE = re.compile(r"(value|Value) '[^']*'")
_EXCHANGE_FIELDS = {"messageId": "message_id", "client": "client", "service": "service",
                    "onBehalfOf": "on_behalf_of", "case": "case", "purpose": "purpose"}


class SoapFault(Exception):
    """Raised by handlers; rendered as a SOAP 1.1 Fault with a RegistryFault detail."""

    def __init__(self, code: FaultCode, registry_code: RegistryFaultCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.registry_code = registry_code
        self.message = message


@dataclass(frozen=True)
class SoapRequest:
    operation: str
    payload: etree._Element
    exchange: Exchange


def _safe_parser() -> etree.XMLParser:
    # No DTDs, no entity expansion, no network: the classic XML attacks (XXE, billion laughs) fail.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_blank_text=True)


def _resource(name: str) -> bytes:
    return (files("schemas") / "soap" / name).read_bytes()


def _sanitise(message: str) -> str:
    return _QUOTED_VALUE.sub(r"\1 (redacted)", message)


class SoapContract:
    """One WSDL + XSD pair: serves them, validates requests and renders responses and faults."""

    def __init__(self, wsdl_name: str, xsd_name: str) -> None:
        self.wsdl_name = wsdl_name
        self.xsd_name = xsd_name
        self.wsdl_bytes = _resource(wsdl_name)
        self.xsd_bytes = _resource(xsd_name)
        xsd_doc = etree.fromstring(self.xsd_bytes, _safe_parser())
        self.namespace: str = xsd_doc.get("targetNamespace") or ""
        self.schema = etree.XMLSchema(xsd_doc)
        self.soap_actions = self._soap_actions(etree.fromstring(self.wsdl_bytes, _safe_parser()))

    @staticmethod
    def _soap_actions(wsdl: etree._Element) -> dict[str, str]:
        actions: dict[str, str] = {}
        for op in wsdl.iterfind(f"{{{WSDL_NS}}}binding/{{{WSDL_NS}}}operation"):
            soap_op = op.find(f"{{{WSDL_SOAP_NS}}}operation")
            actions[op.get("name", "")] = soap_op.get("soapAction", "") if soap_op is not None else ""
        return actions

    def wsdl_for(self, endpoint_url: str) -> bytes:
        """The WSDL as stored, with soap:address pointing at ``endpoint_url``."""
        return _ADDRESS.sub(lambda m: m.group(1) + endpoint_url.encode() + m.group(2), self.wsdl_bytes)

    # --- requests ---------------------------------------------------------------------------------

    def parse_request(self, body: bytes, soap_action: str | None) -> SoapRequest:
        envelope = self._parse_envelope(body)
        payload = self._single_body_child(envelope)
        operation = self._operation_of(payload)
        self._check_action(operation, soap_action)
        self._validate(payload, "Body")
        exchange = self._exchange(envelope, operation)
        return SoapRequest(operation=operation, payload=payload, exchange=exchange)

    def _parse_envelope(self, body: bytes) -> etree._Element:
        try:
            root = etree.fromstring(body, _safe_parser())
        except etree.XMLSyntaxError as exc:
            raise SoapFault("Client", "INVALID_REQUEST",
                            f"请求不是合法的XML (request is not well-formed XML: {_sanitise(str(exc))})") from None
        if root.getroottree().docinfo.doctype:
            raise SoapFault("Client", "INVALID_REQUEST", "请求不允许包含DTD (DTDs are not allowed)")
        if root.tag == f"{{{SOAP12_ENV}}}Envelope":
            raise SoapFault("VersionMismatch", "INVALID_REQUEST", "仅支持SOAP 1.1 (only SOAP 1.1 is supported)")
        if root.tag != f"{{{SOAP11_ENV}}}Envelope":
            raise SoapFault("Client", "INVALID_REQUEST",
                            "根元素必须是SOAP 1.1 Envelope (root must be a SOAP 1.1 Envelope)")
        return root

    @staticmethod
    def _single_body_child(envelope: etree._Element) -> etree._Element:
        body = envelope.find(f"{{{SOAP11_ENV}}}Body")
        children = [] if body is None else [c for c in body if isinstance(c.tag, str)]
        if len(children) != 1:
            raise SoapFault("Client", "INVALID_REQUEST",
                            "Body必须恰好包含一个元素 (Body must hold exactly one element)")
        return children[0]

    def _operation_of(self, payload: etree._Element) -> str:
        qname = etree.QName(payload)
        if qname.namespace != self.namespace or qname.localname not in self.soap_actions:
            raise SoapFault("Client", "INVALID_REQUEST",
                            f"未知操作 (unknown operation {qname.localname!r} in namespace {qname.namespace!r})")
        return qname.localname

    def _check_action(self, operation: str, soap_action: str | None) -> None:
        # SOAP 1.1 sends SOAPAction quoted; an empty value means "see the body", which we accept.
        action = (soap_action or "").strip().strip('"')
        if action and action != self.soap_actions[operation]:
            raise SoapFault("Client", "INVALID_REQUEST",
                            f"SOAPAction与消息体不一致 (SOAPAction {action!r} does not match operation {operation})")

    def _validate(self, element: etree._Element, where: str) -> None:
        standalone = etree.fromstring(etree.tostring(element))
        if not self.schema.validate(standalone):
            error = self.schema.error_log.last_error
            detail = _sanitise(error.message) if error is not None else "invalid"
            raise SoapFault("Client", "INVALID_REQUEST",
                            f"请求不符合接口规范 (request {where} does not match {self.xsd_name}: {detail})")

    def _exchange(self, envelope: etree._Element, operation: str) -> Exchange:
        header = envelope.find(f"{{{SOAP11_ENV}}}Header/{{{self.namespace}}}Exchange")
        if header is None:
            return Exchange(operation=operation)
        self._validate(header, "Header")
        values = {field: header.findtext(f"{{{self.namespace}}}{tag}") for tag, field in _EXCHANGE_FIELDS.items()}
        return Exchange(operation=operation, **values)

    # --- responses --------------------------------------------------------------------------------

    def element(self, name: str, children: dict[str, str]) -> etree._Element:
        """A response payload element in the contract's namespace."""
        parent = etree.Element(f"{{{self.namespace}}}{name}", nsmap={"tns": self.namespace})
        for tag, text in children.items():
            etree.SubElement(parent, f"{{{self.namespace}}}{tag}").text = text
        return parent

    def response(self, payload: etree._Element) -> bytes:
        envelope = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
        etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Body").append(payload)
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")

    def fault(self, fault: SoapFault) -> bytes:
        envelope = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
        node = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Body"), f"{{{SOAP11_ENV}}}Fault")
        # faultcode, faultstring and detail are unqualified in SOAP 1.1.
        etree.SubElement(node, "faultcode").text = f"soap:{fault.code}"
        etree.SubElement(node, "faultstring").text = fault.message
        detail = etree.SubElement(node, "detail")
        detail.append(self.element("RegistryFault", {"code": fault.registry_code, "message": fault.message}))
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")

    def violates_contract(self, payload: etree._Element) -> etree._Element:
        """A copy of a valid payload that breaks the schema: last field missing, an undeclared one added."""
        broken = etree.fromstring(etree.tostring(payload))
        children = [c for c in broken if isinstance(c.tag, str)]
        if children:
            broken.remove(children[-1])
        etree.SubElement(broken, f"{{{self.namespace}}}unexpectedField").text = "?"
        return broken
