"""Applications and cases: submit, act, supplement, withdraw, and the views on a case."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters.registries import Registries
from hub.auth.models import Officer
from hub.auth.service import can_oversee_region
from hub.calendar.service import load_calendar
from hub.cases import writes
from hub.cases.models import Case, CaseEvent, Material
from hub.cases.schemas import ApplicantIn, ApplicationIn
from hub.cases.tracking import new_query_code, query_code_digest
from hub.catalog import service as catalog
from hub.catalog.models import Item
from hub.clock import business_date
from hub.deliveries import service as deliveries
from hub.errors import Conflict, FieldError, Forbidden, HubError, NotFound, ValidationFailed
from hub.org.models import Department
from hub.outbox import service as outbox
from hub.outbox.models import OutboxMessage
from hub.pagination import Page, paginate
from hub.text_fields import normalize_form
from hub.verification import checks as verification
from workflow import identifiers as ids
from workflow.calendar import WorkingCalendar
from workflow.definition import Transition, WorkflowDefinition, standard_definition
from workflow.machine import ActionNotAvailable, OncePerStep, OpinionRequired, RoleNotAllowed, apply
from workflow.timelimits import (
    allocate_step_deadlines,
    compute_deadline,
    extend_for_suspension,
)

INTAKE_NOTICE_DAYS = 5  # Administrative Licensing Law Art. 32: one supplement notice within 5 days
ORGANISATION_TYPES = {"2", "3", "4", "5", "6"}

EVENT_NAMES = {
    "submit": "submitted",
    "accept": "accepted",
    "refuse_intake": "intake_refused",
    "request_supplement": "supplement_requested",
    "supplement": "supplemented",
    "review": "reviewed",
    "grant": "granted",
    "deny": "denied",
    "complete": "completed",
    "withdraw": "withdrawn",
}


@dataclass(frozen=True)
class Actor:
    """Whoever acts on a case: an officer, the applicant, or a partner system."""

    kind: str
    id: str
    name: str
    roles: frozenset[str] = frozenset()
    department_id: int | None = None

    @classmethod
    def officer(cls, officer: Officer) -> Actor:
        return cls("officer", officer.username, officer.name, frozenset(officer.roles),
                   officer.department_id)

    @classmethod
    def applicant(cls) -> Actor:
        return cls("applicant", "applicant", "申请人")


def definition_for(case: Case) -> WorkflowDefinition:
    return standard_definition()


# --- submission -----------------------------------------------------------------------------


def submit_application(
    session: Session, *, data: ApplicationIn, now: datetime, audit_key: str,
    registries: Registries | None = None, registered_by: Actor | None = None,
    receiving_department: Department | None = None,
) -> tuple[Case, str]:
    """Validate and store a new application; returns the case and its one-time query code.

    The applicant's registry checks are stored pending with the case; the caller runs them after
    committing (hub.verification.checks.verify_on_submission), so a registry can never cost a case.

    ``registered_by`` / ``receiving_department``: the window officer who registers a paper application on
    the applicant's behalf and the service centre he works at (hub/window/service.py); without them only an
    ``online`` application is taken."""
    if data.channel != "online" or registered_by is not None:
        _check_channel(data.channel, registered_by, receiving_department)
    item = _item_for_submission(session, data.item_code)
    today = business_date(now)
    applicant_id = _check_applicant(item, data.applicant, today)
    # Normalised before the schema check, so lengths and patterns apply to what is stored.
    form = normalize_form(data.form, item.form_schema)
    catalog.validate_form(item, form, session=session)
    calendar = load_calendar(session)
    query_code = new_query_code()
    state = standard_definition().initial_state
    applicant = data.applicant
    if registered_by is None:
        first = writes.NewEvent(action="submit", to_state=state, actor_type="applicant", actor_id=data.channel,
                                actor_name="申请人", occurred_at=now, data={"channel": data.channel})
    else:
        assert receiving_department is not None  # _check_channel
        first = _registered_at_window(item, registered_by, receiving_department, state, now)
    opening = writes.new_case(
        session, item=item, query_code=query_code, state=state, channel=data.channel, origin="hub",
        applicant=writes.Applicant(applicant.type, applicant.name.strip(), applicant.id_type, applicant_id,
                                   applicant.phone, applicant.region),
        form_data=form, submitted_at=now, now=now,
        intake_deadline=calendar.add_working_days(today, INTAKE_NOTICE_DAYS),
        first=first, key=audit_key,
        receiving_region_code=receiving_department.region_code if receiving_department else None,
        receiving_department_id=receiving_department.id if receiving_department else None,
    )
    case = opening.case
    verification.plan_checks(session, case, registries=registries, now=now)
    messages = [_message(case, "submit", now)]
    if receiving_department is not None and is_forwarded(case):
        messages.append(_forwarded_message(case, receiving_department, now))
    # Case, first event, planned checks and outbox rows: one statement (hub/cases/writes.py).
    writes.insert_case(session, opening, outbox=messages)
    deliveries.on_case_change(session, case, "submit", now)
    return case, query_code


def _check_channel(channel: str, registered_by: Actor | None, receiving_department: Department | None) -> None:
    """Only the online channel is open to anyone: a window application is registered by the window officer
    who took the paper form (hub/window), and a partner's case arrives through the exchange (hub/exchange)."""
    if channel == "window" and (registered_by is None or receiving_department is None):
        raise ValidationFailed([FieldError(
            "channel", "window_requires_officer",
            "窗口渠道的申请只能由窗口工作人员登录后代为登记；网上申请请使用 online 渠道 "
            "(a window application is registered by a signed-in window officer)",
        )])
    if channel == "partner":
        raise ValidationFailed([FieldError(
            "channel", "partner_via_exchange",
            "合作平台的办件通过数据交换报送，不能在此提交 (partner cases arrive through the exchange)",
        )])
    if registered_by is not None and channel != "window":
        raise ValidationFailed([FieldError("channel", "window_registration", "窗口代为登记的申请渠道应为 window")])


