"""Inbound exchange: partner records and events become cases in the one case model.

Idempotent twice over: by message id (the inbox) and by record version / step sequence, so a
redelivered, repeated or older message changes nothing.
"""

from __future__ import annotations

import functools
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import ARRAY, String, any_, bindparam, delete, func, select, text, true, tuple_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, defer, joinedload

from hub.audit.service import case_row
from hub.calendar.service import load_calendar
from hub.cases import clock, tracking, writes
from hub.cases.models import Case
from hub.cases.service import DECISIONS, case_event_payload
from hub.catalog import service as catalog
from hub.catalog.models import Item
from hub.clock import business_date
from hub.db import begin_for_savepoints, insert_rows
from hub.deliveries import service as deliveries
from hub.exchange import checks
from hub.exchange.checks import RecordRejected, special_procedure_kind
from hub.exchange.models import InboxMessage, Partner, PendingEvent
from hub.exchange.partners import find_partner
from hub.org.service import is_within
from hub.outbox import service as outbox
from hub.outbox.models import OutboxMessage
from hub.payments import fees
from hub.supervision import ratings
from hub.supervision.models import Rating
from hub.validation import shared_errors
from workflow.clock import Suspension
from workflow.definition import standard_definition

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

    Every check runs before the first write, so a rejected message leaves nothing behind."""
    checked = check(session, envelope=envelope, authenticated_source=authenticated_source)
    if _already_applied(session, checked.partner.code, checked.message_id):
        return IngestResult("duplicate", detail="message_id already applied")
    return _apply(session, checked, now, audit_key)


@dataclass(frozen=True)
class Applied:
    """What became of one envelope of a batch: a result, a rejection, or another failure (``error``: its
    savepoint was rolled back, the rest of the batch stands)."""

    result: IngestResult | None = None
    rejected: RecordRejected | None = None
    error: Exception | None = None
    # Not applied: another worker holds its case (its advisory lock) until that worker commits. The consumer
    # keeps the delivery and hands it over again with its next batch (adapters/amqp Outcome.DEFER).
    deferred: bool = False


@dataclass
class IngestTally:
    """What a consumer's batches came to since it started (issue 8, part shards): how often two workers'
    batches met on a case. ``deferred`` counts each hand-over again (one record deferred twice counts twice);
    ``lock_waits`` the batches whose every case another worker held, and ``lock_wait_s`` the time they waited.
    Shown in the worker's heartbeat file (``inbound``); shared by a consumer's lanes, so updated under a lock."""

    batches: int = 0
    records: int = 0  # deliveries handed to the handler, a deferred one each time it is handed over
    acked: int = 0
    deferred: int = 0
    rejected: int = 0
    retried: int = 0
    lock_waits: int = 0
    lock_wait_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {"batches": self.batches, "records": self.records, "acked": self.acked,
                    "deferred": self.deferred, "rejected": self.rejected, "retried": self.retried,
                    "lock_waits": self.lock_waits, "lock_wait_s": round(self.lock_wait_s, 3)}


def ingest_batch(
    session: Session, *, envelopes: Sequence[tuple[Any, str]], now: datetime, audit_key: str,
    tally: IngestTally | None = None,
) -> list[Applied]:
    """Apply ``(envelope, authenticated source)`` pairs in one transaction; the caller commits.

    The look-ups every message needs are made once for the batch: partners, the inbox rows of its message
    ids, its items (without their guide and form blobs) and its partner cases. On PostgreSQL the advisory
    locks of its partner cases are tried first, in one statement, without waiting: a message whose case
    another worker holds is not applied but deferred (``Applied.deferred``), so two workers whose batches
    share cases do not wait for each other's commits (a convoy); the consumer hands it over again with its
    next batch. Only when every case of the batch is held elsewhere does it wait for them, all in one
    statement and in a fixed order (no deadlock), as there is nothing else to do.

    Optimistic first (`_apply_optimistically`): every check runs before a message's first write, so the
    batch is applied in one SAVEPOINT, not one per message, and flushed once (its inserts batched per
    table). Only if a write fails is that savepoint rolled back and the batch applied again with a
    SAVEPOINT per message (`_apply_one_by_one`): a message that fails is rolled back to its savepoint and
    reported, the others stand. If rolling back a savepoint fails (the connection is gone), that exception
    propagates: the caller rolls back the whole transaction.

    ``tally``: where a batch that had to wait for its cases' locks notes it (and for how long)."""
    begin_for_savepoints(session)
    cache = _BatchCache(tally=tally)
    session.info[_CACHE_KEY] = cache
    try:
        _prefetch(session, cache, envelopes)
        outcomes, failed = _apply_optimistically(session, cache, envelopes, now, audit_key)
        if outcomes is not None:
            return outcomes
        return _apply_one_by_one(session, cache, envelopes, now, audit_key, failed)
    finally:
        session.info.pop(_CACHE_KEY, None)
        ratings.forget_prefetched_ratings(session)


