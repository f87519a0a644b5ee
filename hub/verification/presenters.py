"""A case's checks as officers and applicants see them."""

from __future__ import annotations

from adapters.errors import (
    label,
)
from hub.verification.models import CaseVerification
from hub.verification.schemas import (
    EvidenceOut,
    ManualVerificationOut,
    VerificationBrief,
    VerificationOut,
)

OUTCOME_LABELS = {
    "verified": "核验通过",
    "failed": "核验未通过",
    "pending": "待核验",
    "not_configured": "未接入",
    "manual": "人工核验通过",
}


def brief(row: CaseVerification) -> VerificationBrief:
    return VerificationBrief(registry=row.registry_name, registry_label=label(row.registry_name), outcome=row.outcome,
                             outcome_label=OUTCOME_LABELS.get(row.outcome, row.outcome), checked_at=row.checked_at)


def officer_out(row: CaseVerification) -> VerificationOut:
    manual = row.manual
    return VerificationOut(
        **brief(row).model_dump(), check=row.check_key, subject=row.subject, detail=row.detail,
        attempts=row.attempts, message_id=row.message_id, answer=row.answer,
        manual=None if manual is None else ManualVerificationOut(
            officer=manual.officer, officer_name=manual.officer_name, reason=manual.reason,
            evidence=[EvidenceOut(**e) for e in manual.evidence], registry_outcome=manual.registry_outcome,
            recorded_at=manual.recorded_at, event_seq=manual.event_seq,
        ),
    )
