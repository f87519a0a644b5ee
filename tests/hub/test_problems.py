"""One bilingual pattern for every error the hub answers (hub/problems.py): over HTTP a problem's title is
Chinese for people and its `code` the rule id for machines; over SOAP the faultstring is `中文 [rule]`, with
the same rule id as the problem's code for the same mistake, and the full message in the fault detail.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from lxml import etree

from hub.clock import FixedClock
from tests.hub.test_case_rules import fault, soap

CHINESE = re.compile(r"[\u3400-\u9fff]")
RULE_ID = r"[a-z][a-z0-9_.\-]*"
FAULTSTRING = re.compile(rf"^(?P<people>[^\[\]]+) \[(?P<rule>{RULE_ID})\]$")
UNKNOWN_CASE = "210100209901010000010"  # well-formed, never issued


def assert_problem_pattern(body: dict[str, Any]) -> None:
    assert CHINESE.search(body["title"]) and not re.search(r"[A-Za-z]", body["title"]), body
    assert re.fullmatch(RULE_ID, body["code"]), body


def test_problem_of_an_unknown_case_has_chinese_title_and_rule_code(client: TestClient, officers: Any) -> None:
    answer = client.get(f"/api/v1/cases/{UNKNOWN_CASE}", headers=officers.headers("sy_wj_intake"))
    assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert_problem_pattern(body)
    assert (body["title"], body["code"]) == ("未找到", "exists")


def test_validation_problem_code_is_the_first_field_rule(client: TestClient) -> None:
    answer = client.post("/api/v1/applications", json={"item_code": "x"})
    assert answer.status_code == 422
    body = answer.json()
    assert_problem_pattern(body)
    assert body["code"] == body["errors"][0]["rule"]


def test_unauthenticated_and_unknown_route_problems_follow_the_pattern(client: TestClient) -> None:
    for path, status, code in (("/api/v1/cases/queue", 401, "credentials"), ("/no/such/route", 404, "exists")):
        answer = client.get(path)
        assert answer.status_code == status, answer.text
        assert_problem_pattern(answer.json())
        assert answer.json()["code"] == code


def test_nul_characters_and_oversized_bodies_are_refused_in_the_pattern(client: TestClient) -> None:
    answer = client.post("/api/v1/applications", content=b'{"item_code": "a\\u0000b"}',
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert_problem_pattern(answer.json())


def test_openapi_documents_the_problem_code(client: TestClient) -> None:
    problem = client.get("/openapi.json").json()["components"]["schemas"]["Problem"]
    assert "code" in problem["required"] and "title" in problem["required"]


def test_soap_faultstring_is_chinese_then_the_rule(client: TestClient, clock: FixedClock) -> None:
    payload = fault(soap(client, clock, "GetCase", f"<d:trackingNo>{UNKNOWN_CASE}</d:trackingNo>",
                         username="sy_wj_intake"))
    match = FAULTSTRING.match(payload["faultstring"])
    assert match, payload
    assert CHINESE.match(match["people"]) and "(" not in match["people"], payload  # no English explanation
    assert match["rule"] == payload["rule"] == "exists"  # the same rule id as the REST problem's code
    assert "unknown tracking number" in payload["message"]  # the English explanation: in the detail


def test_soap_schema_fault_with_english_validator_text_still_follows_the_pattern(client: TestClient,
                                                                                   clock: FixedClock) -> None:
    payload = fault(soap(client, clock, "FetchPendingCases", "<d:limit>-5</d:limit>", username="sy_wj_intake"))
    match = FAULTSTRING.match(payload["faultstring"])
    assert match and CHINESE.search(match["people"]), payload
    assert match["rule"] == payload["rule"] == "schema"


def test_soap_fault_before_parsing_follows_the_pattern(client: TestClient) -> None:
    response = client.post("/soap/department-exchange", content=b"<not-xml",
                           headers={"Content-Type": "text/xml; charset=utf-8"})
    body = etree.fromstring(response.content).find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]
    faultstring = body.findtext("faultstring") or ""
    match = FAULTSTRING.match(faultstring)
    assert match and CHINESE.search(match["people"]) and match["rule"] == "xml", faultstring
