"""The department-exchange operations: a legacy department system acting as one of its officers.

The same rules as the REST officer API, by calling the same case service functions: the officer is
authenticated with the same password check, sees the same work queue, may act only on the
department's cases, only with the officer's roles and only where the workflow allows it. A
SubmitDecision is applied at most once per message id: a retry after a lost answer gets the original
outcome back (``duplicate=true``) through the same inbox the other exchanges use.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.auth.service import require_role
from hub.calendar.service import load_calendar
from hub.cases import clock, presenters, progress
from hub.cases import service as cases
from hub.cases.models import Case, CaseEvent
from hub.clock import business_date
from hub.errors import HubError
from hub.exchange.models import InboxMessage
from hub.legacy.soap import SoapCall, SoapContract, SoapFault, client_fault
from hub.outbox.alerts import Unserialisable, report_withheld
from hub.supervision import soap as alert_soap
from hub.text_fields import checked_text

DEFAULT_LIMIT = 100
DECISION_TYPE = "soap.SubmitDecision"
OFFICER_ROLES = ("intake", "reviewer", "approver")


class CaseWithheld(SoapFault):
    """GetCase of a case that cannot be serialised: answered as a fault after the alert is committed."""

    def __init__(self, problem: Unserialisable) -> None:
        super().__init__(
            "Server", "INTERNAL_ERROR", "unserialisable_case",
            f"办件含有无法传输的字符，已暂停发送并通知运维更正 (the case holds text that XML cannot carry, "
            f"{problem.describe()}; it is withheld and the hub's operators are alerted)", field=problem.field[:64],
        )


def handle(session: Session, call: SoapCall, *, officer: Officer, now: datetime, contract: SoapContract,
           audit_key: str) -> Mapping[str, Any]:
    """``officer``: the one the UsernameToken signed in (the router checks the token, the password and
    the sign-in limits in transactions of their own)."""
    _check_on_behalf_of(call, officer)
    if call.operation == "FetchPendingCases":
        return fetch_pending_cases(session, officer, call, now=now, contract=contract)
    if call.operation == "SubmitDecision":
        return submit_decision(session, officer, call, now=now, audit_key=audit_key)
    if call.operation in CLOCK_OPERATIONS:
        return clock_operation(session, officer, call, now=now, audit_key=audit_key)
    if call.operation in alert_soap.OPERATIONS:  # electronic supervision: the department's alerts
        return alert_soap.handle(session, call, officer=officer, now=now)
    return get_case(session, officer, call, now=now, contract=contract)


def _check_on_behalf_of(call: SoapCall, officer: Officer) -> None:
    if call.exchange.on_behalf_of != officer.username:
        raise client_fault(
            "on_behalf_of", "交换标识 onBehalfOf 必须是认证的工作人员 (Exchange/onBehalfOf must name the officer "
                            "authenticated by the UsernameToken)", field="onBehalfOf",
        )


def fetch_pending_cases(session: Session, officer: Officer, call: SoapCall, *, now: datetime,
                        contract: SoapContract) -> dict[str, Any]:
    """The officer's work queue; a case that cannot be serialised is left out (and alerted), the others go."""
    offset = int(call.params.get("offset") or 0)
    limit = int(call.params.get("limit") or DEFAULT_LIMIT)
    page = cases.work_queue(session, officer=officer, offset=offset, limit=limit)
    rows = page.rows
    calendar = load_calendar(session)
    today = business_date(now)
    taken = cases.once_taken(session, rows)
    parents = progress.parent_numbers(session, rows)
    entries = []
    for case in rows:
        entry = presenters.queue_entry(case, officer, today, calendar, taken.get(case.id, frozenset()),
                                       parent_tracking_no=parents.get(case.parent_id or 0))
        entries.append({
            "trackingNo": case.tracking_no,
            "itemCode": case.item.code,
            "itemName": case.item.name,
            "state": case.state,
            "stateLabel": entry.state_label,
            "submittedAt": case.submitted_at,
            "intakeDeadline": case.intake_deadline,
            "deadline": case.deadline,
            "stepDeadline": entry.step_deadline,
            "overdue": entry.overdue,
            "applicant": _applicant(case),
            "availableAction": entry.actions,
            # A joint case's branch: its own number above, the joint case's here (Art. 26 joint approval).
            "parentTrackingNo": entry.parent_tracking_no,
            "branch": case.branch,
            "branchLabel": progress.branch_label(session, case),
        })
    return {"total": page.total, "offset": offset, "limit": limit,
            "case": _serialisable(session, contract, rows, entries, now=now)}


