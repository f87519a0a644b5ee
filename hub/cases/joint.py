"""Joint cases (联合审批): one parent case, one child case per co-department's branch.

Administrative Licensing Law Art. 26: where one licence needs several departments, the lead department
takes the application in once (一口收件), hands it to the others (分送相关), they examine it at the same
time (同步预审), and the result comes back as one (限时办结, 45 working days, Art. 42). The workflow engine
(workflow/process.py) decides all of it on a ``Process`` built from the rows; this module maps the rows to
what the engine needs and back:

* the family of a case — its parent and every branch's child case, the parent row locked for the action,
  so two departments acting at the same moment cannot both miss (or both fire) the join;
* which department runs a branch (the item's guide: ``"branches": {"<branch>": "<Department.key>"}``) and
  which part of the application form it sees (the branch's ``form_part``);
* the one merged supplement notice (Art. 32: the applicant is told everything missing at once), listing
  every department's request; the join's combined result with every denying department's reasons;
* who may look at a branch: its own department (and supervisors); the lead department's intake officer
  sees the parent and all its branches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from hub.auth.models import Officer
from hub.cases.models import Case, CaseEvent
from hub.errors import Conflict
from hub.org.models import Department
from hub.org.service import department_by_key
from workflow.definition import WorkflowDefinition
from workflow.registry import get_definition, workflow_ids

DENIED = "denied"


@dataclass
class Family:
    """A case and its relatives as rows: the parent (a single case stands alone) and its branches' cases."""

    root: Case
    branches: dict[str, Case] = field(default_factory=dict)

    def row(self, branch: str | None) -> Case:
        return self.root if branch is None else self.branches[branch]

    @property
    def rows(self) -> list[Case]:
        return [self.root, *self.branches.values()]

    def name_of(self, case: Case) -> str | None:
        """The branch ``case`` runs, None for the parent (or a single case)."""
        return case.branch if case is not self.root else None


def family_of(session: Session, case: Case, definition: WorkflowDefinition) -> Family:
    """The rows an action on ``case`` may change. A single case is its own family (nothing read); for a joint
    case the parent is locked (PostgreSQL: ``FOR UPDATE``) and its branches read after the lock, fresh, so
    every action on one joint case sees what the one before it committed."""
    if case.parent_id is None and getattr(definition, "parallel", None) is None:
        return Family(case)
    parent_id = case.parent_id if case.parent_id is not None else case.id
    parent = session.scalars(
        select(Case).where(Case.id == parent_id).with_for_update(of=Case).execution_options(populate_existing=True)
    ).one()
    children = session.scalars(
        select(Case).where(Case.parent_id == parent.id).order_by(Case.id)
        .execution_options(populate_existing=True)
    ).all()
    return Family(parent, {child.branch: child for child in children if child.branch is not None})


def branches_of(session: Session, parent: Case) -> list[Case]:
    """The child cases of a joint case, in the order they were opened (for views of the whole)."""
    if parent.id is None:
        return []
    return list(session.scalars(select(Case).where(Case.parent_id == parent.id).order_by(Case.id)))


def parent_of(session: Session, case: Case) -> Case | None:
    return session.get(Case, case.parent_id) if case.parent_id is not None else None


def branch_on_hold(case: Case) -> bool:
    """A branch whose parent is not in its parallel state takes no action: the joint case waits for the
    applicant's supplement (every clock stopped) or has ended. Read through the branch's own session."""
    if case.parent_id is None:
        return False
    session = object_session(case)
    parent = session.get(Case, case.parent_id) if session is not None else None
    if parent is None:
        return False
    parallel = get_definition(parent.workflow_id).parallel
    return parallel is None or parent.state != parallel.state


def parallel_states() -> set[str]:
    """The parallel states of every definition: where a parent lets its branches act."""
    states = set()
    for workflow_id in workflow_ids():
        parallel = get_definition(workflow_id).parallel
        if parallel is not None:
            states.add(parallel.state)
    return states


# --- who may see a branch ---------------------------------------------------------------------------


def lead_intake_may_view(session: Session, officer: Officer, case: Case) -> bool:
    """The lead department's intake officer follows the whole joint case: every branch of its parent."""
    if case.parent_id is None or "intake" not in officer.roles:
        return False
    parent = parent_of(session, case)
    return parent is not None and parent.department_id == officer.department_id


# --- opening the branches ---------------------------------------------------------------------------


def branch_department(session: Session, parent: Case, branch: str) -> Department:
    """The department running ``branch`` of the parent's item (guide ``branches``: branch -> Department.key).

    A joint item without the mapping cannot distribute the application: refused as a conflict of the
    item's configuration (409), before anything is written, rather than a half-opened joint case."""
    mapping = (parent.item.guide or {}).get("branches") or {}
    key = mapping.get(branch)
    if not key:
        raise Conflict(
            f"事项「{parent.item.name}」未配置联办分支「{branch}」的承办部门，无法分送 (the item's guide has no "
            f"department for branch {branch!r} under \"branches\")",
            type_slug="joint-branch-unconfigured",
        )
    return department_by_key(session, str(key))


def form_part(form: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The part of the application form a branch sees: only its fields (all of them when it names none)."""
    wanted = tuple(fields)
    if not wanted:
        return dict(form)
    return {name: form[name] for name in wanted if name in form}


# --- what the engine reads from a branch's events ----------------------------------------------------


def notes_of(session: Session, branches: Iterable[Case]) -> dict[int, str]:
    """Case id -> the note the engine keeps on a branch (``Process.note``): while it waits for the merged
    notice's answer, what it asked for; once denied, its reasons — the latest such event's opinion. One query,
    only for branches in such a state."""
    wanted = {row.id: row for row in branches if row.id is not None and row.state in NOTED_STATES}
    if not wanted:
        return {}
    notes: dict[int, str] = {}
    rows = session.execute(
        select(CaseEvent.case_id, CaseEvent.action, CaseEvent.opinion)
        .where(CaseEvent.case_id.in_(list(wanted)), CaseEvent.action.in_(list(NOTED_STATES.values())))
        .order_by(CaseEvent.case_id, CaseEvent.seq)
    )
    for case_id, action, opinion in rows:
        if NOTED_STATES[wanted[case_id].state] == action:
            notes[case_id] = opinion or ""
    return notes


# A branch's state -> the action whose opinion is its note in that state.
NOTED_STATES = {"awaiting_supplement": "request_supplement", DENIED: "deny"}


# --- the merged notice and the join, for the record ------------------------------------------------


def notice_entries(family: Family, notice: Mapping[str, str], labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every department's request of the one merged notice (Art. 32: everything missing, told at once)."""
    return [_entry(family.branches.get(name), name, labels.get(name, name), request=request)
            for name, request in notice.items()]


def join_entries(family: Family, results: Mapping[str, str], reasons: Mapping[str, str],
                 labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every branch's result for the parent's combined decision, a denial with its department's reasons."""
    return [_entry(family.branches.get(name), name, labels.get(name, name), result=result,
                   reasons=reasons.get(name) if result != "granted" else None)
            for name, result in results.items()]


def _entry(row: Case | None, name: str, label: str, **values: Any) -> dict[str, Any]:
    return {
        "branch": name, "label": label,
        "tracking_no": row.tracking_no if row is not None else None,
        "department": row.department.key if row is not None else None,
        "department_name": row.department.name if row is not None else None,
        **values,
    }