def _registered_at_window(
    item: Item, officer: Actor, window: Department, state: str, now: datetime
) -> writes.NewEvent:
    """The submit step of a paper application: the window officer is its actor (he registered it on the
    applicant's behalf), and its data names the window that received it — and, for an item another region
    implements (跨域通办), the department it is forwarded to."""
    received = {"region": window.region_code, "department": window.key, "department_name": window.name}
    data: dict[str, Any] = {"channel": "window", "received_at": received}
    if window.region_code != item.region_code:
        data["forwarded_to"] = {"region": item.region_code, "department": item.department.key,
                                "department_name": item.department.name}
    return writes.NewEvent(action="submit", to_state=state, actor_type="officer", actor_id=officer.id,
                           actor_name=officer.name, department_id=window.id, occurred_at=now, data=data)


def _forwarded_message(case: Case, window: Department, now: datetime) -> OutboxMessage:
    """``case.forwarded.v1``: tells the implementing region that another region's window received the
    application (跨域通办); published beside ``case.submitted.v1``, in the same statement."""
    payload = case_event_payload(case) | {
        "channel": case.channel, "receiving_region": window.region_code, "receiving_department": window.key,
    }
    return outbox.message(event_type="case.forwarded.v1", region_code=case.region_code, payload=payload,
                          occurred_at=now, correlation_id=case.tracking_no)


def is_forwarded(case: Case) -> bool:
    """A cross-region (通办) case: registered at a window of another region than the implementing one."""
    return case.receiving_region_code is not None and case.receiving_region_code != case.region_code


def _item_for_submission(session: Session, code: str) -> Item:
    try:
        # Its values only: the case holds it as loaded, it never joins the session (hub/cases/writes.py).
        item = catalog.get_item(session, code, attach=False)
    except NotFound as exc:
        raise ValidationFailed([FieldError("item_code", "item_exists", exc.detail)]) from exc
    if not item.active:
        raise ValidationFailed([FieldError("item_code", "item_active", "该事项已停止办理")])
    return item


