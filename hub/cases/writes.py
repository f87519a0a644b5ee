"""The one way a case is opened and a step appended, whatever the origin.

Online and window submissions (hub/cases/service.py), partner records and events over REST, AMQP or the
legacy exchange (hub/exchange/service.py), officers' and legacy systems' actions (``cases.act``): all open
cases and append steps here, and nothing else constructs a ``Case`` or a ``CaseEvent``.

The chain (hub/audit/service.py): every event is sealed over the case row as it stands after the event,
so the case is changed first and the step appended after. A new case is built complete in memory — every
column as its row will hold it, its first event sealed, the chain head on the row — before anything is
written, so the case row is inserted once and never updated straight after.

A new case is built by `new_case` and written by one of two writers:

* `insert_case` writes it at once, with its first event, planned registry checks and outbox rows: one
  statement on PostgreSQL (data-modifying CTEs), plain Core inserts on SQLite. The case comes back a
  persistent object of the session, as if loaded, without reading anything back — or, for the online
  submission, which only reads it afterwards, outside the session holding its values (`attach` joins it
  when its registry checks are to be stored): the submission.
* `add_case` leaves it to the session's next flush, for an origin that keeps changing the case in the same
  unit of work before it is written (a partner record applies its later steps, deadlines and result, and
  reseals its last step — still one INSERT of the case row).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Column, Connection, Dialect, Select, func, insert, inspect, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import any_, bindparam
from sqlalchemy.types import Integer

from hub.audit.service import case_row, event_mac
from hub.cases import clock as case_clock
from hub.cases.models import Case, CaseEvent
from hub.cases.tracking import new_query_code, query_code_digest, tracking_number
from hub.catalog.models import Item
from hub.clock import business_date
from hub.db import (
    JSON_CONVERTED_TYPES,
    JsonRows,
    built,
    insert_from_json,
    json_converted,
    json_row,
    json_rows,
    mark_written,
)
from hub.org.models import Department
from hub.outbox.models import OutboxMessage
from hub.verification.models import CaseVerification
from workflow.calendar import WorkingCalendar
from workflow.clock import ClockFacts
from workflow.definition import WorkflowDefinition

# The tables, not the mapped classes: the writers' statements are plain Core.
CASES, EVENTS, CHECKS, OUTBOX = (model.__table__ for model in (Case, CaseEvent, CaseVerification, OutboxMessage))


@dataclass(frozen=True)
class NewEvent:
    action: str
    to_state: str
    actor_type: str
    actor_id: str
    actor_name: str
    occurred_at: datetime
    from_state: str | None = None
    step: str | None = None
    department_id: int | None = None
    opinion: str | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class Applicant:
    type: str
    name: str
    id_type: str
    id_number: str
    phone: str | None = None
    region_code: str | None = None


class StepRow:
    """A case event as plain values (issue 8, part plain): its columns under ``CaseEvent``'s attribute names in
    the object's own dict, and the ``case`` it belongs to. What a batch of partner records appends instead of a
    ``CaseEvent`` (`plain_steps`): no instrumented attribute per set or read, no session to add it to, no identity
    map to register it in, no flush bookkeeping — it is written by ``insert_added``'s statement, which then sets
    its ``id`` and ``case_id``. The seals read it as they read an event (``hub.db.loaded_values``: its dict)."""

    id: int | None
    case_id: int | None
    seq: int
    hash: str
    case_row: dict[str, Any] | None

    def __init__(self, case: Case, **values: Any) -> None:
        self.__dict__.update(values, id=None, case_id=None, case=case)

    @property
    def written(self) -> bool:
        """Whether ``insert_added`` wrote its row (and no savepoint rolled it back since: `forget_plain_steps`)."""
        return self.id is not None


@dataclass(frozen=True)
class Opening:
    """A new case and its sealed first event, built in memory and not yet written."""

    case: Case
    event: Any  # CaseEvent, or a StepRow while `plain_steps` is on


# session.info: the StepRows appended while a unit of work writes its steps as plain values (`plain_steps`), not
# yet written by ``insert_added``.
PLAIN_STEPS = "hub.cases.plain_steps"


def plain_steps(session: Session) -> None:
    """From now on, the steps appended in ``session`` are plain values (`StepRow`), written by the next
    ``insert_added`` — for a unit of work that calls it before it commits (a batch of partner records,
    hub/exchange/service.py) on PostgreSQL (elsewhere ``insert_added`` leaves the writing to the flush, which
    writes ORM objects only). Until `end_plain_steps`."""
    if session.get_bind().dialect.name == "postgresql":
        session.info[PLAIN_STEPS] = []


def end_plain_steps(session: Session) -> None:
    """Steps are ``CaseEvent`` objects again; any plain step not written by now is a programming error."""
    pending = session.info.pop(PLAIN_STEPS, None)
    if pending:
        raise RuntimeError(f"{len(pending)} plain steps appended but never written (insert_added)")


def forget_plain_steps(session: Session, written: Iterable[Any]) -> None:
    """A savepoint around ``insert_added`` was rolled back: its plain steps' rows are gone (as the ORM forgets the
    objects its own flush inserted), and those not yet written are dropped with it."""
    for row in written:
        if type(row) is StepRow:
            row.__dict__.update(id=None, case_id=None)
    if session.info.get(PLAIN_STEPS):
        session.info[PLAIN_STEPS] = []


# --- opening a case ----------------------------------------------------------------------------


def new_case(
    session: Session, *, item: Item, applicant: Applicant, state: str, channel: str, origin: str,
    submitted_at: datetime, now: datetime, first: NewEvent, key: str, query_code: str | None = None,
    form_data: dict[str, Any] | None = None, intake_deadline: date | None = None,
    receiving_region_code: str | None = None, receiving_department_id: int | None = None,
    origin_partner: str | None = None, external_id: str | None = None, record_version: int | None = None,
    partner_event_seq: int = 0, workflow_id: str | None = None,
) -> Opening:
    """Build a new case of ``item`` — numbered for the day it was submitted — and seal its first event.

    ``query_code``: the applicant's code, of which only a digest is kept; a case nobody is given a code
    for (a partner's) gets a random one. ``workflow_id``: the definition (and version) the case follows
    for good, by default the item's (a running case keeps it when the item moves on to a new version).
    Nothing is written: hand the opening to a writer."""
    tracking_no = tracking_number(session, item.region_code, business_date(submitted_at))
    case = built(
        Case,
        tracking_no=tracking_no,
        query_code_hash=query_code_digest(tracking_no, query_code or new_query_code()),
        item=item, item_id=item.id, region_code=item.region_code,
        department=item.department, department_id=item.department_id, parent_id=None,
        state=state, workflow_id=workflow_id or item.workflow_id, channel=channel, origin=origin,
        origin_partner=origin_partner, external_id=external_id, record_version=record_version,
        partner_event_seq=partner_event_seq,
        applicant_type=applicant.type, applicant_name=applicant.name, applicant_id_type=applicant.id_type,
        applicant_id_number=applicant.id_number, applicant_phone=applicant.phone,
        applicant_region_code=applicant.region_code, form_data=form_data or {},
        submitted_at=submitted_at, intake_deadline=intake_deadline, accepted_on=None,
        # The window that registered a paper application (hub/window), whichever region it is in.
        receiving_region_code=receiving_region_code, receiving_department_id=receiving_department_id,
        promised_limit_days=item.promised_limit_days, statutory_limit_days=item.statutory_limit_days,
        deadline=None, statutory_deadline=None, step_deadlines={}, suspended_since=None,
        suspended_working_days=0, decided_at=None, completed_at=None, result=None,
        # Electronic supervision reads the new case on its first day (its intake period, Art. 32).
        colour=None, colour_due_on=business_date(submitted_at),
        # Every column as the row will hold it: the first event seals these values (`case_row`).
        event_count=0, last_event_hash=None, updated_at=now, lock_version=1,
    )
    return Opening(case, _event(case, first, key, plain=session.info.get(PLAIN_STEPS)))


def open_branch(
    session: Session, *, parent: Case, branch: str, department: Department, definition: WorkflowDefinition,
    state: str, facts: ClockFacts, form_data: dict[str, Any], first: NewEvent, calendar: WorkingCalendar,
    now: datetime, key: str,
) -> Opening:
    """Open the child case of a joint case's ``branch`` (the parent's parallel block) and add it, with its
    first event, to the session (written at the next flush, after the parent).

    The child is the branch department's own case: its own tracking number (the same per-region sequence,
    numbered for the day it is opened), its department, its definition, only its ``form_data`` part of the
    application; the applicant, item and submission are the parent's. Nobody is given its query code: the
    applicant follows the whole through the parent's. Its clock (``facts``: accepted with the parent,
    the branch's allocation as its promise) is on the row before the first event seals it."""
    tracking_no = tracking_number(session, department.region_code, business_date(now))
    case = built(
        Case,
        tracking_no=tracking_no,
        query_code_hash=query_code_digest(tracking_no, new_query_code()),
        item_id=parent.item_id, region_code=department.region_code, department_id=department.id,
        parent_id=parent.id, branch=branch, state=state, workflow_id=definition.workflow_id,
        channel=parent.channel, origin="hub", origin_partner=None, external_id=None, record_version=None,
        partner_event_seq=0,
        applicant_type=parent.applicant_type, applicant_name=parent.applicant_name,
        applicant_id_type=parent.applicant_id_type, applicant_id_number=parent.applicant_id_number,
        applicant_phone=parent.applicant_phone, applicant_region_code=parent.applicant_region_code,
        form_data=form_data, submitted_at=parent.submitted_at, received_on=parent.received_on,
        receiving_region_code=parent.receiving_region_code, receiving_department_id=parent.receiving_department_id,
        intake_deadline=None, accepted_on=None,
        promised_limit_days=facts.promised_limit_days, statutory_limit_days=facts.statutory_limit_days,
        deadline=None, statutory_deadline=None, step_deadlines={}, suspended_since=None,
        suspended_working_days=0, suspensions=[], extension_days=0,
        decided_at=None, completed_at=None, result=None,
        event_count=0, last_event_hash=None, updated_at=now, lock_version=1,
    )
    # Through the attributes: the item and the department are the session's own (loaded with the parent).
    case.item = parent.item
    case.department = department
    case_clock.store(case, facts, calendar=calendar, today=business_date(now), definition=definition)
    event = _event(case, first, key)
    session.add(case)
    session.add(event)
    note_touched(session, case, first_seq=1)
    _note_event(session, case, event)
    return Opening(case, event)


