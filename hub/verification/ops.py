"""The registries' ops view: breaker state, latency and error rate per registry, and the backlog."""

from __future__ import annotations

from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from adapters.errors import (
    label,
)
from adapters.registries import Registries
from hub.cases.models import Case
from hub.verification.models import CaseVerification
from hub.verification.registries import is_configured
from hub.verification.schemas import (
    RegistriesStatusOut,
    RegistryStatusOut,
)


def pending_count(session: Session) -> int:
    """Cases with at least one check waiting for re-verification."""
    return session.scalar(select(func.count(distinct(CaseVerification.case_id)))
                          .where(CaseVerification.outcome == "pending")) or 0


def registries_status(session: Session, registries: Registries | None) -> RegistriesStatusOut:
    """Breaker state, latency and error rate per registry (this process's), plus the backlog."""
    snapshot: dict[str, dict[str, Any]] = registries.status() if registries is not None else {}
    out = []
    for name in ("population", "enterprise", "tax", "organisation"):
        configured = is_configured(registries, name)
        figures = snapshot.get(name, {}) if configured else {}
        out.append(RegistryStatusOut(
            name=name, label=label(name), configured=configured,
            **{"breaker": "not_configured", **{k: v for k, v in figures.items()
                                                if k in RegistryStatusOut.model_fields}},
        ))
    pending = pending_count(session)
    failed = session.scalar(
        select(func.count(distinct(CaseVerification.case_id)))
        .join(Case, Case.id == CaseVerification.case_id)
        .where(CaseVerification.outcome == "failed", Case.completed_at.is_(None))
    ) or 0
    return RegistriesStatusOut(configured=any(r.configured for r in out), registries=out,
                               pending_cases=pending, failed_cases=failed)
