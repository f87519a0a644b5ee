"""Verifying applicants against the registries, prefill, and the personal-data access log.

How a submission is verified (docs/registries.md, "How the hub uses the registries"):

1. ``plan_checks`` — inside the submission's transaction — stores one ``CaseVerification`` row per
   check the applicant and the item call for, ``pending`` (or ``not_configured``). The case and its
   pending checks commit together, before any registry is asked: a registry that is down, slow or
   crashing can never cost a submission.
2. ``verify_on_submission`` — after that commit, in the same request — runs the pending checks within
   a short time budget. A retryable failure (down, timeout, breaker open, busy) and a registry
   answering out of contract (malformed, rejected) leave the check ``pending``; it never raises.
3. ``reverify_pending`` — the worker, later — runs every pending check again.

Registry calls are made before anything is written, so no database lock is held while a registry is
being waited for. Every look-up, answered or not, is written to the access log (``RegistryAccess``)
with a keyed hash of the identifier instead of the identifier.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from adapters.errors import (
    AdapterError,
    InvalidIdentifier,
    NotFoundInRegistry,
    label,
)
from adapters.registries import EnterpriseRecord, IdentityCheck, LookupContext, Registries
from hub.auth.models import Officer
from hub.cases.models import Case
from hub.clock import business_date
from hub.db import built
from hub.errors import Conflict
from hub.settings import Settings, get_settings
from hub.verification.access_log import PURPOSES, Lookups, access_log_key
from hub.verification.models import CaseVerification
from hub.verification.registries import RegistryNotConfigured, is_configured

log = logging.getLogger("hub.verification")
T = TypeVar("T")

# Enterprise first: the legal representative's check needs its record.
CHECK_ORDER = ("enterprise.applicant", "organisation.applicant", "tax.applicant", "population.applicant",
               "population.legal_representative")
SYSTEM_ACTOR = "hub"
WORKER_ACTOR = "worker"


# --- which checks a case needs -----------------------------------------------------------------


@dataclass(frozen=True)
class CheckSpec:
    key: str
    registry: str
    subject: str


def _spec(key: str) -> CheckSpec:
    registry, subject = key.split(".", 1)
    return CheckSpec(key, registry, subject)


def replacing_check(material: dict[str, Any]) -> str | None:
    """The check whose success makes a material unnecessary: the registry named by ``replaceable_by``
    vouching for the material's own ``subject`` (``population.applicant`` for the applicant's ID card,
    ``population.legal_representative`` for the representative's). A material that does not name its
    subject (stored before subjects existed) is replaced by nothing."""
    registry, subject = material.get("replaceable_by"), material.get("subject")
    if not registry or not subject:
        return None
    return f"{registry}.{subject}"


def replaceable_checks(case: Case) -> set[str]:
    return {key for m in case.item.guide.get("materials", []) if (key := replacing_check(m))}


def planned_checks(case: Case) -> list[CheckSpec]:
    """The checks for the applicant and item: identity always; tax, organisation code and the legal
    representative when one of the item's materials about that subject can be replaced by them."""
    needs = replaceable_checks(case)
    keys: list[str] = []
    if case.applicant_id_type == "citizen_id":
        keys.append("population.applicant")
    elif case.applicant_id_type == "credit_code":
        # GB 32100: registration authority "9" is market supervision (enterprises); institutions,
        # social organisations and organs are registered elsewhere, so the organisation-code registry.
        if case.applicant_id_number.startswith("9"):
            keys.append("enterprise.applicant")
            if "population.legal_representative" in needs:
                keys.append("population.legal_representative")
        else:
            keys.append("organisation.applicant")
        if "tax.applicant" in needs:
            keys.append("tax.applicant")
        if "organisation.applicant" in needs and "organisation.applicant" not in keys:
            keys.append("organisation.applicant")
    return [_spec(k) for k in sorted(keys, key=CHECK_ORDER.index)]


