"""Manual verification: an officer vouches for an applicant whom the registry cannot know.

The provincial registries know the people and organisations registered in the province. An applicant
whose ID number (or credit code) was issued elsewhere is unknown to them, so the registry check fails
("not found") or stays pending, and the case could never be granted. An officer of the case's
department (reviewer or approver) then inspects the uploaded material — the ID card copy, the licence
— and records a manual verification naming the materials inspected and why. The check's outcome
becomes ``manual`` and the grant is allowed.

It is refused when the registry did know the applicant (verified, deceased, another name, revoked…):
a manual verification replaces a registry that cannot answer, never one that said no. It is recorded
three times, each for its own reader: the ``ManualVerification`` row (the officer's view), a case
event (the timeline and the audit chain) and the personal-data access log (supervisors).

Lives apart from ``checks.py`` because it writes through the cases service, which imports that one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.cases import service as cases
from hub.cases.models import Case, Material
from hub.errors import Conflict, FieldError, ValidationFailed
from hub.org.models import Region
from hub.settings import Settings
from hub.text import TextRuleViolation, normalize_text
from hub.verification.access_log import access_log_key, subject_hash
from hub.verification.checks import verifications_of
from hub.verification.models import CaseVerification, ManualVerification, RegistryAccess
from hub.verification.schemas import ManualVerificationIn
from workflow.registry import get_definition

ACTION = "verify_manually"
REASON_MAX = 2000
PURPOSE = "人工核验申请人身份 (manual verification of the applicant)"
# What the registry said that means "I do not know this applicant" — the only failures an officer may
# take over. Everything else (deceased, another name, revoked, …) is the registry knowing better.
UNKNOWN_TO_REGISTRY = frozenset({"not_found"})
UNANSWERED = frozenset({"pending", "not_configured"})


@dataclass(frozen=True)
class Evidence:
    material_id: int
    key: str
    sha256: str

    def as_dict(self) -> dict[str, object]:
        return {"material_id": self.material_id, "key": self.key, "sha256": self.sha256}


def province_prefixes(session: Session) -> frozenset[str]:
    """The two-digit province codes of the hub's root regions (e.g. ``21`` for Liaoning)."""
    roots = session.scalars(select(Region.code).where(Region.parent_code.is_(None))).all()
    return frozenset(code[:2] for code in roots)


def identifier_region(case: Case) -> str:
    """The administrative region an applicant's identifier was issued in: characters 1–6 of a citizen ID
    (GB 11643), 3–8 of a credit code (GB 32100)."""
    number = case.applicant_id_number
    return number[:6] if case.applicant_id_type == "citizen_id" else number[2:8]


def from_outside_the_province(session: Session, case: Case) -> bool:
    return identifier_region(case)[:2] not in province_prefixes(session)


def record(session: Session, *, case: Case, officer: Officer, data: ManualVerificationIn, now: datetime,
           settings: Settings) -> ManualVerification:
    """Record an officer's manual verification of the case's applicant; flushes, never commits.

    The caller has checked that the officer may act on the case (department, role); a case a partner platform
    handles is read-only here (its applicant is the platform's to verify)."""
    cases.check_system_of_record(case)
    reason = _reason(data.reason)
    _ensure_undecided(case)
    check = _check_to_take_over(session, case, data.check)
    evidence = _evidence(session, case, data)
    before, answer = check.outcome, check.answer
    _take_over(session, check, seen=before, now=now)
    # The reason goes into the event's data, not its opinion: opinions are shown on the applicant's and
    # the public timeline, and an officer's note about someone's identity documents belongs to neither.
    event = cases.record_event(
        session, case=case, actor=cases.Actor.officer(officer), action=ACTION, opinion=None,
        data={"check": check.check_key, "registry_outcome": before, "registry_answer": answer,
              "evidence": [e.as_dict() for e in evidence], "reason": reason},
        now=now, audit_key=settings.audit_key,
    )
    manual = ManualVerification(
        case_id=case.id, verification=check, check_key=check.check_key, registry_outcome=before,
        registry_answer=answer, officer=officer.username, officer_name=officer.name,
        department_id=case.department_id, reason=reason, evidence=[e.as_dict() for e in evidence],
        recorded_at=now, event_seq=event.seq,
    )
    session.add(manual)
    session.add(_access_row(case, officer, check, now, settings))
    session.flush()
    return manual