def add_case(session: Session, opening: Opening) -> None:
    """Write the new case and its first event at the session's next flush (case first, then the event)."""
    _add_case(session, opening.case)
    if type(opening.event) is not StepRow:  # a plain step is written by ``insert_added`` (`plain_steps`)
        _add_event(session, opening.case, opening.event)
    note_touched(session, opening.case, first_seq=1)
    _note_event(session, opening.case, opening.event)


def insert_case(session: Session, opening: Opening, *, outbox: Sequence[OutboxMessage] = (),
                attach: bool = True) -> None:
    """Write the new case now: its row, its first event, the checks planned on ``case.verifications`` and
    the ``outbox`` messages — in one statement on PostgreSQL. Afterwards the case and its checks hold their
    ids and every column's value and, with ``attach``, are persistent objects of the session with nothing
    left to flush. Without ``attach`` they stay out of the session (making them persistent — the session's
    cascade, the identity map, the commit's and close's walks over it — cost a submission more than its
    receipt): for a caller that only reads them afterwards; ``attach`` joins them later if it must change
    them (a registry check's result)."""
    case, event = opening.case, opening.event
    checks = list(case.verifications)
    connection = session.connection()
    at_once = connection.dialect.driver == "psycopg" and bool(outbox)
    # The rows as the writer sends them: for the one statement, already as JSON documents (``json_row``).
    case_values = _values(case, as_json=at_once)
    event_values = _values(event, as_json=at_once)
    check_values = [_values(row, as_json=at_once) for row in checks]
    message_values = [_values(message, as_json=at_once) for message in outbox]
    if at_once:
        case_id, check_ids = _insert_at_once(session, connection, case_values, event_values, check_values,
                                             message_values)
    else:
        case_id, check_ids = _insert_one_by_one(connection, case_values, event_values, check_values,
                                                message_values)
    _loaded_values(case, case_id, checks, check_ids)
    if attach:
        _attach(session, case, checks)
        note_touched(session, case, first_seq=1)
    # Unattached, it is noted nowhere: electronic supervision never evaluates a case at its first event, and
    # nothing can append a step to a case outside the session.


