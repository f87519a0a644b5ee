"""Inbound exchange: partner records and events become cases in the one case model.

Idempotent twice over: by message id (the inbox) and by record version / step sequence, so a
redelivered, repeated or older message changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from hub.audit.service import case_row
from hub.calendar.service import load_calendar
from hub.cases import writes
from hub.cases.models import Case, CaseEvent
from hub.cases.service import case_event_payload
from hub.catalog import service as catalog
from hub.catalog.models import Item
from hub.clock import business_date
from hub.deliveries import service as deliveries
from hub.exchange import checks
from hub.exchange.checks import RecordRejected
from hub.exchange.models import InboxMessage, Partner, PendingEvent
from hub.exchange.partners import find_partner
from hub.org.service import is_within
from hub.outbox import service as outbox
from hub.validation import field_errors, shared_validator
from workflow.definition import standard_definition
from workflow.timelimits import compute_deadline

RECORD_TYPES = {"case-record.v1": "case-record.v1.json", "case-event.v1": "case-event.v1.json"}


@dataclass(frozen=True)
class IngestResult:
    outcome: str  # applied | duplicate | stale | held
    tracking_no: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class CheckedMessage:
    """An envelope that passed every check; ``payload`` carries the normalised names and texts."""

    partner: Partner
    message_id: uuid.UUID
    record_type: str
    payload: dict[str, Any]
    item: Item | None = None  # a record's catalogue item


def ingest(
    session: Session, *, envelope: Any, authenticated_source: str, now: datetime, audit_key: str
) -> IngestResult:
    """Check and apply one envelope; raises RecordRejected for anything that can never apply.

    Every check runs before the first write, so a rejected message leaves nothing behind — which lets a
    REST batch reject one record and apply the others without savepoints (SQLite's driver commits on
    RELEASE SAVEPOINT)."""
    checked = check(session, envelope=envelope, authenticated_source=authenticated_source)
    if session.get(InboxMessage, (checked.partner.code, checked.message_id)) is not None:
        return IngestResult("duplicate", detail="message_id already applied")
    return _apply(session, checked, now, audit_key)


def check(session: Session, *, envelope: Any, authenticated_source: str) -> CheckedMessage:
    """Everything that makes a message permanently unacceptable, found without writing anything.

    The sender is only ever ``authenticated_source`` — the broker-checked AMQP ``user_id`` or the partner
    whose REST credentials were verified — never a header or envelope field the partner sets."""
    _check_schema("envelope.v1.json", envelope, "envelope")
    checks.timestamp(envelope["occurred_at"], "envelope.occurred_at")
    partner = _authorised_partner(session, envelope, authenticated_source)
    record_type = f"{envelope['type']}.v{envelope['version']}"
    payload = envelope["payload"]
    _check_schema(RECORD_TYPES[record_type], payload, "payload")
    item = None
    if record_type == "case-record.v1":
        payload = checks.check_record(payload)
        item = _check_item(session, payload)
    else:
        payload = checks.check_event(payload)
    return CheckedMessage(partner, uuid.UUID(envelope["message_id"]), record_type, payload, item)


def _apply(session: Session, checked: CheckedMessage, now: datetime, key: str) -> IngestResult:
    partner, payload = checked.partner, checked.payload
    _serialise_case(session, partner, payload["external_id"])
    if checked.item is not None:
        result = _apply_record(session, partner, checked.item, payload, now, key)
    else:
        result = _apply_event(session, partner, payload, now, key)
    case = _partner_case(session, partner, payload["external_id"])
    session.add(InboxMessage(
        message_id=checked.message_id, partner_code=partner.code, type=checked.record_type,
        outcome=result.outcome, case_id=case.id if case else None, received_at=now,
    ))
    session.flush()
    return result


def _check_schema(schema: str, document: Any, prefix: str) -> None:
    errors = field_errors(shared_validator(schema).iter_errors(document), prefix=prefix)
    if errors:
        first = errors[0]
        raise RecordRejected("schema", f"{first.field}: {first.message}"[:500], field=first.field,
                             rule=first.rule)


def _authorised_partner(session: Session, envelope: dict[str, Any], source: str) -> Partner:
    if envelope["source"] != source:
        raise RecordRejected("source_mismatch", f"envelope.source {envelope['source']} is not the authenticated "
                             f"sender {source}", field="envelope.source", rule="equals_authenticated_sender")
    partner = find_partner(session, source)  # the process's partner directory (hub/refcache.py)
    if partner is None or not partner.active:
        raise RecordRejected("unknown_partner", f"{source} is not a registered, active partner",
                             field="envelope.source", rule="registered_partner")
    record_type = f"{envelope['type']}.v{envelope['version']}"
    if record_type not in RECORD_TYPES or record_type not in partner.record_types:
        raise RecordRejected("type_not_allowed", f"{source} may not send {record_type}", field="envelope.type",
                             rule="allowed_record_type")
    _check_region(session, partner, envelope["region"], "envelope.region")
    region = envelope["payload"].get("region") if isinstance(envelope["payload"], dict) else None
    if isinstance(region, str):
        _check_region(session, partner, region, "payload.region")
    return partner


def _check_region(session: Session, partner: Partner, region: str, field: str) -> None:
    if not is_within(session, region_code=region, ancestor=partner.region_code):
        raise RecordRejected("wrong_region", f"{field} {region} is outside the partner's region {partner.region_code}",
                             field=field, rule="within_partner_region")


def _check_item(session: Session, record: dict[str, Any]) -> Item:
    item = catalog.find_item(session, record["item_code"])  # the process's reference cache, no query
    if item is None:
        raise RecordRejected("unknown_item", f"payload.item_code {record['item_code']} is not in the catalogue",
                             field="payload.item_code", rule="in_catalogue")
    if item.region_code != record["region"]:
        raise RecordRejected("wrong_region", f"payload.region {record['region']} is not the item's region",
                             field="payload.region", rule="item_region")
    return item


def _serialise_case(session: Session, partner: Partner, external_id: str) -> None:
    """One message about a partner case at a time, across all consumers (PostgreSQL advisory lock until commit).

    Without it two workers race: an event that finds its predecessor not yet committed is held, while the
    message applying that predecessor has already looked for held events — and the held one waits forever.
    SQLite runs one writer at a time anyway."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                        {"key": f"partner-case:{partner.code}:{external_id}"})


