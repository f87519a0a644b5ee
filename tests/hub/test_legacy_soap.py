"""The department-exchange SOAP service: WSDL-first, WS-Security, the REST officer rules, faults not 500s.

Calls go over real sockets (uvicorn on 127.0.0.1) with zeep — the legacy mock's client — and with an
independent client that is not zeep: httpx + lxml + a hand-written SOAP 1.1 envelope, which reads the
endpoint address and the soapActions from the WSDL as a partner's developer would.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
import zeep.exceptions
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from zeep.helpers import serialize_object

from hub.cases.models import Case, CaseEvent
from hub.clock import FixedClock
from mocks.legacy_department import HubDepartmentExchange
from tests.conftest import DEMO_PASSWORD
from tests.servers import serving
from tests.support import submit

KEY = "physician-practice-registration"  # 沈阳市卫生健康委员会 (210100-007)
NS = "urn:ln:hub:department-exchange:v1"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_TEXT = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"
REPEATED = {"case", "availableAction", "step", "formField", "branchProgress"}


# The test clock of each served hub: clients stamp their WS-Security Created with the hub's own time.
_CLOCKS: dict[str, FixedClock] = {}


@pytest.fixture
def hub_url(app: Any, clock: FixedClock) -> Iterator[str]:
    with serving(app) as url:
        _CLOCKS[url] = clock
        yield url
        _CLOCKS.pop(url, None)


def officer(hub_url: str, username: str, password: str = DEMO_PASSWORD) -> HubDepartmentExchange:
    return HubDepartmentExchange(hub_url, username, password, timeout_s=60, now=_CLOCKS[hub_url].now)


def fault_detail(fault: zeep.exceptions.Fault) -> dict[str, str]:
    assert fault.detail is not None
    node = fault.detail.find(f"{{{NS}}}ExchangeFault")
    return {etree.QName(child).localname: child.text or "" for child in node}


# --- the independent client (no zeep) -------------------------------------------------------------


class RawClient:
    """httpx + lxml: reads address and soapActions from the WSDL, posts hand-written envelopes."""

    def __init__(self, http: httpx.Client, wsdl_url: str, clock: FixedClock) -> None:
        self.http = http
        self.clock = clock
        wsdl = etree.fromstring(http.get(wsdl_url).content)
        self.namespace = wsdl.get("targetNamespace")
        self.address = wsdl.find(f"{{{WSDL_NS}}}service/{{{WSDL_NS}}}port/{{{WSDL_SOAP}}}address").get("location")
        self.actions = {
            op.get("name"): op.find(f"{{{WSDL_SOAP}}}operation").get("soapAction")
            for op in wsdl.iterfind(f"{{{WSDL_NS}}}binding/{{{WSDL_NS}}}operation")
        }

    def post(self, operation: str, fields: str, *, username: str, password: str = DEMO_PASSWORD,
             exchange: bool = True, security: bool = True, message_id: str | None = None,
             on_behalf_of: str | None = None, nonce: str | None = None, created: str | None = None,
             freshness: bool = True) -> tuple[int, etree._Element]:
        return self.post_envelope(operation, self.envelope(
            operation, fields, username=username, password=password, exchange=exchange, security=security,
            message_id=message_id, on_behalf_of=on_behalf_of, nonce=nonce, created=created, freshness=freshness))

    def envelope(self, operation: str, fields: str, *, username: str, password: str = DEMO_PASSWORD,
                 exchange: bool = True, security: bool = True, message_id: str | None = None,
                 on_behalf_of: str | None = None, nonce: str | None = None, created: str | None = None,
                 freshness: bool = True) -> bytes:
        """A literal request; the UsernameToken carries a fresh Nonce and Created unless told otherwise."""
        nonce = nonce or base64.b64encode(uuid.uuid4().bytes).decode()
        created = created or self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        fresh = (f"<wsse:Nonce>{escape(nonce)}</wsse:Nonce><wsu:Created>{escape(created)}</wsu:Created>"
                 if freshness else "")
        header = ""
        if exchange:
            header += (f"<d:Exchange><d:messageId>{message_id or uuid.uuid4()}</d:messageId>"
                       f"<d:client>raw-client</d:client><d:service>{operation}</d:service>"
                       f"<d:onBehalfOf>{escape(on_behalf_of or username)}</d:onBehalfOf></d:Exchange>")
        if security:
            header += (f'<wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}"><wsse:UsernameToken>'
                       f"<wsse:Username>{escape(username)}</wsse:Username>"
                       f'<wsse:Password Type="{PASSWORD_TEXT}">{escape(password)}</wsse:Password>'
                       f"{fresh}</wsse:UsernameToken></wsse:Security>")
        envelope = (f'<?xml version="1.0" encoding="utf-8"?>'
                    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:d="{self.namespace}">'
                    f"<soapenv:Header>{header}</soapenv:Header>"
                    f"<soapenv:Body><d:{operation}>{fields}</d:{operation}></soapenv:Body></soapenv:Envelope>")
        return envelope.encode()

    def post_envelope(self, operation: str, envelope: bytes) -> tuple[int, etree._Element]:
        response = self.http.post(self.address, content=envelope,
                                  headers={"Content-Type": "text/xml; charset=utf-8",
                                           "SOAPAction": f'"{self.actions[operation]}"'})
        assert response.headers["content-type"].startswith("text/xml")
        return response.status_code, etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body")[0]


def raw_values(element: etree._Element) -> Any:
    """An answer element as nested dicts of text, repeated elements as lists."""
    if not len(element):
        return element.text or ""
    result: dict[str, Any] = {}
    for child in element:
        name = etree.QName(child).localname
        value = raw_values(child)
        if name in REPEATED:
            result.setdefault(name, []).append(value)
        else:
            result[name] = value
    return result


def canonical(value: Any) -> Any:
    """zeep's answer in the raw client's terms: text values, None dropped, empty lists dropped."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


