"""The personal-data access log: every registry look-up, answered or not, becomes one row with a
keyed hash of the identifier instead of the identifier; supervisors read it by region."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adapters.errors import (
    CircuitOpen,
    InvalidIdentifier,
    MalformedResponse,
    NotFoundInRegistry,
    RegistryBusy,
    RegistryRejected,
    RegistryTimeout,
    RegistryUnavailable,
)
from adapters.registries import LookupContext
from hub.auth.models import Officer
from hub.org import service as org_service
from hub.org.models import Region
from hub.pagination import Page, paginate
from hub.settings import Settings
from hub.verification.models import RegistryAccess
from hub.verification.registries import RegistryNotConfigured
from hub.verification.schemas import (
    AccessLogEntry,
)

T = TypeVar("T")

PURPOSES = {
    "applicant": "申请人身份核验 (applicant identity verification)",
    "legal_representative": "法定代表人身份核验 (legal representative verification)",
    "tax": "申请人税务登记核验 (applicant tax registration check)",
    "prefill": "表单预填 (form prefill)",
    "officer": "经办人复核 (officer re-check)",
}


# --- writing the log: one row per look-up -----------------------------------------------------


def access_log_key(secret_key: str) -> bytes:
    """The HMAC key of the access log, derived from the hub's secret (its own purpose, its own key)."""
    return hmac.new(secret_key.encode(), b"hub/registry-access-log/v1", hashlib.sha256).digest()


def subject_hash(key: bytes, identifier: str) -> str:
    """Keyed hash of an identifier: searchable by whoever holds the key, meaningless to anyone else."""
    return hmac.new(key, identifier.strip().upper().encode(), hashlib.sha256).hexdigest()


def access_outcome(exc: BaseException) -> str:
    """What became of a look-up that raised, in the access log's words."""
    for kind, name in ((CircuitOpen, "circuit_open"), (RegistryBusy, "busy"), (RegistryTimeout, "timeout"),
                       (RegistryUnavailable, "unavailable"), (MalformedResponse, "malformed"),
                       (NotFoundInRegistry, "not_found"), (RegistryRejected, "rejected"),
                       (InvalidIdentifier, "invalid_identifier")):
        if isinstance(exc, kind):
            return name
    return "error"


@dataclass
class Lookups:
    """Registry look-ups on behalf of one actor; each is timed and becomes one access-log row.

    Rows are kept in memory until ``flush_to`` so that nothing is written while a registry is awaited.
    """

    key: bytes
    actor: str
    actor_kind: str
    now: datetime
    tracking_no: str | None = None
    region_code: str | None = None
    rows: list[RegistryAccess] = field(default_factory=list)

    def call(self, registry: str, operation: str, *, subject_kind: str, subject: str, purpose: str,
             fn: Callable[[LookupContext], T]) -> tuple[T, str]:
        """Run one look-up; returns its result and the exchange's message id."""
        context = LookupContext(actor=self.actor, purpose=purpose, case=self.tracking_no)
        started = time.perf_counter()
        outcome = "answered"
        try:
            return fn(context), context.message_id
        except RegistryNotConfigured:
            outcome = ""  # nothing was looked up, so nothing to log
            raise
        except BaseException as exc:
            outcome = access_outcome(exc)
            raise
        finally:
            if outcome:
                self.rows.append(RegistryAccess(
                    occurred_at=self.now, actor=self.actor[:64], actor_kind=self.actor_kind,
                    tracking_no=self.tracking_no, region_code=self.region_code, purpose=purpose[:128],
                    registry_name=registry, operation=operation, subject_kind=subject_kind,
                    subject_hash=subject_hash(self.key, subject), outcome=outcome,
                    message_id=context.message_id, duration_ms=round((time.perf_counter() - started) * 1000),
                ))

    def flush_to(self, session: Session) -> None:
        session.add_all(self.rows)
        self.rows = []



# --- supervision: reading the log -------------------------------------------------------------


def regions_overseen(session: Session, officer: Officer) -> list[str]:
    codes = session.scalars(select(Region.code)).all()
    return [c for c in codes if org_service.is_within(session, region_code=c, ancestor=officer.region_code)]


def is_root_region(session: Session, code: str) -> bool:
    region = session.get(Region, code)
    return region is not None and region.parent_code is None


def access_log(session: Session, *, officer: Officer, settings: Settings, registry: str | None = None,
               tracking_no: str | None = None, actor: str | None = None, id_number: str | None = None,
               since: datetime | None = None, until: datetime | None = None, offset: int = 0,
               limit: int = 50) -> Page[AccessLogEntry]:
    """Look-ups in the supervisor's regions, newest first. Look-ups without a case (portal prefill)
    belong to no region and are shown to supervisors of the province (the root region) only."""
    scope = RegistryAccess.region_code.in_(regions_overseen(session, officer))
    if is_root_region(session, officer.region_code):
        scope = or_(scope, RegistryAccess.region_code.is_(None))
    query = select(RegistryAccess).where(scope)
    if registry:
        query = query.where(RegistryAccess.registry_name == registry)
    if tracking_no:
        query = query.where(RegistryAccess.tracking_no == tracking_no)
    if actor:
        query = query.where(RegistryAccess.actor == actor)
    if id_number:
        query = query.where(RegistryAccess.subject_hash == subject_hash(access_log_key(settings.secret_key),
                                                                        id_number))
    if since:
        query = query.where(RegistryAccess.occurred_at >= since)
    if until:
        query = query.where(RegistryAccess.occurred_at < until)
    page = paginate(session, query, order_by=[RegistryAccess.occurred_at.desc(), RegistryAccess.id.desc()],
                    offset=offset, limit=limit)
    return Page(page.total, offset, limit, [AccessLogEntry(
        id=r.id, occurred_at=r.occurred_at, actor=r.actor, actor_kind=r.actor_kind, tracking_no=r.tracking_no,
        region=r.region_code, purpose=r.purpose, registry=r.registry_name, operation=r.operation,
        subject_kind=r.subject_kind, outcome=r.outcome, message_id=r.message_id, duration_ms=r.duration_ms,
    ) for r in page.rows])