def attach(session: Session, case: Case) -> None:
    """Make a case ``insert_case`` wrote without ``attach`` — and its checks — persistent objects of the
    session, as if just loaded (no SQL)."""
    _attach(session, case, list(case.verifications))


# --- updating cases a batch changed ------------------------------------------------------------


def update_cases(session: Session, cases: Iterable[Case]) -> list[Case]:
    """Write the changes of the persistent ``cases`` now, in ONE ``UPDATE cases … FROM`` (the rows as one JSONB
    parameter) on PostgreSQL, where the ORM's flush sends an UPDATE per case (its ``lock_version`` check makes it
    unbatchable). The check stays, in SQL: a row is updated only while its ``lock_version`` is the one this
    session loaded, and bumped; a row another transaction changed meanwhile raises ``StaleDataError``, as the
    flush would have. Afterwards the cases hold nothing more to flush. Elsewhere (SQLite), and for a single
    changed case, the flush does it. Returns the cases it wrote: a caller that rolls back a savepoint around
    this must expire them (the ORM expires only what its own flush wrote)."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    columns = _case_attributes()
    changed: list[tuple[Case, list[str]]] = []
    for case in cases:
        state = inspect(case)
        if not state.persistent or not state.modified:
            continue
        keys = [key for key in state.committed_state if key in columns and key != "lock_version"]
        if keys:
            changed.append((case, keys))
    if len(changed) < 2:
        return []
    attributes = tuple(sorted({key for _, keys in changed for key in keys}))
    rows = [json_row({"id": case.id, "lock_version": case.lock_version,
                      **{name: _current(case, key) for key, name in zip(attributes, _names_of(attributes),
                                                                         strict=True)}})
            for case, _ in changed]
    updated = set(session.connection().execute(
        _update_statement(attributes), {"rows": JsonRows(rows), "ids": [case.id for case, _ in changed]}).scalars())
    if len(updated) != len(changed):
        raise StaleDataError(f"UPDATE statement on table 'cases' expected to update {len(changed)} row(s); "
                             f"{len(updated)} were matched.")
    for case, keys in changed:
        _written(session, case, keys)
    return [case for case, _ in changed]


def _current(case: Case, key: str) -> Any:
    """A changed attribute's value: in the instance dict (a change puts it there), else through the attribute."""
    values = case.__dict__
    return values[key] if key in values else getattr(case, key)


