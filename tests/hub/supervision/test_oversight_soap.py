"""The department SOAP service's alert operations: FetchAlerts and ExplainAlert with the same checks as REST,
ExplainAlert applied once per message id, faults naming the rule and the field (never a 500 without a fault)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import FixedClock
from mocks.legacy_department import HubDepartmentExchange
from tests.conftest import DEMO_PASSWORD
from tests.hub.supervision.oversight_support import alert_on_new_case, stored
from tests.hub.test_legacy_soap import RawClient, raw_fault
from tests.servers import serving

NS = "urn:ln:hub:department-exchange:v1"


@pytest.fixture
def hub_url(app: Any) -> Iterator[str]:
    with serving(app) as url:
        yield url


@pytest.fixture
def raw(hub_url: str, clock: FixedClock) -> Iterator[RawClient]:
    with httpx.Client(timeout=60, trust_env=False) as http:
        yield RawClient(http, f"{hub_url}/soap/department-exchange?wsdl", clock)


def values(element: etree._Element) -> Any:
    """An answer element as nested dicts of text; ``alert`` always a list."""
    if not len(element):
        return element.text or ""
    result: dict[str, Any] = {}
    for child in element:
        name = etree.QName(child).localname
        if name == "alert" and element.tag.endswith("FetchAlertsResponse"):
            result.setdefault(name, []).append(values(child))
        else:
            result[name] = values(child)
    return result


def fetch(raw: RawClient, username: str, fields: str = "") -> dict[str, Any]:
    status, payload = raw.post("FetchAlerts", fields, username=username)
    assert status == 200, etree.tostring(payload)
    return dict(values(payload))


def explain_fields(alert_id: int, explanation: str = "专家评审未及时安排", correction: str = "已建立排期台账") -> str:
    return (f"<d:alertId>{alert_id}</d:alertId><d:explanation>{explanation}</d:explanation>"
            f"<d:correction>{correction}</d:correction>")


def test_the_wsdl_offers_the_alert_operations_to_zeep(hub_url: str, clock: FixedClock) -> None:
    officer = HubDepartmentExchange(hub_url, "sy_wj_intake", DEMO_PASSWORD, timeout_s=60, now=clock.now)
    for operation in ("FetchAlerts", "ExplainAlert"):
        assert callable(officer.client.service[operation])  # zeep raises AttributeError for an unknown one


def test_a_department_fetches_its_alerts_and_explains_one(
        client: TestClient, raw: RawClient, session_factory: sessionmaker[Session]) -> None:
    tracking_no, alert_id = alert_on_new_case(client, session_factory)
    page = fetch(raw, "sy_wj_intake", f"<d:trackingNo>{tracking_no}</d:trackingNo>")
    assert page["total"] == "1"
    [alert] = page["alert"]
    assert (alert["alertId"], alert["trackingNo"], alert["level"], alert["status"], alert["canExplain"]) == (
        str(alert_id), tracking_no, "red", "open", "true")
    assert alert["message"] == "办件已超期，请说明原因并整改" and alert["supervisorRegion"] == "210100"

    message_id = str(uuid.uuid4())
    status, payload = raw.post("ExplainAlert", explain_fields(alert_id), username="sy_wj_reviewer",
                               message_id=message_id)
    assert status == 200, etree.tostring(payload)
    answer = values(payload)
    assert answer["duplicate"] == "false"
    assert (answer["alert"]["status"], answer["alert"]["explainedBy"]) == ("explained", "sy_wj_reviewer")
    # The retry after a lost answer: the same message id changes nothing and says so.
    status, payload = raw.post("ExplainAlert", explain_fields(alert_id, "另一说明"), username="sy_wj_reviewer",
                               message_id=message_id)
    assert status == 200 and values(payload)["duplicate"] == "true"
    after = stored(session_factory, alert_id)
    assert after.explanation == "专家评审未及时安排"
    assert [step["action"] for step in after.history] == ["raised", "explained"]
    explained = fetch(raw, "sy_wj_approver",
                      f"<d:status>explained</d:status><d:trackingNo>{tracking_no}</d:trackingNo>")
    assert [a["alertId"] for a in explained["alert"]] == [str(alert_id)]


def test_another_departments_alert_is_not_found_and_checks_are_those_of_rest(
        client: TestClient, raw: RawClient, session_factory: sessionmaker[Session]) -> None:
    tracking_no, alert_id = alert_on_new_case(client, session_factory)
    assert fetch(raw, "sy_scjg_intake", f"<d:trackingNo>{tracking_no}</d:trackingNo>")["total"] == "0"
    status, payload = raw.post("ExplainAlert", explain_fields(alert_id), username="sy_scjg_intake")
    fault = raw_fault(payload)
    assert status == 500 and (fault["faultcode"], fault["code"], fault["rule"], fault["field"]) == (
        "soap:Client", "NOT_FOUND", "exists", "alertId")
    # Blank text: refused naming the field and the rule, as over REST.
    status, payload = raw.post("ExplainAlert", explain_fields(alert_id, correction="\u200b"), username="sy_wj_intake")
    fault = raw_fault(payload)
    assert (fault["code"], fault["field"]) == ("VALIDATION_FAILED", "correction"), fault
    # A message id used for another request is refused.
    used = str(uuid.uuid4())
    assert raw.post("ExplainAlert", explain_fields(alert_id), username="sy_wj_intake", message_id=used)[0] == 200
    _, other = alert_on_new_case(client, session_factory)
    status, payload = raw.post("ExplainAlert", explain_fields(other), username="sy_wj_intake", message_id=used)
    assert raw_fault(payload)["code"] == "DUPLICATE_MESSAGE"
    # Schema: an unknown status is refused by the XSD, naming the element.
    status, payload = raw.post("FetchAlerts", "<d:status>done</d:status>", username="sy_wj_intake")
    assert raw_fault(payload)["field"] == "status"


def test_a_ruled_alert_cannot_be_explained(client: TestClient, raw: RawClient, session_factory: sessionmaker[Session],
                                           officers: Any) -> None:
    _, alert_id = alert_on_new_case(client, session_factory)
    ruled = client.post(f"/api/v1/supervision/alerts/{alert_id}/ruling", json={"ruling": "accepted"},
                        headers=officers.headers("sy_yshj_supervisor"))
    assert ruled.status_code == 200, ruled.text
    _, payload = raw.post("ExplainAlert", explain_fields(alert_id), username="sy_wj_intake")
    fault = raw_fault(payload)
    assert (fault["code"], fault["rule"]) == ("CONFLICT", "alert_state"), fault
    assert "说明已采纳" in fault["faultstring"]
