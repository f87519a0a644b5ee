"""API shapes of verification results, prefill, the access log and the registries' ops view."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.pagination import PageOut

Outcome = Literal["verified", "failed", "pending", "not_configured", "manual"]
VerificationSummary = Literal["verified", "failed", "pending", "not_configured", "manual", "none"]


class VerificationBrief(BaseModel):
    """What the applicant's status query shows of a check: registry, outcome, time."""

    registry: str
    registry_label: str
    outcome: Outcome
    outcome_label: str
    checked_at: datetime | None


class EvidenceOut(BaseModel):
    material_id: int
    key: str
    sha256: str = Field(description="the file as it was when the officer inspected it")


class ManualVerificationOut(BaseModel):
    """An officer's verification of an applicant the registry cannot know."""

    officer: str
    officer_name: str
    reason: str
    evidence: list[EvidenceOut]
    registry_outcome: str = Field(description="the check's outcome before the officer took over")
    recorded_at: datetime
    event_seq: int = Field(description="the case event (timeline, audit chain) that records it")


class VerificationOut(VerificationBrief):
    """What an officer sees of a check; ``detail`` never holds the identifier or the name."""

    check: str = Field(description="registry.subject, e.g. population.applicant")
    subject: str = Field(description="applicant | legal_representative")
    detail: str | None
    attempts: int
    message_id: str | None = Field(description="exchange message id of the last look-up, as the registry logged it")
    answer: str | None = Field(default=None, description="the registry's answer about the subject: not_found, "
                                                          "deceased, cancelled, name_mismatch, normal, active, …")
    manual: ManualVerificationOut | None = None


class EvidenceIn(BaseModel):
    """One uploaded material of the case that the officer inspected: by its id, or by its key (every
    upload under that key)."""

    model_config = ConfigDict(extra="forbid")

    material_id: int | None = Field(default=None, ge=1)
    key: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")


class ManualVerificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    check: Literal["population.applicant", "enterprise.applicant", "organisation.applicant"] = Field(
        default="population.applicant", description="the check the officer verifies by hand")
    evidence: list[EvidenceIn] = Field(min_length=1, max_length=20,
                                       description="the uploaded materials inspected (material id or key)")
    reason: str = Field(min_length=1, max_length=2000, description="核验说明：核对了什么、如何核对")


class PrefillIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id_type: Literal["citizen_id", "credit_code"]
    id_number: str = Field(min_length=15, max_length=18, description="身份证号码或统一社会信用代码")
    name: str | None = Field(default=None, max_length=128, description="单位名称（自然人无需填写，不予核验）")


class PrefillOut(BaseModel):
    """Form fields the registry knows. Persons: only what the ID number itself encodes, nothing confirmed."""

    id_type: Literal["citizen_id", "credit_code"]
    registry: str
    registry_label: str
    verified: bool | None = Field(description="organisation: registered and active/valid; person: always null — "
                                               "the registry is not asked for an anonymous caller (the applicant "
                                               "is verified at submission)")
    fields: dict[str, str | None]
    checked_at: datetime


class AccessLogEntry(BaseModel):
    id: int
    occurred_at: datetime
    actor: str
    actor_kind: str
    tracking_no: str | None
    region: str | None
    purpose: str
    registry: str
    operation: str
    subject_kind: str
    outcome: str
    message_id: str
    duration_ms: int


class AccessLogPage(PageOut):
    entries: list[AccessLogEntry]


class RegistryStatusOut(BaseModel):
    name: str
    label: str
    configured: bool
    breaker: str = Field(description="closed | open | half_open | not_configured")
    consecutive_failures: int | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    error_rate: float | None = Field(default=None, description="share of failed attempts in the recent window")
    window: int | None = None
    calls: int | None = None
    attempts: int | None = None
    failures: int | None = None
    fast_failures: int | None = None
    cache_hits: int | None = None


class RegistriesStatusOut(BaseModel):
    configured: bool
    registries: list[RegistryStatusOut]
    pending_cases: int = Field(description="cases with a check waiting for re-verification")
    failed_cases: int = Field(description="open cases with a failed check")
    note: str = "breaker and latency figures are this API process's own; each replica and worker keeps its own"
