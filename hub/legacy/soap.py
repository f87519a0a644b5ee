"""Schema-first SOAP 1.1 serving with lxml only: the contract in ``schemas/soap/`` is the service.

No SOAP framework (spyne fails to import on Python 3.12+). ``SoapContract`` loads a WSDL and its XSD
from ``schemas/soap/`` and

* serves the WSDL exactly as stored, with only the soap:address location replaced by the address the
  client used (what every SOAP server does);
* parses a request without DTDs, entities or network access, checks the SOAPAction against the
  body, honours ``mustUnderstand``, reads the exchange-identifier header and the WS-Security
  UsernameToken (with its Nonce and Created: ``fresh_token`` checks them against the hub's clock),
  and validates the header and the body against the XSD;
* renders a response from plain Python values (mappings, lists, dates) and validates it against the
  XSD before it leaves, so the hub can never answer outside its own contract;
* renders faults: faultcode ``soap:Client`` / ``soap:Server``, the faultstring in the hub's one pattern
  (``中文说明 [rule]``, hub/problems.py) and a detail element naming the code, the rule, the field and the
  full message.

``dispatch`` runs one request through a handler and turns every failure into a fault: the hub's own
errors (401/403/404/409/422) become Client faults naming the rule, anything unexpected a Server fault
(logged); nothing escapes as an unhandled 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from typing import Any, Literal

from lxml import etree
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from hub.errors import HubError
from hub.outbox.alerts import Unserialisable, first_unsafe_text
from hub.problems import bilingual, chinese_part, rule_of
from workflow.errors import ActionNotAvailable, OncePerStep, OpinionRequired, RoleNotAllowed

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_TEXT = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"
XML_CONTENT_TYPE = "text/xml; charset=utf-8"
# WS-I Basic Profile R1126: a fault travels with HTTP 500, whichever side is at fault.
FAULT_STATUS = 500

FaultKind = Literal["Client", "Server", "MustUnderstand", "VersionMismatch"]

log = logging.getLogger("hub.legacy.soap")
_ADDRESS = re.compile(rb'(<soap:address\s+location=")[^"]*(")')
_NAMESPACE = re.compile(r"\{[^}]*\}")
# lxml quotes the offending value ("The value 'x' is not ..."); opinions may hold personal data.
_QUOTED_VALUE = re.compile(r"(value|Value) '[^']*'")
_EXCHANGE_FIELDS = {"messageId": "message_id", "client": "client", "service": "service",
                    "onBehalfOf": "on_behalf_of", "case": "case"}


class SoapFault(Exception):
    """A fault to answer: ``kind`` is the SOAP faultcode, ``code``/``rule``/``field``/``message`` go into the
    detail; the faultstring is the hub's one bilingual pattern (hub.problems): Chinese for people, then the
    rule id, ``用户名令牌的 Nonce 已使用过，疑似重放 [nonce_reused]``. ``title``: the Chinese text when the
    message has none of its own."""

    def __init__(self, kind: FaultKind, code: str, rule: str, message: str, field: str | None = None,
                 title: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.rule = rule
        self.message = message
        self.field = field
        self.title = title or CODE_TITLES.get(code, "请求无法处理")

    @property
    def faultstring(self) -> str:
        return bilingual(chinese_part(self.message, self.title), self.rule)


# The Chinese title of each fault code, for a message without Chinese text (an XML validator's English).
CODE_TITLES = {
    "INVALID_REQUEST": "请求不符合接口定义", "UNAUTHENTICATED": "未认证", "TOO_MANY_ATTEMPTS": "尝试次数过多",
    "FORBIDDEN": "无权操作", "NOT_FOUND": "未找到", "CONFLICT": "状态冲突", "VALIDATION_FAILED": "数据未通过校验",
    "DUPLICATE_MESSAGE": "消息标识重复", "INTERNAL_ERROR": "系统内部错误",
}


def client_fault(rule: str, message: str, field: str | None = None, code: str = "INVALID_REQUEST") -> SoapFault:
    return SoapFault("Client", code, rule, message, field)


@dataclass(frozen=True)
class ExchangeIds:
    """The exchange identifiers of one request (DESIGN §5)."""

    message_id: str
    client: str
    service: str
    on_behalf_of: str
    case: str | None = None


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    nonce: str | None = None  # wsse:Nonce of the UsernameToken
    created: str | None = None  # its wsu:Created (or the wsu:Timestamp's), as sent


@dataclass(frozen=True)
class SoapCall:
    operation: str
    params: dict[str, str]  # the payload's (flat) child elements: local name -> text
    exchange: ExchangeIds
    credentials: Credentials


def _safe_parser() -> etree.XMLParser:
    # No DTDs, no entity expansion, no network: XXE and billion-laughs attacks fail.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_blank_text=True)


def _resource(name: str) -> bytes:
    return (files("schemas") / "soap" / name).read_bytes()


def _sanitise(message: str) -> str:
    return _NAMESPACE.sub("", _QUOTED_VALUE.sub(r"\1 (redacted)", message))


class SoapContract:
    """One WSDL + XSD pair of ``schemas/soap/``: serves, parses, validates and renders."""

    def __init__(self, wsdl_name: str, xsd_name: str, *, fault_element: str) -> None:
        self.wsdl_name = wsdl_name
        self.xsd_name = xsd_name
        self.wsdl_bytes = _resource(wsdl_name)
        self.xsd_bytes = _resource(xsd_name)
        xsd = etree.fromstring(self.xsd_bytes, _safe_parser())
        self.namespace: str = xsd.get("targetNamespace") or ""
        self.schema = etree.XMLSchema(xsd)
        self.fault_element = fault_element
        self.soap_actions = _soap_actions(etree.fromstring(self.wsdl_bytes, _safe_parser()))

    def wsdl_for(self, endpoint_url: str) -> bytes:
        """The WSDL as stored, with soap:address pointing at ``endpoint_url``."""
        return _ADDRESS.sub(lambda m: m.group(1) + endpoint_url.encode() + m.group(2), self.wsdl_bytes)

    # --- requests ---------------------------------------------------------------------------------

    def parse(self, body: bytes, soap_action: str | None) -> SoapCall:
        envelope = _parse_envelope(body)
        payload = _single_body_child(envelope)
        operation = self._operation_of(payload)
        self._check_action(operation, soap_action)
        self.validate(payload, "Body")
        header = envelope.find(f"{{{SOAP11_ENV}}}Header")
        self._check_must_understand(header)
        exchange = self._exchange(header, operation)
        credentials = _credentials(header)
        params = {etree.QName(child).localname: (child.text or "") for child in payload
                  if isinstance(child.tag, str)}
        return SoapCall(operation=operation, params=params, exchange=exchange, credentials=credentials)

    def _operation_of(self, payload: etree._Element) -> str:
        qname = etree.QName(payload)
        if qname.namespace != self.namespace or qname.localname not in self.soap_actions:
            raise client_fault("operation", f"未知操作 (unknown operation '{qname.localname}' in namespace "
                                            f"'{qname.namespace}')", field=qname.localname)
        return qname.localname

    def _check_action(self, operation: str, soap_action: str | None) -> None:
        # SOAP 1.1 sends SOAPAction quoted; an empty value means "see the body", which is accepted.
        action = (soap_action or "").strip().strip('"')
        if action and action != self.soap_actions[operation]:
            raise client_fault("soap_action", f"SOAPAction与消息体不一致 (SOAPAction '{action}' does not match "
                                              f"operation {operation})", field="SOAPAction")

    def validate(self, element: etree._Element, where: str) -> None:
        standalone = etree.fromstring(etree.tostring(element))
        if self.schema.validate(standalone):
            return
        error = self.schema.error_log.last_error
        field, detail = _describe(error)
        raise client_fault(
            "schema", f"请求不符合接口规范：元素 {field} (request {where} does not match {self.xsd_name}: "
                      f"element '{field}': {detail})", field=field,
        )

    def _check_must_understand(self, header: etree._Element | None) -> None:
        understood = {f"{{{self.namespace}}}Exchange", f"{{{WSSE_NS}}}Security"}
        for block in [] if header is None else header:
            if not isinstance(block.tag, str):
                continue
            flag = (block.get(f"{{{SOAP11_ENV}}}mustUnderstand") or "0").strip()
            if flag in ("1", "true") and block.tag not in understood:
                name = etree.QName(block).localname
                raise SoapFault("MustUnderstand", "INVALID_REQUEST", "must_understand",
                                f"无法处理必须理解的头部 {name} (header '{name}' has mustUnderstand but is not "
                                f"understood)", field=name)

    def _exchange(self, header: etree._Element | None, operation: str) -> ExchangeIds:
        block = None if header is None else header.find(f"{{{self.namespace}}}Exchange")
        if block is None:
            raise client_fault("exchange_header", "缺少交换标识头 Exchange (SOAP header Exchange with messageId, "
                                                  "client, service, onBehalfOf is required)", field="Exchange")
        self.validate(block, "Header")
        values = {field: block.findtext(f"{{{self.namespace}}}{tag}") for tag, field in _EXCHANGE_FIELDS.items()}
        return ExchangeIds(**values)  # type: ignore[arg-type]

    # --- responses --------------------------------------------------------------------------------

    def element(self, name: str, value: Mapping[str, Any]) -> etree._Element:
        root = etree.Element(f"{{{self.namespace}}}{name}", nsmap={"tns": self.namespace})
        _fill(root, value, self.namespace)
        return root

    def response(self, name: str, value: Mapping[str, Any]) -> bytes:
        """The response envelope; raises ``ContractBreach`` if the payload does not match the XSD."""
        payload = self.element(name, value)
        if not self.schema.validate(etree.fromstring(etree.tostring(payload))):
            error = self.schema.error_log.last_error
            field, detail = _describe(error)
            raise ContractBreach(f"{name}: element '{field}': {detail}")
        envelope = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
        etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Body").append(payload)
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")

    def unserialisable(self, name: str, value: Mapping[str, Any]) -> Unserialisable | None:
        """Why the ``name`` response holding ``value`` could not go out (a character XML 1.0 cannot
        hold, or a value outside the XSD), or None when it fits. Used per case, before the response is
        built, so one case is left out instead of failing the whole answer."""
        unsafe = first_unsafe_text(value)
        if unsafe is not None:
            return unsafe
        payload = self.element(name, value)
        if self.schema.validate(etree.fromstring(etree.tostring(payload))):
            return None
        field, _ = _describe(self.schema.error_log.last_error)
        return Unserialisable(field, "schema")

    def fault(self, fault: SoapFault) -> bytes:
        envelope = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
        node = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Body"), f"{{{SOAP11_ENV}}}Fault")
        # faultcode, faultstring and detail are unqualified in SOAP 1.1.
        etree.SubElement(node, "faultcode").text = f"soap:{fault.kind}"
        etree.SubElement(node, "faultstring").text = fault.faultstring
        detail = {"code": fault.code, "rule": fault.rule[:64], "field": (fault.field or None) and fault.field[:64],
                  "message": fault.message}
        etree.SubElement(node, "detail").append(self.element(self.fault_element, detail))
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


class ContractBreach(Exception):
    """The hub built a response outside its own contract: a bug, answered as a Server fault."""


def _soap_actions(wsdl: etree._Element) -> dict[str, str]:
    actions: dict[str, str] = {}
    for op in wsdl.iterfind(f"{{{WSDL_NS}}}binding/{{{WSDL_NS}}}operation"):
        soap_op = op.find(f"{{{WSDL_SOAP_NS}}}operation")
        actions[op.get("name", "")] = soap_op.get("soapAction", "") if soap_op is not None else ""
    return actions


def _parse_envelope(body: bytes) -> etree._Element:
    try:
        root = etree.fromstring(body, _safe_parser())
    except etree.XMLSyntaxError as exc:
        raise client_fault("xml", f"请求不是合法的XML (request is not well-formed XML: {_sanitise(str(exc))})",
                           field="Envelope") from None
    if root.getroottree().docinfo.doctype:
        raise client_fault("dtd", "请求不允许包含DTD (DTDs are not allowed)", field="Envelope")
    if root.tag == f"{{{SOAP12_ENV}}}Envelope":
        raise SoapFault("VersionMismatch", "INVALID_REQUEST", "soap_version",
                        "仅支持SOAP 1.1 (only SOAP 1.1 is supported)", field="Envelope")
    if root.tag != f"{{{SOAP11_ENV}}}Envelope":
        raise client_fault("envelope", "根元素必须是SOAP 1.1 Envelope (root must be a SOAP 1.1 Envelope)",
                           field="Envelope")
    return root


def _single_body_child(envelope: etree._Element) -> etree._Element:
    body = envelope.find(f"{{{SOAP11_ENV}}}Body")
    children = [] if body is None else [c for c in body if isinstance(c.tag, str)]
    if len(children) != 1:
        raise client_fault("body", "Body必须恰好包含一个元素 (Body must hold exactly one element)", field="Body")
    return children[0]


def _credentials(header: etree._Element | None) -> Credentials:
    token = None if header is None else header.find(f"{{{WSSE_NS}}}Security/{{{WSSE_NS}}}UsernameToken")
    if token is None:
        raise SoapFault("Client", "UNAUTHENTICATED", "credentials",
                        "缺少WS-Security用户名令牌 (a wsse:Security header with a UsernameToken is required)",
                        field="wsse:UsernameToken")
    username = (token.findtext(f"{{{WSSE_NS}}}Username") or "").strip()
    password_node = token.find(f"{{{WSSE_NS}}}Password")
    if not username or password_node is None:
        raise SoapFault("Client", "UNAUTHENTICATED", "credentials",
                        "用户名令牌缺少用户名或密码 (UsernameToken needs a Username and a Password)",
                        field="wsse:UsernameToken")
    kind = password_node.get("Type")
    if kind not in (None, "", PASSWORD_TEXT):
        raise SoapFault("Client", "UNAUTHENTICATED", "password_type",
                        "仅支持PasswordText类型的密码 (only PasswordText passwords are supported; officer passwords "
                        "are stored as one-way hashes, so a digest cannot be checked)", field="wsse:Password")
    created = token.findtext(f"{{{WSU_NS}}}Created")
    if created is None and header is not None:
        created = header.findtext(f"{{{WSSE_NS}}}Security/{{{WSU_NS}}}Timestamp/{{{WSU_NS}}}Created")
    nonce = token.findtext(f"{{{WSSE_NS}}}Nonce")
    return Credentials(username=username, password=password_node.text or "",
                       nonce=(nonce or "").strip() or None, created=(created or "").strip() or None)


def fresh_token(credentials: Credentials, *, now: datetime, window: timedelta) -> datetime:
    """Check a UsernameToken's freshness: a Nonce, and a Created within ``window`` of ``now``. Returns
    until when its nonce must be remembered (after that the token is stale anyway)."""
    if not credentials.nonce or not credentials.created:
        missing = "wsse:Nonce" if not credentials.nonce else "wsu:Created"
        raise SoapFault("Client", "UNAUTHENTICATED", "token_freshness",
                        f"用户名令牌必须包含 Nonce 和 Created (the UsernameToken needs a wsse:Nonce and a wsu:Created; "
                        f"{missing} is missing)", field=missing)
    try:
        created = datetime.fromisoformat(credentials.created.replace("z", "Z"))
    except ValueError:
        raise SoapFault("Client", "UNAUTHENTICATED", "created_format",
                        "Created 不是合法的时间 (wsu:Created is not an xs:dateTime)", field="wsu:Created") from None
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)  # WS-Security times are UTC
    if abs(created - now) > window:
        seconds = int(window.total_seconds())
        raise SoapFault("Client", "UNAUTHENTICATED", "created_window",
                        f"用户名令牌已过期或时间不符，请校准时钟 (wsu:Created must be within {seconds} s of the hub's "
                        f"time {now.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ})", field="wsu:Created")
    return created + window


def replay_fault() -> SoapFault:
    return SoapFault("Client", "UNAUTHENTICATED", "nonce_reused",
                     "用户名令牌的 Nonce 已使用过，疑似重放 (this wsse:Nonce was already used: a replayed request)",
                     field="wsse:Nonce")


def _describe(error: Any) -> tuple[str, str]:
    """(element name, what is wrong) of an lxml schema error, without quoting submitted values."""
    if error is None:
        return "?", "invalid"
    element = (error.path or "?").rsplit("/", 1)[-1].rsplit(":", 1)[-1].split("[", 1)[0]
    message = error.message
    # "Element '{ns}limit': [facet 'maxInclusive'] ..." names the element itself; prefer that.
    named = re.match(r"Element '(?:\{[^}]*\})?([^']+)'", message)
    if named:
        element = named.group(1)
    missing = re.search(r"Missing child element\(s\)\. Expected is \( (?:\{[^}]*\})?([A-Za-z]+)", message)
    if missing:
        element = missing.group(1)  # name the element that is missing, not its parent
    return element, _sanitise(message.split(": ", 1)[-1])


def _fill(parent: etree._Element, value: Mapping[str, Any], namespace: str) -> None:
    for key, item in value.items():
        for one in item if isinstance(item, list) else [item]:
            if one is None:
                continue
            child = etree.SubElement(parent, f"{{{namespace}}}{key}")
            if isinstance(one, Mapping):
                _fill(child, one, namespace)
            else:
                child.text = _text(one)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in a SOAP response")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --- dispatch ------------------------------------------------------------------------------------

Handler = Callable[[SoapCall], Mapping[str, Any]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    outcome: str  # "ok" or the fault code, for the evidence log


def dispatch(contract: SoapContract, body: bytes, soap_action: str | None,
             run: Callable[[SoapCall, Callable[[Mapping[str, Any]], bytes]], bytes]) -> Answer:
    """Parse, run and answer one request; ``run(call, render)`` owns the transaction and calls
    ``render(result)`` before committing, so a response outside the contract rolls the change back."""
    call: SoapCall | None = None
    try:
        call = contract.parse(body, soap_action)
        parsed = call

        def render(result: Mapping[str, Any]) -> bytes:
            return contract.response(f"{parsed.operation}Response", result)

        answer = Answer(200, run(call, render), "ok")
    except SoapFault as fault:
        answer = Answer(FAULT_STATUS, contract.fault(fault), fault.code)
    except HubError as exc:
        fault = fault_for(exc)
        answer = Answer(FAULT_STATUS, contract.fault(fault), fault.code)
    except (StaleDataError, IntegrityError):
        fault = SoapFault("Client", "CONFLICT", "concurrent_change",
                          "办件已被他人同时修改，请重新获取后再试 (the case was changed concurrently, or this "
                          "messageId is being applied by another request; fetch the case and try again)")
        answer = Answer(FAULT_STATUS, contract.fault(fault), fault.code)
    except Exception:
        log.exception("department-exchange request failed")
        fault = SoapFault("Server", "INTERNAL_ERROR", "internal",
                          "服务内部错误，请稍后重试 (internal error; the hub has logged it, please retry later)")
        answer = Answer(FAULT_STATUS, contract.fault(fault), fault.code)
    _evidence(call, answer)
    return answer


def _evidence(call: SoapCall | None, answer: Answer) -> None:
    if call is None:
        log.info("soap request rejected before parsing (%s)", answer.outcome, extra={"status": answer.outcome})
        return
    ids = call.exchange
    log.info(
        "soap %s message=%s client=%s on_behalf_of=%s case=%s outcome=%s", call.operation, ids.message_id,
        ids.client, ids.on_behalf_of, ids.case or "-", answer.outcome,
        extra={"action": call.operation, "officer": call.credentials.username, "status": answer.outcome,
               **({"tracking_no": ids.case} if ids.case else {})},
    )


_STATUS_CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND", 409: "CONFLICT",
                 422: "VALIDATION_FAILED", 429: "TOO_MANY_ATTEMPTS"}


def fault_for(exc: HubError) -> SoapFault:
    """A hub error as a fault with the same rule id as its HTTP problem's ``code`` (hub.problems.rule_of);
    the detail's message explains the rule in English."""
    code = _STATUS_CODES.get(exc.status, "INVALID_REQUEST" if exc.status < 500 else "INTERNAL_ERROR")
    kind: FaultKind = "Server" if exc.status >= 500 else "Client"
    rule, field = rule_of(exc)
    cause = exc.__cause__
    if isinstance(cause, RoleNotAllowed):
        roles = ", ".join(sorted(cause.required_roles))
        why = f"action '{cause.action}' requires the role {roles}"
    elif isinstance(cause, ActionNotAvailable):
        why = f"action '{cause.action}' is not available in state '{cause.state}'"
    elif isinstance(cause, OncePerStep):
        why = f"action '{cause.action}' may be taken once in step '{cause.step}'"
    elif isinstance(cause, OpinionRequired):
        why = f"action '{cause.action}' needs an opinion"
    elif exc.errors:
        why = f"field {field}"
    else:
        field = field or _SOAP_FIELDS.get(rule)
        return SoapFault(kind, code, rule, f"{exc.detail} [rule {rule}]", field=field, title=exc.title)
    return SoapFault(kind, code, rule, f"{exc.detail} (rule {rule}: {why})", field=field, title=exc.title)


# Where a generic rule points in this service's requests.
_SOAP_FIELDS: dict[str, str] = {"credentials": "wsse:UsernameToken", "exists": "trackingNo",
                                "department_scope": "trackingNo"}
