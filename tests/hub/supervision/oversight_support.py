"""Alerts for the warning-and-correction tests: a submitted case with a finding raised on it, as a rule would."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.cases.models import Case
from hub.db import unit_of_work
from hub.supervision.findings import Finding
from hub.supervision.models import Alert
from hub.supervision.service import raise_findings
from tests.support import submit

RAISED_AT = datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
SHENYANG_HEALTH = "physician-practice-registration"  # 沈阳市卫生健康委员会 (210100-007): sy_wj_*
HEPING_MARKET = "food-business-licence"  # 沈阳市和平区市场监督管理局 (210102-001): syhp_scjg_*


def alert_on_new_case(client: TestClient, factory: sessionmaker[Session], key: str = SHENYANG_HEALTH, *,
                      rule: str = "time.case_overdue", kind: str = "time", level: str = "red",
                      supervisor_region: str | None = None) -> tuple[str, int]:
    """A new case of ``key`` and one alert on it, committed; (tracking number, alert id)."""
    tracking_no = submit(client, key)["tracking_no"]
    finding = Finding(rule=rule, kind=kind, level=level, message="办件已超期，请说明原因并整改", detail={"days": 2})  # type: ignore[arg-type]
    with unit_of_work(factory) as session:
        case = session.scalars(select(Case).where(Case.tracking_no == tracking_no)).one()
        alert = raise_findings(session, case=case, findings=[finding], now=RAISED_AT)[0]
        if supervisor_region is not None:  # as the escalation job leaves it
            alert.supervisor_region_code = supervisor_region
            alert.escalations = 1
        alert_id = alert.id
    return tracking_no, alert_id


def stored(factory: sessionmaker[Session], alert_id: int) -> Alert:
    with factory() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        session.expunge(alert)
        return alert
