"""Case rules held alike over REST and the SOAP department exchange (issue 7, deliverable 8):

* one supplement notice (一次性告知补正) per step, intake and review (Administrative Licensing Law Art. 32);
* a case whose system of record is a partner platform is read-only to hub officers;
* an officer gets the same 404 for a case of another department as for an unknown number.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from typing import Any
from xml.sax.saxutils import escape

from fastapi.testclient import TestClient
from lxml import etree

from hub.clock import FixedClock
from tests.conftest import DEMO_PASSWORD
from tests.support import PARTNER_SECRET, case_record, envelope, item_code, officer_of, submit

KEY = "physician-practice-registration"  # 沈阳市卫生健康委员会 (210100-007)
OTHER_DEPARTMENT = "sy_jy_intake"  # 沈阳市教育局: same city, another department
UNKNOWN = "210100209901010000010"
NS = "urn:ln:hub:department-exchange:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_TEXT = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"
ART_32 = "第三十二条"


# --- helpers: REST officer and applicant calls, raw SOAP posts -------------------------------------


def act(client: TestClient, officers: Any, username: str, number: str, action: str,
        opinion: str | None = "意见") -> Any:
    return client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": opinion},
                       headers=officers.headers(username))


def supplement(client: TestClient, receipt: dict[str, Any]) -> None:
    response = client.post(f"/api/v1/applications/{receipt['tracking_no']}/supplement",
                           json={"note": "已按告知补齐"}, headers={"X-Query-Code": receipt["query_code"]})
    assert response.status_code == 200, response.text


def soap(client: TestClient, clock: FixedClock, operation: str, fields: str, *, username: str) -> etree._Element:
    """A hand-written SOAP 1.1 envelope posted as bytes; returns the Body's one child."""
    nonce = base64.b64encode(os.urandom(16)).decode()
    created = clock.now().isoformat().replace("+00:00", "Z")
    header = (f"<d:Exchange><d:messageId>{uuid.uuid4()}</d:messageId><d:client>rules-test</d:client>"
              f"<d:service>{operation}</d:service><d:onBehalfOf>{escape(username)}</d:onBehalfOf></d:Exchange>"
              f'<wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}"><wsse:UsernameToken>'
              f"<wsse:Username>{escape(username)}</wsse:Username>"
              f'<wsse:Password Type="{PASSWORD_TEXT}">{escape(DEMO_PASSWORD)}</wsse:Password>'
              f"<wsse:Nonce>{nonce}</wsse:Nonce><wsu:Created>{created}</wsu:Created>"
              f"</wsse:UsernameToken></wsse:Security>")
    body = (f'<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:d="{NS}">'
            f"<soapenv:Header>{header}</soapenv:Header>"
            f"<soapenv:Body><d:{operation}>{fields}</d:{operation}></soapenv:Body></soapenv:Envelope>")
    response = client.post("/soap/department-exchange", content=body.encode(),
                           headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NS}/{operation}"'})
    return etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body")[0]


def decide(client: TestClient, clock: FixedClock, username: str, number: str, action: str,
           opinion: str = "意见") -> etree._Element:
    return soap(client, clock, "SubmitDecision", f"<d:trackingNo>{number}</d:trackingNo><d:action>{action}</d:action>"
                                                 f"<d:opinion>{escape(opinion)}</d:opinion>", username=username)


def fault(payload: etree._Element) -> dict[str, str]:
    assert payload.tag == f"{{{SOAP_ENV}}}Fault", etree.tostring(payload, encoding="unicode")
    detail = payload.find("detail/{*}ExchangeFault")
    return {"faultcode": payload.findtext("faultcode") or "", "faultstring": payload.findtext("faultstring") or "",
            **{etree.QName(child).localname: child.text or "" for child in detail}}


def answered_state(payload: etree._Element) -> str:
    assert etree.QName(payload).localname == "SubmitDecisionResponse", etree.tostring(payload, encoding="unicode")
    return payload.findtext(f"{{{NS}}}state") or ""


def pending_actions(client: TestClient, clock: FixedClock, username: str, number: str) -> list[str]:
    page = soap(client, clock, "FetchPendingCases", "<d:offset>0</d:offset><d:limit>500</d:limit>", username=username)
    for case in page.iterfind(f"{{{NS}}}case"):
        if case.findtext(f"{{{NS}}}trackingNo") == number:
            return [a.text or "" for a in case.iterfind(f"{{{NS}}}availableAction")]
    raise AssertionError(f"{number} not in {username}'s pending cases")