def _written(session: Session, case: Case, keys: list[str]) -> None:
    """The case as loaded with the values ``update_cases`` wrote and its bumped ``lock_version``: what
    ``set_committed_value`` of each key (their values unchanged, their changes committed) and then of the
    version did, in one commit of the keys, and off the dirty list (``_mark_clean``)."""
    state = inspect(case)
    for key in keys:
        case.__dict__[key] = _current(case, key)
    case.__dict__["lock_version"] = case.lock_version + 1
    state._commit(state.dict, [*keys, "lock_version"])
    _mark_clean(session, case)


def _names_of(attributes: tuple[str, ...]) -> list[str]:
    columns = _case_attributes()
    return [columns[key] for key in attributes]


@functools.lru_cache(maxsize=64)
def _update_statement(attributes: tuple[str, ...]) -> Any:
    """``update_cases``' statement for the changed ``attributes``, built once per set of them (a batch's cases
    change a handful of sets): building it and its cache key anew for every batch cost more than its rows."""
    names = _names_of(attributes)
    source = json_rows(CASES.name, ["id", "lock_version", *names], "rows", many=True)
    # The ids once more as an array: PostgreSQL cannot see how many rows the JSON holds (it assumes 100), and on a
    # table of a few thousand cases it then hashed a scan of the whole table (≈7 ms, docs/performance-postgresql.md).
    return (update(CASES).where(CASES.c.id == source.c.id, CASES.c.lock_version == source.c.lock_version,
                                CASES.c.id == any_(bindparam("ids", type_=ARRAY(Integer()))))
            .values({**{name: source.c[name] for name in names}, "lock_version": CASES.c.lock_version + 1})
            .returning(CASES.c.id))


def _mark_clean(session: Session, obj: Any) -> None:
    """Take an object whose every change is written (``set_committed_value``) off the session's dirty list, as
    a flush does: else each later flush of the unit of work looks it over again for nothing (a batch's
    hundreds of cases, three flushes)."""
    state = inspect(obj)
    if state.modified and not state.committed_state:
        state._commit_all(state.dict, session.identity_map)


@functools.cache
def _case_attributes() -> dict[str, str]:
    """Case attribute → column name, of the columns a writer sets (not the id)."""
    return {key: column.name for key, column in _columns(Case)}


# --- what the unit of work touched ---------------------------------------------------------------
# Electronic supervision runs its procedure and anomaly rules on every new event, once per unit of work, just
# before it commits (hub/supervision/realtime.py): the writers note here which cases got events and the first
# seq each got in this unit of work.

TOUCHED = "hub.supervision.touched"  # session.info: {case: first seq appended in the open transaction}
# session.info: {case: [its events made in the open transaction]} — the rules read a case opened in this unit of
# work from these, not from the database.
NEW_EVENTS = "hub.supervision.new_events"


def note_touched(session: Session, case: Case, *, first_seq: int | None = None) -> None:
    """Remember that ``case`` gets an event in this unit of work (before the event is made: its seq is next)."""
    touched = session.info.get(TOUCHED)
    if touched is None:
        touched = session.info[TOUCHED] = {}
    touched.setdefault(case, first_seq if first_seq is not None else case.event_count + 1)


