"""Outbound deliveries: what the hub owes partners about cases, recorded with the change, sent later.

* ``on_case_change`` runs inside the case's transaction (called by the case service): a completed case
  of an item marked for national reporting owes its result to every active national partner; a new
  case of a department whose legacy system is configured (an active ``legacy_department`` partner
  with an endpoint) owes that system a push. The delivery row commits with the state change or not at
  all, so nothing is lost between the two.
* ``run_due`` sends what is due through the partner adapters (timeouts, quick tenacity retries of
  retryable failures, one circuit breaker per partner), records the receipt or the error, and puts
  failed deliveries back on the schedule with exponential backoff and jitter until ``max_attempts``.
  Every attempt of one delivery carries the same message id, so a partner can recognise a repeat.
* ``status`` counts deliveries per partner, kind and status and lists recent failures; ``retry``
  puts failed deliveries (chosen ones, or all) back to pending for the next run.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, literal, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from adapters.errors import AdapterError, CircuitOpen, RegistryBusy
from adapters.legacy import LegacyApplicant, LegacyCase, LegacyDepartment
from adapters.national import NationalResult, NationalResults
from adapters.outbound import OutboundContext, Receipt
from adapters.resilience import exponential_backoff_s
from hub.cases.models import Case
from hub.clock import Clock
from hub.db import insert_rows, unit_of_work
from hub.deliveries.models import NO_ENDPOINT_ERROR, Delivery
from hub.exchange import partners
from hub.exchange.models import Partner
from hub.outbox.alerts import Unserialisable, first_unsafe_text, report_withheld

NATIONAL_RESULT = "national_result"
LEGACY_CASE = "legacy_case"
COMPLETED = "completed"
HUB_SYSTEM = "ln-approval-hub"
_ERROR_MAX = 2000

log = logging.getLogger("hub.deliveries")


class Clients(Protocol):
    """Where run_due gets the adapter for a partner (``hub.deliveries.clients.DeliveryClients``)."""

    def national(self, partner: str, endpoint: str) -> NationalResults: ...

    def legacy(self, partner: str, endpoint: str) -> LegacyDepartment: ...


@dataclass(frozen=True)
class DeliveryPolicy:
    """The schedule of automatic re-attempts after a failed send."""

    max_attempts: int = 10
    backoff_initial_s: float = 30.0
    backoff_max_s: float = 6 * 3600.0
    jitter: float = 0.2  # up to +20 %, so many workers do not hit a recovering partner in lockstep

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """Wait after the ``attempts``-th failed attempt: initial·2^(attempts-1), capped, plus jitter."""
        return timedelta(seconds=exponential_backoff_s(attempts, initial_s=self.backoff_initial_s,
                                                       max_s=self.backoff_max_s, jitter_ratio=self.jitter, rng=rng))


DEFAULT_POLICY = DeliveryPolicy()


# --- creation (inside the case's transaction) ---------------------------------------------------


def on_case_change(session: Session, case: Case, action: str, now: datetime) -> list[Delivery]:
    """Record what the change owes partners; called by the case service after every step."""
    return [_create(session, partner, case, kind, now) for partner, kind in owed(session, case, action)]


def owed(session: Session, case: Case, action: str) -> list[tuple[str, str]]:
    """``(partner, kind)`` of the deliveries the change owes, decided by the case as it stands now: no query
    (the process's partner directory), nothing written. `on_case_change` writes them at once;
    `create_owed` writes a batch's at its end."""
    found: list[tuple[str, str]] = []
    if action != "submit" and not (case.state == COMPLETED and case.item.national_reporting):
        return found
    known = partners.directory(session)
    if action == "submit":
        legacy = known.legacy_by_department.get(case.department_id)
        if legacy is not None:
            found.append((legacy, LEGACY_CASE))
    if case.state == COMPLETED and case.item.national_reporting:
        found.extend((code, NATIONAL_RESULT) for code in known.national)
    return found


def create_owed(session: Session, owed_by_case: Iterable[tuple[Case, str, str]], now: datetime) -> None:
    """Write the deliveries ``(case, partner, kind)`` a batch of changes owes, each once: the cases must
    have their ids (flushed). One query finds those that already exist."""
    wanted = {(partner, case.id, kind): case for case, partner, kind in owed_by_case}
    if not wanted:
        return
    case_ids = sorted({case_id for _, case_id, _ in wanted})
    existing = {tuple(row) for row in session.execute(
        select(Delivery.partner_code, Delivery.case_id, Delivery.kind).where(Delivery.case_id.in_(case_ids)))}
    # Rows, not objects: nothing of the batch reads them again, and one statement writes them all (hub/db.py).
    insert_rows(session, DELIVERIES, [
        {"partner_code": partner, "case_id": case_id, "kind": kind, "status": "pending", "message_id": uuid.uuid4(),
         "attempts": 0, "last_error": None, "next_attempt_at": now, "receipt": None, "created_at": now,
         "updated_at": now, "sent_at": None}
        for partner, case_id, kind in wanted if (partner, case_id, kind) not in existing
    ])


DELIVERIES = Delivery.__table__


def _create(session: Session, partner: str, case: Case, kind: str, now: datetime) -> Delivery:
    if case.id is None:  # a case opened in this transaction and not flushed yet: the delivery refers to it
        session.flush()
    existing = session.scalar(select(Delivery).where(
        Delivery.partner_code == partner, Delivery.case_id == case.id, Delivery.kind == kind))
    if existing is not None:
        return existing
    delivery = Delivery(
        partner_code=partner, case_id=case.id, kind=kind, status="pending", message_id=uuid.uuid4(),
        attempts=0, next_attempt_at=now, created_at=now, updated_at=now,
    )
    session.add(delivery)
    return delivery


# --- sending --------------------------------------------------------------------------------------


@dataclass
class RunReport:
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.sent) + len(self.failed)

    def merge(self, other: RunReport) -> None:
        self.sent += other.sent
        self.failed += other.failed


