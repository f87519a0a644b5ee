"""Applications and cases: submit, act, supplement, withdraw, and the views on a case."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from adapters.registries import Registries
from hub.auth.models import Officer
from hub.auth.service import can_oversee_region
from hub.calendar.service import load_calendar
from hub.cases import clock, joint, writes
from hub.cases.clock import facts_of, store
from hub.cases.models import Case, CaseEvent, Material
from hub.cases.schemas import ApplicantIn, ApplicationIn
from hub.cases.tracking import new_query_code, query_code_digest
from hub.catalog import service as catalog
from hub.catalog.models import Item
from hub.clock import CHINA_TZ, business_date
from hub.db import loaded_values
from hub.deliveries import service as deliveries
from hub.errors import Conflict, FieldError, Forbidden, HubError, NotFound, ValidationFailed
from hub.org.models import Department
from hub.outbox import service as outbox
from hub.outbox.models import OutboxMessage
from hub.pagination import Page, paginate
from hub.payments import fees, refunds
from hub.text_fields import normalize_form
from hub.verification import checks as verification
from workflow import clock as clock_rules
from workflow import identifiers as ids
from workflow import process as engine
from workflow.calendar import WorkingCalendar
from workflow.definition import WorkflowDefinition
from workflow.errors import (
    ActionNotAvailable,
    ClockError,
    OncePerStep,
    OpinionRequired,
    RoleNotAllowed,
    UnknownState,
    WorkflowError,
)
from workflow.registry import get_definition, workflow_ids

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
    "extend": "extended",
    "start_special_procedure": "special_procedure_started",
    "end_special_procedure": "special_procedure_ended",
    "deadline_recomputed": "deadline_recomputed",
    "open_branch": "branch_opened",
    "pass_pre_review": "pre_review_passed",
    "notify_supplement": "supplement_notified",
    "join_granted": "granted",
    "join_denied": "denied",
}
# The system actor: what the engine does by itself (a join, the merged notice, a withdrawal's cascade).
SYSTEM_ID, SYSTEM_NAME = "hub", "系统"
DECISIONS = {"granted", "denied"}
# Labels of the steps the hub records beside the definitions' transitions (timelines, disclosure).
STEP_LABELS = {"open_branch": "分送联办部门", "notify_supplement": "合并告知补正",
               "clock_suspended": "暂停计时", "clock_resumed": "恢复计时", "clock_changed": "调整期限"}


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
    """The definition the case started with: its stored ``workflow_id`` names the version, so a running case
    keeps it when an item moves on to a newer one."""
    return get_definition(case.workflow_id)


# --- submission -----------------------------------------------------------------------------


def submit_application(
    session: Session, *, data: ApplicationIn, now: datetime, audit_key: str,
    registries: Registries | None = None, registered_by: Actor | None = None,
    receiving_department: Department | None = None, attach: bool = True,
) -> tuple[Case, str]:
    """Validate and store a new application; returns the case and its one-time query code.

    ``attach=False``: the case and its checks are written but stay out of the session, for a caller that
    only reads them (the online submission's receipt); ``writes.attach`` joins them to change them.

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
    # After 17:00, on a weekend or a holiday, it counts as received on the next working day; the Art. 32
    # intake period runs from that day (docs/time-rules.md).
    received = clock_rules.received_on(calendar, now.astimezone(CHINA_TZ))
    query_code = new_query_code()
    # The item's definition, recorded on the case (writes.new_case) and kept for good.
    state = get_definition(item.workflow_id).initial_state
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
        intake_deadline=clock_rules.intake_deadline(calendar, received),
        first=first, key=audit_key,
        receiving_region_code=receiving_department.region_code if receiving_department else None,
        receiving_department_id=receiving_department.id if receiving_department else None,
    )
    case = opening.case
    case.received_on = received  # not sealed by the chain: set after the first event, before the write
    verification.plan_checks(session, case, registries=registries, now=now)
    messages = [_message(case, "submit", now)]
    if receiving_department is not None and is_forwarded(case):
        messages.append(_forwarded_message(case, receiving_department, now))
    # Case, first event, planned checks and outbox rows: one statement (hub/cases/writes.py).
    writes.insert_case(session, opening, outbox=messages, attach=attach)
    # What the case owes, from the item as it stands now (an item without a fee: nothing, no query).
    fees.assess(session, case=case, now=now, new_case=True)
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
    """Its department (a joint case's branch: the branch's department only), supervisors over its region,
    and the lead department's intake officer for every branch of a joint case it took in."""
    if officer.department_id == case.department_id:
        return True
    if "supervisor" in officer.roles and can_oversee_region(session, officer, case.region_code):
        return True
    return joint.lead_intake_may_view(session, officer, case)