def _note_event(session: Session, case: Case, event: Any) -> None:
    events = session.info.get(NEW_EVENTS)
    if events is None:
        events = session.info[NEW_EVENTS] = {}
    events.setdefault(case, []).append(event)


# --- appending a step --------------------------------------------------------------------------


def append_step(session: Session, case: Case, new: NewEvent, *, key: str, unsealed: bool = False) -> Any:
    """Append one event, sealed over the case row as it stands now: change the case first, then append.

    ``unsealed``: the caller seals it with ``reseal_head`` before anything else is appended or written (a
    partner record's last step, sealed once over the row as the whole record leaves it, not twice)."""
    note_touched(session, case)
    plain = session.info.get(PLAIN_STEPS)
    event = _event(case, new, key, seal=not unsealed, plain=plain)
    if plain is None:  # a plain step is written by ``insert_added`` from `PLAIN_STEPS`, not by the session
        _add_event(session, case, event)
    _note_event(session, case, event)
    return event


def _add_case(session: Session, case: Case) -> None:
    """``session.add(case)`` without its save-update cascade when there is nothing to cascade to: a new case's
    related objects are its item and department — reference data the batch attached to this session already —
    and no registry checks (a partner's case has none). The cascade walked them to find that, for every case a
    batch opens (≈3 % of a partner record's CPU). ``Session.add``'s own steps, minus the walk, as ``_add_event``."""
    present = case.__dict__
    if present.get("verifications") or any(
        related is not None and not session._contains_state(inspect(related))
        for related in (present.get("item"), present.get("department"))
    ):
        session.add(case)
        return
    _save_or_update(session, case)


def _save_or_update(session: Session, obj: Any) -> None:
    """``Session.add``'s steps for ``obj`` itself, not its cascade (private API: SQLAlchemy has no public call)."""
    state = inspect(obj)
    state._orphaned_outside_of_session = False
    session._save_or_update_impl(state)


def _add_event(session: Session, case: Case, event: CaseEvent) -> None:
    """``session.add(event)`` without its save-update cascade when there is nothing to cascade to: the event's
    only related objects are its case, already in this session, and a department it does not hold (only its
    id). The cascade walks both relationships of every event just to find that (a partner batch appends
    hundreds). ``Session.add``'s own steps, minus the walk; SQLAlchemy has no public call for it."""
    case_state = inspect(case)
    if case_state.session_id != session.hash_key or "department" in event.__dict__:
        session.add(event)
        return
    _save_or_update(session, event)


def reseal_head(case: Case, event: Any, *, key: str) -> None:
    """Seal the case's newest event again over the row as it stands now.

    Only for an event appended in the caller's own unit of work (a partner record applies its steps, then
    the record's deadlines and result): the old seal was never committed, so nothing outside has seen it."""
    if event.seq != case.event_count:
        raise ValueError(f"event {event.seq} is not the head ({case.event_count}) of {case.tracking_no}")
    _seal(case, event, key)


def _event(case: Case, new: NewEvent, key: str, *, seal: bool = True, plain: list[StepRow] | None = None) -> Any:
    """The case's next event (a ``CaseEvent``; with ``plain``, the list of `plain_steps`, a `StepRow` added
    to it), sealed unless ``seal`` is false."""
    if plain is not None:
        return _plain_event(case, new, key, seal=seal, plain=plain)
    event = built(
        CaseEvent,
        seq=case.event_count + 1,
        action=new.action,
        step=new.step,
        from_state=new.from_state,
        to_state=new.to_state,
        actor_type=new.actor_type,
        actor_id=new.actor_id,
        actor_name=new.actor_name,
        department_id=new.department_id,
        opinion=new.opinion,
        occurred_at=new.occurred_at,
        data=new.data or {},
        prev_hash=case.last_event_hash,
    )
    event.case = case  # through the attribute: a flush of the event (``add_case``) takes the case's id from it
    case.event_count = event.seq
    if seal:
        _seal(case, event, key)
    return event


def _plain_event(case: Case, new: NewEvent, key: str, *, seal: bool, plain: list[StepRow]) -> StepRow:
    # The same values as ``_event``'s CaseEvent, in the same order (the seal reads them by name).
    seq = case.event_count + 1
    event = StepRow(
        case, seq=seq, action=new.action, step=new.step, from_state=new.from_state, to_state=new.to_state,
        actor_type=new.actor_type, actor_id=new.actor_id, actor_name=new.actor_name,
        department_id=new.department_id, opinion=new.opinion, occurred_at=new.occurred_at, data=new.data or {},
        prev_hash=case.last_event_hash,
    )
    case.event_count = seq
    plain.append(event)
    if seal:
        _seal(case, event, key)
    return event


