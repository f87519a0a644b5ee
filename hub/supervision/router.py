"""``/api/v1/supervision``: warning and correction (预警纠错) over the alerts, and the thresholds per region.

Supervisors see their region and below, department officers their department's alerts; anything else is 404
like an unknown id. The checks live in hub/supervision/oversight.py, shared with the SOAP service and the CLI.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from hub.deps import NowDep, OfficerDep, SessionDep
from hub.problems import problem_responses
from hub.supervision import oversight
from hub.supervision.schemas import AlertOut, AlertPage, ExplanationIn, RulingIn, ThresholdsIn, ThresholdsOut

router = APIRouter(prefix="/api/v1/supervision", tags=["supervision"])

AlertId = Annotated[int, Path(ge=1, le=2**63 - 1, description="预警编号")]
RegionCode = Annotated[str, Path(pattern=r"^\d{6}$", description="行政区划代码")]


@router.get("/alerts", response_model=AlertPage, responses=problem_responses(401, 403, 422))
def list_alerts(
    session: SessionDep, officer: OfficerDep,
    status: Annotated[str | None, Query(description="open, explained, accepted, accountability, closed")] = None,
    level: Annotated[str | None, Query(description="yellow, red")] = None,
    kind: Annotated[str | None, Query(description="time, procedure, anomaly")] = None,
    department: Annotated[str | None, Query(description="department key: region code + 3 digits")] = None,
    region: Annotated[str | None, Query(description="region code; its descendants included")] = None,
    case: Annotated[str | None, Query(description="tracking number")] = None,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AlertPage:
    """The alerts the caller may see, newest first: a supervisor's region and every region below it, a
    department officer's own department."""
    filters = oversight.AlertFilters(status=status, level=level, kind=kind, department=department, region=region,
                                     case=case)
    page = oversight.list_alerts(session, officer=officer, filters=filters, offset=offset, limit=limit)
    rows = oversight.views(session, officer=officer, alerts=page.rows)
    return AlertPage(total=page.total, offset=page.offset, limit=page.limit,
                     alerts=[AlertOut.model_validate(row) for row in rows])


@router.get("/alerts/{alert_id}", response_model=AlertOut, responses=problem_responses(401, 403, 404, 422))
def get_alert(alert_id: AlertId, session: SessionDep, officer: OfficerDep) -> AlertOut:
    """One alert with its whole history (raised, explained, ruled, escalated, closed: who and when)."""
    alert = oversight.get_alert(session, officer=officer, alert_id=alert_id)
    return AlertOut.model_validate(oversight.views(session, officer=officer, alerts=[alert])[0])


@router.post("/alerts/{alert_id}/explanation", response_model=AlertOut,
             responses=problem_responses(401, 403, 404, 409, 422))
def explain(alert_id: AlertId, data: ExplanationIn, session: SessionDep, officer: OfficerDep,
            now: NowDep) -> AlertOut:
    """The responsible department's explanation and the correction made (情况说明与整改情况)."""
    alert = oversight.get_alert(session, officer=officer, alert_id=alert_id, for_update=True)
    oversight.explain(session, officer=officer, alert=alert, explanation=data.explanation,
                      correction=data.correction, now=now)
    return AlertOut.model_validate(oversight.views(session, officer=officer, alerts=[alert])[0])


@router.post("/alerts/{alert_id}/ruling", response_model=AlertOut,
             responses=problem_responses(401, 403, 404, 409, 422))
def rule(alert_id: AlertId, data: RulingIn, session: SessionDep, officer: OfficerDep, now: NowDep) -> AlertOut:
    """A supervisor's ruling, by one whose region covers the alert's supervising region: ``accepted``, or
    ``accountability`` with measure, person and date (责任追究, Administrative Licensing Law Art. 72–77)."""
    alert = oversight.get_alert(session, officer=officer, alert_id=alert_id, for_update=True)
    accountability = None if data.accountability is None else oversight.Accountability(
        measure=data.accountability.measure, person=data.accountability.person, date=data.accountability.date)
    oversight.rule(session, officer=officer, alert=alert, ruling=data.ruling, opinion=data.opinion,
                   accountability=accountability, now=now)
    return AlertOut.model_validate(oversight.views(session, officer=officer, alerts=[alert])[0])


@router.get("/thresholds/{region_code}", response_model=ThresholdsOut,
            responses=problem_responses(401, 403, 404, 422))
def get_thresholds(region_code: RegionCode, session: SessionDep, officer: OfficerDep) -> ThresholdsOut:
    """The colour thresholds the region works with: its own, its nearest ancestor's, or the defaults."""
    found = oversight.thresholds_of(session, officer=officer, region_code=region_code)
    return ThresholdsOut.model_validate(found, from_attributes=True)


@router.put("/thresholds/{region_code}", response_model=ThresholdsOut,
            responses=problem_responses(401, 403, 404, 422))
def put_thresholds(region_code: RegionCode, data: ThresholdsIn, session: SessionDep, officer: OfficerDep,
                   now: NowDep) -> ThresholdsOut:
    """Set the region's own thresholds (a supervisor of the region or above); regions below without their own
    follow them."""
    found = oversight.set_thresholds(session, officer=officer, region_code=region_code,
                                     values=data.model_dump(), now=now)
    return ThresholdsOut.model_validate(found, from_attributes=True)
