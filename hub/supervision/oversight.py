"""Warning and correction (预警纠错) over the alerts: who sees which alert, the department's explanation and
correction, the supervisor's ruling (accepted, or accountability: measure, person, date — 责任追究), and the
colour thresholds per region.

One set of checks for every entrance (REST ``hub/supervision/router.py``, the department SOAP service
``hub/legacy/service.py``, the ``hub alerts`` CLI):

* a supervisor sees the alerts of his region and every region below it (authority flows down the region
  tree, ``hub.auth.service.can_oversee_region``), and rules on an alert only while it sits with a region his
  covers (``supervisor_region_code``: one level up after each escalation);
* an officer of a department (intake, reviewer, approver) sees and explains his department's alerts only;
* an alert the caller may not see is "not found", exactly like an unknown id (no existence leak).

Basis: Administrative Licensing Law Art. 60 (superior organs supervise the implementation of licensing and
correct violations) and Art. 72–77 (the officers responsible are held accountable: 责任追究), with the
province's electronic supervision rules (电子监察) that require a written explanation and correction from
the department before a supervisor's ruling. Services never commit.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from hub import refcache
from hub.auth.models import Officer
from hub.cases.models import Case
from hub.clock import business_date
from hub.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from hub.org import service as org_service
from hub.org.models import Department, Region
from hub.pagination import Page, paginate
from hub.supervision import service as alert_service
from hub.supervision.models import Alert, SupervisionThreshold

SUPERVISOR = "supervisor"
DEPARTMENT_ROLES = ("intake", "reviewer", "approver")
# Which statuses still wait for the department (explanation) or the supervisor (ruling).
EXPLAINABLE = alert_service.UNRESOLVED
RULABLE = alert_service.UNRESOLVED
STATUSES = ("open", "explained", "accepted", "accountability", "closed")
LEVELS = ("yellow", "red")
KINDS = ("time", "procedure", "anomaly")
RULINGS = ("accepted", "accountability")
STATUS_LABELS = {"open": "待说明", "explained": "已说明待裁定", "accepted": "说明已采纳", "accountability": "已追责",
                 "closed": "已关闭"}
THRESHOLD_BOUNDS = {"yellow_used_percent": (1, 100), "yellow_days_left": (0, 30), "red_escalation_days": (1, 60)}


@dataclass(frozen=True)
class AlertFilters:
    status: str | None = None
    level: str | None = None
    kind: str | None = None
    department: str | None = None  # department key: region code + 3 digits
    region: str | None = None  # this region and every region below it
    case: str | None = None  # tracking number


@dataclass(frozen=True)
class Accountability:
    """责任追究: the measure taken, against whom, on which day."""

    measure: str
    person: str
    date: date


@dataclass(frozen=True)
class EffectiveThresholds:
    region_code: str
    source: str  # "own", "inherited" or "default"
    source_region_code: str | None
    yellow_used_percent: int
    yellow_days_left: int
    red_escalation_days: int
    updated_at: datetime | None


# --- scope -------------------------------------------------------------------------------------------------


def is_supervisor(officer: Officer) -> bool:
    return SUPERVISOR in officer.roles


def is_department_officer(officer: Officer) -> bool:
    return bool(set(DEPARTMENT_ROLES) & set(officer.roles))


def require_alert_reader(officer: Officer) -> None:
    if not (is_supervisor(officer) or is_department_officer(officer)):
        raise Forbidden("需要监察人员或部门审批人员角色 (requires role: supervisor, or a department's intake, "
                        "reviewer or approver)")


def regions_under(session: Session, ancestor: str) -> list[str]:
    """The region and every region below it (the tree is small and cached per process)."""
    codes = refcache.lookup(session, refcache.REGIONS, "codes", lambda: list(session.scalars(select(Region.code))))
    return [code for code in codes if org_service.is_within(session, region_code=code, ancestor=ancestor)]


def _visible(session: Session, officer: Officer) -> Any:
    """The SQL condition for the alerts ``officer`` may see."""
    conditions = []
    if is_supervisor(officer):
        conditions.append(Alert.region_code.in_(regions_under(session, officer.region_code)))
    if is_department_officer(officer):
        conditions.append(Alert.department_id == officer.department_id)
    return or_(*conditions)


def can_see(session: Session, officer: Officer, alert: Alert) -> bool:
    if is_supervisor(officer) and org_service.is_within(session, region_code=alert.region_code,
                                                         ancestor=officer.region_code):
        return True
    return is_department_officer(officer) and alert.department_id == officer.department_id


def can_explain(officer: Officer, alert: Alert) -> bool:
    return is_department_officer(officer) and alert.department_id == officer.department_id


def can_rule(session: Session, officer: Officer, alert: Alert) -> bool:
    return is_supervisor(officer) and org_service.is_within(
        session, region_code=alert.supervisor_region_code, ancestor=officer.region_code)


def available_actions(session: Session, officer: Officer, alert: Alert) -> list[str]:
    actions = []
    if alert.status in EXPLAINABLE and can_explain(officer, alert):
        actions.append("explain")
    if alert.status in RULABLE and can_rule(session, officer, alert):
        actions.append("rule")
    return actions


# --- reading -----------------------------------------------------------------------------------------------


def list_alerts(session: Session, *, officer: Officer, filters: AlertFilters, offset: int,
                limit: int) -> Page[Alert]:
    """The alerts the officer may see, newest first, narrowed by ``filters``."""
    require_alert_reader(officer)
    check_filters(filters)
    query = select(Alert).where(_visible(session, officer))
    query = _filtered(session, query, filters)
    return paginate(session, query, order_by=[Alert.raised_at.desc(), Alert.id.desc()], offset=offset, limit=limit)


def check_filters(filters: AlertFilters) -> None:
    errors = []
    for name, allowed in (("status", STATUSES), ("level", LEVELS), ("kind", KINDS)):
        value = getattr(filters, name)
        if value is not None and value not in allowed:
            errors.append(FieldError(name, "one_of", f"取值必须是 {'、'.join(allowed)} 之一"))
    if filters.department is not None and not (len(filters.department) == 9 and filters.department.isdigit()):
        errors.append(FieldError("department", "pattern", "部门编码应为 9 位数字（行政区划代码 + 3 位部门代码）"))
    if filters.region is not None and not (len(filters.region) == 6 and filters.region.isdigit()):
        errors.append(FieldError("region", "pattern", "行政区划代码应为 6 位数字"))
    if filters.case is not None and not re.fullmatch(r"\d{20}[0-9X]", filters.case):
        errors.append(FieldError("case", "pattern", "办件编号应为 21 位（20 位数字加 1 位校验码）"))
    if errors:
        raise ValidationFailed(errors)


def _filtered(session: Session, query: Select[tuple[Alert]], filters: AlertFilters) -> Select[tuple[Alert]]:
    if filters.status is not None:
        query = query.where(Alert.status == filters.status)
    if filters.level is not None:
        query = query.where(Alert.level == filters.level)
    if filters.kind is not None:
        query = query.where(Alert.kind == filters.kind)
    if filters.department is not None:
        department = session.scalar(select(Department.id).where(
            Department.region_code == filters.department[:6], Department.code == filters.department[6:]))
        query = query.where(Alert.department_id == (department or -1))  # unknown: an empty list, not an error
    if filters.region is not None:
        query = query.where(Alert.region_code.in_(regions_under(session, filters.region)))
    if filters.case is not None:
        query = query.where(Alert.case_id.in_(select(Case.id).where(Case.tracking_no == filters.case)))
    return query


def get_alert(session: Session, *, officer: Officer, alert_id: int, for_update: bool = False) -> Alert:
    """The alert, or 404 — also for one the officer may not see."""
    require_alert_reader(officer)
    query = select(Alert).where(Alert.id == alert_id)
    if for_update:
        # Two rulings (or an explanation racing a ruling) on one alert apply one after the other.
        query = query.with_for_update()
    alert = session.scalar(query)
    if alert is None or not can_see(session, officer, alert):
        raise NotFound(f"预警 {alert_id} 不存在 (alert not found)")
    return alert


def tracking_numbers(session: Session, alerts: Collection[Alert]) -> dict[int, str]:
    ids = {a.case_id for a in alerts}
    if not ids:
        return {}
    return {case_id: number for case_id, number in session.execute(
        select(Case.id, Case.tracking_no).where(Case.id.in_(ids)))}


def departments(session: Session, alerts: Collection[Alert]) -> dict[int, Department]:
    ids = {a.department_id for a in alerts}
    if not ids:
        return {}
    return {d.id: d for d in session.scalars(select(Department).where(Department.id.in_(ids)))}


# --- the department's explanation ---------------------------------------------------------------------------


def explain(session: Session, *, officer: Officer, alert: Alert, explanation: str, correction: str,
            now: datetime) -> Alert:
    """The department's written explanation and the correction made (整改情况). Again while no ruling is
    made: the latest counts, every one stays in the history."""
    if not can_explain(officer, alert):
        raise Forbidden("只有责任部门的审批人员可以说明预警 (only officers of the responsible department may "
                        "explain an alert)")
    if alert.status not in EXPLAINABLE:
        raise Conflict(f"预警状态为“{STATUS_LABELS.get(alert.status, alert.status)}”，不能再说明 (alert is "
                       f"{alert.status}; only an open or explained alert can be explained)", type_slug="alert-state")
    alert.explanation = explanation
    alert.correction = correction
    alert.explained_by = officer.username
    alert.explained_at = now
    alert.status = "explained"
    _record(alert, step="explained", by=officer.username, at=now,
            explanation=explanation, correction=correction)
    session.flush()
    return alert


# --- the supervisor's ruling -------------------------------------------------------------------------------


def rule(session: Session, *, officer: Officer, alert: Alert, ruling: Literal["accepted", "accountability"],
         opinion: str | None, accountability: Accountability | None, now: datetime) -> Alert:
    """Accept the explanation, or record accountability (责任追究, Art. 72–77): either closes the alert."""
    if not can_rule(session, officer, alert):
        raise Forbidden("只有预警所在监察层级（或其上级）的监察人员可以裁定 (only a supervisor whose region covers "
                        f"the alert's supervising region {alert.supervisor_region_code} may rule on it)")
    if alert.status not in RULABLE:
        raise Conflict(f"预警状态为“{STATUS_LABELS.get(alert.status, alert.status)}”，不能再裁定 (alert is "
                       f"{alert.status}; only an open or explained alert can be ruled on)", type_slug="alert-state")
    check_ruling(ruling=ruling, accountability=accountability, raised_on=alert.raised_on, today=business_date(now))
    alert.ruling = ruling
    alert.ruled_by = officer.username
    alert.ruled_at = now
    alert.status = ruling
    alert.closed_at = now
    alert.accountability = None if accountability is None else {
        "measure": accountability.measure, "person": accountability.person,
        "date": accountability.date.isoformat()}
    _record(alert, step="ruled", by=officer.username, at=now, ruling=ruling, opinion=opinion,
            accountability=alert.accountability)
    session.flush()
    return alert


def check_ruling(*, ruling: str, accountability: Accountability | None, raised_on: date, today: date) -> None:
    """The rules every entrance shares; a refusal names the field and the rule."""
    errors = []
    if ruling not in RULINGS:
        errors.append(FieldError("ruling", "one_of",
                                 "裁定结果必须是 accepted（采纳说明）或 accountability（责任追究）"))
    elif ruling == "accountability" and accountability is None:
        errors.append(FieldError("accountability", "required", "责任追究须填写处理措施、责任人和日期"))
    elif ruling == "accepted" and accountability is not None:
        errors.append(FieldError("accountability", "not_allowed", "采纳说明时不填写责任追究"))
    if accountability is not None and ruling == "accountability":
        if accountability.date > today:
            errors.append(FieldError("accountability.date", "not_future", "责任追究日期不能晚于今天"))
        elif accountability.date < raised_on:
            errors.append(FieldError("accountability.date", "not_before_alert", "责任追究日期不能早于预警产生日期"))
    if errors:
        raise ValidationFailed(errors)


def _record(alert: Alert, *, step: str, by: str, at: datetime, **facts: Any) -> None:
    # The same shape as the alerts service's entries (raised, escalated, closed): at, action, by, facts.
    entry = {"at": at.isoformat(), "action": step, "by": by, **{k: v for k, v in facts.items() if v is not None}}
    alert.history = [*(alert.history or []), entry]  # a new list: the JSON column sees the change


# --- thresholds --------------------------------------------------------------------------------------------


def thresholds_of(session: Session, *, officer: Officer, region_code: str) -> EffectiveThresholds:
    """The thresholds a region works with: its own row, its nearest ancestor's, or the defaults — what the
    scanner reads (``hub.supervision.service.thresholds_for``)."""
    _require_region_supervisor(session, officer, region_code)
    found = alert_service.thresholds_for(session, region_code)
    source = "default" if found.region_code is None else "own" if found.region_code == region_code else "inherited"
    row = None if found.region_code is None else session.get(SupervisionThreshold, found.region_code)
    return EffectiveThresholds(
        region_code, source, found.region_code, found.yellow_used_percent, found.yellow_days_left,
        found.red_escalation_days, row.updated_at if row is not None else None)


def set_thresholds(session: Session, *, officer: Officer, region_code: str, values: dict[str, int],
                   now: datetime) -> EffectiveThresholds:
    """The region's own thresholds (its descendants without a row of their own follow them). The write is
    seen by the thresholds cache (hub/refcache.py) when it commits."""
    _require_region_supervisor(session, officer, region_code)
    errors = [FieldError(name, "range", f"取值范围 {low}–{high}")
              for name, (low, high) in THRESHOLD_BOUNDS.items() if not low <= values[name] <= high]
    if errors:
        raise ValidationFailed(errors)
    row = session.get(SupervisionThreshold, region_code)
    if row is None:
        row = SupervisionThreshold(region_code=region_code, updated_at=now, **values)
        session.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = now
    session.flush()
    return thresholds_of(session, officer=officer, region_code=region_code)


def _require_region_supervisor(session: Session, officer: Officer, region_code: str) -> None:
    if not is_supervisor(officer):
        raise Forbidden("需要监察人员角色 (requires role: supervisor)")
    if session.get(Region, region_code) is None or not org_service.is_within(
            session, region_code=region_code, ancestor=officer.region_code):
        raise NotFound(f"行政区划 {region_code} 不存在或不在您的监察范围内 (region not found)")


# --- presenting --------------------------------------------------------------------------------------------


def views(session: Session, *, officer: Officer, alerts: Collection[Alert]) -> list[dict[str, Any]]:
    """The alerts as every entrance shows them (REST, SOAP, CLI), with what the caller may do next."""
    numbers = tracking_numbers(session, alerts)
    owners = departments(session, alerts)
    result = []
    for alert in alerts:
        department = owners.get(alert.department_id)
        result.append({
            "id": alert.id, "tracking_no": numbers.get(alert.case_id, ""), "rule": alert.rule, "kind": alert.kind,
            "level": alert.level, "status": alert.status, "status_label": STATUS_LABELS.get(alert.status, alert.status),
            "department": department.key if department else "",
            "department_name": department.name if department else "",
            "region_code": alert.region_code, "supervisor_region_code": alert.supervisor_region_code,
            "escalations": alert.escalations or 0, "message": alert.message, "detail": dict(alert.detail or {}),
            "raised_at": alert.raised_at, "raised_on": alert.raised_on, "closed_at": alert.closed_at,
            "explanation": alert.explanation, "correction": alert.correction, "explained_by": alert.explained_by,
            "explained_at": alert.explained_at, "ruling": alert.ruling, "ruled_by": alert.ruled_by,
            "ruled_at": alert.ruled_at, "accountability": alert.accountability, "history": list(alert.history or []),
            "available_actions": available_actions(session, officer, alert),
        })
    return result