def _serialisable(session: Session, contract: SoapContract, rows: list[Case], entries: list[dict[str, Any]], *,
                  now: datetime) -> list[dict[str, Any]]:
    kept = []
    for case, entry in zip(rows, entries, strict=True):
        problem = _unserialisable(contract, "FetchPendingCasesResponse",
                                  {"total": 0, "offset": 0, "limit": 1, "case": [entry]}, within="case.0.")
        if problem is None:
            kept.append(entry)
        else:
            report_withheld(session, case, channel="soap.FetchPendingCases", problem=problem, now=now)
    return kept


def _unserialisable(contract: SoapContract, name: str, value: Mapping[str, Any], *,
                    within: str) -> Unserialisable | None:
    problem = contract.unserialisable(name, value)
    if problem is None or not problem.field.startswith(within):
        return problem
    return Unserialisable(problem.field.removeprefix(within), problem.rule)


def submit_decision(
    session: Session, officer: Officer, call: SoapCall, *, now: datetime, audit_key: str
) -> dict[str, Any]:
    require_role(officer, OFFICER_ROLES)
    # Another department's case is "not found", exactly like an unknown number (no existence leak).
    case = cases.case_for_officer(session, tracking_no=call.params["trackingNo"], officer=officer)
    action = call.params["action"]
    message_id = uuid.UUID(call.exchange.message_id)
    earlier = session.get(InboxMessage, (call.exchange.client[:40], message_id))  # ids are unique per sender
    if earlier is not None:
        return _replay(session, earlier, case, action)
    # The same text rules as the REST officer API: refused with a fault naming the field and the rule.
    opinion = checked_text(call.params.get("opinion"), field="opinion", optional=True, max_length=2000)
    event = cases.act(session, case=case, actor=cases.Actor.officer(officer), action=action, opinion=opinion,
                      now=now, audit_key=audit_key)
    session.add(InboxMessage(
        message_id=message_id, partner_code=call.exchange.client[:40], type=DECISION_TYPE,
        outcome=f"{action}#{event.seq}"[:32], case_id=case.id, received_at=now,
    ))
    session.flush()
    return _decision(case, event, action, duplicate=False)


# The law's clock (hub/cases/clock.py): operation -> the REST action it is.
CLOCK_OPERATIONS = {"ExtendTimeLimit": "extend", "StartSpecialProcedure": "start_special_procedure",
                    "EndSpecialProcedure": "end_special_procedure"}
# REST's field names in the clock checks -> the request's elements.
_CLOCK_FIELDS = {"opinion": "reason", "data.kind": "kind", "data.declared_days": "declaredDays",
                 "data.result": "result"}


def clock_operation(
    session: Session, officer: Officer, call: SoapCall, *, now: datetime, audit_key: str
) -> dict[str, Any]:
    """Art. 42 extension and Art. 45 special procedures: the same action, checks and event as over REST, applied
    at most once per message id."""
    require_role(officer, OFFICER_ROLES)
    case = cases.case_for_officer(session, tracking_no=call.params["trackingNo"], officer=officer)
    action = CLOCK_OPERATIONS[call.operation]
    message_id = uuid.UUID(call.exchange.message_id)
    earlier = session.get(InboxMessage, (call.exchange.client[:40], message_id))
    if earlier is not None:
        event = _replayed_event(session, earlier, case, action)
        return _clock_outcome(session, case, event, action, now=now, duplicate=True)
    params = call.params
    reason = checked_text(params.get("reason"), field="reason", optional=True, max_length=2000)
    data: dict[str, Any] = {}
    if action == "start_special_procedure":
        data = {"kind": params.get("kind"), "declared_days": int(params["declaredDays"])}
    elif action == "end_special_procedure":
        data = {"result": checked_text(params.get("result"), field="result", optional=True, max_length=500)}
    try:
        event = cases.act(session, case=case, actor=cases.Actor.officer(officer), action=action, opinion=reason,
                          data=data, now=now, audit_key=audit_key)
    except HubError as exc:
        for error in exc.errors:
            error.field = _CLOCK_FIELDS.get(error.field, error.field)
        raise
    session.add(InboxMessage(
        message_id=message_id, partner_code=call.exchange.client[:40], type=DECISION_TYPE,
        outcome=f"{action}#{event.seq}"[:32], case_id=case.id, received_at=now,
    ))
    session.flush()
    return _clock_outcome(session, case, event, action, now=now, duplicate=False)


def _clock_outcome(session: Session, case: Case, event: CaseEvent, action: str, *, now: datetime,
                   duplicate: bool) -> dict[str, Any]:
    view = clock.view_of(case, calendar=load_calendar(session), today=business_date(now))
    return {
        "trackingNo": case.tracking_no, "action": action, "state": event.to_state, "seq": event.seq,
        "statutoryDeadline": view.statutory_deadline, "promisedDeadline": view.promised_deadline,
        "daysSuspended": view.days_suspended, "daysRemaining": view.days_remaining, "duplicate": duplicate,
    }


