"""The legacy department mock: receives the hub's pushes and decides cases through the hub's SOAP service
(zeep), and the applicant sees those decisions in the status query. Real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from adapters.resilience import ResiliencePolicy
from hub.cases.models import Case
from hub.db import unit_of_work
from hub.deliveries import service as deliveries
from hub.deliveries.clients import DeliveryClients
from hub.deliveries.models import Delivery
from hub.exchange.models import Partner
from hub.mocks_cli import LEGACY_OFFSET
from mocks.legacy_department import GRANT_OPINION, REVIEW_OPINION, DecidingOff, LegacyMock, start_legacy
from tests.servers import free_port_block, serving
from tests.support import submit, wait_until

KEY = "physician-practice-registration"  # 沈阳市卫生健康委员会 (210100-007)
POLICY = ResiliencePolicy(timeout_s=5.0, attempts=2, backoff_initial_s=0.001, backoff_max_s=0.002)


@pytest.fixture
def hub_url(app: Any) -> Iterator[str]:
    with serving(app) as url:
        yield url


@pytest.fixture
def legacy(hub_url: str, session_factory: sessionmaker[Session], clock: Any) -> Iterator[LegacyMock]:
    """The mock, deciding switched on (issue 13: off by default) but on demand only (no background loop),
    registered as the department's system; its WS-Security timestamps come from the hub's test clock."""
    mock = start_legacy(hub_url=hub_url, interval_s=None, now=clock.now, decides=True)
    with unit_of_work(session_factory) as session:
        session.get(Partner, "legacy-sy-wj").endpoint = mock.wsdl_url  # type: ignore[union-attr]
        session.execute(update(Delivery).where(Delivery.status != "sent")
                        .values(status="failed", next_attempt_at=None, last_error="parked by the test set-up"))
    yield mock
    with unit_of_work(session_factory) as session:
        session.get(Partner, "legacy-sy-wj").endpoint = None  # type: ignore[union-attr]
    mock.stop()


def test_the_legacy_system_decides_through_the_hub_and_the_applicant_sees_it(
        client: TestClient, session: Session, clock: Any, legacy: LegacyMock) -> None:
    receipt = submit(client, KEY)
    number = receipt["tracking_no"]

    # The hub pushes the new case to the department's own system ...
    report = deliveries.run_due(session, now=clock.now(), clients=DeliveryClients(POLICY, sleep=lambda _: None))
    session.commit()
    assert report.failed == []
    assert number in {c["trackingNo"] for c in legacy.received()}

    # ... whose users decide it there; the legacy system reports each step through the hub's SOAP service.
    decisions = [d for d in legacy.run_once(only={number}) if d.tracking_no == number]
    assert [(d.officer, d.action, d.state, d.fault) for d in decisions] == [
        ("sy_wj_intake", "accept", "under_review", None),
        ("sy_wj_reviewer", "review", "pending_decision", None),
        ("sy_wj_approver", "grant", "granted", None),
        ("sy_wj_approver", "complete", "completed", None),
    ]

    status = client.get(f"/api/v1/applications/{number}", headers={"X-Query-Code": receipt["query_code"]})
    assert status.status_code == 200, status.text
    body = status.json()
    assert (body["state"], body["result"]) == ("completed", "granted")
    steps = body["steps"]
    assert [s["action"] for s in steps] == ["submit", "accept", "review", "grant", "complete"]
    assert {s["department"] for s in steps[1:]} == {"沈阳市卫生健康委员会"}
    assert [s["opinion"] for s in steps if s["action"] in ("review", "grant")] == [REVIEW_OPINION, GRANT_OPINION]

    # Completion of a nationally reported item owes the national system its result.
    session.expire_all()
    kinds = session.scalars(select(Delivery.kind).join(Case, Case.id == Delivery.case_id)
                            .where(Case.tracking_no == number)).all()
    assert sorted(kinds) == ["legacy_case", "national_result"]
    assert legacy.run_once(only={number}) == []  # nothing left to decide


def test_the_control_api_runs_a_pass_and_shows_what_arrived(client: TestClient, legacy: LegacyMock) -> None:
    number = submit(client, KEY)["tracking_no"]
    with httpx.Client(base_url=legacy.control_url, timeout=30, trust_env=False) as http:
        made = http.post("/run-once", json={"only": [number]}).json()["decisions"]
        assert {"tracking_no": number, "officer": "sy_wj_intake", "action": "accept", "state": "under_review",
                "fault": None} in made
        assert any(d["tracking_no"] == number for d in http.get("/decisions").json()["decisions"])
        assert http.get("/received").json()["count"] == len(legacy.received())
        assert http.post("/faults", json={"latency_ms": 5}).json()["faults"]["latency_ms"] == 5


def test_the_legacy_endpoint_validates_what_the_hub_sends(legacy: LegacyMock) -> None:
    envelope = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:l="urn:ln:legacy:department:v1"><soapenv:Header><l:Exchange>'
        f"<l:messageId>{uuid.uuid4()}</l:messageId><l:client>hub</l:client><l:service>x</l:service>"
        "<l:onBehalfOf>hub</l:onBehalfOf></l:Exchange></soapenv:Header>"
        "<soapenv:Body><l:ReceiveCase><l:trackingNo>123</l:trackingNo></l:ReceiveCase></soapenv:Body>"
        "</soapenv:Envelope>"
    )
    with httpx.Client(timeout=60, trust_env=False) as http:
        answer = http.post(legacy.service_url, content=envelope.encode(), headers={"Content-Type": "text/xml"})
        assert answer.status_code == 500
        assert b"soap:Client" in answer.content and b"INVALID_REQUEST" in answer.content
        wsdl = http.get(legacy.wsdl_url)
        assert f'location="{legacy.service_url}"'.encode() in wsdl.content


def test_a_looping_mock_stops_promptly(hub_url: str) -> None:
    mock = start_legacy(hub_url=hub_url, interval_s=3600)
    mock.stop()
    assert not mock.server.listening


# --- deciding is off unless asked (issue 13: a mock pointed at the real API decided real cases) -----------------


def test_hub_mocks_pointed_at_a_hub_never_decides_its_cases_unless_switched_on(
        client: TestClient, hub_url: str, session: Session, tmp_path: Path) -> None:
    number = submit(client, KEY)["tracking_no"]
    base_port = free_port_block(LEGACY_OFFSET + 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATA_DIR=str(tmp_path), HUB_MOCKS_HUB_URL=hub_url, PYTHONUNBUFFERED="1", NO_COLOR="1",
               COLUMNS="200")
    log = tmp_path / "mocks.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "hub.cli", "mocks", "--base-port", str(base_port)],
                                   env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: "decides nothing" in log.read_text(errors="replace"), timeout=90), \
            log.read_text(errors="replace")
        with httpx.Client(base_url=f"http://127.0.0.1:{base_port + LEGACY_OFFSET}/_control", timeout=30,
                          trust_env=False) as http:
            refused = http.post("/run-once", json={"only": [number]})
            assert refused.status_code == 409 and "switched off" in refused.text, refused.text
            assert http.get("/decisions").json()["decisions"] == []
        session.expire_all()
        assert session.scalar(select(Case.state).where(Case.tracking_no == number)) == "submitted"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def test_a_legacy_mock_started_in_process_decides_nothing_unless_switched_on(hub_url: str) -> None:
    mock = start_legacy(hub_url=hub_url, interval_s=None)
    try:
        with pytest.raises(DecidingOff):
            mock.run_once()
        assert mock.state.decisions() == []
    finally:
        mock.stop()
