"""Names and free text at every hub entrance: blank, invisible-only and control characters are refused
with a 422 problem (or a SOAP fault) naming the field and the rule; good text is stored normalised."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from fastapi.testclient import TestClient

from hub.clock import FixedClock
from tests.hub.test_legacy_soap import RawClient, raw_fault
from tests.servers import serving
from tests.support import example_form, item_code, officer_of, person, submit

KEY = "physician-practice-registration"  # 沈阳市卫健委: officers sy_wj_*
MARRIAGE = "marriage-registration"

# (value, rule) pairs every name and free-text entrance must refuse.
BAD_TEXT = [
    ("", None),  # pydantic's own min_length rule, or "not given" for optional text
    ("   ", "not_blank"),
    ("\u200b", "not_blank"),
    ("\ufeff", "not_blank"),
    ("\u3000\u3000", "not_blank"),
    ("\u200b\u3000\ufeff", "not_blank"),
    ("张\x01三", "no_control_characters"),
    ("张\x7f三", "no_control_characters"),
    ("张\x85三", "no_control_characters"),  # NEL
    ("张\ufffe三", "valid_characters"),
    ("张\uffff三", "valid_characters"),
]
BAD_NAMES = [*BAD_TEXT, ("张\u200b三", "no_invisible_characters"), ("张\n三", "no_control_characters"),
             ("张\u2028三", "single_line")]


def errors_of(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return list(response.json()["errors"])


def the_error(response: httpx.Response, field: str) -> dict[str, str]:
    matching = [e for e in errors_of(response) if e["field"] == field]
    assert matching, response.text
    return matching[0]


def application(client: TestClient, key: str, **applicant: Any) -> dict[str, Any]:
    return {"item_code": item_code(client, key), "applicant": person(**applicant), "form": example_form(key)}


# --- online and window applications -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rule"), BAD_NAMES)
@pytest.mark.parametrize("channel", ["online", "window"])
def test_a_bad_applicant_name_is_refused_naming_the_field(client: TestClient, name: str, rule: str | None,
                                                          channel: str) -> None:
    body = application(client, KEY, name=name) | {"channel": channel}
    error = the_error(client.post("/api/v1/applications", json=body), "applicant.name")
    assert error["rule"] == (rule or "string_too_short")
    assert error["message"]


def test_a_good_name_is_stored_normalised(client: TestClient, officers) -> None:
    # Invisible padding and spaces (ideographic ones too) at the edges are trimmed.
    receipt = submit(client, KEY, applicant=person(name="\ufeff\u3000 李四\u200b "))
    view = client.get(f"/api/v1/cases/{receipt['tracking_no']}",
                      headers=officers.headers(officer_of(KEY, "intake"))).json()
    assert view["applicant_name"] == "李四"


def test_form_strings_follow_the_same_rules_each_naming_its_form_field(client: TestClient) -> None:
    form = example_form(MARRIAGE) | {"spouse_name": "\u200b\u3000", "applicant_occupation": "工程\x01师",
                                     "spouse_occupation": "教\x85师"}
    body = {"item_code": item_code(client, MARRIAGE), "applicant": person(), "form": form}
    errors = {e["field"]: e for e in errors_of(client.post("/api/v1/applications", json=body))}
    assert errors["form.spouse_name"]["rule"] == "not_blank"
    assert "对方姓名" in errors["form.spouse_name"]["message"]
    assert errors["form.applicant_occupation"]["rule"] == "no_control_characters"
    assert errors["form.spouse_occupation"]["rule"] == "no_control_characters"


def test_form_strings_are_stored_normalised(client: TestClient, officers) -> None:
    form = example_form(MARRIAGE) | {"spouse_name": " 林雨萱\u200b", "spouse_occupation": "教师\u3000"}
    receipt = submit(client, MARRIAGE, form=form)
    view = client.get(f"/api/v1/cases/{receipt['tracking_no']}",
                      headers=officers.headers(officer_of(MARRIAGE, "intake"))).json()
    assert (view["form"]["spouse_name"], view["form"]["spouse_occupation"]) == ("林雨萱", "教师")


# --- officers' opinions, applicants' notes and reasons --------------------------------------------------


@pytest.mark.parametrize(("opinion", "rule"), [pair for pair in BAD_TEXT if pair[0]])
def test_a_bad_officer_opinion_is_refused(client: TestClient, officers, opinion: str, rule: str) -> None:
    number = submit(client, KEY)["tracking_no"]
    response = client.post(f"/api/v1/cases/{number}/actions",
                           json={"action": "request_supplement", "opinion": opinion},
                           headers=officers.headers(officer_of(KEY, "intake")))
    assert the_error(response, "opinion")["rule"] == rule


def test_an_empty_optional_opinion_is_no_opinion(client: TestClient, officers) -> None:
    number = submit(client, KEY)["tracking_no"]
    response = client.post(f"/api/v1/cases/{number}/actions", json={"action": "accept", "opinion": ""},
                           headers=officers.headers(officer_of(KEY, "intake")))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("text", "rule"), [pair for pair in BAD_TEXT if pair[0]])
def test_bad_supplement_notes_and_withdrawal_reasons_are_refused(client: TestClient, officers, text: str,
                                                                 rule: str) -> None:
    receipt = submit(client, KEY)
    number, code = receipt["tracking_no"], {"X-Query-Code": receipt["query_code"]}
    response = client.post(f"/api/v1/cases/{number}/actions",
                           json={"action": "request_supplement", "opinion": "请补正学历证明"},
                           headers=officers.headers(officer_of(KEY, "intake")))
    assert response.status_code == 200, response.text
    note = client.post(f"/api/v1/applications/{number}/supplement", json={"note": text}, headers=code)
    assert the_error(note, "note")["rule"] == rule
    reason = client.post(f"/api/v1/applications/{number}/withdraw", json={"reason": text}, headers=code)
    assert the_error(reason, "reason")["rule"] == rule


# --- the department-exchange SOAP service ------------------------------------------------------------


@pytest.fixture
def raw(app: Any, clock: FixedClock) -> Iterator[RawClient]:
    with serving(app) as url, httpx.Client(timeout=60, trust_env=False) as http:
        yield RawClient(http, f"{url}/soap/department-exchange?wsdl", clock)


@pytest.mark.parametrize(("opinion", "rule"), [
    ("   ", "not_blank"), ("\u200b\u3000", "not_blank"), ("&#xFEFF;", "not_blank"),
    ("同&#x85;意", "no_control_characters"), ("同&#x85;意\u3000", "no_control_characters"),
])
def test_a_bad_soap_opinion_is_a_fault_naming_field_and_rule(client: TestClient, raw: RawClient, opinion: str,
                                                             rule: str) -> None:
    number = submit(client, KEY)["tracking_no"]
    text = opinion if "&#" in opinion else escape(opinion)  # character references stay as written
    status, payload = raw.post("SubmitDecision", f"<d:trackingNo>{number}</d:trackingNo><d:action>request_supplement"
                                                 f"</d:action><d:opinion>{text}</d:opinion>",
                               username="sy_wj_intake", message_id=str(uuid.uuid4()))
    fault = raw_fault(payload)
    assert status == 500 and fault["faultcode"] == "soap:Client"
    assert (fault["code"], fault["rule"], fault["field"]) == ("VALIDATION_FAILED", rule, "opinion")
    # Nothing was applied.
    assert client.get(f"/api/v1/transparency/cases/{number}").json()["state"] == "submitted"