def _check_applicant(item: Item, applicant: ApplicantIn, today: date) -> str:
    errors: list[FieldError] = []
    if item.applicant_types and applicant.type not in item.applicant_types:
        errors.append(FieldError(
            "applicant.type", "allowed_for_item", "该事项不受理此类申请人 (applicant type not accepted)"
        ))
    expected = "citizen_id" if applicant.type == "1" else "credit_code"
    if applicant.id_type in {"citizen_id", "credit_code"} and applicant.id_type != expected:
        errors.append(FieldError(
            "applicant.id_type", "matches_applicant_type",
            "自然人使用居民身份证号码，组织使用统一社会信用代码",
        ))
    number = applicant.id_number.strip().upper()
    try:
        if applicant.id_type == "citizen_id":
            number = ids.validate_citizen_id(number, today=today)
        elif applicant.id_type == "credit_code":
            number = ids.validate_credit_code(number)
    except ids.IdentifierError as exc:
        errors.append(FieldError("applicant.id_number", exc.rule, str(exc)))
    if errors:
        raise ValidationFailed(errors)
    return number


# --- finding a case ------------------------------------------------------------------------


def get_case(session: Session, tracking_no: str) -> Case:
    case = session.scalar(select(Case).where(Case.tracking_no == tracking_no))
    if case is None:
        raise case_not_found(tracking_no)
    return case


def case_not_found(tracking_no: str) -> NotFound:
    """The one answer for a case that does not exist or that the caller may not see."""
    return NotFound(f"办件 {tracking_no} 不存在 (unknown tracking number)")


def case_for_applicant(session: Session, *, tracking_no: str, query_code: str) -> Case:
    """Same answer for a wrong number and a wrong code, so neither can be probed alone."""
    case = session.scalar(select(Case).where(Case.tracking_no == tracking_no))
    given = query_code_digest(tracking_no, query_code or "")
    if case is None or not hmac.compare_digest(case.query_code_hash, given):
        raise NotFound("办件编号或查询码不正确 (tracking number or query code wrong)")
    return case


def case_for_officer(session: Session, *, tracking_no: str, officer: Officer) -> Case:
    """A case the officer may see; any other is answered exactly as an unknown number, so an officer
    cannot learn that another department's case exists (a 403 would tell)."""
    case = session.scalar(select(Case).where(Case.tracking_no == tracking_no))
    if case is None or not may_view(session, officer, case):
        raise case_not_found(tracking_no)
    return case


def may_view(session: Session, officer: Officer, case: Case) -> bool:
    if officer.department_id == case.department_id:
        return True
    return "supervisor" in officer.roles and can_oversee_region(session, officer, case.region_code)


# --- acting on a case ----------------------------------------------------------------------


def act(
    session: Session, *, case: Case, actor: Actor, action: str, opinion: str | None, now: datetime,
    audit_key: str,
) -> CaseEvent:
    """Apply one workflow action after checking the system of record, department scope, state, role,
    the once-per-step rule and the opinion.

    Every change to the case row happens before the event is appended: the event seals the row as
    the action left it (hub/audit/service.py)."""
    _check_system_of_record(case)
    if actor.kind == "officer" and actor.department_id != case.department_id:
        raise Forbidden("只能办理本部门的办件 (case belongs to another department)")
    definition = definition_for(case)
    transition = _checked_transition(definition, case, actor, action, opinion, _taken_for(session, case, action))
    if action == "grant":
        verification.ensure_grantable(session, case)
    from_state = case.state
    _apply_clock(session, case, transition, business_date(now), definition)
    case.state = transition.target
    case.updated_at = now
    if action in {"grant", "deny"}:
        case.decided_at = now
        case.result = "granted" if action == "grant" else "denied"
    if transition.target in definition.terminal_states:
        case.completed_at = now
        case.result = case.result or transition.target
    event = writes.append_step(session, case, writes.NewEvent(
        action=action, step=transition.step, from_state=from_state, to_state=transition.target,
        actor_type=actor.kind, actor_id=actor.id, actor_name=actor.name,
        department_id=case.department_id if actor.kind == "officer" else None,
        opinion=(opinion or "").strip() or None, occurred_at=now,
    ), key=audit_key)
    _publish(session, case, action, now)
    deliveries.on_case_change(session, case, action, now)
    return event


