"""The one zeep setup for SOAP counterparts.

* Each WSDL is loaded once per (URL, timeout) and cached for the life of the process; every WSDL/XSD
  document is fetched once through the same transport, which zeep and the contract schema share.
* ``operation_timeout`` and the load timeout are always set (zeep's default is to wait forever).
* Responses are validated against the XSD the WSDL declares before zeep turns them into Python
  values: zeep alone reads ``<match>perhaps</match>`` as False and a missing element as None, which
  for a registry answer would be a silent wrong verdict.
* Nothing personal is logged: zeep's own loggers (which print whole envelopes at DEBUG) are capped at
  WARNING, and our plugin logs only the operation name and sizes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.plugins import Plugin
from zeep.transports import Transport

from adapters.errors import (
    AdapterError,
    MalformedResponse,
    NotFoundInRegistry,
    RegistryRejected,
    RegistryTimeout,
    RegistryUnavailable,
)
from adapters.http import USER_AGENT

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
_NAMESPACE = re.compile(r"\{[^}]*\}")

log = logging.getLogger(__name__)
# zeep logs full request and response envelopes (names, ID numbers) at DEBUG.
logging.getLogger("zeep").setLevel(logging.WARNING)


class ContractViolation(Exception):
    """A response that does not match the counterpart's own XSD."""


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


class _OnceTransport(Transport):
    """A zeep transport that fetches each WSDL/XSD document once and shares it with the schema builder."""

    def __init__(self, *, timeout_s: float) -> None:
        session = requests.Session()
        # Proxy variables must not route registry traffic (personal data) anywhere unexpected.
        session.trust_env = False
        super().__init__(timeout=timeout_s, operation_timeout=timeout_s, session=session)
        session.headers["User-Agent"] = USER_AGENT
        self._documents: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        response: requests.Response = super().post(address, message, headers)
        # SOAP 1.1 answers 200 or, for a fault, 500 with an envelope. Anything else (a proxy's 502/503
        # page, a 404 from a wrong address) is not SOAP: classify it by its status before zeep tries
        # to read the page as an envelope.
        status = response.status_code
        if status not in (200, 500) or (status == 500 and not _is_xml(response)):
            raise requests.HTTPError(f"HTTP {status}", response=response)
        return response

    def load(self, url: str) -> bytes:
        with self._lock:
            cached = self._documents.get(url)
        if cached is not None:
            return cached
        content = bytes(super().load(url))
        with self._lock:
            self._documents[url] = content
        return content


def _is_xml(response: requests.Response) -> bool:
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return media_type in ("text/xml", "application/xml", "application/soap+xml")


class _Resolver(etree.Resolver):
    """Lets lxml resolve xs:import through the zeep transport (lxml itself is kept off the network)."""

    def __init__(self, transport: _OnceTransport, inline: Mapping[str, bytes]) -> None:
        super().__init__()
        self._transport = transport
        self._inline = inline

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:
        if system_url is None:  # lxml passes None for an entity known only by its public id
            return None
        if system_url in self._inline:
            return self.resolve_string(self._inline[system_url], context, base_url=system_url)
        if system_url.startswith(("http://", "https://", "file://")):
            return self.resolve_string(self._transport.load(system_url), context, base_url=system_url)
        return None


def _contract_schema(wsdl_url: str, transport: _OnceTransport) -> etree.XMLSchema | None:
    """Compile every schema the WSDL declares (inline or imported) into one lxml validator."""
    wsdl = etree.fromstring(transport.load(wsdl_url), _safe_parser())
    imports: list[tuple[str, str]] = []
    inline: dict[str, bytes] = {}
    for index, schema in enumerate(wsdl.iterfind(f"{{{WSDL_NS}}}types/{{{XSD_NS}}}schema")):
        for imp in schema.iterfind(f"{{{XSD_NS}}}import"):
            if imp.get("schemaLocation"):
                imports.append((imp.get("namespace", ""), urljoin(wsdl_url, imp.get("schemaLocation", ""))))
        has_content = any(isinstance(c.tag, str) and c.tag != f"{{{XSD_NS}}}import" for c in schema)
        if schema.get("targetNamespace") and has_content:
            url = urljoin(wsdl_url, f"__inline_schema_{index}.xsd")
            inline[url] = etree.tostring(schema)
            imports.append((schema.get("targetNamespace", ""), url))
    if not imports:
        return None
    driver = etree.Element(f"{{{XSD_NS}}}schema", nsmap={"xs": XSD_NS})
    for namespace, location in imports:
        etree.SubElement(driver, f"{{{XSD_NS}}}import", namespace=namespace, schemaLocation=location)
    parser = _safe_parser()
    parser.resolvers.add(_Resolver(transport, inline))
    document = etree.fromstring(etree.tostring(driver), parser, base_url=wsdl_url)
    return etree.XMLSchema(document)