def _partner_case(session: Session, partner: Partner, external_id: str) -> Case | None:
    return session.scalar(
        select(Case).where(Case.origin_partner == partner.code, Case.external_id == external_id)
    )


# --- case records ---------------------------------------------------------------------------


def _apply_record(
    session: Session, partner: Partner, item: Item, record: dict[str, Any], now: datetime, key: str
) -> IngestResult:
    steps = record["steps"]  # checked: sorted, seq 1, 2, 3 … in the standard flow
    case = _partner_case(session, partner, record["external_id"])
    if case is not None and (case.record_version or 0) >= record["record_version"]:
        return IngestResult("stale", case.tracking_no, f"record version {case.record_version} already applied")
    head: CaseEvent | None = None
    sealed: dict[str, Any] | None = None
    # The record's last step is resealed below: the case and that step are inserted once, as the record
    # leaves them, not twice.
    with session.no_autoflush:
        if case is None:
            case, head = _new_partner_case(session, partner, item, record, now, key)
        elif case.event_count:
            sealed = case_row(case, key=key)
        for step in steps:
            if step["seq"] > case.partner_event_seq:
                head = _append_step(session, case, partner, step, record["record_version"], key)
        _update_from_record(session, case, record, now)
        _seal_record(session, case, partner, record, head, sealed, now, key)
    _drain_pending(session, case, partner, key)
    _publish(session, case, now)
    return IngestResult("applied", case.tracking_no)


def _new_partner_case(session: Session, partner: Partner, item: Item, record: dict[str, Any], now: datetime,
                      key: str) -> tuple[Case, CaseEvent]:
    """The partner's case, opened with the record's first step; written at the next flush, after the
    record's other steps, deadlines and result are applied (hub/cases/writes.py)."""
    applicant, first = record["applicant"], record["steps"][0]
    opening = writes.new_case(
        session, item=item, state=first["to_state"], channel="partner", origin="partner",
        origin_partner=partner.code, external_id=record["external_id"], record_version=0,
        partner_event_seq=first["seq"],
        applicant=writes.Applicant(applicant["type"], applicant["name"], applicant["id_type"],
                                   applicant["id_number"], applicant.get("phone")),
        submitted_at=datetime.fromisoformat(record["submitted_at"]), now=now,
        first=_step_event(partner, first, record["record_version"], from_state=None,
                          department_id=item.department_id),
        key=key,
    )
    writes.add_case(session, opening)
    return opening.case, opening.event


def _append_step(
    session: Session, case: Case, partner: Partner, step: dict[str, Any], version: int | None, key: str
) -> CaseEvent:
    from_state = case.state if case.event_count else None
    # The row changes first: the event seals the case as the step left it.
    case.partner_event_seq = step["seq"]
    case.state = step["to_state"]
    return writes.append_step(session, case, _step_event(
        partner, step, version, from_state=from_state, department_id=case.department_id), key=key)