# --- acting on a case ----------------------------------------------------------------------


def act(
    session: Session, *, case: Case, actor: Actor, action: str, opinion: str | None, now: datetime,
    audit_key: str, data: Mapping[str, Any] | None = None,
) -> CaseEvent:
    """Apply one workflow action after checking the system of record and the department scope; the engine
    (workflow.process.advance) checks state, actor, role, the once-per-step rule, the opinion and the clock,
    for a single case and for a joint case or one of its branches alike, and says what follows (the branches
    opened at acceptance, the merged supplement notice, the join, a withdrawal's cascade). The clock actions
    (``extend``, ``start_special_procedure``, ``end_special_procedure``) take ``data`` (hub/cases/clock.py).

    Returns the event of the action itself; what it triggered is recorded too, one event per step on the
    case it concerns. Every change to a case row happens before its event is appended: the event seals the
    row as the action left it (hub/audit/service.py)."""
    check_system_of_record(case)
    if actor.kind == "officer" and actor.department_id != case.department_id:
        raise Forbidden("只能办理本部门的办件 (case belongs to another department)")
    family = joint.family_of(session, case, definition_for(case))
    calendar = load_calendar(session)
    today = business_date(now)
    # The time rules the hub knows before the engine: the clock actions' data checked, Art. 32 at intake.
    data = clock.engine_data(case, action, opinion=opinion, data=data, definition=definition_for(case),
                             calendar=calendar, now=now)
    before = _process_of(session, family, action)
    outcome = _advance(before, action, actor=actor, opinion=opinion, today=today, calendar=calendar,
                       branch=family.name_of(case), data=data)
    if action == "grant":
        verification.ensure_grantable(session, family.root)
    if action in fees.GUARDED_ACTIONS:
        fees.ensure_allowed(session, case=case, action=action, now=now)
    return _record(session, family, before, outcome, actor=actor, now=now, calendar=calendar, key=audit_key)[0]


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


def _advance(
    process: engine.Process, action: str, *, actor: Actor, opinion: str | None, today: date,
    calendar: WorkingCalendar, branch: str | None, data: Mapping[str, Any] | None,
) -> engine.Outcome:
    """The engine's decision, its refusals as the API's problems."""
    try:
        return engine.advance(process, action, actor=actor.kind, roles=actor.roles, opinion=opinion, today=today,
                              calendar=calendar, branch=branch, data=data)
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
    except ClockError as exc:
        raise _clock_problem(exc) from exc
    except UnknownState as exc:
        raise Conflict(str(exc), type_slug="action-not-available") from exc
    except WorkflowError as exc:
        raise Conflict(str(exc), type_slug="action-not-available") from exc


def _clock_problem(exc: ClockError) -> HubError:
    """A time rule refused the action: bad input (a field named) is 422, the case's clock ruling it out 409."""
    field = getattr(exc, "field", None)
    rule = getattr(exc, "rule", None) or "clock_rule"
    if field:
        return ValidationFailed([FieldError(str(field), str(rule), str(exc))])
    # The problem type names the rule: already-extended (Art. 42), special-procedure-open (Art. 45) ...
    return HubError(detail=str(exc), title="时限规则", status=409, type_slug=str(rule).replace("_", "-"),
                    errors=[FieldError("action", str(rule), str(exc))])


def _process_of(session: Session, family: joint.Family, action: str) -> engine.Process:
    """The engine's view of the rows: each case's state, definition version, clock facts and the
    once-per-step actions it has taken (read when they can matter: a joint case, or a once-only action)."""
    rows = family.rows
    joint_case = bool(family.branches) or definition_for(family.root).parallel is not None
    taken = once_taken(session, rows) if joint_case or _is_once(rows, action) else {}
    notes = joint.notes_of(session, family.branches.values())

    def process(row: Case, branches: Mapping[str, engine.Process] | None = None) -> engine.Process:
        return engine.Process(workflow_id=row.workflow_id, state=row.state, clock=facts_of(row),
                              taken=taken.get(row.id, frozenset()), branches=branches or {}, result=row.result,
                              note=notes.get(row.id))

    return process(family.root, {name: process(row) for name, row in family.branches.items()})


def _is_once(rows: Sequence[Case], action: str) -> bool:
    return any(action in _once_actions(definition_for(row)) for row in rows)


def _once_actions(definition: WorkflowDefinition) -> set[str]:
    return {t.action for t in definition.transitions if t.once_per_step}


