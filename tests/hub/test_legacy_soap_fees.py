"""Departments' legacy systems see a case's fee (issue 12, item 7) in the GetCase answer they already get — an
additive element of the WSDL's types — and meet the fee guard as a SOAP fault (raw XML posts)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from lxml import etree

from hub.clock import FixedClock
from tests.hub.test_case_rules import NS, decide, fault, soap
from tests.support import example_form, officer_of, submit

ID_CARD = "id-card-renewal"  # 2000 fen, due before acceptance
DOCTOR = "physician-practice-registration"  # no fee


def get_case(client: TestClient, clock: FixedClock, username: str, number: str) -> etree._Element:
    payload = soap(client, clock, "GetCase", f"<d:trackingNo>{number}</d:trackingNo>", username=username)
    assert etree.QName(payload).localname == "GetCaseResponse", etree.tostring(payload, encoding="unicode")
    return payload.find(f"{{{NS}}}case")


def fee_element(case: etree._Element) -> dict[str, Any] | None:
    fee = case.find(f"{{{NS}}}fee")
    if fee is None:
        return None
    return {etree.QName(child).localname: child.text for child in fee}


def test_get_case_carries_the_fee_and_the_guard_answers_a_fault(client: TestClient, clock: FixedClock) -> None:
    number = submit(client, ID_CARD, form={**example_form(ID_CARD), "subsistence_allowance_exempt": False})[
        "tracking_no"]
    intake = officer_of(ID_CARD, "intake")
    case = get_case(client, clock, intake, number)
    assert fee_element(case) == {"amountFen": "2000", "paidFen": "0", "status": "due", "due": "before_acceptance",
                                 "source": "hub"}
    # The fee comes last: the elements before it are where the older schema had them.
    assert etree.QName(case[-1]).localname == "fee"
    refused = fault(decide(client, clock, intake, number, "accept"))
    assert refused["rule"] == "fee_unpaid" and refused["field"] == "fee"
    assert refused["faultstring"].endswith("[fee_unpaid]") and "20.00 元" in refused["faultstring"]


def test_an_exempt_case_shows_exempt_and_an_item_without_a_fee_has_no_element(client: TestClient,
                                                                                clock: FixedClock) -> None:
    exempt = submit(client, ID_CARD, form={**example_form(ID_CARD), "subsistence_allowance_exempt": True})
    shown = fee_element(get_case(client, clock, officer_of(ID_CARD, "intake"), exempt["tracking_no"]))
    assert shown is not None and (shown["status"], shown["amountFen"]) == ("exempt", "0")
    plain = submit(client, DOCTOR)["tracking_no"]
    assert fee_element(get_case(client, clock, officer_of(DOCTOR, "intake"), plain)) is None


def test_the_published_schema_declares_the_fee(client: TestClient) -> None:
    xsd = client.get("/soap/department-exchange.v1.xsd")
    assert xsd.status_code == 200
    schema = etree.fromstring(xsd.content)
    names = {e.get("name") for e in schema.iter("{http://www.w3.org/2001/XMLSchema}complexType")}
    assert "CaseFee" in names
