"""Alerts raised from findings, closed when their cause ends, and the per-region colour thresholds.

Every rule (time limits here and in hub/supervision/timelimits.py, procedure and anomaly rules in
hub/supervision/rules/) reports ``Finding``s; ``raise_findings`` stores each (case, rule, level) once — the
UNIQUE constraint and ``INSERT .. ON CONFLICT DO NOTHING`` make that hold across concurrent workers and
requests on both backends — and publishes ``alert.raised.v1`` for the new ones only, in the caller's
transaction (the outbox). Services never commit.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import refcache
from hub.cases.models import Case
from hub.clock import business_date
from hub.db import insert_from_json, insert_rows, json_row
from hub.org.service import _region_parents
from hub.outbox import service as outbox
from hub.outbox.models import OutboxMessage
from hub.supervision.findings import Finding
from hub.supervision.models import Alert, SupervisionThreshold

RAISED = "alert.raised.v1"
CLOSED = "alert.closed.v1"
ESCALATED = "alert.escalated.v1"
OPEN = "open"
EXPLAINED = "explained"
CLOSED_STATUS = "closed"
# Statuses still waiting for someone (the department's explanation, the supervisor's ruling).
UNRESOLVED = (OPEN, EXPLAINED)


# --- thresholds ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """The colour thresholds a region's cases are judged by; ``region_code`` names the row they come from
    (None: the defaults)."""

    yellow_used_percent: int = 80
    yellow_days_left: int = 1
    red_escalation_days: int = 3
    region_code: str | None = None


DEFAULTS = Thresholds()


def thresholds_for(session: Session, region_code: str) -> Thresholds:
    """The region's own thresholds, else its nearest ancestor's, else the defaults (80 %, 1 day, 3 days).
    The table is read whole (a row per region at most) into the process's reference cache and invalidated
    when a threshold is written (hub/refcache.py, kind ``thresholds``)."""
    rows = refcache.lookup(session, refcache.THRESHOLDS, "all", lambda: _read_thresholds(session))
    parents = _region_parents(session)
    current: str | None = region_code
    seen: set[str] = set()
    while current is not None and current not in seen:
        found = rows.get(current)
        if found is not None:
            return found
        seen.add(current)
        current = parents.get(current)
    return DEFAULTS


def _read_thresholds(session: Session) -> dict[str, Thresholds]:
    rows = session.execute(select(
        SupervisionThreshold.region_code, SupervisionThreshold.yellow_used_percent,
        SupervisionThreshold.yellow_days_left, SupervisionThreshold.red_escalation_days,
    ))
    return {code: Thresholds(percent, left, escalation, code) for code, percent, left, escalation in rows}


# --- raising and closing -------------------------------------------------------------------------------


def raise_findings(session: Session, *, case: Case, findings: Iterable[Finding], now: datetime) -> list[Alert]:
    """Store each finding as an alert of ``case`` unless the case has one of that rule and level already
    (whatever its status: a closed alert is not raised again); ``alert.raised.v1`` for each new one.
    Returns the new alerts."""
    return raise_many(session, found=[(case, findings)], now=now)


def raise_many(session: Session, *, found: Sequence[tuple[Case, Iterable[Finding]]], now: datetime) -> list[Alert]:
    """``raise_findings`` for many cases at once: ``raise_new``, then the new alerts read back by id."""
    new_ids = raise_new(session, found=found, now=now)
    if not new_ids:
        return []
    return list(session.scalars(select(Alert).where(Alert.id.in_(new_ids)).order_by(Alert.id)))


def raise_new(session: Session, *, found: Sequence[tuple[Case, Iterable[Finding]]], now: datetime) -> list[int]:
    """Store the findings of many cases (the real-time hook's unit of work, the scanner's batch): one
    INSERT .. ON CONFLICT DO NOTHING whatever their number, and the outbox rows of the new alerts in one more.
    A finding the case already has an alert of (rule and level) is dropped by the conflict, not looked up first.
    Returns the new alerts' ids in order; the alerts are not read back: the INSERT returns each new row's id and
    key, and their messages are made from the values just written."""
    raised_on = business_date(now)
    cases: dict[int, Case] = {}
    rows: dict[tuple[int, str, str], dict[str, Any]] = {}
    for case, findings in found:
        cases[case.id] = case
        for f in findings:
            key = (case.id, f.rule, f.level)
            if key not in rows:  # the first finding of a rule and level on the case stands
                rows[key] = _alert_row(case, f, now=now, raised_on=raised_on)
    if not rows:
        return []
    values = list(rows.values())
    if session.get_bind().dialect.name == "postgresql":
        # One short statement whatever the number of rows (one JSONB parameter, hub/db.py ``insert_rows``):
        # psycopg parses it once and the server keeps it prepared.
        new = session.execute(_raise_json(tuple(values[0])), {"rows": [json_row(row) for row in values]}).all()
    else:
        # One statement compiled once and cached, its rows sent as SQLAlchemy's "insertmanyvalues" batches.
        new = session.execute(_raise_statement(session), values).all()
    new = sorted(new)  # by id: the messages in the order the alerts were made
    insert_rows(session, OutboxMessage.__table__, [
        outbox.row(_message(RAISED, _Raised(alert_id, rows[(case_id, rule, level)]), case=cases[case_id], now=now))
        for alert_id, case_id, rule, level in new])
    return [int(alert_id) for alert_id, *_ in new]


def _alert_row(case: Case, f: Finding, *, now: datetime, raised_on: date) -> dict[str, Any]:
    return {
        "case_id": case.id, "rule": f.rule, "kind": f.kind, "level": f.level, "status": OPEN,
        "department_id": case.department_id, "region_code": case.region_code,
        "supervisor_region_code": case.region_code, "escalations": 0, "message": f.message,
        "detail": _plain(f.detail), "raised_at": now, "raised_on": raised_on,
        "history": [{"at": now.isoformat(), "action": "raised", "by": "system", "level": f.level}],
    }


class _Raised:
    """A new alert as its message reads it (``alert_payload``): its id and the values its row was written with."""

    __slots__ = ("escalations", "id", "kind", "level", "message", "region_code", "rule", "status",
                 "supervisor_region_code")

    def __init__(self, alert_id: int, row: Mapping[str, Any]) -> None:
        self.id = int(alert_id)
        self.rule, self.kind, self.level, self.status = row["rule"], row["kind"], row["level"], row["status"]
        self.message, self.escalations = row["message"], row["escalations"]
        self.region_code, self.supervisor_region_code = row["region_code"], row["supervisor_region_code"]


class AlertFields(Protocol):
    """What an alert's message says of it: an ``Alert`` row, or a new one's values (``_Raised``)."""

    @property
    def id(self) -> int: ...
    @property
    def rule(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def level(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def region_code(self) -> str: ...
    @property
    def supervisor_region_code(self) -> str: ...
    @property
    def escalations(self) -> int: ...


def _raise_statement(session: Session) -> Any:
    table = Alert.__table__
    return (_insert_for(session)(table)
            .on_conflict_do_nothing(index_elements=[table.c.case_id, table.c.rule, table.c.level])
            .returning(table.c.id, table.c.case_id, table.c.rule, table.c.level))


@cache
def _raise_json(names: tuple[str, ...]) -> Any:
    table = Alert.__table__
    return (insert_from_json(table, names)
            .on_conflict_do_nothing(index_elements=[table.c.case_id, table.c.rule, table.c.level])
            .returning(table.c.id, table.c.case_id, table.c.rule, table.c.level))


def close_alerts(session: Session, *, case: Case, rules: Collection[str] | None = None, now: datetime,
                 reason: str) -> list[Alert]:
    """Close the case's alerts still waiting for an explanation or a ruling (of ``rules`` when given), each
    with a history entry giving ``reason``, and ``alert.closed.v1`` each. Ruled alerts keep their ruling."""
    query = select(Alert).where(Alert.case_id == case.id, Alert.status.in_(UNRESOLVED))
    if rules is not None:
        if not rules:
            return []
        query = query.where(Alert.rule.in_(list(rules)))
    alerts = list(session.scalars(query.order_by(Alert.id)))
    for alert in alerts:
        alert.status = CLOSED_STATUS
        alert.closed_at = now
        alert.history = [*alert.history, {"at": now.isoformat(), "action": "closed", "by": "system",
                                          "reason": reason}]
        publish(session, CLOSED, alert, case=case, now=now, extra={"reason": reason})
    return alerts


def alert_payload(alert: AlertFields, *, case: Case) -> dict[str, Any]:
    """What subscribers receive about an alert: no personal data (no applicant, no officer names)."""
    return {
        "alert_id": alert.id, "tracking_no": case.tracking_no, "rule": alert.rule, "kind": alert.kind,
        "level": alert.level, "status": alert.status, "message": alert.message,
        "department": case.department.key, "region": alert.region_code,
        "supervisor_region": alert.supervisor_region_code, "escalations": alert.escalations,
    }


def publish(session: Session, event_type: str, alert: Alert, *, case: Case, now: datetime,
             extra: Mapping[str, Any] | None = None) -> None:
    session.add(_message(event_type, alert, case=case, now=now, extra=extra))


def _message(event_type: str, alert: AlertFields, *, case: Case, now: datetime,
             extra: Mapping[str, Any] | None = None) -> OutboxMessage:
    return outbox.message(event_type=event_type, region_code=alert.region_code,
                          payload={**alert_payload(alert, case=case), **(extra or {})}, occurred_at=now,
                          correlation_id=case.tracking_no)


def _plain(value: Any) -> Any:
    """``detail`` as JSON can hold it: mappings and sequences copied, dates as ISO text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _insert_for(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