@pytest.fixture
def raw(hub_url: str, clock: FixedClock) -> Iterator[RawClient]:
    with httpx.Client(timeout=60, trust_env=False) as http:
        yield RawClient(http, f"{hub_url}/soap/department-exchange?wsdl", clock)


def raw_fault(payload: etree._Element) -> dict[str, str]:
    assert payload.tag == f"{{{SOAP_ENV}}}Fault", etree.tostring(payload)
    detail = payload.find("detail/{*}ExchangeFault")
    return {"faultcode": payload.findtext("faultcode"), "faultstring": payload.findtext("faultstring"),
            **{etree.QName(child).localname: child.text or "" for child in detail}}


# --- the contract ---------------------------------------------------------------------------------


def test_wsdl_is_served_as_stored_with_this_servers_address(hub_url: str, raw: RawClient) -> None:
    assert raw.address == f"{hub_url}/soap/department-exchange"
    assert raw.actions == {op: f"urn:ln:hub:department-exchange:v1/{op}"
                           for op in ("FetchPendingCases", "SubmitDecision", "GetCase", "ExtendTimeLimit",
                                      "StartSpecialProcedure", "EndSpecialProcedure", "FetchAlerts",
                                      "ExplainAlert")}
    with httpx.Client(trust_env=False) as http:
        xsd = http.get(f"{hub_url}/soap/department-exchange.v1.xsd")
        assert xsd.status_code == 200 and b'targetNamespace="urn:ln:hub:department-exchange:v1"' in xsd.content
        assert http.get(f"{hub_url}/soap/department-exchange").status_code == 400


def test_soap_endpoint_is_not_in_the_openapi_document(client: TestClient) -> None:
    assert not any(path.startswith("/soap") for path in client.get("/openapi.json").json()["paths"])


# --- the same rules as the REST officer API -------------------------------------------------------


def test_fetch_decide_and_read_a_case_with_zeep(client: TestClient, hub_url: str, session: Session) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]
    intake = officer(hub_url, "sy_wj_intake")
    page = intake.fetch_pending_cases(limit=500)
    entry = next(c for c in page.case if c.trackingNo == number)
    assert entry.state == "submitted" and entry.stateLabel == "待受理"
    assert entry.applicant.name == "张三丰"  # unmasked: the department's own case
    assert len(entry.applicant.idNumber) == 18 and "*" not in entry.applicant.idNumber
    assert set(entry.availableAction) == {"accept", "refuse_intake", "request_supplement"}

    answer = intake.submit_decision(number, "accept")
    assert (answer.fromState, answer.state, answer.duplicate) == ("submitted", "under_review", False)
    assert answer.deadline == date(2026, 3, 18)
    answer = officer(hub_url, "sy_wj_reviewer").submit_decision(number, "review", "材料齐全")
    assert answer.state == "pending_decision"

    case = intake.get_case(number)
    assert [s.action for s in case.step] == ["submit", "accept", "review"]
    assert case.step[2].opinion == "材料齐全" and case.step[2].department == "沈阳市卫生健康委员会"
    assert (case.department, case.nationalCode, case.acceptedOn) == ("210100007", "000114016000", date(2026, 3, 11))
    assert case.availableAction == []  # intake has nothing to do in pending_decision


