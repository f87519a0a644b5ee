"""Turns a case into what each audience may see: applicant, officer, or the public."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date

from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.calendar.service import load_calendar
from hub.cases import clock, progress, service
from hub.cases.models import Case, CaseEvent, Material
from hub.cases.schemas import (
    ApplicationReceipt,
    CaseOut,
    CaseRating,
    MaterialOut,
    MaterialRequest,
    QueueEntry,
    StatusOut,
    StepOut,
)
from hub.payments import fees
from hub.supervision import ratings
from hub.transparency import redact
from hub.verification import checks as verification
from hub.verification import presenters as verification_views
from workflow.definition import WorkflowDefinition
from workflow.timelimits import working_days_left


def receipt(case: Case, query_code: str, session: Session | None = None) -> ApplicationReceipt:
    definition = service.definition_for(case)
    replaced = verification.replaced_material_keys(session, case) if session is not None else set()
    return ApplicationReceipt(
        tracking_no=case.tracking_no,
        query_code=query_code,
        state=case.state,
        state_label=definition.states[case.state],
        item_code=case.item.code,
        item_name=case.item.name,
        department=case.department.key,
        department_name=case.department.name,
        submitted_at=case.submitted_at,
        received_on=case.received_on,
        intake_deadline=case.intake_deadline,
        materials=[MaterialRequest(
            key=m["key"], name=m["name"], form=m["form"], count=m["count"],
            required=m.get("required", True), replaceable_by=m.get("replaceable_by"),
            replaced_by_registry=m["key"] in replaced,
        ) for m in case.item.guide.get("materials", [])],
        verification=verification.case_summary(session, case) if session is not None else "none",
        status_url=f"/api/v1/applications/{case.tracking_no}",
    )


def step_out(event: CaseEvent, definition: WorkflowDefinition, *, public: bool) -> StepOut:
    label = _action_label(definition, event.action)
    actor = _actor_text(event, public=public)
    return StepOut(
        seq=event.seq, action=event.action, label=label, state=event.to_state,
        state_label=definition.states.get(event.to_state, event.to_state), at=event.occurred_at,
        department=event.department.name if event.department else None, actor=actor,
        opinion=event.opinion,
    )


def _action_label(definition: WorkflowDefinition, action: str) -> str:
    if action == "submit":
        return "提交申请"
    if action == "verify_manually":
        return "人工核验申请人身份"
    if action == fees.WAIVE_ACTION:
        return "减免费用"
    if action == "update_record":  # a partner record changed the case without a new step (hub/exchange)
        return "更新办件信息"
    if action in clock.CLOCK_ACTIONS:  # Art. 42 / Art. 45 (hub/cases/clock.py)
        return clock.CLOCK_ACTIONS[action]
    if action == clock.RECOMPUTED:
        return "重新计算办理期限"
    for transition in definition.transitions:
        if transition.action == action:
            return transition.label
    return service.STEP_LABELS.get(action, action)


def _actor_text(event: CaseEvent, *, public: bool) -> str:
    if event.actor_type == "applicant":
        return "申请人"
    if event.actor_type == "system":  # the engine's own steps: a join, the merged notice, a cascade
        return "系统"
    if public:
        return "经办人"
    return event.actor_name


def status(session: Session, case: Case, *, today: date) -> StatusOut:
    """The applicant's view: every step, with personal data masked in case the code leaked."""
    definition = service.definition_for(case)
    return StatusOut(**_status_fields(session, case, definition, public=False, today=today))


def clock_fields(session: Session, case: Case, today: date) -> dict[str, object]:
    """Statutory and promised deadline, working days used, suspended and remaining (hub/cases/clock.py)."""
    return asdict(clock.view_of(case, calendar=load_calendar(session), today=today))