# --- recording what the engine decided --------------------------------------------------------------


def _record(
    session: Session, family: joint.Family, before: engine.Process, outcome: engine.Outcome, *, actor: Actor,
    now: datetime, calendar: WorkingCalendar, key: str,
) -> list[CaseEvent]:
    """Write the outcome: each case's new state and clock, one event per Move on the case it names (a branch
    opened by this action gets its child case, its first event recording who opened it), an outbox message
    per event. A case whose clock changed without a move of its own (a suspension spread over the whole
    joint case) gets an event saying so: no row changes unsealed."""
    today = business_date(now)
    after = outcome.process
    root_definition = definition_for(family.root)
    opening = _branches_to_open(session, family, root_definition, outcome)
    texts = _texts(family, root_definition, outcome)
    moves = list(outcome.moves)
    last = {move.branch: index for index, move in enumerate(moves)}
    events: list[CaseEvent] = []
    for index, move in enumerate(moves):
        state = _process_at(after, move.branch)
        if move.branch is not None and move.branch in opening:
            opened = _open_branch(session, family, opening.pop(move.branch), move.branch, state, actor=actor,
                                  now=now, calendar=calendar, key=key, first=move)
            events.append(opened.event)
            _published(session, family, opened.case, "open_branch", now)
            continue
        row = family.row(move.branch)
        data = texts.get(index) or _clock_event_data(move)
        if last[move.branch] == index:
            old = clock.deadlines_of(row)
            if _settle(row, state, now=now, calendar=calendar, today=today) or "new" in data:
                # Every clock change records the deadlines as stored before and after it.
                data.update(old=old, new=clock.deadlines_of(row))
        else:
            row.state, row.updated_at = move.to_state, now
        opinion = (move.opinion or "").strip() or None
        events.append(writes.append_step(session, row, _new_event(move, actor, opinion=opinion, data=data,
                                                                  now=now), key=key))
        _published(session, family, row, move.action, now)
    for name, spec in opening.items():
        opened = _open_branch(session, family, spec, name, _process_at(after, name), actor=actor, now=now,
                              calendar=calendar, key=key, first=None)
        events.append(opened.event)
        _published(session, family, opened.case, "open_branch", now)
    events.extend(_clock_only(session, family, before, after, moved=set(last), now=now, calendar=calendar,
                              key=key))
    refunds.on_case_state(session, case=family.root, now=now)  # denied, refused, withdrawn: fees paid go back
    return events


def _clock_event_data(move: engine.Move) -> dict[str, Any]:
    """A move's data; a clock action's also under the names the time rules' events use (docs/time-rules.md)."""
    data = dict(move.data)
    if move.action in engine.CLOCK_ACTIONS:
        if "kind_label" in data:
            data.setdefault("label", data["kind_label"])
        if "days_suspended" in data:
            data.setdefault("working_days", data["days_suspended"])
    return data


def _process_at(process: engine.Process, branch: str | None) -> engine.Process:
    return process if branch is None else process.branches[branch]


def _new_event(move: engine.Move, actor: Actor, *, opinion: str | None, data: dict[str, Any],
               now: datetime) -> writes.NewEvent:
    system = move.actor == "system"
    return writes.NewEvent(
        action=move.action, step=move.step, from_state=move.from_state, to_state=move.to_state,
        actor_type="system" if system else actor.kind, actor_id=SYSTEM_ID if system else actor.id,
        actor_name=SYSTEM_NAME if system else actor.name,
        department_id=actor.department_id if actor.kind == "officer" and not system else None,
        opinion=opinion, occurred_at=now, data=data,
    )


def _settle(row: Case, process: engine.Process, *, now: datetime, calendar: WorkingCalendar,
            today: date) -> dict[str, Any]:
    """Put the engine's state and clock onto the row; returns the deadlines that moved ({name: {old, new}})."""
    definition = definition_for(row)
    old = {"deadline": row.deadline, "statutory_deadline": row.statutory_deadline}
    moved = row.state != process.state
    row.state = process.state
    row.updated_at = now
    if moved and process.state in DECISIONS and row.decided_at is None:
        row.decided_at = now
        row.result = process.state
    if definition.is_terminal(process.state) and row.completed_at is None:
        row.completed_at = now
        row.result = row.result or process.result or process.state
    # After the decision is noted: storing a stopped clock records its working days used (supervision).
    store(row, process.clock, calendar=calendar, today=today, definition=definition)
    new = {"deadline": row.deadline, "statutory_deadline": row.statutory_deadline}
    return {
        name: {"old": value.isoformat() if value else None, "new": new[name].isoformat() if new[name] else None}
        for name, value in old.items() if value is not None and value != new[name]
    }