def test_a_repeated_message_id_is_answered_but_not_applied_twice(client: TestClient, hub_url: str,
                                                                 session: Session) -> None:
    number = submit(client, KEY)["tracking_no"]
    intake = officer(hub_url, "sy_wj_intake")
    message_id = str(uuid.uuid4())
    first = intake.submit_decision(number, "accept", message_id=message_id)
    again = intake.submit_decision(number, "accept", message_id=message_id)
    assert (again.state, again.seq, again.duplicate) == (first.state, first.seq, True)
    case_id = session.scalar(select(Case.id).where(Case.tracking_no == number))
    assert session.scalar(select(func.count()).where(CaseEvent.case_id == case_id)) == 2
    with pytest.raises(zeep.exceptions.Fault) as reused:
        officer(hub_url, "sy_wj_reviewer").submit_decision(number, "review", "好", message_id=message_id)
    assert fault_detail(reused.value)["code"] == "DUPLICATE_MESSAGE"


def test_wrong_password_is_an_authentication_fault(client: TestClient, hub_url: str) -> None:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        officer(hub_url, "sy_wj_intake", "wrong-Password-9").fetch_pending_cases()
    fault = caught.value
    assert fault.code == "soap:Client"
    # The faultstring: Chinese for people, then the rule id (hub.problems); the English in the detail.
    assert fault.message == "用户名或密码错误 [credentials]"
    assert "invalid username or password" in fault_detail(fault)["message"]
    assert fault_detail(fault)["code"] == "UNAUTHENTICATED"
    assert fault_detail(fault)["rule"] == "credentials"


def test_an_officer_of_another_department_may_not_decide(client: TestClient, hub_url: str) -> None:
    number = submit(client, KEY)["tracking_no"]
    education = officer(hub_url, "sy_jy_intake")  # 沈阳市教育局
    with pytest.raises(zeep.exceptions.Fault) as caught:
        education.submit_decision(number, "accept")
    detail = fault_detail(caught.value)
    assert caught.value.code == "soap:Client"
    # Not found, exactly like an unknown number: the fault must not tell that the case exists.
    assert (detail["code"], detail["rule"], detail["field"]) == ("NOT_FOUND", "exists", "trackingNo")
    assert "unknown tracking number" in fault_detail(caught.value)["message"]
    assert caught.value.message.endswith(" [exists]")
    with pytest.raises(zeep.exceptions.Fault) as reading:
        education.get_case(number)
    assert fault_detail(reading.value)["code"] == "NOT_FOUND"
    assert number not in {c.trackingNo for c in education.fetch_pending_cases(limit=500).case}


def test_a_reviewer_may_not_grant(client: TestClient, hub_url: str) -> None:
    number = submit(client, KEY)["tracking_no"]
    officer(hub_url, "sy_wj_intake").submit_decision(number, "accept")
    reviewer = officer(hub_url, "sy_wj_reviewer")
    reviewer.submit_decision(number, "review", "同意")
    with pytest.raises(zeep.exceptions.Fault) as caught:
        reviewer.submit_decision(number, "grant", "准予")
    detail = fault_detail(caught.value)
    assert (detail["code"], detail["rule"], detail["field"]) == ("FORBIDDEN", "role", "action")
    assert "审批人员" in caught.value.message and caught.value.message.endswith(" [role]")
    assert "requires the role approver" in fault_detail(caught.value)["message"]