def plan_checks(session: Session, case: Case, *, registries: Registries | None, now: datetime) -> None:
    """Plan the new case's checks, pending where the registry is configured (part of the submission): on
    ``case.verifications``, for ``hub.cases.writes.insert_case`` to write with the case."""
    rows = []
    for spec in planned_checks(case):
        configured = is_configured(registries, spec.registry)
        if spec.key == "population.legal_representative" and not is_configured(registries, "enterprise"):
            configured = False  # the representative is known from the enterprise register only
        rows.append(built(
            CaseVerification,
            check_key=spec.key, registry_name=spec.registry, subject=spec.subject,
            outcome="pending" if configured else "not_configured",
            detail=None if configured else RegistryNotConfigured(spec.registry).message,
            attempts=0, created_at=now,
        ))
    # Set as loaded, not appended one by one: a case not yet written has no history to record, and its
    # writer inserts these rows itself.
    set_committed_value(case, "verifications", rows)


# --- running checks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    outcome: str
    detail: str | None
    message_id: str | None = None
    answer: str | None = None  # what the registry said about the subject, e.g. not_found


class _CaseRun:
    """The checks of one case in one run: shares the enterprise record between its two checks."""

    def __init__(self, case: Case, registries: Registries, lookups: Lookups, purpose: str | None) -> None:
        self.case = case
        self.registries = registries
        self.lookups = lookups
        self.purpose = purpose  # overrides the per-check purpose (officer re-check)
        self.today = business_date(lookups.now)
        self._enterprise: tuple[EnterpriseRecord, str] | AdapterError | None = None
        self.message_id: str | None = None
        self.answer: str | None = None

    def _purpose(self, default: str) -> str:
        return self.purpose or PURPOSES[default]

    def run(self, spec: CheckSpec) -> CheckResult:
        self.message_id = self.answer = None
        try:
            outcome, detail = getattr(self, "_" + spec.key.replace(".", "_"))()
        except RegistryNotConfigured as exc:
            # Planned as pending by a process that had this registry: this one lacks the setting. Never
            # settle it as not_configured here — that would let a misconfigured worker unblock grants.
            return CheckResult("pending", f"{exc.message}；本进程未配置，等待已配置的进程核验 "
                                          f"(not configured in this process)"[:255])
        except (NotFoundInRegistry, InvalidIdentifier) as exc:
            answer = "not_found" if isinstance(exc, NotFoundInRegistry) else "invalid_identifier"
            return CheckResult("failed", exc.message[:255], self.message_id, answer)
        except AdapterError as exc:
            # Unavailable, timeout, breaker open, busy — and answers out of contract: not the applicant's
            # fault, so never a failure; the worker tries again.
            return CheckResult("pending", exc.message[:255], self.message_id)
        except Exception:
            log.exception("registry check crashed", extra={"tracking_no": self.case.tracking_no})
            return CheckResult("pending", "核验出错，将稍后重试 (internal error; will retry)", self.message_id)
        return CheckResult(outcome, detail, self.message_id, self.answer)

    def _call(self, registry: str, operation: str, subject_kind: str, subject: str, purpose: str,
              fn: Callable[[LookupContext], T]) -> T:
        result, self.message_id = self.lookups.call(registry, operation, subject_kind=subject_kind,
                                                    subject=subject, purpose=purpose, fn=fn)
        return result

    def _enterprise_record(self, purpose: str) -> EnterpriseRecord:
        if isinstance(self._enterprise, AdapterError):
            raise self._enterprise
        if self._enterprise is not None:
            record, self.message_id = self._enterprise
            return record
        code = self.case.applicant_id_number
        try:
            record = self._call("enterprise", "lookup", "credit_code", code, purpose,
                                lambda ctx: self.registries.enterprise.lookup(code, context=ctx))
        except AdapterError as exc:
            self._enterprise = exc
            raise
        self._enterprise = (record, self.message_id or "")
        return record

    # one method per check key ------------------------------------------------------------------

    def _population_applicant(self) -> tuple[str, str]:
        number, name = self.case.applicant_id_number, self.case.applicant_name
        check = self._call("population", "verify_identity", "citizen_id", number, self._purpose("applicant"),
                           lambda ctx: self.registries.population.verify_identity(number, name, context=ctx))
        self.answer = identity_answer(check)
        return identity_outcome(check, who="")

    def _population_legal_representative(self) -> tuple[str, str]:
        try:
            company = self._enterprise_record(self._purpose("legal_representative"))
        except NotFoundInRegistry:
            self.answer = "enterprise_not_found"
            return "failed", "企业未在企业登记信息库登记，无法核验法定代表人 (enterprise not registered)"
        number = company.legal_representative_id_number
        if not number:
            return "failed", "企业登记信息未含法定代表人身份证号码 (the register gives no ID number for the legal " \
                             "representative)"
        name = company.legal_representative
        check = self._call("population", "verify_identity", "citizen_id", number, self._purpose("legal_representative"),
                           lambda ctx: self.registries.population.verify_identity(number, name, context=ctx))
        self.answer = identity_answer(check)
        return identity_outcome(check, who="法定代表人")

    def _enterprise_applicant(self) -> tuple[str, str]:
        company = self._enterprise_record(self._purpose("applicant"))
        self.answer = company.status
        if company.status != "active":
            text = {"revoked": "吊销", "cancelled": "注销"}.get(company.status, company.status)
            return "failed", f"企业登记状态为{text} (enterprise {company.status})"
        if not same_name(company.name, self.case.applicant_name):
            return "failed", "申请人名称与企业登记名称不一致 (name differs from the enterprise register)"
        return "verified", "企业登记状态为存续，名称一致 (registered, active, name matches)"

    def _organisation_applicant(self) -> tuple[str, str]:
        code = self.case.applicant_id_number
        record = self._call("organisation", "lookup", "credit_code", code, self._purpose("applicant"),
                            lambda ctx: self.registries.organisation.lookup(code, context=ctx))
        if not record.valid_on(self.today):
            return "failed", f"组织机构代码已于 {record.valid_to} 失效 (organisation code no longer valid)"
        if not same_name(record.name, self.case.applicant_name):
            return "failed", "申请人名称与组织机构代码登记名称不一致 (name differs from the register)"
        return "verified", "组织机构代码有效，名称一致 (valid, name matches)"

    def _tax_applicant(self) -> tuple[str, str]:
        code = self.case.applicant_id_number
        record = self._call("tax", "registration", "credit_code", code, self._purpose("tax"),
                            lambda ctx: self.registries.tax.registration(code, context=ctx))
        if record.registration_status == "cancelled":
            return "failed", "税务登记已注销 (tax registration cancelled)"
        if record.registration_status == "abnormal":
            return "failed", "税务登记为非正常户 (abnormal taxpayer)"
        if record.arrears:
            return "failed", "存在欠税 (tax arrears)"
        return "verified", f"税务登记正常，无欠税，纳税信用等级 {record.credit_grade} (registered, no arrears)"