def due_count(session: Session, *, now: datetime) -> int:
    """How many deliveries ``run_due`` would try now (the progress bar's total)."""
    return session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.status.in_(("pending", "failed")), Delivery.next_attempt_at <= now)) or 0


def run_due(session: Session, *, now: datetime, clients: Clients, limit: int = 50,
            policy: DeliveryPolicy = DEFAULT_POLICY, rng: random.Random | None = None) -> RunReport:
    """Send up to ``limit`` due deliveries (oldest due first) and record each outcome; flushes, never
    commits. On PostgreSQL the rows are locked with SKIP LOCKED, so several workers share the work."""
    query = (
        select(Delivery)
        .where(Delivery.status.in_(("pending", "failed")), Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    report = RunReport()
    report.failed.extend(_park_without_endpoint(session, now=now, limit=max(limit, PARK_BATCH)))
    for delivery in session.scalars(query).all():
        if _send(session, delivery, now=now, clients=clients, policy=policy, rng=rng):
            report.sent.append(delivery.id)
        else:
            report.failed.append(delivery.id)
    session.flush()
    return report


def drain(factory: sessionmaker[Session], *, clock: Clock, clients: Clients, batch: int = 20,
          max_batches: int = 50, policy: DeliveryPolicy = DEFAULT_POLICY,
          on_batch: Callable[[RunReport], None] | None = None) -> RunReport:
    """What a worker calls on each tick: ``run_due`` in batches, one committed transaction per batch,
    until nothing is due (or ``max_batches``), so row locks are held only for one batch. ``on_batch``
    hears of each committed batch (`hub deliveries run` shows progress with it)."""
    report = RunReport()
    for _ in range(max_batches):
        with unit_of_work(factory) as session:
            done = run_due(session, now=clock.now(), clients=clients, limit=batch, policy=policy)
        report.merge(done)
        if on_batch is not None:
            on_batch(done)
        if done.total < batch:
            break
    return report


PARK_BATCH = 1000
_NO_ENDPOINT = (NO_ENDPOINT_ERROR + " (partner has no endpoint configured; `hub partners endpoint {code} <WSDL URL>` "
                "sends what waits)")


def _no_endpoint_error(code: str) -> str:
    """Why a delivery waits parked: its partner has no endpoint (the one wording, here and in SQL)."""
    return _NO_ENDPOINT.format(code=code)


def _park_without_endpoint(session: Session, *, now: datetime, limit: int) -> list[int]:
    """Park, in one statement, the due deliveries of active partners without an endpoint, as `_send` would one by
    one: no Delivery, Partner or Case loaded per row (a national partner not yet connected owes one delivery per
    completed case, and the worker parked each of them at ≈0.35 ms per record in bench.ingest)."""
    no_endpoint = select(Partner.code).where(Partner.active.is_(True),
                                             or_(Partner.endpoint.is_(None), Partner.endpoint == ""))
    due = (select(Delivery.id)
           .where(Delivery.status.in_(("pending", "failed")), Delivery.next_attempt_at <= now,
                  Delivery.partner_code.in_(no_endpoint))
           .order_by(Delivery.next_attempt_at, Delivery.id).limit(limit).with_for_update(skip_locked=True))
    head, _, tail = _NO_ENDPOINT.partition("{code}")
    error = literal(head) + Delivery.partner_code + literal(tail)  # `_no_endpoint_error`, written by PostgreSQL
    parked = session.execute(
        update(Delivery).where(Delivery.id.in_(due.scalar_subquery()))
        .values(status="failed", last_error=error, next_attempt_at=None, updated_at=now)
        .returning(Delivery.id).execution_options(synchronize_session=False))
    return [row[0] for row in parked]


def _send(session: Session, delivery: Delivery, *, now: datetime, clients: Clients, policy: DeliveryPolicy,
          rng: random.Random | None) -> bool:
    delivery.updated_at = now
    partner = session.get(Partner, delivery.partner_code)
    case = session.get(Case, delivery.case_id)
    if partner is None or not partner.active or case is None:
        _failed(delivery, "交换伙伴已停用 (partner inactive or unknown); deliveries to it are not retried",
                now=now, retry_in=None, count=False)
        return False
    if not partner.endpoint:
        # Parked, not retried on a timer: nothing can change until an operator sets the endpoint, and every
        # worker re-reading a growing backlog every 30 s cost more than the records it was receiving (bench.ingest).
        # `set_endpoint` puts the partner's parked deliveries back to pending.
        _failed(delivery, _no_endpoint_error(partner.code), now=now, retry_in=None, count=False)
        return False
    try:
        message = _message(delivery, case)
    except NotReportable as exc:
        _not_reportable(session, delivery, case, exc, now=now, policy=policy, rng=rng)
        return False
    except Exception as exc:  # a bug building the message must not stop the other deliveries
        log.exception("delivery %s to %s could not be built", delivery.id, partner.code)
        _failed(delivery, f"内部错误 (internal error building the message: {type(exc).__name__}); fix and retry",
                now=now, retry_in=None, count=True)
        return False
    problem = unserialisable(message)
    if problem is not None:
        # Sending cannot succeed until the case is corrected: no retries, a clear reason and an alert.
        _failed(delivery, f"办件含有无法在XML中传输的内容，未发送 (unserialisable case, {problem.describe()}); correct "
                          f"the case, then `hub deliveries retry {delivery.id}`", now=now, retry_in=None, count=False)
        report_withheld(session, case, channel=f"delivery.{delivery.kind}", problem=problem, now=now)
        return False
    try:
        receipt = _deliver(delivery, partner, case, message, clients)
    except AdapterError as exc:
        _record_failure(delivery, exc, now=now, policy=policy, rng=rng)
        log.warning("delivery %s to %s failed: %s", delivery.id, partner.code, exc.message,
                    extra={"tracking_no": case.tracking_no, "action": delivery.kind, "status": delivery.status})
        return False
    except Exception as exc:  # a bug building the message must not stop the other deliveries
        log.exception("delivery %s to %s could not be built", delivery.id, partner.code)
        _failed(delivery, f"内部错误 (internal error building the message: {type(exc).__name__}); fix and retry",
                now=now, retry_in=None, count=True)
        return False
    delivery.status = "sent"
    delivery.attempts += 1
    delivery.receipt = receipt.id[:128]
    delivery.sent_at = now
    delivery.next_attempt_at = None
    delivery.last_error = None
    log.info("delivery %s to %s sent (receipt %s%s)", delivery.id, partner.code, receipt.id,
             ", duplicate" if receipt.duplicate else "",
             extra={"tracking_no": case.tracking_no, "action": delivery.kind, "status": "sent"})
    return True


class NotReportable(ValueError):
    """The case does not (yet) hold what the message needs (a national result without a result or a
    completion time): not a bug, a fact about the case that a later record may still change."""

    def __init__(self, case: Case) -> None:
        self.result, self.completed_at = case.result, case.completed_at
        super().__init__(f"case {case.tracking_no} has no reportable result (result {case.result!r}, "
                         f"completed_at {case.completed_at.isoformat() if case.completed_at else None})")


NOT_REPORTABLE_RULE = "procedure.delivery_not_reportable"


def _not_reportable(session: Session, delivery: Delivery, case: Case, exc: NotReportable, *, now: datetime,
                    policy: DeliveryPolicy, rng: random.Random | None) -> None:
    """A visible failure with its reason (`hub deliveries` lists it), tried again on the schedule — a later
    record of the case may bring the result — until the attempts run out; and an alert on the case, once, so
    supervision sees a completed case whose result the national system never got (issue 13)."""
    from hub.supervision.findings import Finding
    from hub.supervision.service import raise_findings

    delivery.attempts += 1
    keep_trying = delivery.attempts < policy.max_attempts
    _failed(delivery, f"办件缺少可上报的办理结果，未发送 (not reportable: {exc}); the case needs a result "
                      f"(granted/denied) and a completion time, then `hub deliveries retry {delivery.id}`",
            now=now, retry_in=policy.delay(delivery.attempts, rng) if keep_trying else None, count=False)
    log.warning("delivery %s to %s not sent: %s", delivery.id, delivery.partner_code, exc,
                extra={"tracking_no": case.tracking_no, "action": delivery.kind, "status": delivery.status})
    raise_findings(session, case=case, now=now, findings=[Finding(
        rule=NOT_REPORTABLE_RULE, kind="procedure", level="yellow",
        message="办件已办结但缺少办理结果，未能向国家平台报送",
        detail={"delivery_id": delivery.id, "partner": delivery.partner_code, "kind": delivery.kind,
                "result": exc.result, "completed": exc.completed_at is not None},
    )])


def _message(delivery: Delivery, case: Case) -> NationalResult | LegacyCase:
    if delivery.kind == NATIONAL_RESULT:
        return national_result(case, delivery)
    if delivery.kind == LEGACY_CASE:
        return legacy_case(case, delivery)
    raise ValueError(f"unknown delivery kind {delivery.kind!r}")


def unserialisable(message: NationalResult | LegacyCase) -> Unserialisable | None:
    """Why ``message`` cannot be sent as XML (characters XML 1.0 cannot hold, or a blank applicant name
    that the partner's XSD refuses), or None."""
    unsafe = first_unsafe_text(message)
    if unsafe is not None:
        return unsafe
    if isinstance(message, LegacyCase) and not message.applicant.name.strip():
        return Unserialisable("applicant.name", "not_blank")
    return None


def _deliver(delivery: Delivery, partner: Partner, case: Case, message: NationalResult | LegacyCase,
             clients: Clients) -> Receipt:
    endpoint = str(partner.endpoint)
    if isinstance(message, NationalResult):
        context = OutboundContext(str(delivery.message_id), on_behalf_of=case.department.key, case=case.tracking_no)
        return clients.national(partner.code, endpoint).submit_result(message, context=context)
    context = OutboundContext(str(delivery.message_id), on_behalf_of=HUB_SYSTEM, case=case.tracking_no)
    return clients.legacy(partner.code, endpoint).receive_case(message, context=context)


def _record_failure(delivery: Delivery, exc: AdapterError, *, now: datetime, policy: DeliveryPolicy,
                    rng: random.Random | None) -> None:
    error = f"{type(exc).__name__}: {exc.message}"
    if isinstance(exc, CircuitOpen | RegistryBusy):
        # Nothing went out: not an attempt; come back when the breaker lets a trial through.
        wait = timedelta(seconds=max(getattr(exc, "retry_after_s", 0.0), 1.0))
        _failed(delivery, error, now=now, retry_in=wait, count=False)
        return
    delivery.attempts += 1
    keep_trying = exc.retryable and delivery.attempts < policy.max_attempts
    _failed(delivery, error, now=now, retry_in=policy.delay(delivery.attempts, rng) if keep_trying else None,
            count=False)


def _failed(delivery: Delivery, error: str, *, now: datetime, retry_in: timedelta | None, count: bool) -> None:
    delivery.status = "failed"
    if count:
        delivery.attempts += 1
    delivery.last_error = error[:_ERROR_MAX]
    delivery.next_attempt_at = now + retry_in if retry_in is not None else None
    delivery.updated_at = now


# --- the messages ---------------------------------------------------------------------------------


def national_result(case: Case, delivery: Delivery) -> NationalResult:
    if case.result not in ("granted", "denied") or case.completed_at is None:
        raise NotReportable(case)
    return NationalResult(
        message_id=str(delivery.message_id), case_number=case.tracking_no,
        item_national_code=case.item.national_code, item_code=case.item.code, item_name=case.item.name,
        region=case.region_code, department_credit_code=case.department.credit_code,
        department_name=case.department.name, applicant_type=case.applicant_type,
        result=case.result,  # type: ignore[arg-type]
        completed_at=case.completed_at, accepted_on=case.accepted_on, decided_at=case.decided_at,
    )


def legacy_case(case: Case, delivery: Delivery) -> LegacyCase:
    return LegacyCase(
        message_id=str(delivery.message_id), tracking_no=case.tracking_no, item_code=case.item.code,
        item_name=case.item.name, national_code=case.item.national_code, region=case.region_code,
        department=case.department.key, department_name=case.department.name, channel=case.channel,
        state=case.state, submitted_at=case.submitted_at, promised_limit_days=case.promised_limit_days,
        statutory_limit_days=case.statutory_limit_days, intake_deadline=case.intake_deadline,
        applicant=LegacyApplicant(
            type=case.applicant_type, name=case.applicant_name, id_type=case.applicant_id_type,
            id_number=case.applicant_id_number, phone=case.applicant_phone, region=case.applicant_region_code,
        ),
        form_json=json.dumps(case.form_data, ensure_ascii=False, sort_keys=True),
    )


# --- operating ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountRow:
    partner: str
    kind: str
    status: str
    count: int


@dataclass(frozen=True)
class FailureRow:
    id: int
    partner: str
    kind: str
    tracking_no: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None  # None: the hub gave up; `retry` puts it back
    updated_at: datetime

    @property
    def gave_up(self) -> bool:
        return self.next_attempt_at is None


@dataclass(frozen=True)
class DeliveryStatus:
    counts: list[CountRow]
    failures: list[FailureRow]

    def count(self, *, partner: str | None = None, kind: str | None = None, status: str | None = None) -> int:
        return sum(r.count for r in self.counts
                   if (partner is None or r.partner == partner) and (kind is None or r.kind == kind)
                   and (status is None or r.status == status))

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": [asdict(r) for r in self.counts],
            "failures": [{**asdict(r), "gave_up": r.gave_up,
                          "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
                          "updated_at": r.updated_at.isoformat()} for r in self.failures],
        }


def status(session: Session, *, recent: int = 20) -> DeliveryStatus:
    """Counts per partner, kind and status, and the most recently updated failures."""
    rows = session.execute(
        select(Delivery.partner_code, Delivery.kind, Delivery.status, func.count())
        .group_by(Delivery.partner_code, Delivery.kind, Delivery.status)
        .order_by(Delivery.partner_code, Delivery.kind, Delivery.status)
    ).all()
    failures = session.execute(
        select(Delivery, Case.tracking_no).join(Case, Case.id == Delivery.case_id)
        .where(Delivery.status == "failed")
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc()).limit(recent)
    ).all()
    return DeliveryStatus(
        counts=[CountRow(partner, kind, state, int(n)) for partner, kind, state, n in rows],
        failures=[FailureRow(d.id, d.partner_code, d.kind, tracking_no, d.attempts, d.last_error, d.next_attempt_at,
                             d.updated_at) for d, tracking_no in failures],
    )


def retry(session: Session, *, now: datetime, ids: Iterable[int] | None = None) -> int:
    """Put failed deliveries (the given ids, or every failed one) back to pending, due now, with a fresh
    attempt budget. Returns how many were reset; ids that are not failed are left alone."""
    query = update(Delivery).where(Delivery.status == "failed")
    if ids is not None:
        wanted = list(ids)
        if not wanted:
            return 0
        query = query.where(Delivery.id.in_(wanted))
    result = session.execute(
        query.values(status="pending", next_attempt_at=now, attempts=0, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def deliveries_of(session: Session, case: Case) -> list[Delivery]:
    return list(session.scalars(select(Delivery).where(Delivery.case_id == case.id).order_by(Delivery.id)))