def _describe_schema_error(schema: etree.XMLSchema) -> str:
    errors = list(schema.error_log)
    if not errors:
        return "does not match the schema"
    error = errors[0]
    element = (error.path or "?").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    if "ELEMENT_CONTENT" in error.type_name:
        # Structural messages name elements only ("Missing child element(s). Expected is ( status ).").
        detail = _NAMESPACE.sub("", error.message.split(": ", 1)[-1])
    else:
        # Type and facet messages quote the offending value, which may be personal data: drop it.
        detail = "value is not valid for its type"
    return f"element '{element}': {detail}"


class _ContractPlugin(Plugin):
    """Validates each response payload against the XSD before zeep deserialises it."""

    def __init__(self, schema: etree.XMLSchema) -> None:
        self._schema = schema

    def ingress(self, envelope: etree._Element, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        body = envelope.find(f"{{{SOAP11_ENV}}}Body")
        children = [] if body is None else [c for c in body if isinstance(c.tag, str)]
        if not children:
            raise ContractViolation("the SOAP Body is missing or empty")
        payload = children[0]
        if payload.tag == f"{{{SOAP11_ENV}}}Fault":
            return envelope, http_headers
        if not self._schema.validate(etree.fromstring(etree.tostring(payload))):
            raise ContractViolation(_describe_schema_error(self._schema))
        return envelope, http_headers


class _PrivacyLogPlugin(Plugin):
    """Logs that an exchange happened — operation and size only, never the envelope."""

    def egress(self, envelope: etree._Element, http_headers: Any, operation: Any,
               binding_options: Any) -> tuple[Any, Any]:
        log.debug("soap request %s (%d bytes)", getattr(operation, "name", "?"), len(etree.tostring(envelope)))
        return envelope, http_headers

    def ingress(self, envelope: etree._Element, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        log.debug("soap response %s", getattr(operation, "name", "?"))
        return envelope, http_headers


@dataclass(frozen=True)
class SoapEndpoint:
    """A loaded WSDL: the zeep client, its service proxy and the response validator."""

    wsdl_url: str
    client: zeep.Client
    service: Any
    validates_responses: bool


_ENDPOINTS: dict[tuple[str, float, str | None], SoapEndpoint] = {}
_ENDPOINTS_LOCK = threading.Lock()


def soap_endpoint(wsdl_url: str, *, timeout_s: float, endpoint_url: str | None = None) -> SoapEndpoint:
    """The cached endpoint for ``wsdl_url``, loading the WSDL on first use.

    ``endpoint_url`` overrides the WSDL's soap:address (registries behind a gateway often publish an
    internal address). Load failures raise and are not cached, so a registry that was down at start-up
    is picked up once it answers.
    """
    key = (wsdl_url, timeout_s, endpoint_url)
    with _ENDPOINTS_LOCK:
        cached = _ENDPOINTS.get(key)
    if cached is not None:
        return cached
    endpoint = _load(wsdl_url, timeout_s, endpoint_url)
    with _ENDPOINTS_LOCK:
        return _ENDPOINTS.setdefault(key, endpoint)


def _load(wsdl_url: str, timeout_s: float, endpoint_url: str | None) -> SoapEndpoint:
    transport = _OnceTransport(timeout_s=timeout_s)
    settings = zeep.Settings(strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True)
    client = zeep.Client(wsdl_url, transport=transport, settings=settings)
    try:
        schema = _contract_schema(wsdl_url, transport)
    except etree.LxmlError as exc:
        # A real registry's WSDL may use schema features lxml cannot compile; zeep still parses strictly.
        log.warning("cannot compile the XSD of %s; responses are not schema-validated (%s)", wsdl_url, exc)
        schema = None
    client.plugins.append(_PrivacyLogPlugin())
    if schema is not None:
        client.plugins.append(_ContractPlugin(schema))
    if endpoint_url:
        binding = next(iter(client.wsdl.bindings))
        service = client.create_service(binding, endpoint_url)
    else:
        service = client.service
    return SoapEndpoint(wsdl_url=wsdl_url, client=client, service=service, validates_responses=schema is not None)


def clear_soap_cache() -> None:
    """Forget every loaded WSDL (for tests, or after a counterpart publishes a new contract)."""
    with _ENDPOINTS_LOCK:
        _ENDPOINTS.clear()


def call_operation(endpoint: SoapEndpoint, operation: str, *, registry: str, what: str, timeout_s: float,
                   http_headers: Mapping[str, str], soap_headers: Mapping[str, Any], **params: Any) -> Any:
    """Call one operation with the exchange identifiers in both the SOAP header and HTTP headers."""
    try:
        with endpoint.client.settings(extra_http_headers=dict(http_headers)):
            return getattr(endpoint.service, operation)(**params, _soapheaders=dict(soap_headers))
    except Exception as exc:  # every failure leaves here classified; see classify_soap_error
        raise classify_soap_error(exc, registry, what=what, timeout_s=timeout_s) from None


def load_endpoint(wsdl_url: str, *, registry: str, timeout_s: float, endpoint_url: str | None = None) -> SoapEndpoint:
    """``soap_endpoint`` with load failures classified like call failures."""
    try:
        return soap_endpoint(wsdl_url, timeout_s=timeout_s, endpoint_url=endpoint_url)
    except Exception as exc:
        raise classify_soap_error(exc, registry, what="WSDL", timeout_s=timeout_s, loading=True) from None


def _fault_kind(code: str | None) -> str:
    # "soap:Server", "{ns}Server" and "Server" all mean the same.
    return (code or "").rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _registry_fault_code(fault: zeep.exceptions.Fault) -> str | None:
    detail = fault.detail
    return detail.findtext(".//{*}code") if detail is not None else None


def _classify_fault(fault: zeep.exceptions.Fault, registry: str, what: str) -> AdapterError:
    kind = _fault_kind(fault.code)
    registry_code = _registry_fault_code(fault)
    if kind == "Server":
        return RegistryUnavailable.because(registry, f"SOAP Server fault ({registry_code or 'no code'})")
    if registry_code == "NOT_FOUND":
        return NotFoundInRegistry.for_identifier(registry, what)
    return RegistryRejected.because(registry, f"SOAP {kind or 'unknown'} fault ({registry_code or 'no code'})")


def _classify_http_status(status: int | None, registry: str, loading: bool) -> AdapterError:
    if status is not None and (status >= 500 or status == 429):
        return RegistryUnavailable.because(registry, f"HTTP {status}")
    if status is None or status < 300:
        # A 200 whose body is not XML at all.
        return MalformedResponse.because(registry, "the response is not XML")
    if loading:
        return RegistryRejected.because(registry, f"the WSDL could not be loaded (HTTP {status}); check its URL")
    return RegistryRejected.because(registry, f"HTTP {status}")


def classify_soap_error(exc: BaseException, registry: str, *, what: str, timeout_s: float,
                        loading: bool = False) -> AdapterError:
    """Map requests/zeep/lxml failures onto the error hierarchy, never copying their text (it may
    contain the response body, i.e. personal data)."""
    if isinstance(exc, AdapterError):
        return exc
    if isinstance(exc, requests.exceptions.Timeout):
        return RegistryTimeout.after(registry, timeout_s)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return RegistryUnavailable.because(registry, f"connection failed ({type(exc).__name__})")
    if isinstance(exc, requests.exceptions.HTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return _classify_http_status(status, registry, loading)
    if isinstance(exc, zeep.exceptions.Fault):
        return _classify_fault(exc, registry, what)
    if isinstance(exc, zeep.exceptions.TransportError):
        return _classify_http_status(exc.status_code, registry, loading)
    if isinstance(exc, ContractViolation):
        return MalformedResponse.because(registry, f"the answer does not match the WSDL's schema: {exc}")
    if isinstance(exc, zeep.exceptions.XMLSyntaxError | zeep.exceptions.XMLParseError | etree.XMLSyntaxError):
        return MalformedResponse.because(registry, f"the {'WSDL' if loading else 'answer'} is not valid SOAP/XML")
    if isinstance(exc, zeep.exceptions.ValidationError | TypeError | AttributeError | LookupError):
        return RegistryRejected.because(registry, f"the request does not fit the WSDL ({type(exc).__name__})")
    return MalformedResponse.because(registry, f"unexpected SOAP failure ({type(exc).__name__})")