def _seal(case: Case, event: Any, key: str) -> None:
    # A CaseEvent or a StepRow (a plain object: these assignments land in its own dict).
    event.case_row = case_row(case, key=key)
    event.hash = event_mac(case.tracking_no, event, key=key)
    case.last_event_hash = event.hash


# --- the writers' statements -------------------------------------------------------------------


@functools.cache
def _columns(model: type[Any]) -> tuple[tuple[str, Column[Any]], ...]:
    """(attribute, column) of a model's columns a writer sets: not the generated id, not the case id."""
    return tuple(
        (prop.key, prop.columns[0]) for prop in inspect(model).column_attrs
        if prop.columns[0].name not in ("id", "case_id")
    )


def _values(obj: Any, *, as_json: bool = False, model: type[Any] | None = None) -> dict[str, Any]:
    """The row an object stands for, by column name; a column left unset takes its default, on the object too
    (it is to look loaded afterwards, every attribute present). ``as_json``: the values as ``json_row`` gives
    them, in the same pass."""
    values = {}
    present = obj.__dict__
    for attribute, name, default in _defaults(model or type(obj)):  # ``model``: a plain object's (StepRow)
        value = present.get(attribute, _UNSET)
        if value is _UNSET or (value is None and default is not None):
            value = None if default is None else default.arg if default.is_scalar else default.arg(None)
            setattr(obj, attribute, value)
        # json_value's test inline: a call per column of every row cost more than the conversion (few convert)
        values[name] = json_converted(value) if as_json and isinstance(value, JSON_CONVERTED_TYPES) else value
    return values


_UNSET = object()


@functools.cache
def _defaults(model: type[Any]) -> tuple[tuple[str, str, Any], ...]:
    """(attribute, column name, the column's Python-side default or None) of `_columns`, read once per model."""
    return tuple((attribute, column.name, column.default) for attribute, column in _columns(model))


def _names(model: type[Any]) -> list[str]:
    return [column.name for _, column in _columns(model)]


def _from_json(model: type[Any], param: str, *, many: bool = False, case_id: Any = None) -> Select[Any]:
    # A table's rows are one parameter, so the statement has four and stays short (under psycopg's 4096
    # characters and 50 parameters).
    rows = json_rows(model.__table__.name, _names(model), param, many=many)
    columns = [rows.c[name] for name in _names(model)]
    return select(case_id, *columns) if case_id is not None else select(*columns)


@functools.cache
def _statement() -> Insert:
    """One INSERT: the case, its first event and its checks as data-modifying CTEs; the top statement inserts
    the outbox messages (so hub/outbox/wake.py sees an outbox insert and wakes the relay) and returns the
    new case's id and its checks' ids by check key. Each table's rows come as one JSON parameter."""
    new_case = (insert(CASES).from_select(_names(Case), _from_json(Case, "case"))
                .returning(CASES.c.id).cte("new_case"))
    case_id = select(new_case.c.id).scalar_subquery()
    first_event = insert(EVENTS).from_select(
        ["case_id", *_names(CaseEvent)], _from_json(CaseEvent, "event", case_id=case_id)).cte("first_event")
    checks = insert(CHECKS).from_select(
        ["case_id", *_names(CaseVerification)], _from_json(CaseVerification, "checks", many=True, case_id=case_id),
    ).returning(CHECKS.c.id, CHECKS.c.check_key).cte("checks")
    check_ids = select(func.jsonb_object_agg(checks.c.check_key, checks.c.id)).scalar_subquery()
    # One row per message: at least one message, or nothing returns. The relays of other processes hear of
    # the outbox insert after the commit (hub/outbox/wake.py), not from this statement: a NOTIFY inside the
    # transaction would queue its commit behind every other submission's.
    return (insert(OUTBOX).from_select(_names(OutboxMessage), _from_json(OutboxMessage, "messages", many=True))
            .add_cte(new_case, first_event, checks)
            .returning(case_id.label("case_id"), check_ids.label("checks")))


@functools.cache
def _driver_sql(dialect: Dialect) -> str:
    """The dialect's own text of `_statement()`, placeholders by name: its only parameters are the rows."""
    compiled = _statement().compile(dialect=dialect)
    if set(compiled.params) != set(_JSON_PARAMETERS):  # a literal SQLAlchemy would bind: pass it on, then
        raise AssertionError(f"the submission statement binds {sorted(compiled.params)}")
    return _unlabelled(str(compiled))


