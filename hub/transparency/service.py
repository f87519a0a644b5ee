"""Public disclosure (办件公示) of every case's steps and result, with personal data masked."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.cases import presenters
from hub.cases import service as cases
from hub.cases.models import Case
from hub.catalog.models import Item
from hub.transparency.schemas import DisclosedCase
from workflow import identifiers as ids


def list_cases(
    session: Session, *, region: str | None, item_code: str | None, state: str | None,
    offset: int, limit: int,
) -> tuple[int, list[Case]]:
    query = select(Case)
    if region:
        query = query.where(Case.region_code == region)
    if item_code:
        query = query.join(Item, Case.item_id == Item.id).where(Item.code == item_code)
    if state:
        query = query.where(Case.state == state)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Case.submitted_at.desc(), Case.id.desc())
                           .offset(offset).limit(limit)).unique()
    return total, list(rows)


def disclose(session: Session, case: Case) -> DisclosedCase:
    definition = cases.definition_for(case)
    return DisclosedCase(
        tracking_no=case.tracking_no,
        item_code=case.item.code,
        item_name=case.item.name,
        department_name=case.department.name,
        region=case.region_code,
        applicant_name=ids.mask_applicant_name(case.applicant_name, case.applicant_type),
        applicant_id_number=ids.mask_identifier(case.applicant_id_number, case.applicant_type),
        state=case.state,
        state_label=definition.states.get(case.state, case.state),
        submitted_at=case.submitted_at,
        accepted_on=case.accepted_on,
        deadline=case.deadline,
        result=case.result,
        completed_at=case.completed_at,
        steps=[presenters.step_out(e, definition, public=True)
               for e in cases.events_of(session, case)],
    )