def _clock_only(
    session: Session, family: joint.Family, before: engine.Process, after: engine.Process, *, moved: set[str | None],
    now: datetime, calendar: WorkingCalendar, key: str,
) -> list[CaseEvent]:
    events = []
    today = business_date(now)
    for name, row in [(None, family.root), *family.branches.items()]:
        if name in moved:
            continue
        old, new = _process_at(before, name) if name is None or name in before.branches else None, \
            _process_at(after, name)
        if old is None or old.clock == new.clock:
            continue
        action = _clock_action(old, new)
        stored = clock.deadlines_of(row)
        _settle(row, new, now=now, calendar=calendar, today=today)
        events.append(writes.append_step(session, row, writes.NewEvent(
            action=action, from_state=row.state, to_state=row.state, actor_type="system", actor_id=SYSTEM_ID,
            actor_name=SYSTEM_NAME, occurred_at=now, data={"old": stored, "new": clock.deadlines_of(row)},
        ), key=key))
        _published(session, family, row, action, now)
    return events


def _clock_action(old: engine.Process, new: engine.Process) -> str:
    if new.clock.open_suspension is not None and old.clock.open_suspension is None:
        return "clock_suspended"
    if new.clock.open_suspension is None and old.clock.open_suspension is not None:
        return "clock_resumed"
    return "clock_changed"


# --- a joint case's branches, notice and join --------------------------------------------------------


@dataclass(frozen=True)
class _BranchToOpen:
    department: Any
    definition: WorkflowDefinition
    form: dict[str, Any]


def _branches_to_open(
    session: Session, family: joint.Family, definition: WorkflowDefinition, outcome: engine.Outcome,
) -> dict[str, _BranchToOpen]:
    """What each branch opened by this action needs, looked up before any row changes (a branch without a
    department is refused with nothing written)."""
    if not outcome.opened:
        return {}
    assert definition.parallel is not None
    specs = {branch.name: branch for branch in definition.parallel.branches}
    return {
        name: _BranchToOpen(joint.branch_department(session, family.root, name),
                            get_definition(specs[name].workflow_id),
                            joint.form_part(family.root.form_data or {}, specs[name].form_part))
        for name in outcome.opened if name not in family.branches
    }


def _open_branch(
    session: Session, family: joint.Family, spec: _BranchToOpen, name: str, process: engine.Process, *,
    actor: Actor, now: datetime, calendar: WorkingCalendar, key: str, first: engine.Move | None,
) -> writes.Opening:
    parent = family.root
    data = {"parent_tracking_no": parent.tracking_no, "branch": name, "department": spec.department.key}
    opened = writes.open_branch(
        session, parent=parent, branch=name, department=spec.department, definition=spec.definition,
        state=process.state, facts=process.clock, form_data=spec.form, calendar=calendar, now=now, key=key,
        first=writes.NewEvent(
            action=first.action if first is not None else "open_branch",
            step=first.step if first is not None else None, from_state=None, to_state=process.state,
            actor_type=actor.kind, actor_id=actor.id, actor_name=actor.name,
            department_id=actor.department_id if actor.kind == "officer" else None,
            opinion=None, occurred_at=now, data={**(dict(first.data or {}) if first is not None else {}), **data},
        ),
    )
    family.branches[name] = opened.case
    return opened


def _texts(
    family: joint.Family, definition: WorkflowDefinition, outcome: engine.Outcome,
) -> dict[int, dict[str, Any]]:
    """Data of the parent's merged notice and join moves, by move index: the engine's opinion lists every
    department's request (Art. 32: told at once) or every denying department's reasons; the record adds
    which department and which branch case each line is."""
    parallel = definition.parallel
    if parallel is None:
        return {}
    labels = {branch.name: branch.label for branch in parallel.branches}
    texts: dict[int, dict[str, Any]] = {}
    for index, move in enumerate(outcome.moves):
        if move.branch is not None:
            continue
        if move.action == parallel.notify_supplement:
            texts[index] = {**move.data, "notice": joint.notice_entries(family, move.data.get("notice") or {}, labels)}
        elif move.action in (parallel.join_granted, parallel.join_denied):
            texts[index] = {**move.data, "branches": joint.join_entries(
                family, move.data.get("results") or {}, move.data.get("reasons") or {}, labels)}
    return texts