def partner_case(client: TestClient, *, steps: int, version: int = 1, external_id: str | None = None) -> str:
    """A 沈阳 city platform case (system of record: the platform), pushed over REST."""
    record = case_record(item_code(client, KEY), external_id=external_id or f"SY-{uuid.uuid4().hex[:12]}",
                         version=version, steps=steps)
    response = client.post("/api/v1/exchange/records", json={"records": [envelope(record)]},
                           auth=("shenyang", PARTNER_SECRET))
    result = response.json()["results"][0]
    assert result["status"] == "applied", result
    return str(result["tracking_no"])


# --- one supplement notice per step (Art. 32) --------------------------------------------------------


def test_a_second_supplement_notice_at_intake_is_refused_over_rest(client: TestClient, officers: Any) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]
    intake = officer_of(KEY, "intake")
    assert act(client, officers, intake, number, "request_supplement", "请一次性补齐执业机构证明").status_code == 200
    supplement(client, receipt)

    again = act(client, officers, intake, number, "request_supplement", "还缺体检报告")
    assert again.status_code == 409
    problem = again.json()
    assert again.headers["content-type"].startswith("application/problem+json")
    assert problem["type"].endswith("/once-per-step")
    assert ART_32 in problem["detail"] and "「受理」环节只能办理一次" in problem["detail"]
    assert [(e["field"], e["rule"]) for e in problem["errors"]] == [("action", "once_per_step")]
    view = client.get(f"/api/v1/cases/{number}", headers=officers.headers(intake)).json()
    assert view["available_actions"] == ["accept", "refuse_intake"]
    assert [s["action"] for s in view["steps"]].count("request_supplement") == 1
    assert act(client, officers, intake, number, "accept").status_code == 200


def test_review_has_its_own_one_notice_and_no_second(client: TestClient, officers: Any) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]
    intake, reviewer = officer_of(KEY, "intake"), officer_of(KEY, "reviewer")
    act(client, officers, intake, number, "request_supplement", "请补齐执业机构证明")
    supplement(client, receipt)
    act(client, officers, intake, number, "accept")
    first = act(client, officers, reviewer, number, "request_supplement", "请补交体检报告原件")
    assert first.status_code == 200, first.text  # the intake notice does not use up the review one
    supplement(client, receipt)
    again = act(client, officers, reviewer, number, "request_supplement", "再补一份")
    assert again.status_code == 409
    assert "「审核」环节只能办理一次" in again.json()["detail"]
    queue = client.get("/api/v1/cases/queue", params={"limit": 500}, headers=officers.headers(reviewer)).json()
    entry = next(e for e in queue["entries"] if e["tracking_no"] == number)
    assert entry["actions"] == ["review"]


def test_a_second_supplement_notice_is_a_soap_fault_naming_the_rule(client: TestClient, clock: FixedClock) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]
    intake = officer_of(KEY, "intake")
    asked = decide(client, clock, intake, number, "request_supplement", "请补齐")
    assert answered_state(asked) == "awaiting_supplement"
    supplement(client, receipt)
    assert "request_supplement" not in pending_actions(client, clock, intake, number)

    refused = fault(decide(client, clock, intake, number, "request_supplement", "又缺一份"))
    assert refused["faultcode"] == "soap:Client"
    assert (refused["code"], refused["rule"], refused["field"]) == ("CONFLICT", "once_per_step", "action")
    assert ART_32 in refused["faultstring"] and refused["faultstring"].endswith(" [once_per_step]")
    assert "may be taken once in step 'intake'" in refused["message"]
    assert answered_state(decide(client, clock, intake, number, "accept")) == "under_review"
    reviewer = officer_of(KEY, "reviewer")
    asked = decide(client, clock, reviewer, number, "request_supplement", "请补交")
    assert answered_state(asked) == "review_supplement"
    supplement(client, receipt)
    assert fault(decide(client, clock, reviewer, number, "request_supplement", "再补"))["rule"] == "once_per_step"


# --- partner platform cases are read-only in the hub ---------------------------------------------------


