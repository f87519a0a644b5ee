"""Public disclosure (办件公示) of every case's steps and result: structured fields, masked; free text
redacted (officers' and platforms' opinions) or withheld (applicants' own notes and reasons)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.cases import presenters, progress
from hub.cases import service as cases
from hub.cases.models import Case, CaseEvent
from hub.cases.schemas import BranchProgress
from hub.catalog.models import Item
from hub.clock import CHINA_TZ
from hub.pagination import Page, paginate
from hub.supervision import ratings
from hub.transparency import redact
from hub.transparency.schemas import DisclosedCase, DisclosedStep
from workflow.definition import WorkflowDefinition

# Results as the public reads them (the labels of the standard workflow's states of the same name).
RESULT_LABELS = {"granted": "准予许可", "denied": "不予许可", "intake_refused": "不予受理", "withdrawn": "已撤回",
                 "completed": "已办结"}
# Form fields whose schema title says they hold a person's name: masked wherever they appear in free text.
_PERSON_TITLES = ("姓名", "负责人", "主持人", "人员")


def list_cases(
    session: Session, *, region: str | None, item_code: str | None, state: str | None,
    offset: int, limit: int,
) -> Page[Case]:
    query = select(Case)
    if region:
        query = query.where(Case.region_code == region)
    if item_code:
        query = query.join(Item, Case.item_id == Item.id).where(Item.code == item_code)
    if state:
        query = query.where(Case.state == state)
    return paginate(session, query, order_by=[Case.submitted_at.desc(), Case.id.desc()], offset=offset, limit=limit)


def disclose(session: Session, case: Case, *, today: date) -> DisclosedCase:
    definition = cases.definition_for(case)
    events = cases.events_of(session, case)
    names = personal_names(case, events)
    lines = progress.progress(session, case, today=today) if case.parent_id is None else []
    level = _rating_level(session, case)
    return DisclosedCase(
        branch=case.branch,
        parent_tracking_no=progress.parent_number(session, case),
        branches=[_public_branch(line, names) for line in lines],
        tracking_no=case.tracking_no,
        item_code=case.item.code,
        item_name=case.item.name,
        department_name=case.department.name,
        region=case.region_code,
        applicant_name=redact.mask_applicant_name(case.applicant_name, case.applicant_type, case.applicant_id_number,
                                                  case.applicant_id_type),
        applicant_id_number=redact.mask_identifier(case.applicant_id_number, case.applicant_id_type),
        state=case.state,
        state_label=definition.states.get(case.state, case.state),
        submitted_at=china_time(case.submitted_at),
        accepted_on=case.accepted_on,
        deadline=case.deadline,
        result=result_label(case.result, definition),
        result_code=case.result,
        completed_at=china_time(case.completed_at) if case.completed_at else None,
        steps=[_step(event, definition, names) for event in events],
        rating_level=level,
        rating_label=ratings.LEVELS[level] if level is not None else None,
    )


def _rating_level(session: Session, case: Case) -> int | None:
    """The applicant's rating, its level only (the comment is the applicant's own text: not published)."""
    if case.completed_at is None:
        return None
    rating = ratings.rating_of(session, case)
    return rating.level if rating is not None else None


def _public_branch(line: BranchProgress, names: list[str]) -> BranchProgress:
    """A department's line as the public reads it: its request to the applicant and its reasons redacted like
    opinions."""
    return line.model_copy(update={
        "supplement_request": redact.redact(line.supplement_request, names=names) if line.supplement_request else None,
        "reasons": redact.redact(line.reasons, names=names) if line.reasons else None,
    })


def _step(event: CaseEvent, definition: WorkflowDefinition, names: list[str]) -> DisclosedStep:
    step = presenters.step_out(event, definition, public=True)
    return DisclosedStep(
        seq=step.seq, action=step.action, label=step.label, state=step.state, state_label=step.state_label,
        at=china_time(step.at), department=step.department, actor=step.actor,
        opinion=public_opinion(event, names),
    )


def public_opinion(event: CaseEvent, names: list[str]) -> str | None:
    """An applicant's own text (supplement note, withdrawal reason) is not published at all; an officer's
    or a platform's opinion is, redacted."""
    if not event.opinion or event.actor_type == "applicant":
        return None
    return redact.redact(event.opinion, names=names)


def personal_names(case: Case, events: list[CaseEvent]) -> list[str]:
    """Every person's name the hub knows on this case: the applicant (when a natural person), the officers
    and platform staff who acted, and the people the application form names."""
    names = [event.actor_name for event in events if event.actor_type != "applicant" and event.actor_name]
    if redact.is_natural_person(case.applicant_type, case.applicant_id_number, case.applicant_id_type):
        names.append(case.applicant_name)
    names.extend(_form_person_names(case.form_data or {}, case.item.form_schema or {}))
    return names


def _form_person_names(value: Any, schema: Any, title: str = "") -> Iterator[str]:
    schema = schema if isinstance(schema, Mapping) else {}
    title = str(schema.get("title") or title)
    if isinstance(value, str):
        if any(word in title for word in _PERSON_TITLES):
            yield value
    elif isinstance(value, Mapping):
        properties = schema.get("properties") or {}
        for key, item in value.items():
            yield from _form_person_names(item, properties.get(key), "")
    elif isinstance(value, list):
        for item in value:
            yield from _form_person_names(item, schema.get("items"), title)


def result_label(result: str | None, definition: WorkflowDefinition) -> str | None:
    if not result:
        return None
    return RESULT_LABELS.get(result) or definition.states.get(result, result)


def china_time(moment: datetime) -> datetime:
    return moment.astimezone(CHINA_TZ)