def _apply_optimistically(
    session: Session, cache: _BatchCache, envelopes: Sequence[tuple[Any, str]], now: datetime, audit_key: str,
) -> tuple[list[Applied] | None, dict[int, Applied]]:
    """The whole batch in one savepoint and one flush: its outcomes, or None and what failed by itself.

    A message refused by a check wrote nothing, so it needs no savepoint of its own. When a message's own
    code raises (not a flush: that may hold other messages' writes), the batch is rolled back and that
    message's outcome is its failure, as its own savepoint would have made it: it is not applied again
    (a transient failure is retried alone, a defect dead-lettered alone)."""
    before = cache.snapshot()
    outcomes: list[Applied] = []
    inbox: list[tuple[CheckedMessage, IngestResult, Case | None]] = []
    failed: dict[int, Applied] = {}
    updated: list[Case] = []
    inserted: list[Any] = []
    cache.owed, cache.outbox = [], []
    # The batch's steps as plain values, written by ``insert_added`` below (hub/cases/writes.py `plain_steps`).
    writes.plain_steps(session)
    try:
        with session.begin_nested():
            for index, (envelope, source) in enumerate(envelopes):
                if cache.held_elsewhere(envelope, source):
                    outcomes.append(Applied(deferred=True))
                    continue
                try:
                    checked = check(session, envelope=envelope, authenticated_source=source)
                except RecordRejected as exc:
                    outcomes.append(Applied(rejected=exc))
                    continue
                if _already_applied(session, checked.partner.code, checked.message_id):
                    outcomes.append(Applied(result=IngestResult("duplicate", detail="message_id already applied")))
                    continue
                try:
                    result, case = _apply_writes(session, checked, now, audit_key)
                except Exception as exc:
                    if not _raised_by_flush(exc):
                        failed[index] = Applied(rejected=exc) if isinstance(exc, RecordRejected) else Applied(
                            error=exc)
                    raise
                inbox.append((checked, result, case))
                cache.applied((checked.partner.code, checked.message_id))
                outcomes.append(Applied(result=result))
            # The batch's existing cases in one statement (their lock_version checked in it), then the rest of
            # the batch — new cases and steps — in one flush, batched per table.
            updated = writes.update_cases(session, (c for c in cache.cases.values() if c is not None))
            # New cases and events: one statement per table, not the ORM's INSERTs (hub/cases/writes.py).
            inserted = writes.insert_added(session)
            # The records' ratings of their completed cases, likewise (after their new cases: they refer to them).
            inserted += writes.insert_added_of_cases(session, Rating, key=("service_event",))
            session.flush()
            # After the flush: a new case has its id now.
            deliveries.create_owed(session, cache.owed, now)
            insert_rows(session, OUTBOX, cache.outbox)
            insert_rows(session, INBOX, [_inbox_values(checked, result, case, now)
                                          for checked, result, case in inbox])
            session.flush()
    except Exception:
        cache.owed = cache.outbox = None
        writes.forget_plain_steps(session, inserted)
        writes.end_plain_steps(session)
        if not _transaction_usable(session):
            raise
        for obj in inserted:  # made persistent outside the ORM's flush: its rows were rolled back
            if type(obj) is not writes.StepRow and obj in session:
                session.expunge(obj)
        cache.restore(before)
        cache.forget_rolled_back(session)
        for case in updated:  # written outside the ORM's flush, rolled back with the savepoint: read them again
            session.expire(case)
        return None, failed
    cache.owed = cache.outbox = None
    writes.end_plain_steps(session)
    return outcomes, failed


def _apply_one_by_one(
    session: Session, cache: _BatchCache, envelopes: Sequence[tuple[Any, str]], now: datetime, audit_key: str,
    failed: dict[int, Applied],
) -> list[Applied]:
    """Each message in its own SAVEPOINT (the optimistic batch failed); ``failed``: outcomes already known."""
    outcomes = []
    for index, (envelope, source) in enumerate(envelopes):
        if index in failed:
            outcomes.append(failed[index])
            continue
        if cache.held_elsewhere(envelope, source):
            outcomes.append(Applied(deferred=True))
            continue
        try:
            with session.begin_nested():  # released on success, rolled back on any exception
                result = ingest(session, envelope=envelope, authenticated_source=source, now=now,
                                audit_key=audit_key)
        except Exception as exc:
            if not _transaction_usable(session):
                raise  # the savepoint's rollback failed, or the connection is gone: the batch fails
            cache.forget_rolled_back(session)
            if isinstance(exc, RecordRejected):
                outcomes.append(Applied(rejected=exc))
            else:
                outcomes.append(Applied(error=exc))
            continue
        cache.applied(_inbox_key(envelope, source))
        outcomes.append(Applied(result=result))
    return outcomes