def test_workflow_state_and_opinion_rules_are_faults(client: TestClient, hub_url: str) -> None:
    number = submit(client, KEY)["tracking_no"]
    intake = officer(hub_url, "sy_wj_intake")
    intake.submit_decision(number, "accept")
    with pytest.raises(zeep.exceptions.Fault) as twice:
        intake.submit_decision(number, "accept")
    assert fault_detail(twice.value)["code"] == "CONFLICT"
    assert "not available in state 'under_review'" in fault_detail(twice.value)["message"]
    with pytest.raises(zeep.exceptions.Fault) as silent:
        officer(hub_url, "sy_wj_reviewer").submit_decision(number, "review")
    detail = fault_detail(silent.value)
    assert (detail["code"], detail["rule"], detail["field"]) == ("VALIDATION_FAILED", "required", "opinion")
    with pytest.raises(zeep.exceptions.Fault) as unknown:
        intake.get_case("210100209901010000010")
    assert fault_detail(unknown.value)["code"] == "NOT_FOUND"


def test_a_schema_violation_is_a_client_fault_naming_the_element(client: TestClient, hub_url: str,
                                                                 raw: RawClient) -> None:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        officer(hub_url, "sy_wj_intake").fetch_pending_cases(limit=1000)
    detail = fault_detail(caught.value)
    assert caught.value.code == "soap:Client"
    assert (detail["code"], detail["rule"], detail["field"]) == ("INVALID_REQUEST", "schema", "limit")
    assert "limit" in fault_detail(caught.value)["message"]
    assert caught.value.message == "请求不符合接口规范：元素 limit [schema]"  # the validator's English: in the detail

    status, payload = raw.post("SubmitDecision", "<d:trackingNo>ABC</d:trackingNo><d:action>accept</d:action>",
                               username="sy_wj_intake")
    fault = raw_fault(payload)
    assert status == 500 and fault["faultcode"] == "soap:Client" and fault["field"] == "trackingNo"
    _, payload = raw.post("SubmitDecision", "<d:trackingNo>210100202603110000010</d:trackingNo>"
                                            "<d:action>approve</d:action>", username="sy_wj_intake")
    assert raw_fault(payload)["field"] == "action"
    _, payload = raw.post("SubmitDecision", "<d:trackingNo>210100202603110000010</d:trackingNo>",
                          username="sy_wj_intake")
    missing = raw_fault(payload)
    assert missing["field"] == "action" and "Missing child element" in missing["message"]


def test_headers_are_required_and_checked(raw: RawClient) -> None:
    body = "<d:limit>5</d:limit>"
    _, payload = raw.post("FetchPendingCases", body, username="sy_wj_intake", security=False)
    assert raw_fault(payload)["code"] == "UNAUTHENTICATED"
    _, payload = raw.post("FetchPendingCases", body, username="sy_wj_intake", exchange=False)
    assert raw_fault(payload)["field"] == "Exchange"
    _, payload = raw.post("FetchPendingCases", body, username="sy_wj_intake", on_behalf_of="sy_wj_approver")
    assert raw_fault(payload)["rule"] == "on_behalf_of"
    _, payload = raw.post("FetchPendingCases", body, username="sy_wj_intake", message_id="not-a-uuid")
    assert raw_fault(payload)["field"] == "messageId"