def _status_fields(
    session: Session, case: Case, definition: WorkflowDefinition, *, public: bool, today: date
) -> dict[str, object]:
    events = service.events_of(session, case)
    return {
        **clock_fields(session, case, today),
        **progress.joint_fields(session, case, today=today),
        "tracking_no": case.tracking_no,
        "item_code": case.item.code,
        "item_name": case.item.name,
        "department": case.department.key,
        "department_name": case.department.name,
        # Masked by what the identifier is, not by the applicant type a record claims.
        "applicant_name": redact.mask_applicant_name(case.applicant_name, case.applicant_type,
                                                     case.applicant_id_number, case.applicant_id_type),
        "applicant_id_number": redact.mask_identifier(case.applicant_id_number, case.applicant_id_type),
        "state": case.state,
        "state_label": definition.states.get(case.state, case.state),
        "submitted_at": case.submitted_at,
        "accepted_on": case.accepted_on,
        "deadline": case.deadline,
        "suspended": case.suspended_since is not None,
        "result": case.result,
        "completed_at": case.completed_at,
        "steps": [step_out(e, definition, public=public) for e in events],
        "materials": [] if public else [material_out(m) for m in service.materials_of(session, case)],
        "applicant_actions": [] if public else service.applicant_actions(case),
        "verifications": [] if public else [verification_views.brief(v) for v in verification.verifications_of(
            session, case)],
        "rating": None if public else _rating(session, case),
        "fee": None if public else fees.brief(session, case),
    }


def _rating(session: Session, case: Case) -> CaseRating | None:
    """The applicant's rating (好差评), once the case has ended: a running case has none, and no query."""
    if case.completed_at is None:
        return None
    rating = ratings.rating_of(session, case)
    return ratings.case_rating(rating) if rating is not None else None


def material_out(material: Material) -> MaterialOut:
    return MaterialOut(
        id=material.id, key=material.material_key, filename=material.filename,
        content_type=material.content_type, size=material.size, sha256=material.sha256,
        purpose=material.purpose, uploaded_at=material.uploaded_at,
    )


def officer_view(session: Session, case: Case, officer: Officer, today: date) -> CaseOut:
    """The officer's view: everything, unmasked, for cases within the officer's scope."""
    definition = service.definition_for(case)
    fields = _status_fields(session, case, definition, public=False, today=today)
    fields["applicant_name"] = case.applicant_name
    fields["applicant_id_number"] = case.applicant_id_number
    fields["verifications"] = [verification_views.officer_out(v) for v in verification.verifications_of(session, case)]
    left = (
        working_days_left(load_calendar(session), today, case.deadline)
        if case.deadline and not definition.is_terminal(case.state) else None
    )
    return CaseOut(
        **fields,
        region=case.region_code,
        channel=case.channel,
        origin=case.origin,
        applicant_type=case.applicant_type,
        applicant_id_type=case.applicant_id_type,
        applicant_phone=case.applicant_phone,
        form=progress.branch_form(session, case),  # a branch's department sees its part of the form only
        received_on=case.received_on,
        intake_deadline=case.intake_deadline,
        extension_days=case.extension_days or 0,
        suspensions=list(case.suspensions or ()),
        step_deadlines=case.step_deadlines,
        suspended_working_days=case.suspended_working_days,
        working_days_left=left,
        available_actions=service.officer_actions(
            case, officer, service.once_taken(session, [case]).get(case.id, frozenset())
        ),
        missing_materials=service.missing_materials(session, case),
    )


def queue_entry(
    case: Case, officer: Officer, today: date, calendar: object,
    taken: frozenset[tuple[str, str]] = frozenset(), *, parent_tracking_no: str | None = None,
) -> QueueEntry:
    """``parent_tracking_no``: a branch case's joint case (``progress.parent_numbers`` of the page)."""
    definition = service.definition_for(case)
    step_deadline = _current_step_deadline(case, definition)
    due = case.deadline or case.intake_deadline
    left = working_days_left(calendar, today, due) if due else None  # type: ignore[arg-type]
    return QueueEntry(
        tracking_no=case.tracking_no,
        branch=case.branch,
        parent_tracking_no=parent_tracking_no,
        item_name=case.item.name,
        state=case.state,
        state_label=definition.states.get(case.state, case.state),
        applicant_name=case.applicant_name,
        submitted_at=case.submitted_at,
        deadline=case.deadline,
        step_deadline=step_deadline,
        working_days_left=left,
        overdue=bool(due and today > due),
        actions=service.officer_actions(case, officer, taken),
    )


def _current_step_deadline(case: Case, definition: WorkflowDefinition) -> date | None:
    steps = {t.source: t.step for t in definition.transitions if t.actor == "officer"}
    step = steps.get(case.state)
    if step == "intake":
        return case.intake_deadline
    value = case.step_deadlines.get(step or "")
    return date.fromisoformat(value) if value else None