def _raised_by_flush(exc: BaseException) -> bool:
    # A flush writes whatever the session holds, earlier messages' rows too: its failure names no message.
    return any(frame.f_code is _FLUSH_CODE for frame, _ in traceback.walk_tb(exc.__traceback__))


_FLUSH_CODE = Session._flush.__code__


def _transaction_usable(session: Session) -> bool:
    transaction = session.get_transaction()
    if transaction is None or not transaction.is_active or session.in_nested_transaction():
        return False
    connection = session.connection()
    return not connection.invalidated and not connection.closed


# --- what a batch looks up once -------------------------------------------------------------------

_CACHE_KEY = "hub.exchange.batch"
# A case look-up needs the item's code, region and flags, never its guide and form (kilobytes of JSON each).
_ITEM_BLOBS = (defer(Item.guide), defer(Item.form_schema), defer(Item.search_text))
_CASE_OPTIONS = (joinedload(Case.item).options(*_ITEM_BLOBS),)


@dataclass
class _BatchCache:
    """Look-ups made once per batch (``session.info``): what a message of the batch would otherwise query."""

    inbox: set[tuple[str, uuid.UUID]] | None = None  # applied (partner, message id) pairs; None: not fetched
    cases: dict[tuple[str, str], Case | None] = field(default_factory=dict)  # absent key: not fetched
    locked: set[str] = field(default_factory=set)
    contended: set[str] = field(default_factory=set)  # lock keys another worker holds: their messages wait
    # Partner cases -> whether held events may wait for them; absent: not fetched. Most have none, and then
    # a message needs neither the flush nor the SELECT that looking for them costs.
    held: dict[tuple[str, str], bool] = field(default_factory=dict)
    # Deliveries the batch's changes owe (case, partner, kind), while an optimistic batch runs: written once
    # after its flush (the new cases have ids then), not each with a flush and a query of its own.
    owed: list[tuple[Case, str, str]] | None = None
    # Its outbox rows likewise, as plain values (``outbox.message_row``): one statement for the batch's, not rows
    # of the ORM's flush.
    outbox: list[dict[str, Any]] | None = None
    # Reference look-ups of the checks, once per batch (reference data does not change within one).
    partners: dict[str, Partner | None] = field(default_factory=dict)
    within: dict[tuple[str, str], bool] = field(default_factory=dict)
    items: dict[str, Item | None] = field(default_factory=dict)
    tally: IngestTally | None = None  # the consumer's: lock waits are noted there

    def snapshot(self) -> tuple[set[tuple[str, uuid.UUID]] | None, dict[Any, Any], dict[Any, Any]]:
        return (set(self.inbox) if self.inbox is not None else None), dict(self.cases), dict(self.held)

    def restore(self, snapshot: tuple[set[tuple[str, uuid.UUID]] | None, dict[Any, Any], dict[Any, Any]]) -> None:
        self.inbox, self.cases, self.held = snapshot

    def applied(self, key: tuple[str, uuid.UUID] | None) -> None:
        if key is not None and self.inbox is not None:
            self.inbox.add(key)

    def held_elsewhere(self, envelope: Any, source: str) -> bool:
        """Whether the message is about a partner case whose lock another worker holds."""
        if not self.contended:
            return False
        key = _case_key(envelope, source)
        return key is not None and _lock_key(*key) in self.contended

    def forget_rolled_back(self, session: Session) -> None:
        # A case created in a rolled-back savepoint is gone: look it up again next time.
        self.cases = {k: c for k, c in self.cases.items() if c is None or c in session}


def _batch_cache(session: Session) -> _BatchCache | None:
    return session.info.get(_CACHE_KEY)


def _inbox_key(envelope: Any, source: str) -> tuple[str, uuid.UUID] | None:
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message_id"), str):
        return None
    try:
        return source, uuid.UUID(envelope["message_id"])
    except ValueError:
        return None


def _case_key(envelope: Any, source: str) -> tuple[str, str] | None:
    """(partner, external id) of the case a message is about, as far as the raw envelope tells."""
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    external_id = payload.get("external_id") if isinstance(payload, dict) else None
    if not _texts([source]) or external_id not in _texts([external_id]):
        return None
    return source, external_id


def _texts(values: Iterable[Any]) -> list[str]:
    # Only what could be a key: a message's garbage must not fail the batch's look-up.
    return sorted({v for v in values if isinstance(v, str) and 0 < len(v) <= 64 and "\x00" not in v})