def _published(session: Session, family: joint.Family, row: Case, action: str, now: datetime) -> None:
    parent = family.root if row is not family.root else None
    session.add(_message(row, action, now, parent=parent))
    # A branch is its department's new case: owed to that department's legacy system like a submission.
    deliveries.on_case_change(session, row, "submit" if action == "open_branch" else action, now)


def check_system_of_record(case: Case) -> None:
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


def once_taken(
    session: Session, cases: Sequence[Case], definition: WorkflowDefinition | None = None
) -> dict[int, frozenset[tuple[str, str]]]:
    """Per case id, the (step, action) pairs of once-per-step actions it has recorded; one query. The actions
    are those of each case's own definition (or of ``definition`` when given)."""
    actions: set[str] = set()
    for definition_of_case in ({definition} if definition is not None
                               else {definition_for(case) for case in cases}):
        actions |= _once_actions(definition_of_case)
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


def _message(case: Case, action: str, now: datetime, *, parent: Case | None = None) -> OutboxMessage:
    return outbox.message(
        event_type=f"case.{EVENT_NAMES.get(action, action)}.v1",
        region_code=case.region_code,
        payload=case_event_payload(case, parent=parent),
        occurred_at=now,
        correlation_id=case.tracking_no,
    )


def case_event_payload(case: Case, *, parent: Case | None = None) -> dict[str, Any]:
    """What partners receive about a case: no personal data beyond the applicant type. A joint case's
    branch also names its parent (the applicant's tracking number) and its branch; a partner's case its
    ``external_id`` and ``record_version`` (schemas/case-notification.v1.json)."""
    payload = _payload(case)
    if case.origin_partner and case.external_id:
        # A partner-reported case names the partner's own case id and the record version applied last, so the
        # partner can map its case to the hub's tracking number; the hub's own cases carry neither.
        payload["external_id"] = case.external_id
        payload["record_version"] = case.record_version
    if parent is not None and case.parent_id is not None:
        payload["parent_tracking_no"] = parent.tracking_no
        payload["branch"] = case.branch
    return payload


def _payload(case: Case) -> dict[str, Any]:
    values = loaded_values(case, _PAYLOAD_ATTRIBUTES)  # every case a partner batch changes is published
    return {
        "tracking_no": values["tracking_no"],
        "item_code": values["item"].code,
        "department": values["department"].key,
        "region": values["region_code"],
        "state": values["state"],
        "accepted_on": values["accepted_on"].isoformat() if values["accepted_on"] else None,
        "deadline": values["deadline"].isoformat() if values["deadline"] else None,
        "result": values["result"],
        "applicant_type": values["applicant_type"],
        "event_seq": values["event_count"],
    }


_PAYLOAD_ATTRIBUTES = frozenset({"tracking_no", "item", "department", "region_code", "state", "accepted_on",
                                 "deadline", "result", "applicant_type", "event_count"})


# --- applicant side ------------------------------------------------------------------------


def supplement(session: Session, *, case: Case, note: str, now: datetime, audit_key: str) -> CaseEvent:
    """The applicant's supplement; on a joint case it answers the one merged notice and resumes every clock."""
    return act(session, case=case, actor=Actor.applicant(), action="supplement", opinion=note,
               now=now, audit_key=audit_key)


def withdraw(session: Session, *, case: Case, reason: str, now: datetime, audit_key: str) -> CaseEvent:
    """The applicant's withdrawal; on a joint case every open branch is withdrawn with it."""
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
    if officer.department_id != case.department_id or case.origin == "partner" or joint.branch_on_hold(case):
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
    """Open cases of the officer's department on which one of the officer's roles can act — a joint case's
    branches included, each in the states of its own definition — not the cases partner platforms report
    (those are handled on the platform)."""
    roles = set(officer.roles)
    wanted = []
    for workflow_id in workflow_ids():
        states = sorted({
            t.source for t in get_definition(workflow_id).transitions if t.actor == "officer" and roles & t.roles
        })
        if states:
            wanted.append(and_(Case.workflow_id == workflow_id, Case.state.in_(states)))
    if not wanted:
        return Page(0, offset, limit)
    parent = aliased(Case)
    # A branch acts only while its parent is in its parallel state (not while the applicant supplements).
    acting = or_(Case.parent_id.is_(None), Case.parent_id.in_(
        select(parent.id).where(parent.state.in_(sorted(joint.parallel_states())))))
    query = select(Case).where(
        Case.department_id == officer.department_id, or_(*wanted), Case.origin != "partner", acting
    )
    order = [func.coalesce(Case.deadline, Case.intake_deadline), Case.submitted_at, Case.id]
    return paginate(session, query, order_by=order, offset=offset, limit=limit)
