"""HTTP: prefill for the portal, an officer's re-check and manual verification, the access log for supervisors,
the ops view."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session, sessionmaker

from adapters.registries import Registries
from hub.auth.service import require_role
from hub.cases import presenters
from hub.cases import service as cases
from hub.cases.router import TrackingNo
from hub.cases.schemas import CaseOut
from hub.clock import CHINA_TZ, business_date
from hub.db import separate_unit_of_work
from hub.deps import NowDep, OfficerDep, SessionDep, SessionFactoryDep, SettingsDep
from hub.errors import Forbidden, HubError
from hub.problems import MEDIA_TYPE, Problem, problem_responses
from hub.settings import Settings
from hub.verification import access_log as access_log_service
from hub.verification import checks, manual, ops
from hub.verification import prefill as prefill_service
from hub.verification.registries import RegistriesDep
from hub.verification.schemas import (
    AccessLogPage,
    ManualVerificationIn,
    PrefillIn,
    PrefillOut,
    RegistriesStatusOut,
)

router = APIRouter(prefix="/api/v1", tags=["registries"])

UNAVAILABLE = {503: {"model": Problem, "content": {MEDIA_TYPE: {}},
                     "description": "信息库暂时无法访问或未接入 (registry unavailable or not configured)"}}
RegistryName = Literal["population", "enterprise", "tax", "organisation"]


@router.get("/prefill", response_model=PrefillOut,
            responses={**problem_responses(404, 422), **UNAVAILABLE})  # type: ignore[dict-item]
def prefill(
    factory: SessionFactoryDep, settings: SettingsDep, now: NowDep, registries: RegistriesDep,
    id_type: Annotated[Literal["citizen_id", "credit_code"], Query(description="证件类型")],
    id_number: Annotated[str, Query(min_length=15, max_length=18, description="身份证号码或统一社会信用代码")],
    name: Annotated[str | None, Query(max_length=128, description="单位名称（自然人无需填写，不予核验）")] = None,
) -> PrefillOut:
    """Form fields the registries know about an applicant, for the portal (no sign-in).

    An organisation's registration data is public (name, type, status, address, scope; the legal
    representative's name masked). For a person only the gender and birth date the ID number itself
    encodes, ``verified: null``: the population registry is not asked for an anonymous caller, so the
    answer confirms neither that a name belongs to the number nor that the person is living (the
    applicant is verified at submission). Every look-up is recorded in the personal-data access log
    (actor ``portal``).

    Portals should prefer ``POST /api/v1/prefill``: query strings end up in proxies' access logs."""
    return _prefill(factory, settings, now, registries, PrefillIn(id_type=id_type, id_number=id_number, name=name))


@router.post("/prefill", response_model=PrefillOut,
             responses={**problem_responses(404, 422), **UNAVAILABLE})  # type: ignore[dict-item]
def prefill_post(
    data: PrefillIn, factory: SessionFactoryDep, settings: SettingsDep, now: NowDep, registries: RegistriesDep,
) -> PrefillOut:
    """The same as ``GET /api/v1/prefill``, with the identifier and name in the body instead of the URL."""
    return _prefill(factory, settings, now, registries, data)


def _prefill(factory: sessionmaker[Session], settings: Settings, now: datetime, registries: Registries | None,
             data: PrefillIn) -> PrefillOut:
    # A unit of work of its own, committed whatever the answer: the access log keeps failed look-ups too.
    with separate_unit_of_work(factory, commit_on=(HubError,)) as session:
        return prefill_service.prefill(session, registries=registries, id_type=data.id_type,
                                       id_number=data.id_number, name=data.name, now=now, settings=settings)


@router.post("/cases/{tracking_no}/verifications", response_model=CaseOut,
             responses={**problem_responses(401, 403, 404, 409, 422)}, tags=["cases"])
def recheck(
    tracking_no: TrackingNo, session: SessionDep, officer: OfficerDep, now: NowDep, settings: SettingsDep,
    registries: RegistriesDep,
) -> CaseOut:
    """Run the case's failed and pending registry checks again, and those of registries connected since
    submission (an officer of the case's department). The look-ups are logged under the officer's name."""
    require_role(officer, ["intake", "reviewer", "approver"])
    case = cases.case_for_officer(session, tracking_no=tracking_no, officer=officer)
    if officer.department_id != case.department_id:
        raise Forbidden("只能复核本部门的办件 (case belongs to another department)")
    checks.recheck(session, case, officer=officer, registries=registries, now=now, settings=settings)
    return presenters.officer_view(session, case, officer, business_date(now))


@router.post("/cases/{tracking_no}/verification/manual", response_model=CaseOut, status_code=201,
             responses={**problem_responses(401, 403, 404, 409, 422)}, tags=["cases"])
def manual_verification(
    tracking_no: TrackingNo, data: ManualVerificationIn, session: SessionDep, officer: OfficerDep, now: NowDep,
    settings: SettingsDep,
) -> CaseOut:
    """Record that an officer verified the applicant by hand because the registry cannot know them (an ID
    number or credit code issued outside the province that the registry does not have): which uploaded
    materials were inspected (``evidence``, by material id or key) and why (``reason``). The check becomes
    ``manual`` and the case can be granted. A reviewer or approver of the case's department, while the
    case is undecided; refused (409) when the registry verified the applicant or knows them. Recorded on
    the case's timeline (audit chain) and in the personal-data access log."""
    require_role(officer, ["reviewer", "approver"])
    case = cases.case_for_officer(session, tracking_no=tracking_no, officer=officer)
    if officer.department_id != case.department_id:
        raise Forbidden("只能核验本部门的办件 (case belongs to another department)")
    manual.record(session, case=case, officer=officer, data=data, now=now, settings=settings)
    return presenters.officer_view(session, case, officer, business_date(now))


@router.get("/supervision/access-log", response_model=AccessLogPage,
            responses=problem_responses(401, 403, 422), tags=["supervision"])
def access_log(
    session: SessionDep, officer: OfficerDep, settings: SettingsDep,
    registry: Annotated[RegistryName | None, Query()] = None,
    case: Annotated[str | None, Query(pattern=r"^\d{20}[0-9X]$", description="办件编号")] = None,
    actor: Annotated[str | None, Query(max_length=64, description="officer username, or hub / worker / portal")] = None,
    id_number: Annotated[str | None, Query(min_length=5, max_length=32,
                                           description="matched by keyed hash; never stored")] = None,
    since: Annotated[datetime | None, Query(alias="from", description="inclusive; naive = China time")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="exclusive; naive = China time")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AccessLogPage:
    """The personal-data access log: who looked up whom in which registry, for which case, why and
    when — for supervisors, within their regions. Searching by ID number compares keyed hashes."""
    require_role(officer, ["supervisor"])
    page = access_log_service.access_log(
        session, officer=officer, settings=settings, registry=registry, tracking_no=case, actor=actor,
        id_number=id_number, since=_aware(since), until=_aware(until), offset=offset, limit=limit,
    )
    return AccessLogPage(total=page.total, offset=page.offset, limit=page.limit, entries=page.rows)


@router.get("/admin/registries", response_model=RegistriesStatusOut, responses=problem_responses(401, 403),
            tags=["admin"])
def registries_status(session: SessionDep, officer: OfficerDep, registries: RegistriesDep) -> RegistriesStatusOut:
    """Each registry's circuit breaker, recent latency and error rate (this API process), and the backlog
    of cases waiting for re-verification."""
    require_role(officer, ["admin", "supervisor"])
    return ops.registries_status(session, registries)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=CHINA_TZ)