# psycopg parses a statement's placeholders again on every execution when its text is longer than this (its
# parse cache takes only shorter ones): ≈30 µs per submission for the writers' statement.
DRIVER_CACHED_LENGTH = 4096


def _unlabelled(sql: str) -> str:
    """Without the labels SQLAlchemy gives the CTEs' selected columns (``r.state AS state``): an INSERT …
    SELECT takes its values by position, so they only lengthened the text — past psycopg's parse cache."""
    return re.sub(r"\br\.(\w+) AS \1\b", r"r.\1", sql)


_JSON_PARAMETERS = ("case", "event", "checks", "messages")


def _insert_at_once(
    session: Session, connection: Connection, case: dict[str, Any], event: dict[str, Any],
    checks: list[dict[str, Any]], messages: list[dict[str, Any]],
) -> tuple[int, list[int]]:
    # Sent on the driver's cursor, in the session's own transaction, its text compiled once per dialect:
    # SQLAlchemy's execution of this one statement (compiled cache look-up, parameter processing, result
    # rows) cost about a fifth of a submission's CPU. The engine's hooks do not see it, so the write is
    # noted by hand (the outbox insert among it: the commit wakes the relays, hub/outbox/wake.py).
    parameters = {"case": Jsonb(case), "event": Jsonb(event), "checks": Jsonb(checks),
                  "messages": Jsonb(messages)}  # rows as json_row gives them (`_values`)
    with connection.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(_driver_sql(connection.dialect), parameters)
        row = cursor.fetchone()
    assert row is not None
    mark_written(session, *_WRITTEN_AT_ONCE, connection=connection)
    case_id, ids = row[0], row[1] or {}
    return int(case_id), [int(ids[values["check_key"]]) for values in checks]


_WRITTEN_AT_ONCE = tuple(("insert", table.name) for table in (CASES, EVENTS, CHECKS, OUTBOX))


def _insert_one_by_one(
    connection: Connection, case: dict[str, Any], event: dict[str, Any], checks: list[dict[str, Any]],
    messages: list[dict[str, Any]],
) -> tuple[int, list[int]]:
    # SQLite has no data-modifying CTEs; it is one in-process file, so a statement costs no round trip.
    # (PostgreSQL too when there is no outbox message: the one statement returns a row per message.)
    case_id = int(connection.execute(insert(CASES).returning(CASES.c.id), case).scalar_one())
    connection.execute(insert(EVENTS), {**event, "case_id": case_id})
    check_ids = [
        int(connection.execute(insert(CHECKS).returning(CHECKS.c.id), {**values, "case_id": case_id}).scalar_one())
        for values in checks
    ]
    for values in messages:
        connection.execute(insert(OUTBOX), values)
    return case_id, check_ids


def _as_loaded(session: Session, case: Case, case_id: int, checks: list[CaseVerification],
               check_ids: list[int]) -> None:
    """Make the written objects persistent in the session as if just loaded: no INSERT at the next flush,
    no SELECT when read (the receipt is built from them)."""
    _loaded_values(case, case_id, checks, check_ids)
    _attach(session, case, checks)


def _loaded_values(case: Case, case_id: int, checks: list[CaseVerification], check_ids: list[int]) -> None:
    """The generated ids (and a new check's empty manual verification) on the written objects."""
    # Into the instances' dicts, as loading sets them (``hub.db.built``): a transient row has no history to record.
    for row, row_id in zip(checks, check_ids, strict=True):
        row.__dict__.update(id=row_id, case_id=case_id, manual=None)  # a new check has no manual verification
    case.__dict__["id"] = case_id


def _attach(session: Session, case: Case, checks: list[CaseVerification]) -> None:
    for row in checks:
        make_transient_to_detached(row)
    make_transient_to_detached(case)
    # Item and department are reference data, maybe shared by a per-process cache: set on the case as
    # loaded, never cascaded into this session (an object belongs to one session at a time).
    shared = {name: case.__dict__.pop(name) for name in ("item", "department")}
    session.add(case)  # and with it (save-update cascade) its checks
    for name, value in shared.items():
        set_committed_value(case, name, value)


# --- a batch's new cases and events at once (partner ingest) ------------------------------------


