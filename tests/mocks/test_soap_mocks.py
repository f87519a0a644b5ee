"""The SOAP mocks (population, tax) over raw HTTP: WSDL served as the contract, XSD-validated requests."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import pytest
from lxml import etree

from mocks.registries.seed import Seed
from mocks.runner import RunningMocks
from tests.mocks.support import HTTP

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
POP = "urn:ln:registry:population:v1"
TAX = "urn:ln:registry:tax:v1"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "soap"
EXCHANGE = ("<t:Exchange><t:messageId>6f1c2a9e-3b7d-4c4e-9a51-0d2b7f6c8e10</t:messageId><t:client>test</t:client>"
            "<t:service>test.call</t:service><t:onBehalfOf>tester</t:onBehalfOf><t:case>2101022026031100001X</t:case>"
            "<t:purpose>测试 (test)</t:purpose></t:Exchange>")


def envelope(ns: str, body: str, header: str = EXCHANGE) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}" xmlns:t="{ns}">'
            f"<soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>").encode()


def post(url: str, payload: bytes, action: str = "") -> httpx.Response:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
    return HTTP.post(url, content=payload, headers=headers)


def body_child(response: httpx.Response) -> etree._Element:
    doc = etree.fromstring(response.content)
    return doc.find(f"{{{SOAP}}}Body")[0]


def fault_of(response: httpx.Response) -> tuple[str, str]:
    fault = body_child(response)
    assert fault.tag == f"{{{SOAP}}}Fault"
    return fault.findtext("faultcode") or "", fault.findtext("detail/{*}RegistryFault/{*}code") or ""


def verify(mocks: RunningMocks, id_number: str, name: str) -> httpx.Response:
    body = f"<t:VerifyIdentity><t:idNumber>{id_number}</t:idNumber><t:name>{escape(name)}</t:name></t:VerifyIdentity>"
    return post(mocks.endpoint("population").service_url, envelope(POP, body))


def test_wsdl_is_served_as_stored_except_for_the_actual_address(mocks: RunningMocks) -> None:
    for name, file in (("population", "population.v1.wsdl"), ("tax", "tax.v1.wsdl")):
        endpoint = mocks.endpoint(name)
        served = HTTP.get(str(endpoint.wsdl_url))
        assert served.status_code == 200
        assert served.headers["content-type"].startswith("text/xml")
        stored = (SCHEMAS / file).read_text("utf-8")
        location = etree.fromstring(served.content).find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
        assert location.get("location") == endpoint.service_url
        default = etree.fromstring(stored.encode()).find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
        assert served.text == stored.replace(default.get("location"), endpoint.service_url)


def test_xsd_is_served_where_the_wsdl_import_points(mocks: RunningMocks) -> None:
    endpoint = mocks.endpoint("population")
    wsdl = etree.fromstring(HTTP.get(str(endpoint.wsdl_url)).content)
    location = wsdl.find(".//{http://www.w3.org/2001/XMLSchema}import").get("schemaLocation")
    xsd = HTTP.get(str(httpx.URL(str(endpoint.wsdl_url)).join(location)))
    assert xsd.status_code == 200
    assert xsd.content == (SCHEMAS / "population.v1.xsd").read_bytes()


def test_verify_identity_answers_match_for_the_registered_name(mocks: RunningMocks, seed: Seed) -> None:
    person = seed.normal_person
    answer = body_child(verify(mocks, person.id_number, person.name))
    assert answer.tag == f"{{{POP}}}VerifyIdentityResponse"
    assert answer.findtext(f"{{{POP}}}match") == "true"
    assert answer.findtext(f"{{{POP}}}status") == "normal"


def test_verify_identity_answers_no_match_for_another_name_and_not_found_for_unknown(
        mocks: RunningMocks, seed: Seed) -> None:
    wrong = body_child(verify(mocks, seed.deceased_person.id_number, "王某某"))
    assert (wrong.findtext(f"{{{POP}}}match"), wrong.findtext(f"{{{POP}}}status")) == ("false", "deceased")
    unknown = body_child(verify(mocks, seed.unknown_id_number, "王某某"))
    assert (unknown.findtext(f"{{{POP}}}match"), unknown.findtext(f"{{{POP}}}status")) == ("false", "notFound")


def test_responses_validate_against_the_xsd(mocks: RunningMocks, seed: Seed) -> None:
    schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "population.v1.xsd")))
    body = f"<t:LookupPerson><t:idNumber>{seed.cancelled_person.id_number}</t:idNumber></t:LookupPerson>"
    answer = body_child(post(mocks.endpoint("population").service_url, envelope(POP, body)))
    assert schema.validate(etree.fromstring(etree.tostring(answer))), schema.error_log
    assert answer.findtext(f"{{{POP}}}status") == "cancelled"
    assert answer.findtext(f"{{{POP}}}birthDate") == seed.cancelled_person.birth_date.isoformat()


def test_lookup_of_an_unknown_person_is_a_client_fault_not_found(mocks: RunningMocks, seed: Seed) -> None:
    body = f"<t:LookupPerson><t:idNumber>{seed.unknown_id_number}</t:idNumber></t:LookupPerson>"
    response = post(mocks.endpoint("population").service_url, envelope(POP, body))
    assert response.status_code == 500
    assert fault_of(response) == ("soap:Client", "NOT_FOUND")


@pytest.mark.parametrize("body", [
    "<t:VerifyIdentity><t:idNumber>21010219900307123</t:idNumber><t:name>张三</t:name></t:VerifyIdentity>",
    "<t:VerifyIdentity><t:idNumber>210102199003071234</t:idNumber></t:VerifyIdentity>",
    "<t:VerifyIdentity><t:name>张三</t:name><t:idNumber>210102199003071234</t:idNumber></t:VerifyIdentity>",
    "<t:Unknown/>",
], ids=["short-id", "missing-name", "wrong-order", "unknown-operation"])
def test_requests_breaking_the_xsd_get_a_client_fault(mocks: RunningMocks, body: str) -> None:
    response = post(mocks.endpoint("population").service_url, envelope(POP, body))
    assert response.status_code == 500
    assert fault_of(response) == ("soap:Client", "INVALID_REQUEST")


def test_fault_messages_never_echo_the_submitted_value(mocks: RunningMocks) -> None:
    body = "<t:LookupPerson><t:idNumber>21010219900307123Q</t:idNumber></t:LookupPerson>"
    response = post(mocks.endpoint("population").service_url, envelope(POP, body))
    assert fault_of(response)[1] == "INVALID_REQUEST"
    assert "21010219900307123" not in response.text


def test_an_id_number_with_a_wrong_check_character_is_a_client_fault(mocks: RunningMocks, seed: Seed) -> None:
    number = seed.normal_person.id_number
    broken = number[:17] + ("0" if number[17] != "0" else "1")
    response = post(mocks.endpoint("population").service_url,
                    envelope(POP, f"<t:LookupPerson><t:idNumber>{broken}</t:idNumber></t:LookupPerson>"))
    assert fault_of(response) == ("soap:Client", "INVALID_REQUEST")


def test_invalid_exchange_header_is_a_client_fault(mocks: RunningMocks, seed: Seed) -> None:
    header = "<t:Exchange><t:messageId>not-a-uuid</t:messageId></t:Exchange>"
    body = f"<t:LookupPerson><t:idNumber>{seed.normal_person.id_number}</t:idNumber></t:LookupPerson>"
    response = post(mocks.endpoint("population").service_url, envelope(POP, body, header))
    assert fault_of(response) == ("soap:Client", "INVALID_REQUEST")


def test_mismatched_soap_action_is_a_client_fault(mocks: RunningMocks, seed: Seed) -> None:
    body = f"<t:LookupPerson><t:idNumber>{seed.normal_person.id_number}</t:idNumber></t:LookupPerson>"
    response = post(mocks.endpoint("population").service_url, envelope(POP, body), action=f"{POP}/VerifyIdentity")
    assert fault_of(response) == ("soap:Client", "INVALID_REQUEST")


def test_non_xml_and_soap12_requests_are_rejected_with_faults(mocks: RunningMocks) -> None:
    url = mocks.endpoint("population").service_url
    assert fault_of(post(url, b"hello"))[0] == "soap:Client"
    soap12 = b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>'
    assert fault_of(post(url, soap12))[0] == "soap:VersionMismatch"


def test_external_entities_are_never_resolved(mocks: RunningMocks, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    payload = (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>'
               f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:t="{POP}"><soap:Body><t:LookupPerson>'
               "<t:idNumber>&xxe;</t:idNumber></t:LookupPerson></soap:Body></soap:Envelope>").encode()
    response = post(mocks.endpoint("population").service_url, payload)
    assert response.status_code == 500
    assert "TOP-SECRET" not in response.text


def test_tax_registration_reports_arrears_and_abnormal_status(mocks: RunningMocks, seed: Seed) -> None:
    url = mocks.endpoint("tax").service_url
    for org, status, arrears in ((seed.company_with_arrears, "normal", "true"),
                                 (seed.revoked_company, "abnormal", "true"),
                                 (seed.active_company, "normal", "false")):
        body = f"<t:GetTaxRegistration><t:creditCode>{org.credit_code}</t:creditCode></t:GetTaxRegistration>"
        answer = body_child(post(url, envelope(TAX, body), action=f"{TAX}/GetTaxRegistration"))
        assert answer.findtext(f"{{{TAX}}}registrationStatus") == status
        assert answer.findtext(f"{{{TAX}}}arrears") == arrears
        assert answer.findtext(f"{{{TAX}}}taxpayerName") == org.name


def test_tax_lookup_of_an_unknown_code_is_not_found(mocks: RunningMocks, seed: Seed) -> None:
    body = f"<t:GetTaxRegistration><t:creditCode>{seed.unknown_credit_code}</t:creditCode></t:GetTaxRegistration>"
    response = post(mocks.endpoint("tax").service_url, envelope(TAX, body))
    assert fault_of(response) == ("soap:Client", "NOT_FOUND")


def test_get_without_wsdl_query_explains_the_endpoint(mocks: RunningMocks) -> None:
    response = HTTP.get(mocks.endpoint("tax").service_url)
    assert response.status_code == 400
    assert "?wsdl" in response.text