def record_event(
    session: Session, *, case: Case, actor: Actor, action: str, opinion: str | None, data: dict[str, Any],
    now: datetime, audit_key: str,
) -> CaseEvent:
    """Record something done on a case that does not move it (e.g. an officer's manual verification):
    one more event in the case's chain, on its timeline, with the state unchanged."""
    case.updated_at = now
    return writes.append_step(session, case, writes.NewEvent(
        action=action, from_state=case.state, to_state=case.state, actor_type=actor.kind, actor_id=actor.id,
        actor_name=actor.name, department_id=actor.department_id if actor.kind == "officer" else None,
        opinion=opinion, occurred_at=now, data=data,
    ), key=audit_key)


def _checked_transition(
    definition: WorkflowDefinition, case: Case, actor: Actor, action: str, opinion: str | None,
    taken: frozenset[tuple[str, str]],
) -> Transition:
    try:
        return apply(definition, case.state, action, actor=actor.kind, roles=actor.roles,
                     opinion=opinion, taken=taken)
    except RoleNotAllowed as exc:
        raise Forbidden(str(exc)) from exc
    except ActionNotAvailable as exc:
        raise Conflict(str(exc), type_slug="action-not-available") from exc
    except OncePerStep as exc:
        raise HubError(
            detail=str(exc), title="状态冲突", status=409, type_slug="once-per-step",
            errors=[FieldError("action", "once_per_step", str(exc))],
        ) from exc
    except OpinionRequired as exc:
        raise ValidationFailed([FieldError("opinion", "required", str(exc))]) from exc


def _check_system_of_record(case: Case) -> None:
    """A case a partner platform reports is handled there: the hub only mirrors its record.

    Acting on it here would fork the case (a hub 办结 beside the platform's own), so every hub-side
    action is refused; 409 rather than 403 because it is the case, not the caller, that rules it out."""
    if case.origin == "partner":
        raise HubError(
            detail=f"该办件由合作平台 {case.origin_partner} 办理，省平台只读，请在该平台办理 "
                   f"(the case's system of record is partner platform {case.origin_partner}; "
                   "it is read-only in the hub)",
            title="办件只读", status=409, type_slug="partner-system-of-record",
        )


def _taken_for(session: Session, case: Case, action: str) -> frozenset[tuple[str, str]]:
    """The case's history, read only when the action asked for is a once-per-step one."""
    definition = definition_for(case)
    if not any(t.once_per_step and t.action == action for t in definition.transitions):
        return frozenset()
    return once_taken(session, [case], definition).get(case.id, frozenset())


def once_taken(
    session: Session, cases: Sequence[Case], definition: WorkflowDefinition | None = None
) -> dict[int, frozenset[tuple[str, str]]]:
    """Per case id, the (step, action) pairs of once-per-step actions it has recorded; one query."""
    definition = definition or standard_definition()
    actions = {t.action for t in definition.transitions if t.once_per_step}
    case_ids = [case.id for case in cases if case.id is not None]
    if not actions or not case_ids:
        return {}
    rows = session.execute(
        select(CaseEvent.case_id, CaseEvent.step, CaseEvent.action)
        .where(CaseEvent.case_id.in_(case_ids), CaseEvent.action.in_(actions))
    )
    taken: dict[int, set[tuple[str, str]]] = {}
    for case_id, step, action in rows:
        taken.setdefault(case_id, set()).add((step or "", action))
    return {case_id: frozenset(pairs) for case_id, pairs in taken.items()}


def _apply_clock(
    session: Session, case: Case, transition: Transition, today: date,
    definition: WorkflowDefinition,
) -> None:
    if transition.clock == "start":
        _start_clock(case, load_calendar(session), today, definition)
    elif transition.clock == "suspend":
        case.suspended_since = today
    elif transition.clock == "resume" and case.suspended_since is not None:
        _resume_clock(case, load_calendar(session), today)


def _start_clock(
    case: Case, calendar: WorkingCalendar, today: date, definition: WorkflowDefinition
) -> None:
    # Deadlines are stored, so a later calendar change cannot rewrite a past result.
    case.accepted_on = today
    case.deadline = compute_deadline(calendar, today, case.promised_limit_days)
    case.statutory_deadline = compute_deadline(calendar, today, case.statutory_limit_days)
    steps = allocate_step_deadlines(definition, calendar, today, case.promised_limit_days)
    case.step_deadlines = {name: d.isoformat() for name, d in steps.items()}