def _prefetch(session: Session, cache: _BatchCache, envelopes: Sequence[tuple[Any, str]]) -> None:
    """One query per kind for the whole batch (partners and items come from the process's reference cache,
    hub/refcache.py); in a savepoint of its own, so that if one fails (it should
    not) the batch goes on with per-message look-ups."""
    inbox_keys = [k for k in (_inbox_key(e, s) for e, s in envelopes) if k is not None]
    case_keys = sorted({k for k in (_case_key(e, s) for e, s in envelopes) if k is not None})
    try:
        with session.begin_nested():
            if inbox_keys:
                cache.inbox = {(p, m) for p, m in _execute_for_pairs(session, "inbox", inbox_keys)}
            # Before reading the cases: then no other worker changes them. Cases held elsewhere are not read.
            _lock_cases(session, cache, case_keys)
            case_keys = [k for k in case_keys if _lock_key(*k) not in cache.contended]
            if case_keys:
                found = {(c.origin_partner, c.external_id): c
                         for c in _execute_for_pairs(session, "cases", case_keys).scalars()}
                cache.cases = {k: found.get(k) for k in case_keys}
                waiting = {(p, x) for p, x in _execute_for_pairs(session, "held", case_keys)}
                cache.held = {k: k in waiting for k in case_keys}
                rated = {k for k in (_case_key(e, s) for e, s in envelopes if _carries_rating(e)) if k is not None}
                if rated:
                    ratings.prefetch_partner_ratings(session, [c.id for k, c in cache.cases.items()
                                                               if c is not None and k in rated])
    except DBAPIError:
        cache.inbox, cache.cases, cache.locked, cache.held, cache.contended = None, {}, set(), {}, set()
        return
    tracking.reserve_for(session, _numbers_needed(session, cache, envelopes))


def _numbers_needed(session: Session, cache: _BatchCache, envelopes: Sequence[tuple[Any, str]]
                    ) -> dict[tuple[str, date], int]:
    """The tracking numbers the batch's new partner cases will take, by their item's region and the day they
    were submitted: a record about a case the batch found no row of, as far as its raw envelope tells (the
    checks come later; a number reserved for a record they refuse is a gap)."""
    new_cases: dict[tuple[str, str], tuple[str, date]] = {}
    for envelope, source in envelopes:
        key = _case_key(envelope, source)
        if key is None or cache.cases.get(key, False) is not None or envelope.get("type") != "case-record":
            continue
        payload = envelope["payload"]
        try:
            item = _find_item(session, payload["item_code"])
            day = business_date(datetime.fromisoformat(payload["submitted_at"]))
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
        if item is not None and item.region_code == payload.get("region"):
            new_cases[key] = (item.region_code, day)
    needs: dict[tuple[str, date], int] = {}
    for region_day in new_cases.values():
        needs[region_day] = needs.get(region_day, 0) + 1
    return needs


def _carries_rating(envelope: Any) -> bool:
    """Whether a raw envelope's record has a satisfaction rating (``result.satisfaction``) to store."""
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    result = payload.get("result") if isinstance(payload, dict) else None
    return isinstance(result, dict) and result.get("satisfaction") is not None


def _execute_for_pairs(session: Session, kind: str, pairs: Sequence[tuple[Any, Any]]) -> Any:
    """One of the batch's look-ups by (partner, key) pairs: on SQLite ``(first, second) IN pairs``; on PostgreSQL
    the pairs as two array parameters unnested and probed one by one (``_probe``, ``_PROBES``): a short
    statement of two parameters whatever the batch, which psycopg parses once
    and the server keeps prepared (an expanded ``IN ((…), (…))`` of a hundred parameters is a new statement to
    parse and plan for every batch size); and built once per process, its arrays given at execution — building
    and keying it anew for each batch cost more than running it."""
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(_pairs_statement(kind, None), {"first": [a for a, _ in pairs],
                                                              "second": [b for _, b in pairs]})
    return session.execute(_pairs_statement(kind, tuple(pairs)))


def _pairs_statement(kind: str, pairs: tuple[tuple[Any, Any], ...] | None) -> Any:
    """The look-up ``kind`` of ``_execute_for_pairs``; ``pairs`` None: PostgreSQL's, cached, parameters unbound."""
    if pairs is None:
        return _cached_pairs_statement(kind)
    return _PAIRS_LOOKUPS[kind](lambda first, second: tuple_(first, second).in_(pairs))


@functools.cache
def _cached_pairs_statement(kind: str) -> Any:
    return _PROBES[kind]()


def _unnested_pairs(first: Any, second: Any) -> Any:
    """The batch's pairs as a derived table ``pairs(a, b)``: two array parameters unnested."""
    return func.unnest(bindparam("first", type_=ARRAY(first.type)), bindparam("second", type_=ARRAY(second.type))
                       ).table_valued("a", "b").render_derived(name="pairs")


