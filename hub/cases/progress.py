"""Each department's progress on a joint case, side by side (并联审批进度).

A joint case is one parent (the applicant's tracking number, handled by the lead department) and one child
case per branch of its definition's parallel block (Administrative Licensing Law Art. 26: one intake,
distributed to every department, synchronous pre-review, time-limited completion). The applicant's status,
the public disclosure, the lead department's view of the parent and the department SOAP service all show the
branches the same way: built here, from the rows alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.calendar.service import load_calendar
from hub.cases import clock, service
from hub.cases.models import Case, CaseEvent
from hub.cases.schemas import BranchProgress
from hub.catalog import service as catalog
from workflow.definition import WorkflowDefinition


def branches_of(session: Session, parent: Case) -> list[Case]:
    """The parent's branch cases, in the order of its definition's parallel block."""
    if parent.id is None:
        return []
    children = list(session.scalars(select(Case).where(Case.parent_id == parent.id).order_by(Case.id)))
    order = {name: index for index, name in enumerate(branch_labels(service.definition_for(parent)))}
    return sorted(children, key=lambda child: (order.get(child.branch or "", len(order)), child.id))


def parent_numbers(session: Session, cases: Sequence[Case]) -> dict[int, str]:
    """Parent case id → its tracking number, for the branch cases among ``cases``; one query."""
    ids = {case.parent_id for case in cases if case.parent_id is not None}
    if not ids:
        return {}
    rows = session.execute(select(Case.id, Case.tracking_no).where(Case.id.in_(ids)))
    return {case_id: number for case_id, number in rows}


def parent_number(session: Session, case: Case) -> str | None:
    return parent_numbers(session, [case]).get(case.parent_id) if case.parent_id is not None else None


def joint_fields(session: Session, case: Case, *, today: date) -> dict[str, object]:
    """The JointFields of a case's views: a branch names its parent, a parent lists its branches."""
    return {"branch": case.branch, "parent_tracking_no": parent_number(session, case),
            "branches": progress(session, case, today=today) if case.parent_id is None else []}


def branch_labels(definition: WorkflowDefinition) -> dict[str, str]:
    """Branch name → its Chinese label, from the definition's parallel block (empty for a single flow)."""
    parallel = definition.parallel
    return {branch.name: branch.label for branch in parallel.branches} if parallel is not None else {}


def branch_label(session: Session, case: Case) -> str | None:
    """A branch case's label, from its parent's definition (the version the joint case started with)."""
    if case.branch is None or case.parent_id is None:
        return None
    parent = session.get(Case, case.parent_id)
    labels = branch_labels(service.definition_for(parent)) if parent is not None else {}
    return labels.get(case.branch, case.branch)


def current_step(definition: WorkflowDefinition, state: str) -> str | None:
    """The label of the step a case in ``state`` is at (the step of the transitions leaving it); None for a
    terminal state."""
    if state not in definition.states or definition.is_terminal(state):
        return None
    for transition in definition.transitions:
        if transition.source == state:
            return definition.step(transition.step).label
    return None


def branch_form(case: Case) -> dict[str, object]:
    """What a branch's department sees of the application: its part of the consolidated form only."""
    if case.branch is None:
        return dict(case.form_data)
    return catalog.form_part(case.item, case.form_data, case.branch)


def progress(session: Session, parent: Case, *, today: date) -> list[BranchProgress]:
    """One line per department: branch, department, state, current step, deadlines, and what it asked the
    applicant for while its request is open (the lines of the one merged supplement notice, Art. 32)."""
    labels = branch_labels(service.definition_for(parent))
    children = branches_of(session, parent) if labels else []  # a single case: no query
    if not children:
        return []
    requests = _open_requests(session, children)
    calendar = load_calendar(session)
    lines = []
    for child in children:
        definition = service.definition_for(child)
        view = clock.view_of(child, calendar=calendar, today=today)
        lines.append(BranchProgress(
            branch=child.branch or "",
            label=labels.get(child.branch or "", child.branch or ""),
            tracking_no=child.tracking_no,
            department=child.department.key,
            department_name=child.department.name,
            state=child.state,
            state_label=definition.states.get(child.state, child.state),
            current_step=current_step(definition, child.state),
            deadline=view.promised_deadline,
            statutory_deadline=view.statutory_deadline,
            days_remaining=view.days_remaining,
            suspended=child.suspended_since is not None,
            result=child.result,
            supplement_request=requests.get(child.id),
        ))
    return lines


def _open_requests(session: Session, children: Sequence[Case]) -> dict[int, str]:
    """Per branch case awaiting the applicant's supplement, its (latest) request."""
    waiting = [child.id for child in children if child.state == "awaiting_supplement"]
    if not waiting:
        return {}
    rows = session.execute(
        select(CaseEvent.case_id, CaseEvent.opinion)
        .where(CaseEvent.case_id.in_(waiting), CaseEvent.action == "request_supplement")
        .order_by(CaseEvent.case_id, CaseEvent.seq)
    )
    return {case_id: opinion for case_id, opinion in rows if opinion}
