"""One case that cannot be serialised never fails a whole SOAP answer: it is left out, counted and alerted.

The bad text is written straight into the database, as rows stored before the entrance rules would be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from hub.cases.models import Case, CaseEvent
from hub.clock import FixedClock
from hub.db import unit_of_work
from hub.outbox.alerts import ALERT_TYPE, Unserialisable, first_unsafe_text
from hub.outbox.models import OutboxMessage
from tests.hub.test_legacy_soap import RawClient, raw_fault, raw_values
from tests.servers import serving
from tests.support import submit

KEY = "physician-practice-registration"  # 沈阳市卫健委: officers sy_wj_*


@pytest.fixture
def raw(app: Any, clock: FixedClock) -> Iterator[RawClient]:
    with serving(app) as url, httpx.Client(timeout=60, trust_env=False) as http:
        yield RawClient(http, f"{url}/soap/department-exchange?wsdl", clock)


@pytest.fixture
def spoil(session_factory: sessionmaker[Session]) -> Iterator[Any]:
    """Sets a case's applicant name in the database; puts the real name back afterwards, so the shared
    database stays valid for other tests."""
    restore: list[tuple[str, str]] = []

    def spoil(number: str, name: str) -> None:
        with unit_of_work(session_factory) as session:
            original = session.scalar(select(Case.applicant_name).where(Case.tracking_no == number))
            restore.append((number, str(original)))
            session.execute(update(Case).where(Case.tracking_no == number).values(applicant_name=name))

    yield spoil
    with unit_of_work(session_factory) as session:
        for number, name in restore:
            session.execute(update(Case).where(Case.tracking_no == number).values(applicant_name=name))


def alerts(session: Session, number: str) -> list[dict[str, Any]]:
    session.expire_all()
    return [m.payload for m in session.scalars(select(OutboxMessage).where(
        OutboxMessage.type == ALERT_TYPE, OutboxMessage.correlation_id == number).order_by(OutboxMessage.id))]


def pending_numbers(raw: RawClient) -> list[str]:
    status, payload = raw.post("FetchPendingCases", "<d:limit>500</d:limit>", username="sy_wj_intake")
    assert status == 200, etree.tostring(payload)
    return [c["trackingNo"] for c in raw_values(payload).get("case", [])]


@pytest.mark.parametrize(("bad_name", "field", "rule"), [
    ("张\x01三", "applicant.name", "xml_characters"),
    ("张\ufffe三", "applicant.name", "xml_characters"),
    ("", "name", "schema"),  # the contract's Text needs at least one character
])
def test_fetch_pending_cases_answers_the_other_cases_when_one_cannot_be_serialised(
        client: TestClient, raw: RawClient, session: Session, spoil: Any, bad_name: str, field: str,
        rule: str) -> None:
    good, bad = submit(client, KEY)["tracking_no"], submit(client, KEY)["tracking_no"]
    spoil(bad, bad_name)

    numbers = pending_numbers(raw)  # a valid SOAP document, not an INTERNAL_ERROR fault
    assert good in numbers and bad not in numbers
    [alert] = alerts(session, bad)
    assert (alert["channel"], alert["field"], alert["rule"]) == ("soap.FetchPendingCases", field, rule)
    assert alert["department"] == "210100007"
    assert not bad_name or bad_name not in json.dumps(alert, ensure_ascii=False)  # no personal data
    metrics = client.get("/metrics").text
    assert f'hub_outbound_cases_withheld_total{{channel="soap.FetchPendingCases",rule="{rule}"}}' in metrics

    assert bad not in pending_numbers(raw)
    assert len(alerts(session, bad)) == 1  # alerted once, however often the queue is fetched


def test_get_case_of_an_unserialisable_case_is_a_fault_naming_the_field_and_is_alerted(
        client: TestClient, raw: RawClient, session: Session, spoil: Any) -> None:
    number = submit(client, KEY)["tracking_no"]
    spoil(number, "王\x02五")
    status, payload = raw.post("GetCase", f"<d:trackingNo>{number}</d:trackingNo>", username="sy_wj_intake")
    fault = raw_fault(payload)
    assert status == 500 and fault["faultcode"] == "soap:Server"
    assert (fault["rule"], fault["field"]) == ("unserialisable_case", "applicant.name")
    assert "王" not in fault["faultstring"]
    assert [a["channel"] for a in alerts(session, number)] == ["soap.GetCase"]


def test_the_case_is_served_again_once_corrected(client: TestClient, raw: RawClient, spoil: Any,
                                                 session_factory: sessionmaker[Session]) -> None:
    number = submit(client, KEY)["tracking_no"]
    spoil(number, "赵\x03六")
    assert number not in pending_numbers(raw)
    with unit_of_work(session_factory) as session:
        session.execute(update(Case).where(Case.tracking_no == number).values(applicant_name="赵六"))
    assert number in pending_numbers(raw)


def test_first_unsafe_text_names_the_path_of_the_first_bad_string() -> None:
    value = {"case": [{"trackingNo": "1", "applicant": {"name": "ok"}},
                      {"applicant": {"name": "a\x0bb"}, "step": [{"opinion": "\ud800"}]}]}
    assert first_unsafe_text(value) == Unserialisable("case.1.applicant.name", "xml_characters")
    assert first_unsafe_text({"a": "tab\tnewline\nreturn\r", "b": None, "c": 3, "d": ["\u0085\u3000"]}) is None


def test_a_bad_opinion_stored_on_a_step_is_named_by_get_case_and_does_not_touch_the_queue(
        client: TestClient, officers, raw: RawClient, session_factory: sessionmaker[Session]) -> None:
    number = submit(client, KEY)["tracking_no"]
    response = client.post(f"/api/v1/cases/{number}/actions", json={"action": "request_supplement",
                                                                    "opinion": "请补正"},
                           headers=officers.headers("sy_wj_intake"))
    assert response.status_code == 200, response.text
    step = (select(CaseEvent.id).join(Case, Case.id == CaseEvent.case_id)
            .where(Case.tracking_no == number, CaseEvent.seq == 2).scalar_subquery())
    with unit_of_work(session_factory) as session:
        session.execute(update(CaseEvent).where(CaseEvent.id == step).values(opinion="请补正\x08"))
    try:
        status, payload = raw.post("GetCase", f"<d:trackingNo>{number}</d:trackingNo>", username="sy_wj_intake")
        fault = raw_fault(payload)
        assert (fault["rule"], fault["field"]) == ("unserialisable_case", "step.1.opinion")
    finally:
        with unit_of_work(session_factory) as session:
            session.execute(update(CaseEvent).where(CaseEvent.id == step).values(opinion="请补正"))
    status, payload = raw.post("GetCase", f"<d:trackingNo>{number}</d:trackingNo>", username="sy_wj_intake")
    assert status == 200 and raw_values(payload)["case"][0]["step"][1]["opinion"] == "请补正"