def _probe(first: Any, second: Any, *columns: Any) -> Any:
    """``columns`` of the one row (or none) whose (``first``, ``second``) is a pair of ``pairs``, one index probe
    per pair: a LATERAL subquery the LIMIT keeps from being flattened into a join, so the planner can only run
    it once per pair, by the unique index the two columns lead. As ``(first, second) IN (SELECT … FROM
    unnest(…))`` the plan depended on the table's statistics: on a table growing faster than autovacuum
    analyses it (a fresh system, a bulk load, every benchmark round) it hashed the pairs against a sequential
    scan of the whole table — its cost growing with the table (docs/performance-postgres-side.md)."""
    pairs = _unnested_pairs(first, second)
    return select(*columns).where(first == pairs.c.a, second == pairs.c.b).limit(1).lateral("m"), pairs


def _pairs_probe(first: Any, second: Any) -> Any:
    """The pairs of the batch that have a row: for "held", LIMIT 1 of a partner case's pending events says
    whether it has any, which is what the SQLite statement's DISTINCT pairs give."""
    found, pairs = _probe(first, second, first, second)
    return select(found.c[first.name], found.c[second.name]).select_from(pairs).join(found, true())


def _cases_probe() -> Any:
    # The cases' ids probed pair by pair, then the cases (with their items) read by primary key: the array of
    # ids is computed before the outer scan, whose planner sees an ``= ANY`` of a few values, never a join.
    found, pairs = _probe(Case.origin_partner, Case.external_id, Case.id)
    ids = select(found.c.id).select_from(pairs).join(found, true()).scalar_subquery()
    return select(Case).where(Case.id == any_(func.array(ids))).options(*_CASE_OPTIONS)


_PROBES: dict[str, Any] = {
    "inbox": lambda: _pairs_probe(InboxMessage.partner_code, InboxMessage.message_id),
    "cases": _cases_probe,
    "held": lambda: _pairs_probe(PendingEvent.partner_code, PendingEvent.external_id),
}

_PAIRS_LOOKUPS: dict[str, Any] = {
    "inbox": lambda pairs_in: select(InboxMessage.partner_code, InboxMessage.message_id).where(
        pairs_in(InboxMessage.partner_code, InboxMessage.message_id)),
    "cases": lambda pairs_in: select(Case).where(pairs_in(Case.origin_partner, Case.external_id))
    .options(*_CASE_OPTIONS),
    "held": lambda pairs_in: select(PendingEvent.partner_code, PendingEvent.external_id).distinct().where(
        pairs_in(PendingEvent.partner_code, PendingEvent.external_id)),
}


def _lock_cases(session: Session, cache: _BatchCache, case_keys: Sequence[tuple[str, str]]) -> None:
    """Take the batch's case locks that are free now (``cache.locked``) and note those another worker holds
    (``cache.contended``); if every one is held elsewhere, wait for them all."""
    if session.get_bind().dialect.name != "postgresql" or not case_keys:
        return
    keys = sorted(_lock_key(partner, external_id) for partner, external_id in case_keys)
    contended = set(session.scalars(_TRY_LOCKS, {"keys": keys}))
    if contended and len(contended) == len(keys):
        # Nothing of the batch can go ahead: wait, as a batch whose cases are all busy must. In the keys' order
        # (WITH ORDINALITY … ORDER BY): every worker takes overlapping locks in the same order, and one that
        # waits holds none of the batch's locks (it got none), so two workers never wait for each other.
        started = time.perf_counter()
        session.execute(_LOCKS, {"keys": keys})
        if cache.tally is not None:
            cache.tally.add(lock_waits=1, lock_wait_s=time.perf_counter() - started)
        contended = set()
    cache.locked.update(k for k in keys if k not in contended)
    cache.contended = contended


_KEYS = bindparam("keys", type_=ARRAY(String()))
_LOCKS = text("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(:keys) WITH ORDINALITY AS t(k, n) "
              "ORDER BY n").bindparams(_KEYS)
# The keys whose lock another transaction holds; every other one is taken (until commit) as a side effect.
_TRY_LOCKS = text("SELECT k FROM unnest(:keys) AS t(k) WHERE NOT pg_try_advisory_xact_lock(hashtextextended(k, 0))"
                  ).bindparams(_KEYS)


def _already_applied(session: Session, partner_code: str, message_id: uuid.UUID) -> bool:
    cache = _batch_cache(session)
    if cache is not None and cache.inbox is not None:
        return (partner_code, message_id) in cache.inbox
    return session.get(InboxMessage, (partner_code, message_id)) is not None


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
    result, case = _apply_writes(session, checked, now, key)
    session.add(_inbox_row(checked, result, case, now))
    session.flush()
    return result