def _step_event(partner: Partner, step: dict[str, Any], version: int | None, *, from_state: str | None,
                department_id: int) -> writes.NewEvent:
    known = {t.action: t.step for t in standard_definition().transitions}
    return writes.NewEvent(
        action=step["action"], step=known.get(step["action"]), from_state=from_state,
        to_state=step["to_state"], actor_type="partner", actor_id=f"{partner.code}:{step['officer']}"[:64],
        actor_name=step["officer"][:64], department_id=department_id,
        opinion=step.get("opinion"), occurred_at=datetime.fromisoformat(step["at"]),
        data={"partner": partner.code, "partner_seq": step["seq"], "record_version": version},
    )


def _seal_record(
    session: Session, case: Case, partner: Partner, record: dict[str, Any], head: CaseEvent | None,
    sealed: dict[str, Any] | None, now: datetime, key: str,
) -> None:
    """Seal what the record itself changed (state, deadlines, result) after its steps.

    A step appended by this record is resealed over the final row (it was never committed otherwise);
    a record without new steps that still changes the row gets an event of its own, so no change to
    the case goes unrecorded."""
    if head is not None:
        writes.reseal_head(case, head, key=key)
    elif case_row(case, key=key) != sealed:
        writes.append_step(session, case, writes.NewEvent(
            action="update_record", from_state=sealed["state"] if sealed else None, to_state=case.state,
            actor_type="partner", actor_id=partner.code, actor_name=partner.code[:64],
            department_id=case.department_id, occurred_at=now,
            data={"partner": partner.code, "record_version": record["record_version"]},
        ), key=key)


def _update_from_record(session: Session, case: Case, record: dict[str, Any], now: datetime) -> None:
    if max(s["seq"] for s in record["steps"]) >= case.partner_event_seq:
        case.state = record["state"]  # else single events already took the case further than this record
    case.record_version = record["record_version"]
    case.updated_at = now
    accepted_at = record.get("accepted_at")
    if accepted_at and case.accepted_on is None:
        calendar = load_calendar(session)
        case.accepted_on = business_date(datetime.fromisoformat(accepted_at))
        case.statutory_deadline = compute_deadline(calendar, case.accepted_on, case.statutory_limit_days)
        case.deadline = compute_deadline(calendar, case.accepted_on, case.promised_limit_days)
    if record.get("promised_completion_date"):
        case.deadline = date.fromisoformat(record["promised_completion_date"])
    result = record.get("result")
    if result:
        case.result = result["outcome"]
        case.completed_at = datetime.fromisoformat(result["at"])
        case.decided_at = case.decided_at or case.completed_at


# --- single events --------------------------------------------------------------------------


def _apply_event(
    session: Session, partner: Partner, payload: dict[str, Any], now: datetime, key: str
) -> IngestResult:
    step = payload["step"]
    case = _partner_case(session, partner, payload["external_id"])
    if case is not None and step["seq"] <= case.partner_event_seq:
        return IngestResult("duplicate", case.tracking_no, f"step {step['seq']} already applied")
    if case is None or step["seq"] > case.partner_event_seq + 1:
        _hold(session, partner, payload["external_id"], step, now)
        return IngestResult("held", case.tracking_no if case else None,
                            f"step {step['seq']} waits for its predecessor")
    _append_step(session, case, partner, step, case.record_version, key)
    case.updated_at = now
    _drain_pending(session, case, partner, key)
    _publish(session, case, now)
    return IngestResult("applied", case.tracking_no)


def _hold(session: Session, partner: Partner, external_id: str, step: dict[str, Any], now: datetime) -> None:
    exists = session.scalar(select(PendingEvent).where(
        PendingEvent.partner_code == partner.code, PendingEvent.external_id == external_id,
        PendingEvent.seq == step["seq"]))
    if exists is None:
        session.add(PendingEvent(partner_code=partner.code, external_id=external_id, seq=step["seq"],
                                 step=step, received_at=now))


def _drain_pending(session: Session, case: Case, partner: Partner, key: str) -> None:
    """Apply held steps that now follow on, and drop the ones a full record already covered."""
    session.flush()
    pending = session.scalars(select(PendingEvent).where(
        PendingEvent.partner_code == partner.code, PendingEvent.external_id == case.external_id,
    ).order_by(PendingEvent.seq)).all()
    for held in pending:
        if held.seq == case.partner_event_seq + 1:
            _append_step(session, case, partner, held.step, case.record_version, key)
        if held.seq <= case.partner_event_seq:
            session.execute(delete(PendingEvent).where(PendingEvent.id == held.id))


def _publish(session: Session, case: Case, now: datetime) -> None:
    # A case a city platform completed owes the national system its result, like a hub case.
    deliveries.on_case_change(session, case, "complete" if case.state == "completed" else "report", now)
    outbox.enqueue(session, event_type="case.reported.v1", region_code=case.region_code,
                   payload={**case_event_payload(case), "origin_partner": case.origin_partner},
                   occurred_at=now, correlation_id=case.tracking_no)