def identity_answer(check: IdentityCheck) -> str:
    """The population registry's answer in one word: not_found, deceased, cancelled, name_mismatch, normal."""
    if check.status in ("not_found", "deceased", "cancelled"):
        return check.status
    return "normal" if check.verified else "name_mismatch"


def identity_outcome(check: IdentityCheck, *, who: str) -> tuple[str, str]:
    """The population registry's verdict as outcome and detail — without the number or the name."""
    if check.verified:
        return "verified", f"{who}身份信息一致 (identity confirmed)"
    if check.status == "not_found":
        return "failed", f"人口信息库中无{who}此身份证号码 (ID number not registered)"
    if check.status == "deceased":
        return "failed", f"{who}户籍登记状态为死亡 (registered as deceased)"
    if check.status == "cancelled":
        return "failed", f"{who}户籍已注销 (registration cancelled)"
    return "failed", f"{who}姓名与身份证号码不一致 (name does not match the ID number)"


def same_name(registered: str, given: str) -> bool:
    """Organisation names compared as a clerk would: ignoring spaces and full/half-width brackets."""
    def norm(value: str) -> str:
        return "".join(value.split()).replace("(", "（").replace(")", "）")
    return norm(registered) == norm(given)


def _pending_rows(session: Session, case_ids: Sequence[int]) -> list[CaseVerification]:
    rows = session.scalars(select(CaseVerification).where(
        CaseVerification.case_id.in_(case_ids), CaseVerification.outcome == "pending",
    )).all()
    return _in_order(rows)


def _in_order(rows: Sequence[CaseVerification]) -> list[CaseVerification]:
    return sorted(rows, key=lambda r: (r.case_id, CHECK_ORDER.index(r.check_key)
                                       if r.check_key in CHECK_ORDER else len(CHECK_ORDER)))