def _resume_clock(case: Case, calendar: WorkingCalendar, today: date) -> None:
    since = case.suspended_since
    assert since is not None
    if case.deadline is not None:
        case.deadline = extend_for_suspension(calendar, case.deadline, since, today)
    if case.statutory_deadline is not None:
        case.statutory_deadline = extend_for_suspension(
            calendar, case.statutory_deadline, since, today
        )
    case.step_deadlines = {
        name: extend_for_suspension(calendar, date.fromisoformat(d), since, today).isoformat()
        for name, d in case.step_deadlines.items()
    }
    case.suspended_working_days += calendar.working_days_between(since, today)
    case.suspended_since = None


def _publish(session: Session, case: Case, action: str, now: datetime) -> None:
    session.add(_message(case, action, now))


def _message(case: Case, action: str, now: datetime) -> OutboxMessage:
    return outbox.message(
        event_type=f"case.{EVENT_NAMES.get(action, action)}.v1",
        region_code=case.region_code,
        payload=case_event_payload(case),
        occurred_at=now,
        correlation_id=case.tracking_no,
    )


def case_event_payload(case: Case) -> dict[str, Any]:
    """What partners receive about a case: no personal data beyond the applicant type."""
    return {
        "tracking_no": case.tracking_no,
        "item_code": case.item.code,
        "department": case.department.key,
        "region": case.region_code,
        "state": case.state,
        "accepted_on": case.accepted_on.isoformat() if case.accepted_on else None,
        "deadline": case.deadline.isoformat() if case.deadline else None,
        "result": case.result,
        "applicant_type": case.applicant_type,
        "event_seq": case.event_count,
    }


# --- applicant side ------------------------------------------------------------------------


def supplement(session: Session, *, case: Case, note: str, now: datetime, audit_key: str) -> CaseEvent:
    return act(session, case=case, actor=Actor.applicant(), action="supplement", opinion=note,
               now=now, audit_key=audit_key)


def withdraw(session: Session, *, case: Case, reason: str, now: datetime, audit_key: str) -> CaseEvent:
    return act(session, case=case, actor=Actor.applicant(), action="withdraw", opinion=reason,
               now=now, audit_key=audit_key)


def applicant_actions(case: Case) -> list[str]:
    if case.origin == "partner":
        return []
    return [t.action for t in definition_for(case).available_actions(case.state, actor="applicant")]


def officer_actions(
    case: Case, officer: Officer, taken: frozenset[tuple[str, str]] = frozenset()
) -> list[str]:
    """What the officer may do now; ``taken`` (from ``once_taken``) hides a used once-per-step action."""
    if officer.department_id != case.department_id or case.origin == "partner":
        return []
    roles = set(officer.roles)
    return [
        t.action
        for t in definition_for(case).available_actions(case.state, actor="officer", taken=taken)
        if roles & t.roles
    ]


def events_of(session: Session, case: Case) -> list[CaseEvent]:
    return list(session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
    ).unique())


def materials_of(session: Session, case: Case) -> list[Material]:
    return list(session.scalars(
        select(Material).where(Material.case_id == case.id).order_by(Material.id)
    ))


def missing_materials(session: Session, case: Case) -> list[str]:
    have = {m.material_key for m in materials_of(session, case)} | verification.replaced_material_keys(session, case)
    return [
        m["key"] for m in case.item.guide.get("materials", [])
        if m.get("required", True) and m["key"] not in have
    ]


# --- officer work queue ---------------------------------------------------------------------


def work_queue(
    session: Session, *, officer: Officer, offset: int = 0, limit: int = 100
) -> Page[Case]:
    """Open cases of the officer's department on which one of the officer's roles can act (not the
    cases partner platforms report: those are handled on the platform)."""
    definition = standard_definition()
    roles = set(officer.roles)
    states = sorted({
        t.source for t in definition.transitions if t.actor == "officer" and roles & t.roles
    })
    if not states:
        return Page(0, offset, limit)
    query = select(Case).where(
        Case.department_id == officer.department_id, Case.state.in_(states), Case.origin != "partner"
    )
    order = [func.coalesce(Case.deadline, Case.intake_deadline), Case.submitted_at, Case.id]
    return paginate(session, query, order_by=order, offset=offset, limit=limit)