def _replay(session: Session, earlier: InboxMessage, case: Case, action: str) -> dict[str, Any]:
    return _decision(case, _replayed_event(session, earlier, case, action), action, duplicate=True)


def _replayed_event(session: Session, earlier: InboxMessage, case: Case, action: str) -> CaseEvent:
    """The answer to a message id applied before, or a fault if the id was used for something else."""
    recorded_action, _, seq = earlier.outcome.partition("#")
    if earlier.type != DECISION_TYPE or earlier.case_id != case.id or recorded_action != action:
        raise client_fault(
            "message_id_unique", "消息标识已用于另一请求 (this messageId was already used for a different request; "
                                 "use a new UUID for every new request)", field="messageId", code="DUPLICATE_MESSAGE",
        )
    return session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.seq == int(seq))).one()


def _decision(case: Case, event: CaseEvent, action: str, *, duplicate: bool) -> dict[str, Any]:
    definition = cases.definition_for(case)
    return {
        "trackingNo": case.tracking_no,
        "action": action,
        "fromState": event.from_state or "",
        "state": event.to_state,
        "stateLabel": definition.states.get(event.to_state, event.to_state),
        "seq": event.seq,
        "deadline": case.deadline,
        "duplicate": duplicate,
    }


def get_case(session: Session, officer: Officer, call: SoapCall, *, now: datetime,
             contract: SoapContract) -> dict[str, Any]:
    case = cases.case_for_officer(session, tracking_no=call.params["trackingNo"], officer=officer)
    result = _case_detail(session, case, officer, now=now)
    problem = _unserialisable(contract, "GetCaseResponse", result, within="case.")
    if problem is not None:
        report_withheld(session, case, channel="soap.GetCase", problem=problem, now=now)
        raise CaseWithheld(problem)
    return result


def _case_detail(session: Session, case: Case, officer: Officer, *, now: datetime) -> dict[str, Any]:
    view = presenters.officer_view(session, case, officer, business_date(now))
    return {"case": {
        "trackingNo": case.tracking_no,
        "itemCode": case.item.code,
        "itemName": case.item.name,
        "nationalCode": case.item.national_code,
        "region": case.region_code,
        "department": case.department.key,
        "departmentName": case.department.name,
        "state": case.state,
        "stateLabel": view.state_label,
        "channel": case.channel,
        "origin": case.origin,
        "submittedAt": case.submitted_at,
        "intakeDeadline": case.intake_deadline,
        "acceptedOn": case.accepted_on,
        "deadline": case.deadline,
        "statutoryDeadline": view.statutory_deadline,
        "suspended": view.suspended,
        "promisedDeadline": view.promised_deadline,
        "workingDaysUsed": view.working_days_used,
        "daysSuspended": view.days_suspended,
        "daysRemaining": view.days_remaining,
        "extensionDays": case.extension_days or 0,
        "suspension": [{
            "kind": s["kind"], "startedOn": s["started_on"], "endedOn": s.get("ended_on"),
            "declaredDays": s.get("declared_days"), "reason": s.get("reason") or None,
        } for s in case.suspensions or ()],
        "result": case.result,
        "completedAt": case.completed_at,
        "applicant": _applicant(case),
        "availableAction": view.available_actions,
        "step": [{
            "seq": step.seq, "action": step.action, "label": step.label, "state": step.state,
            "stateLabel": step.state_label, "at": step.at, "department": step.department,
            "actor": step.actor or "—", "opinion": step.opinion,
        } for step in view.steps],
        "parentTrackingNo": view.parent_tracking_no,
        "branch": view.branch,
        # The form as the officer's REST view has it: for a branch, its part of the consolidated form only.
        "formField": [{"name": name, "value": json.dumps(value, ensure_ascii=False)}
                      for name, value in view.form.items()],
        "branchProgress": [{
            "branch": line.branch, "label": line.label, "trackingNo": line.tracking_no,
            "department": line.department, "departmentName": line.department_name, "state": line.state,
            "stateLabel": line.state_label, "currentStep": line.current_step, "deadline": line.deadline,
            "suspended": line.suspended, "result": line.result,
        } for line in view.branches],
        # Issue 12: whether the case's fee is paid (absent when the item charges nothing).
        "fee": view.fee and {"amountFen": view.fee.amount_fen, "paidFen": view.fee.paid_fen,
                             "status": view.fee.status, "due": view.fee.due, "source": view.fee.source},
    }}


def _applicant(case: Case) -> dict[str, Any]:
    return {
        "type": case.applicant_type,
        "name": case.applicant_name,
        "idType": case.applicant_id_type,
        "idNumber": case.applicant_id_number,
        "phone": case.applicant_phone or None,
    }
