"""The department SOAP service's alert operations (schemas/soap/department-exchange.v1.wsdl): a legacy
department system reads its department's alerts (FetchAlerts) and answers one (ExplainAlert).

The same checks as REST (hub/supervision/oversight.py): the signed-in officer sees his department's alerts
(a supervisor his region's), explains only his department's, only while no ruling is made; an alert he may
not see is NOT_FOUND like an unknown id. ExplainAlert is applied at most once per message id, through the
inbox the other operations use: a retry after a lost answer gets the alert back with ``duplicate=true``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.errors import NotFound
from hub.exchange.models import InboxMessage
from hub.legacy.soap import SoapCall, client_fault
from hub.supervision import oversight
from hub.text_fields import checked_text

OPERATIONS = ("FetchAlerts", "ExplainAlert")
EXPLAIN_TYPE = "soap.ExplainAlert"
DEFAULT_LIMIT = 100


def handle(session: Session, call: SoapCall, *, officer: Officer, now: datetime) -> Mapping[str, Any]:
    try:
        if call.operation == "FetchAlerts":
            return fetch_alerts(session, officer, call)
        return explain_alert(session, officer, call, now=now)
    except NotFound as exc:
        raise client_fault("exists", f"{exc.detail} [rule exists]", field="alertId", code="NOT_FOUND") from None


def fetch_alerts(session: Session, officer: Officer, call: SoapCall) -> dict[str, Any]:
    params = call.params
    filters = oversight.AlertFilters(status=params.get("status") or None, level=params.get("level") or None,
                                     kind=params.get("kind") or None, case=params.get("trackingNo") or None)
    offset = int(params.get("offset") or 0)
    limit = int(params.get("limit") or DEFAULT_LIMIT)
    page = oversight.list_alerts(session, officer=officer, filters=filters, offset=offset, limit=limit)
    return {"total": page.total, "offset": offset, "limit": limit,
            "alert": [_alert(view) for view in oversight.views(session, officer=officer, alerts=page.rows)]}


def explain_alert(session: Session, officer: Officer, call: SoapCall, *, now: datetime) -> dict[str, Any]:
    alert_id = int(call.params["alertId"])
    alert = oversight.get_alert(session, officer=officer, alert_id=alert_id, for_update=True)
    sender = call.exchange.client[:40]
    message_id = uuid.UUID(call.exchange.message_id)
    outcome = f"explain#{alert.id}"
    earlier = session.get(InboxMessage, (sender, message_id))
    if earlier is not None:
        if earlier.type != EXPLAIN_TYPE or earlier.outcome != outcome:
            raise client_fault(
                "message_id_unique", "消息标识已用于另一请求 (this messageId was already used for a different "
                                     "request; use a new UUID for every new request)", field="messageId",
                code="DUPLICATE_MESSAGE")
        return {"alert": _alert(oversight.views(session, officer=officer, alerts=[alert])[0]), "duplicate": True}
    # The same text rules as the REST body: refused with a fault naming the field and the rule.
    explanation = checked_text(call.params.get("explanation"), field="explanation", max_length=2000)
    correction = checked_text(call.params.get("correction"), field="correction", max_length=2000)
    assert explanation is not None and correction is not None  # not optional: checked_text refused them
    oversight.explain(session, officer=officer, alert=alert, explanation=explanation, correction=correction, now=now)
    session.add(InboxMessage(message_id=message_id, partner_code=sender, type=EXPLAIN_TYPE, outcome=outcome,
                             case_id=alert.case_id, received_at=now))
    session.flush()
    return {"alert": _alert(oversight.views(session, officer=officer, alerts=[alert])[0]), "duplicate": False}


def _alert(view: Mapping[str, Any]) -> dict[str, Any]:
    accountability = view["accountability"]
    return {
        "alertId": view["id"], "trackingNo": view["tracking_no"], "rule": view["rule"][:64], "kind": view["kind"],
        "level": view["level"], "status": view["status"], "statusLabel": view["status_label"],
        "message": view["message"], "raisedAt": view["raised_at"], "raisedOn": view["raised_on"],
        "supervisorRegion": view["supervisor_region_code"], "escalations": view["escalations"],
        "explanation": view["explanation"], "correction": view["correction"], "explainedBy": view["explained_by"],
        "explainedAt": view["explained_at"], "ruling": view["ruling"], "ruledAt": view["ruled_at"],
        "accountability": None if not accountability else {
            "measure": accountability["measure"], "person": accountability["person"], "date": accountability["date"]},
        "closedAt": view["closed_at"], "canExplain": "explain" in view["available_actions"],
    }