def _apply_writes(
    session: Session, checked: CheckedMessage, now: datetime, key: str
) -> tuple[IngestResult, Case | None]:
    """A checked message's writes (not its inbox row), left to the session's next flush; and its case."""
    partner, payload = checked.partner, checked.payload
    _serialise_case(session, partner, payload["external_id"])
    if checked.item is not None:
        result = _apply_record(session, partner, checked.item, payload, now, key)
        _forget_if_absent(session, partner.code, payload["external_id"])  # it may have created the case
    else:
        result = _apply_event(session, partner, payload, now, key)
    return result, _partner_case(session, partner, payload["external_id"])


def _inbox_values(checked: CheckedMessage, result: IngestResult, case: Case | None, now: datetime
                  ) -> dict[str, Any]:
    """An inbox row's values: a batch writes them in one INSERT (no object for a row that is only written)."""
    return {"partner_code": checked.partner.code, "message_id": checked.message_id, "type": checked.record_type,
            "outcome": result.outcome, "case_id": case.id if case else None, "received_at": now}


def _inbox_row(checked: CheckedMessage, result: IngestResult, case: Case | None, now: datetime) -> InboxMessage:
    return InboxMessage(**_inbox_values(checked, result, case, now))


def _check_schema(schema: str, document: Any, prefix: str) -> None:
    errors = shared_errors(schema, document, prefix=prefix)
    if errors:
        first = errors[0]
        raise RecordRejected("schema", f"{first.field}: {first.message}"[:500], field=first.field,
                             rule=first.rule)


def _authorised_partner(session: Session, envelope: dict[str, Any], source: str) -> Partner:
    if envelope["source"] != source:
        raise RecordRejected("source_mismatch", f"envelope.source {envelope['source']} is not the authenticated "
                             f"sender {source}", field="envelope.source", rule="equals_authenticated_sender")
    partner = _find_partner(session, source)
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


def _find_partner(session: Session, source: str) -> Partner | None:
    """The process's partner directory (hub/refcache.py), asked once per batch and sender: a batch's messages
    come from a handful of partners, and each asking costs the cache's generation checks and an attach."""
    cache = _batch_cache(session)
    if cache is None:
        return find_partner(session, source)
    if source not in cache.partners:
        cache.partners[source] = find_partner(session, source)
    return cache.partners[source]


def _find_item(session: Session, code: str) -> Item | None:
    """The catalogue item (the process's reference cache, no query), asked once per batch and code."""
    cache = _batch_cache(session)
    if cache is None:
        return catalog.find_item(session, code)
    if code not in cache.items:
        cache.items[code] = catalog.find_item(session, code)
    return cache.items[code]


def _within(session: Session, region: str, ancestor: str) -> bool:
    """``is_within`` over the cached region tree, asked once per batch and pair (as ``_find_partner``)."""
    cache = _batch_cache(session)
    if cache is None:
        return is_within(session, region_code=region, ancestor=ancestor)
    key = (region, ancestor)
    if key not in cache.within:
        cache.within[key] = is_within(session, region_code=region, ancestor=ancestor)
    return cache.within[key]


def _check_region(session: Session, partner: Partner, region: str, field: str) -> None:
    if not _within(session, region, partner.region_code):
        raise RecordRejected("wrong_region", f"{field} {region} is outside the partner's region {partner.region_code}",
                             field=field, rule="within_partner_region")


def _check_item(session: Session, record: dict[str, Any]) -> Item:
    item = _find_item(session, record["item_code"])
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
    key = _lock_key(partner.code, external_id)
    cache = _batch_cache(session)
    if session.get_bind().dialect.name == "postgresql" and (cache is None or key not in cache.locked):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})


def _lock_key(partner_code: str, external_id: str) -> str:
    return f"partner-case:{partner_code}:{external_id}"


def _partner_case(session: Session, partner: Partner, external_id: str) -> Case | None:
    cache = _batch_cache(session)
    if cache is not None and (partner.code, external_id) in cache.cases:
        return cache.cases[(partner.code, external_id)]
    case = session.scalar(
        select(Case).where(Case.origin_partner == partner.code, Case.external_id == external_id)
        .options(*_CASE_OPTIONS)
    )
    if cache is not None:
        cache.cases[(partner.code, external_id)] = case
    return case


def _forget_if_absent(session: Session, partner_code: str, external_id: str) -> None:
    # However a record created its case, the batch must not go on believing there is none.
    cache = _batch_cache(session)
    if cache is not None and cache.cases.get((partner_code, external_id), False) is None:
        del cache.cases[(partner_code, external_id)]


def _remember_case(session: Session, case: Case) -> None:
    cache = _batch_cache(session)
    if cache is not None and case.origin_partner and case.external_id:
        cache.cases[(case.origin_partner, case.external_id)] = case