def test_garbage_is_a_fault_never_a_crash(raw: RawClient) -> None:
    response = raw.http.post(raw.address, content=b"<not-xml", headers={"Content-Type": "text/xml"})
    fault = raw_fault(etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body")[0])
    assert fault["faultcode"] == "soap:Client" and fault["rule"] == "xml"
    dtd = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    response = raw.http.post(raw.address, content=dtd, headers={"Content-Type": "text/xml"})
    assert b"root:" not in response.content and b"soap:Client" in response.content


# --- an independent client gets the same data as zeep ----------------------------------------------


def test_a_raw_soap_client_gets_what_zeep_gets(client: TestClient, hub_url: str, raw: RawClient) -> None:
    number = submit(client, KEY)["tracking_no"]
    intake = officer(hub_url, "sy_wj_intake")
    intake.submit_decision(number, "accept")
    officer(hub_url, "sy_wj_reviewer").submit_decision(number, "review", "材料齐全 <符合> & 同意")

    status, payload = raw.post("GetCase", f"<d:trackingNo>{number}</d:trackingNo>", username="sy_wj_intake")
    assert status == 200 and etree.QName(payload).localname == "GetCaseResponse"
    raw_case = raw_values(payload)["case"][0]
    zeep_case = canonical(serialize_object(intake.get_case(number), dict))
    assert raw_case == zeep_case
    assert raw_case["step"][2]["opinion"] == "材料齐全 <符合> & 同意"

    approver = officer(hub_url, "sy_wj_approver")
    status, payload = raw.post("FetchPendingCases", "<d:offset>0</d:offset><d:limit>500</d:limit>",
                               username="sy_wj_approver")
    raw_page = raw_values(payload)
    zeep_page = canonical(serialize_object(approver.fetch_pending_cases(offset=0, limit=500), dict))
    assert raw_page == zeep_page
    assert number in {c["trackingNo"] for c in raw_page["case"]}

    status, payload = raw.post("SubmitDecision", f"<d:trackingNo>{number}</d:trackingNo><d:action>grant</d:action>"
                                                 "<d:opinion>准予注册</d:opinion>", username="sy_wj_approver")
    assert raw_values(payload)["state"] == "granted"
    assert approver.get_case(number).state == "granted"


# --- issue 9: a joint case's branches, served to each department's legacy system ------------------------


def test_a_departments_pending_cases_include_its_branches_of_joint_cases(client: TestClient, officers,
                                                                         hub_url: str) -> None:
    from tests.joint_support import open_joint_case

    joint = open_joint_case(client, officers)
    page = officer(hub_url, "sy_ga_intake").fetch_pending_cases(limit=500)  # 沈阳市公安局: seal engraving
    entry = next(c for c in page.case if c.trackingNo == joint.branches["seal_engraving"])
    assert (entry.parentTrackingNo, entry.branch, entry.branchLabel) == (
        joint.number, "seal_engraving", "公章刻制（公安）")
    assert (entry.state, entry.stateLabel) == ("pre_review", "同步预审")
    assert set(entry.availableAction) == {"pass_pre_review", "request_supplement"}
    assert joint.number not in {c.trackingNo for c in page.case}  # the joint case is the lead department's
    assert not {joint.branches[b] for b in ("tax_invoice", "social_insurance")} & {c.trackingNo for c in page.case}


def test_get_case_of_a_branch_shows_only_its_part_of_the_form(client: TestClient, officers, hub_url: str) -> None:
    import json

    from tests.joint_support import open_joint_case

    joint = open_joint_case(client, officers)
    case = officer(hub_url, "sy_ga_intake").get_case(joint.branches["seal_engraving"])
    assert (case.parentTrackingNo, case.branch, case.department) == (joint.number, "seal_engraving", "210100002")
    form = {field.name: json.loads(field.value) for field in case.formField}
    assert set(form) == {"enterprise_name", "domicile", "legal_representative", "seal_engraving"}
    assert form["seal_engraving"]["required"] is True
    assert case.branchProgress == []


def test_the_lead_departments_get_case_of_the_joint_case_lists_every_branch(client: TestClient, officers,
                                                                          hub_url: str) -> None:
    from tests.joint_support import BRANCH_DEPARTMENTS, open_joint_case

    joint = open_joint_case(client, officers)
    case = officer(hub_url, "sy_scjg_intake").get_case(joint.number)
    assert case.parentTrackingNo is None and case.branch is None
    assert {line.branch: line.department for line in case.branchProgress} == BRANCH_DEPARTMENTS
    assert {line.branch: line.trackingNo for line in case.branchProgress} == joint.branches
    assert {line.currentStep for line in case.branchProgress} == {"同步预审"}
    assert "shareholders" in {field.name for field in case.formField}  # the lead sees the whole form


def test_submit_decision_acts_on_the_branch_as_rest_does(client: TestClient, officers, hub_url: str) -> None:
    from tests.joint_support import LEAD_INTAKE, open_joint_case

    joint = open_joint_case(client, officers)
    answer = officer(hub_url, "sy_sw_intake").submit_decision(joint.branches["tax_invoice"], "pass_pre_review")
    assert (answer.trackingNo, answer.fromState, answer.state, answer.stateLabel) == (
        joint.branches["tax_invoice"], "pre_review", "under_review", "审核中")
    parent = client.get(f"/api/v1/cases/{joint.number}", headers=officers.headers(LEAD_INTAKE)).json()
    assert {line["branch"]: line["state"] for line in parent["branches"]}["tax_invoice"] == "under_review"
    # Another department's branch is "not found", exactly like an unknown number.
    with pytest.raises(zeep.exceptions.Fault) as caught:
        officer(hub_url, "sy_sw_intake").submit_decision(joint.branches["social_insurance"], "pass_pre_review")
    assert fault_detail(caught.value)["code"] == "NOT_FOUND"