def _take_over(session: Session, check: CaseVerification, *, seen: str, now: datetime) -> None:
    """Set the check to ``manual`` — only if nobody (the worker re-verifying it) settled it meanwhile."""
    changed = session.execute(
        update(CaseVerification)
        .where(CaseVerification.id == check.id, CaseVerification.outcome == seen)
        .values(outcome="manual", checked_at=now,
                detail="信息库无法核验（外省登记），经办人已人工核验 (verified manually by an officer: unknown to "
                       "the registry)")
        .execution_options(synchronize_session=False)
    ).rowcount
    session.expire(check, ["outcome", "detail", "checked_at"])
    if not changed:
        raise Conflict("核验结果刚刚发生变化，请刷新后重试 (the check changed meanwhile; reload the case)",
                       type_slug="check-changed")


def _reason(value: str) -> str:
    try:
        return normalize_text(value, max_length=REASON_MAX)
    except TextRuleViolation as exc:
        raise ValidationFailed([FieldError("reason", exc.rule, exc.message)]) from exc


def _ensure_undecided(case: Case) -> None:
    closed = get_definition(case.workflow_id).is_terminal(case.state)
    if case.decided_at is not None or case.result is not None or closed:
        raise Conflict("办件已作出决定或已结束，不能再人工核验 (the case is decided or closed)",
                       type_slug="case-decided")


def _check_to_take_over(session: Session, case: Case, check_key: str) -> CaseVerification:
    check = next((row for row in verifications_of(session, case) if row.check_key == check_key), None)
    if check is None:
        raise Conflict(f"该办件没有 {check_key} 核验，无需人工核验 (the case has no such registry check)",
                       type_slug="no-such-check")
    if check.outcome == "verified":
        raise Conflict("信息库已核验通过申请人，无需人工核验 (the registry already verified the applicant)",
                       type_slug="registry-verified")
    if check.outcome == "manual":
        raise Conflict("申请人已人工核验 (the applicant was verified manually already)",
                       type_slug="verified-manually")
    if not from_outside_the_province(session, case):
        raise Conflict("申请人证件为本省登记，应以信息库核验结果为准，不能人工核验 (the identifier was issued in the "
                       "province: the registry knows the applicant, a manual verification cannot replace it)",
                       type_slug="registry-knows-applicant")
    if check.outcome not in UNANSWERED and check.answer not in UNKNOWN_TO_REGISTRY:
        raise Conflict("信息库已有该申请人的登记且核验未通过，不能人工核验 (the registry knows the applicant and "
                       "did not verify them: a manual verification cannot override it)",
                       type_slug="registry-knows-applicant")
    return check


def _evidence(session: Session, case: Case, data: ManualVerificationIn) -> list[Evidence]:
    uploaded = list(session.scalars(select(Material).where(Material.case_id == case.id).order_by(Material.id)))
    errors: list[FieldError] = []
    found: dict[int, Evidence] = {}
    for index, entry in enumerate(data.evidence):
        if (entry.material_id is None) == (entry.key is None):
            errors.append(FieldError(f"evidence[{index}]", "one_of_material_id_or_key",
                                     "请给出材料编号 material_id 或材料键 key 之一 (give material_id or key)"))
            continue
        field = f"evidence[{index}].material_id" if entry.material_id is not None else f"evidence[{index}].key"
        matches = [m for m in uploaded if m.id == entry.material_id or m.material_key == entry.key]
        if not matches:
            errors.append(FieldError(field, "uploaded_material_of_case",
                                     "须引用本办件已上传的材料 (must reference a material uploaded to this case)"))
        for material in matches:
            found[material.id] = Evidence(material.id, material.material_key, material.sha256)
    if errors:
        raise ValidationFailed(errors)
    return list(found.values())


def _access_row(case: Case, officer: Officer, check: CaseVerification, now: datetime,
                settings: Settings) -> RegistryAccess:
    """The officer looked at the applicant's identity documents: the access log records it like a look-up."""
    return RegistryAccess(
        occurred_at=now, actor=officer.username[:64], actor_kind="officer", tracking_no=case.tracking_no,
        region_code=case.region_code, purpose=PURPOSE, registry_name=check.registry_name,
        operation="manual_verification", subject_kind=case.applicant_id_type,
        subject_hash=subject_hash(access_log_key(settings.secret_key), case.applicant_id_number),
        outcome="manual", message_id=str(uuid4()), duration_ms=0,
    )