# --- case records ---------------------------------------------------------------------------


def _apply_record(
    session: Session, partner: Partner, item: Item, record: dict[str, Any], now: datetime, key: str
) -> IngestResult:
    steps = record["steps"]  # checked: sorted, seq 1, 2, 3 … in the standard flow
    case = _partner_case(session, partner, record["external_id"])
    if case is not None and (case.record_version or 0) >= record["record_version"]:
        return IngestResult("stale", case.tracking_no, f"record version {case.record_version} already applied")
    head: Any = None  # the record's newest step: a CaseEvent, or plain values in a batch (writes.StepRow)
    sealed: dict[str, Any] | None = None
    # The record's last step is resealed below: the case and that step are inserted once, as the record
    # leaves them, not twice.
    opened = case is None
    with session.no_autoflush:
        if case is None:
            case, head = _new_partner_case(session, partner, item, record, now, key)
            _remember_case(session, case)
        elif case.event_count and steps[-1]["seq"] <= case.partner_event_seq:
            # Only a record without new steps compares the row before and after (`_seal_record`); one with new
            # steps reseals its last step anyway. (The case-row digest is the costly part of sealing.)
            sealed = case_row(case, key=key)
        for step in steps:
            if step["seq"] > case.partner_event_seq:
                # The last one is sealed by `_seal_record`, over the row as the record leaves it: only once.
                head = _append_step(session, case, partner, step, record["record_version"], key,
                                    unsealed=step is steps[-1])
        _update_from_record(session, case, record, now)
        _seal_record(session, case, partner, record, head, sealed, now, key)
        _store_rating(session, case, record, now, opened=opened)
        if "payment" in record:  # issue 12: the platform's payment status, stored as reported (no query without)
            fees.record_partner_payment(session, case=case, item=item, payment=record["payment"], now=now,
                                        opened=opened)
    _drain_pending(session, case, partner, key)
    _publish(session, case, now)
    return IngestResult("applied", case.tracking_no)


def _new_partner_case(session: Session, partner: Partner, item: Item, record: dict[str, Any], now: datetime,
                      key: str) -> tuple[Case, Any]:
    """The partner's case, opened with the record's first step; written at the next flush, after the
    record's other steps, deadlines and result are applied (hub/cases/writes.py)."""
    applicant, first = record["applicant"], record["steps"][0]
    opening = writes.new_case(
        session, item=item, state=first["to_state"], channel="partner", origin="partner",
        origin_partner=partner.code, external_id=record["external_id"], record_version=0,
        partner_event_seq=first["seq"],
        # The definition its steps were checked against (hub/exchange/checks.py): a partner platform reports
        # a case in the standard flow even for a joint item (its branches are the platform's own business).
        workflow_id=standard_definition().workflow_id,
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
    session: Session, case: Case, partner: Partner, step: dict[str, Any], version: int | None, key: str, *,
    unsealed: bool = False,
) -> Any:
    from_state = case.state if case.event_count else None
    # The row changes first: the event seals the case as the step left it.
    case.partner_event_seq = step["seq"]
    case.state = step["to_state"]
    _note_outcome(case, step)
    _deem_accepted(session, case, step)
    # Electronic supervision reads the case again (hub/supervision/scanner.py): its state or clock moved.
    case.colour_due_on = business_date(datetime.fromisoformat(step["at"]))
    return writes.append_step(session, case, _step_event(
        partner, step, version, from_state=from_state, department_id=case.department_id), key=key,
        unsealed=unsealed)


def _note_outcome(case: Case, step: dict[str, Any]) -> None:
    """The decision and completion a step brings, as a hub case's steps bring them (hub/cases/service.py
    ``_settle``): a platform reporting by single ``case-event`` messages sends no ``result`` block, and its
    completed case must still carry the result and completion time the national report needs (issue 13: 129
    of 550 national deliveries failed for want of them). A full record's ``result`` still overrides these
    (``_update_from_record`` runs after its steps)."""
    at = datetime.fromisoformat(step["at"])
    if step["to_state"] in DECISIONS and case.decided_at is None:
        case.decided_at = at
        case.result = step["to_state"]
    if standard_definition().is_terminal(step["to_state"]) and case.completed_at is None:
        case.completed_at = at
        case.result = case.result or step["to_state"]


# A step the case can only have reached after acceptance (hub/exchange/checks.py lets a platform's record skip
# steps: electronic supervision reports it, hub/supervision/rules/procedure.py "procedure.skipped_step").
_PAST_INTAKE_ACTIONS = frozenset({"review", "grant", "deny", "complete"})
_PAST_INTAKE_STATES = frozenset({"under_review", "review_supplement", "pending_decision", "granted", "denied"})