def insert_added(session: Session) -> list[Any]:
    """Write the new cases and events the session holds (``add_case``, ``append_step``) now: one INSERT per
    table on PostgreSQL, each table's rows one JSONB parameter — where the ORM's flush sends an INSERT …
    RETURNING per run of cases with the same attributes set and one statement of every event's values, tens of
    kilobytes of text that psycopg parses again on every execution (its parse cache takes statements under
    ``DRIVER_CACHED_LENGTH``) and the server plans afresh. Afterwards both are persistent objects of the session
    as if loaded (supervision tells a new case's written events by that: hub/supervision/realtime.py), with
    nothing left to flush. Returns what it wrote: a caller that rolls back a savepoint around this must
    expunge it (the ORM
    forgets only the rows its own flush inserted). For a unit of work that adds many (hub/exchange/service.py
    ``ingest_batch``); a case whose row refers to another new one (a joint case's branches) is left to the
    flush. Elsewhere (SQLite) the flush does it."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    cases = [obj for obj in session.new if type(obj) is Case and obj.parent_id is None]
    events = [obj for obj in session.new if type(obj) is CaseEvent]
    plain: list[StepRow] = session.info.get(PLAIN_STEPS) or []
    if not events and not plain:
        return []
    connection = session.connection()
    if cases:
        rows = [_values(case, as_json=True) for case in cases]  # as ``json_row`` gives them, in the same pass
        ids = dict(connection.execute(_insert_from_json(Case, returning=("tracking_no", "id")),
                                      {"rows": JsonRows(rows)}).all())
        for case in cases:
            case.__dict__["id"] = int(ids[case.tracking_no])
        _register_written(session, cases)
    events = [event for event in events if inspect(event.case).persistent]  # a branch's: left to the flush
    if plain and not all(inspect(row.case).persistent for row in plain):
        raise RuntimeError("a plain step of a case that is not written (insert_added writes only top-level cases)")
    if events or plain:
        rows = [{**_values(event, as_json=True), "case_id": event.case.id} for event in events]
        rows += [{**_values(row, as_json=True, model=CaseEvent), "case_id": row.case.id} for row in plain]
        ids = {(case_id, seq): event_id for event_id, case_id, seq in connection.execute(
            _insert_from_json(CaseEvent, returning=("id", "case_id", "seq"), case_id=True), {"rows": JsonRows(rows)})}
        for event in events:
            event.__dict__.update(id=ids[(event.case.id, event.seq)], case_id=event.case.id)
        _register_written(session, events)
        for row in plain:  # plain values: their ids into their dicts, and nothing to register
            case_id = row.case.id
            row.__dict__.update(id=ids[(case_id, row.seq)], case_id=case_id)
        if plain:
            session.info[PLAIN_STEPS] = []
    return [*cases, *events, *plain]


def insert_added_of_cases(session: Session, model: type[Any], *, key: tuple[str, ...]) -> list[Any]:
    """Write the session's new ``model`` objects that belong to a persistent case (``obj.case``, whose id is the
    row's ``case_id``) now, as ``insert_added`` writes cases and events: one INSERT of the rows as one JSONB
    parameter on PostgreSQL, the objects then persistent as if loaded. ``key``: columns unique per row (with
    ``case_id``), by which the generated ids come back. A batch of partner records rates its completed cases:
    the ORM's flush wrote them as one multi-row VALUES statement of a different text for every number of rows,
    which psycopg parsed again each time. Returns what it wrote (a caller that rolls back a savepoint around this
    must expunge it); elsewhere (SQLite), and for an object whose case is not written yet, the flush does it."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    added = [obj for obj in session.new if type(obj) is model and inspect(obj.case).persistent]
    if not added:
        return []
    rows = [{**_values(obj, as_json=True), "case_id": obj.case.id} for obj in added]
    returned = session.connection().execute(
        _insert_from_json(model, returning=("id", "case_id", *key), case_id=True), {"rows": JsonRows(rows)})
    ids = {tuple(found): row_id for row_id, *found in returned}
    for obj in added:
        obj.__dict__["case_id"] = obj.case.id
        obj.__dict__["id"] = ids[(obj.case.id, *(obj.__dict__[name] for name in key))]
    _register_written(session, added)
    return added


def _register_written(session: Session, objects: Sequence[Any]) -> None:
    """Pending objects whose rows were just inserted (their ids set): made persistent as the ORM's flush makes
    the objects it inserted — in the identity map, nothing left to flush, and noted as new in the open
    (nested) transaction, so that rolling back its savepoint forgets them like flushed ones. The flush's own
    step (``Session._register_persistent``): SQLAlchemy has no public call for it, and expunging each object to
    add it back as detached cost more than the INSERT (hundreds of objects per batch of partner records)."""
    session._register_persistent({inspect(obj) for obj in objects})


@functools.cache
def _insert_from_json(model: type[Any], *, returning: tuple[str, ...], case_id: bool = False) -> Insert:
    table = model.__table__
    names = ("case_id", *_names(model)) if case_id else tuple(_names(model))
    return insert_from_json(table, names).returning(*(table.c[name] for name in returning))