def test_hub_officers_cannot_act_on_a_partner_platforms_case(client: TestClient, officers: Any) -> None:
    external_id = f"SY-{uuid.uuid4().hex[:12]}"
    number = partner_case(client, steps=4, external_id=external_id)  # granted on the city platform
    for role, action in (("intake", "complete"), ("approver", "complete")):
        refused = act(client, officers, officer_of(KEY, role), number, action)
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert problem["type"].endswith("/partner-system-of-record")
        assert "shenyang" in problem["detail"] and "read-only" in problem["detail"]
    view = client.get(f"/api/v1/cases/{number}", headers=officers.headers(officer_of(KEY, "intake"))).json()
    assert (view["origin"], view["state"], view["available_actions"]) == ("partner", "granted", [])

    # The platform completes it: one 办结 step, the platform's.
    partner_case(client, steps=5, version=2, external_id=external_id)
    steps = client.get(f"/api/v1/transparency/cases/{number}").json()["steps"]
    assert [s["action"] for s in steps] == ["submit", "accept", "review", "grant", "complete"]


def test_partner_cases_are_not_in_the_hub_queue_and_refused_over_soap(client: TestClient, officers: Any,
                                                                      clock: FixedClock) -> None:
    number = partner_case(client, steps=1)  # submitted on the city platform, not yet accepted
    intake = officer_of(KEY, "intake")
    queue = client.get("/api/v1/cases/queue", params={"limit": 500}, headers=officers.headers(intake)).json()
    assert number not in {e["tracking_no"] for e in queue["entries"]}
    refused = act(client, officers, intake, number, "accept")
    assert refused.status_code == 409 and refused.json()["type"].endswith("/partner-system-of-record")

    payload = fault(decide(client, clock, intake, number, "accept"))
    assert (payload["code"], payload["rule"]) == ("CONFLICT", "partner_system_of_record")
    assert "read-only in the hub" in payload["message"]
    assert payload["faultstring"].endswith(" [partner_system_of_record]")
    page = soap(client, clock, "FetchPendingCases", "<d:offset>0</d:offset><d:limit>500</d:limit>", username=intake)
    assert number not in {c.findtext(f"{{{NS}}}trackingNo") for c in page.iterfind(f"{{{NS}}}case")}


# --- 404 for any case the officer may not see ---------------------------------------------------------


def _as_unknown(response: Any, number: str) -> Any:
    return json.loads(response.text.replace(number, UNKNOWN))


def test_another_departments_case_is_answered_like_an_unknown_one_over_rest(client: TestClient,
                                                                            officers: Any) -> None:
    number = submit(client, KEY)["tracking_no"]
    headers = officers.headers(OTHER_DEPARTMENT)
    calls = [
        lambda no: client.get(f"/api/v1/cases/{no}", headers=headers),
        lambda no: client.post(f"/api/v1/cases/{no}/actions", json={"action": "accept"}, headers=headers),
        lambda no: client.post(f"/api/v1/cases/{no}/verifications", headers=headers),
    ]
    for call in calls:
        hidden, unknown = call(number), call(UNKNOWN)
        assert (hidden.status_code, unknown.status_code) == (404, 404), hidden.text
        assert hidden.headers["content-type"] == unknown.headers["content-type"]
        assert _as_unknown(hidden, number) == unknown.json()
    # The department itself still sees and acts on it.
    own = officers.headers(officer_of(KEY, "intake"))
    assert client.get(f"/api/v1/cases/{number}", headers=own).status_code == 200


def test_another_departments_case_is_answered_like_an_unknown_one_over_soap(client: TestClient,
                                                                            clock: FixedClock) -> None:
    number = submit(client, KEY)["tracking_no"]
    for operation, fields in (
        ("GetCase", "<d:trackingNo>{no}</d:trackingNo>"),
        ("SubmitDecision", "<d:trackingNo>{no}</d:trackingNo><d:action>accept</d:action>"),
    ):
        hidden = fault(soap(client, clock, operation, fields.format(no=number), username=OTHER_DEPARTMENT))
        unknown = fault(soap(client, clock, operation, fields.format(no=UNKNOWN), username=OTHER_DEPARTMENT))
        assert (hidden["code"], hidden["rule"], hidden["field"]) == ("NOT_FOUND", "exists", "trackingNo")
        assert {k: v.replace(number, UNKNOWN) for k, v in hidden.items()} == unknown