def _deem_accepted(session: Session, case: Case, step: dict[str, Any]) -> None:
    """A platform's case that went past intake without an acceptance step still gets a deadline: counted from
    the day it was submitted (the latest the application can count as accepted — Art. 32: an application not
    refused or sent back within 5 working days counts as accepted from the day it was received)."""
    if case.accepted_on is not None or not (step["action"] in _PAST_INTAKE_ACTIONS
                                            or step["to_state"] in _PAST_INTAKE_STATES):
        return
    facts = clock.facts_of(case).accept(business_date(case.submitted_at))
    clock.store(case, facts, calendar=load_calendar(session), today=business_date(datetime.fromisoformat(step["at"])))


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
    session: Session, case: Case, partner: Partner, record: dict[str, Any], head: Any,
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
    _apply_clock(session, case, record, now)
    result = record.get("result")
    if result:
        case.result = result["outcome"]
        case.completed_at = datetime.fromisoformat(result["at"])
        case.decided_at = case.decided_at or case.completed_at


def _store_rating(session: Session, case: Case, record: dict[str, Any], now: datetime, *, opened: bool) -> None:
    """The platform's applicant rating (``result.satisfaction``, 好差评) stored with source partner, not dropped: the
    same supervision as a hub case's (a bad one opens the department's follow-up; hub/supervision/ratings.py)."""
    level = (record.get("result") or {}).get("satisfaction")
    if level is None:
        return
    message = ratings.record_partner_rating(session, case=case, level=level, now=now, new_case=opened)
    if message is None:
        return
    cache = _batch_cache(session)
    if cache is not None and cache.outbox is not None:
        cache.outbox.append(outbox.row(message))
    else:
        session.add(message)


def _apply_clock(session: Session, case: Case, record: dict[str, Any], now: datetime) -> None:
    """The record's acceptance and special procedures as the case's clock facts (hub/cases/clock.py): each
    procedure is a suspension (Art. 45), so the deadlines move by its working days like a hub case's; the
    platform's own promised date, when it gives one, moves the same way."""
    accepted_at = record.get("accepted_at")
    facts = held = clock.facts_of(case)
    if accepted_at and facts.accepted_on is None:
        facts = facts.accept(business_date(datetime.fromisoformat(accepted_at)))
    procedures = record.get("special_procedures")
    if procedures is not None:  # the record is the platform's whole case: its list replaces the one held
        facts = replace(facts, suspensions=tuple(partner_suspension(p) for p in procedures))
    if facts == held and not record.get("promised_completion_date"):  # the case is unchanged since ``held``
        return
    calendar = load_calendar(session)
    today = business_date(now)
    clock.store(case, facts, calendar=calendar, today=today)
    promised = record.get("promised_completion_date")
    if promised and facts.accepted_on is not None:
        open_now = facts.open_suspension
        as_of = open_now.started_on if open_now is not None else today
        case.deadline = calendar.add_working_days(date.fromisoformat(promised), facts.days_suspended(calendar, as_of))


def partner_suspension(procedure: dict[str, Any]) -> Suspension:
    """A partner's special procedure (checked by hub/exchange/checks.py) as a suspension of the clock."""
    end = procedure.get("end")
    return Suspension(kind=special_procedure_kind(procedure["kind"]) or "", reason=procedure.get("reason") or "",
                      started_on=date.fromisoformat(procedure["start"]),
                      ended_on=date.fromisoformat(end) if end else None)


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
    cache = _batch_cache(session)
    if cache is not None:
        cache.held[(partner.code, external_id)] = True


def _drain_pending(session: Session, case: Case, partner: Partner, key: str) -> None:
    """Apply held steps that now follow on, and drop the ones a full record already covered."""
    cache = _batch_cache(session)
    if cache is not None and cache.held.get((partner.code, str(case.external_id))) is False:
        return  # the batch looked: nothing is held for this case
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
    action = "complete" if case.state == "completed" else "report"
    cache = _batch_cache(session)
    if cache is not None and cache.owed is not None:  # an optimistic batch: written after its one flush
        cache.owed.extend((case, partner, kind) for partner, kind in deliveries.owed(session, case, action))
    else:
        deliveries.on_case_change(session, case, action, now)
    reported = {"event_type": "case.reported.v1", "region_code": case.region_code,
                "payload": {**case_event_payload(case), "origin_partner": case.origin_partner},
                "occurred_at": now, "correlation_id": case.tracking_no}
    if cache is not None and cache.outbox is not None:  # a batch's: plain values, written in one statement
        cache.outbox.append(outbox.message_row(**reported))
    else:
        session.add(outbox.message(**reported))


# --- a batch's rows in one statement ----------------------------------------------------------------

OUTBOX, INBOX = OutboxMessage.__table__, InboxMessage.__table__