def _run_case(case: Case, rows: Sequence[CaseVerification], *, registries: Registries, lookups: Lookups,
              deadline: float | None, purpose: str | None) -> list[tuple[CaseVerification, CheckResult]]:
    lookups.tracking_no, lookups.region_code = case.tracking_no, case.region_code
    run = _CaseRun(case, registries, lookups, purpose)
    results = []
    for row in rows:
        if deadline is not None and time.monotonic() >= deadline:
            break  # out of budget: stays pending for the worker
        results.append((row, run.run(_spec(row.check_key))))
    return results


def _apply(session: Session, results: Sequence[tuple[CaseVerification, CheckResult]], now: datetime) -> int:
    """Write the outcomes; a row somebody else settled meanwhile is left alone. Returns rows settled."""
    settled = 0
    for row, result in results:
        attempts = session.execute(
            update(CaseVerification)
            .where(CaseVerification.id == row.id, CaseVerification.outcome == "pending")
            .values(outcome=result.outcome, detail=result.detail, checked_at=now,
                    attempts=CaseVerification.attempts + 1, message_id=result.message_id, answer=result.answer)
            .returning(CaseVerification.attempts)
            .execution_options(synchronize_session=False)
        ).scalar()
        changed = attempts is not None
        settled += int(changed and result.outcome != "pending")
        if changed:  # what the row now holds is known: no SELECT when it is read again (the receipt)
            for name, value in (("outcome", result.outcome), ("detail", result.detail), ("checked_at", now),
                                ("attempts", attempts), ("message_id", result.message_id),
                                ("answer", result.answer)):
                set_committed_value(row, name, value)
        else:
            session.expire(row)
    return settled


def verify_case(session: Session, case: Case, *, registries: Registries, actor: str, actor_kind: str,
                now: datetime, settings: Settings, deadline: float | None = None,
                purpose: str | None = None, rows: Sequence[CaseVerification] | None = None) -> int:
    """Run the case's pending checks (within ``deadline``, a time.monotonic() value); flushes, never commits.

    ``rows``: the pending checks when the caller holds them (a submission just wrote them), else read.
    Returns the number of checks settled (no longer pending)."""
    rows = _pending_rows(session, [case.id]) if rows is None else _in_order(rows)
    if not rows:
        return 0
    lookups = Lookups(access_log_key(settings.secret_key), actor, actor_kind, now)
    results = _run_case(case, rows, registries=registries, lookups=lookups, deadline=deadline, purpose=purpose)
    settled = _apply(session, results, now)
    lookups.flush_to(session)
    session.flush()
    return settled


def verify_on_submission(session: Session, case: Case, *, registries: Registries | None, now: datetime,
                         settings: Settings) -> None:
    """Verify a just-committed submission within ``settings.verification_budget_s``. Never raises:
    whatever goes wrong, the case keeps its pending checks and the worker re-verifies it."""
    if registries is None:
        return
    try:
        verify_case(session, case, registries=registries, actor=SYSTEM_ACTOR, actor_kind="system", now=now,
                    settings=settings, deadline=time.monotonic() + settings.verification_budget_s,
                    rows=[r for r in case.verifications if r.outcome == "pending"])
    except Exception:
        session.rollback()
        log.exception("verification after submission failed; left for the worker",
                      extra={"tracking_no": case.tracking_no})


def reverify_pending(session: Session, *, registries: Registries | None, now: datetime, limit: int = 50,
                     settings: Settings | None = None) -> int:
    """One worker round: re-run the pending checks of up to ``limit`` cases, oldest first.

    Flushes, never commits (the worker commits). Returns the number of checks settled — 0 while the
    registries are still down, so the loop can back off."""
    if registries is None:
        return 0
    settings = settings or get_settings()
    oldest = func.min(func.coalesce(CaseVerification.checked_at, CaseVerification.created_at))
    case_ids = list(session.scalars(
        select(CaseVerification.case_id).where(CaseVerification.outcome == "pending")
        .group_by(CaseVerification.case_id).order_by(oldest, CaseVerification.case_id).limit(limit)
    ))
    if not case_ids:
        return 0
    cases = {c.id: c for c in session.scalars(select(Case).where(Case.id.in_(case_ids))).unique()}
    rows = _pending_rows(session, case_ids)
    lookups = Lookups(access_log_key(settings.secret_key), WORKER_ACTOR, "system", now)
    results: list[tuple[CaseVerification, CheckResult]] = []
    for case_id in case_ids:
        results += _run_case(cases[case_id], [r for r in rows if r.case_id == case_id], registries=registries,
                             lookups=lookups, deadline=None, purpose=None)
    settled = _apply(session, results, now)
    lookups.flush_to(session)
    session.flush()
    return settled


