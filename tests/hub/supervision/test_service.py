"""The alerts' shared service: a finding is raised once per (case, rule, level) with one alert.raised.v1,
closed with alert.closed.v1, and a region's thresholds come from its nearest ancestor's row or the defaults."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from hub.cases.models import Case
from hub.db import unit_of_work
from hub.outbox.models import OutboxMessage
from hub.supervision.findings import Finding
from hub.supervision.models import SupervisionThreshold
from hub.supervision.service import DEFAULTS, close_alerts, raise_findings, thresholds_for
from tests.support import submit

NOW = datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
FINDING = Finding(rule="procedure.test_rule", kind="procedure", level="red", message="测试：程序违规",
                  detail={"seq": 2, "on": NOW.date()})


def new_case(client: TestClient, session: Session) -> Case:
    tracking_no = submit(client, "physician-practice-registration")["tracking_no"]
    return session.scalars(select(Case).where(Case.tracking_no == tracking_no)).one()


def messages(session: Session, tracking_no: str, event_type: str) -> list[OutboxMessage]:
    return list(session.scalars(select(OutboxMessage).where(
        OutboxMessage.correlation_id == tracking_no, OutboxMessage.type == event_type)))


def test_the_same_finding_twice_gives_one_alert_and_one_message(client: TestClient, session: Session) -> None:
    case = new_case(client, session)
    first = raise_findings(session, case=case, findings=[FINDING, FINDING], now=NOW)
    again = raise_findings(session, case=case, findings=[FINDING], now=NOW)
    assert len(first) == 1 and again == []
    alert = first[0]
    assert (alert.status, alert.level, alert.kind, alert.supervisor_region_code) == (
        "open", "red", "procedure", case.region_code)
    assert alert.detail == {"seq": 2, "on": "2026-03-11"} and alert.raised_on.isoformat() == "2026-03-11"
    sent = messages(session, case.tracking_no, "alert.raised.v1")
    assert len(sent) == 1
    assert sent[0].payload["alert_id"] == alert.id and sent[0].payload["department"] == case.department.key
    assert "applicant" not in str(sent[0].payload)


def test_another_level_of_the_same_rule_is_another_alert(client: TestClient, session: Session) -> None:
    case = new_case(client, session)
    yellow = Finding(rule=FINDING.rule, kind="procedure", level="yellow", message="黄")
    assert len(raise_findings(session, case=case, findings=[FINDING, yellow], now=NOW)) == 2


def test_close_alerts_closes_the_unresolved_ones_of_the_rules_named(client: TestClient, session: Session) -> None:
    case = new_case(client, session)
    other = Finding(rule="time.case_due", kind="time", level="yellow", message="即将到期")
    raise_findings(session, case=case, findings=[FINDING, other], now=NOW)
    closed = close_alerts(session, case=case, rules={"time.case_due"}, now=NOW, reason="办结")
    assert [a.rule for a in closed] == ["time.case_due"] and closed[0].status == "closed"
    assert closed[0].history[-1]["reason"] == "办结"
    assert len(messages(session, case.tracking_no, "alert.closed.v1")) == 1
    assert close_alerts(session, case=case, rules={"time.case_due"}, now=NOW, reason="again") == []
    # Closed is not forgotten: the same finding is not raised again.
    assert raise_findings(session, case=case, findings=[other], now=NOW) == []


def test_thresholds_come_from_the_nearest_ancestor_or_the_defaults(
    session_factory: sessionmaker[Session],
) -> None:
    with unit_of_work(session_factory) as session:
        session.execute(delete(SupervisionThreshold))  # whatever another test left: the defaults first
    with unit_of_work(session_factory) as session:
        assert thresholds_for(session, "210102") == DEFAULTS
        session.add(SupervisionThreshold(region_code="210100", yellow_used_percent=70, yellow_days_left=2,
                                         red_escalation_days=5, updated_at=NOW))
    try:
        with unit_of_work(session_factory) as session:
            city = thresholds_for(session, "210102")  # a district of 沈阳市: the city's row
            assert (city.yellow_used_percent, city.yellow_days_left, city.red_escalation_days,
                    city.region_code) == (70, 2, 5, "210100")
            assert thresholds_for(session, "210200") == DEFAULTS
    finally:
        with unit_of_work(session_factory) as session:
            session.execute(delete(SupervisionThreshold))
        with unit_of_work(session_factory) as session:
            assert thresholds_for(session, "210102") == DEFAULTS


def test_a_finding_must_name_a_known_kind_and_level() -> None:
    with pytest.raises(ValueError):
        Finding(rule="x", kind="other", level="red", message="m")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Finding(rule="x", kind="time", level="green", message="m")  # type: ignore[arg-type]