def recheck(session: Session, case: Case, *, officer: Officer, registries: Registries | None, now: datetime,
            settings: Settings) -> None:
    """An officer asks for the case's failed and pending checks to be run again (e.g. the register was
    corrected), and for checks of registries connected since. Within the request's budget; what does
    not finish stays pending for the worker."""
    if registries is None:
        raise Conflict("未接入任何信息库，无法核验 (no registry is configured)", type_slug="registries-not-configured")
    configured = [name for name in ("population", "enterprise", "tax", "organisation")
                  if is_configured(registries, name)]
    connected_since = (CaseVerification.outcome == "not_configured") & CaseVerification.registry_name.in_(configured)
    if "enterprise" not in configured:  # the representative is known from the enterprise register only
        connected_since &= CaseVerification.check_key != "population.legal_representative"
    session.execute(
        update(CaseVerification)
        .where(CaseVerification.case_id == case.id,
               or_(CaseVerification.outcome.in_(("failed", "pending")), connected_since))
        .values(outcome="pending")
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    verify_case(session, case, registries=registries, actor=officer.username, actor_kind="officer", now=now,
                settings=settings, deadline=time.monotonic() + settings.verification_budget_s,
                purpose=PURPOSES["officer"])


# --- reading results ---------------------------------------------------------------------------


def verifications_of(session: Session, case: Case) -> list[CaseVerification]:
    rows = case.verifications
    return sorted(rows, key=lambda r: CHECK_ORDER.index(r.check_key) if r.check_key in CHECK_ORDER else 99)


def summary(outcomes: Sequence[str]) -> str:
    """One word for a case: failed > pending > manual > verified > not_configured; "none" without checks."""
    for word in ("failed", "pending", "manual", "verified", "not_configured"):
        if word in outcomes:
            return word
    return "none"


def case_summary(session: Session, case: Case) -> str:
    return summary([r.outcome for r in verifications_of(session, case)])


def verified_checks(session: Session, case: Case) -> frozenset[str]:
    return frozenset(r.check_key for r in case.verifications if r.outcome == "verified")  # a set: unsorted


def replaced_material_keys(session: Session, case: Case) -> set[str]:
    """Materials of the item that a successful registry check replaces: not asked for. Only a material
    about the subject the registry verified (the applicant's own ID card, not the spouse's); a manual
    verification replaces nothing — the officer inspected the uploaded material instead."""
    verified = verified_checks(session, case)
    if not verified:
        return set()  # e.g. every check of a new case without a registry: no material to look at
    return {m["key"] for m in case.item.guide.get("materials", []) if replacing_check(m) in verified}


def ensure_grantable(session: Session, case: Case) -> None:
    """A case whose applicant failed a registry check — or is still waiting for one — is not granted."""
    rows = verifications_of(session, case)
    failed = [r.registry_name for r in rows if r.outcome == "failed"]
    if failed:
        names = "、".join(dict.fromkeys(label(r) for r in failed))
        raise Conflict(
            f"申请人未通过{names}核验，不能批准；可不予批准或要求补正 (applicant verification failed at the "
            f"{', '.join(dict.fromkeys(failed))} registry: the case cannot be granted)",
            type_slug="verification-failed",
        )
    pending = [r.registry_name for r in rows if r.outcome == "pending"]
    if pending:
        names = "、".join(dict.fromkeys(label(r) for r in pending))
        raise Conflict(
            f"申请人{names}核验尚未完成（信息库暂时无法访问，系统将自动重新核验），核验完成前不能批准 "
            f"(verification pending at the {', '.join(dict.fromkeys(pending))} registry: the case cannot be "
            f"granted until it is re-verified)",
            type_slug="verification-pending",
        )
