"""``/api/v1/window``: paper applications registered at a service-centre window (docs/window.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse

from hub.auth.models import Officer
from hub.auth.service import require_role
from hub.cases import presenters
from hub.cases.router import IdempotencyKeyHeader, SubmissionContext, TrackingNo, submission_context
from hub.cases.schemas import MaterialOut
from hub.clock import business_date
from hub.deps import NowDep, OfficerDep, SessionDep, SettingsDep
from hub.idempotency import service as idempotency
from hub.problems import problem_responses
from hub.window import flows, service
from hub.window.presenters import window_case
from hub.window.schemas import WindowApplicationIn, WindowCaseOut, WindowReceipt

router = APIRouter(prefix="/api/v1/window", tags=["window"])


@router.post(
    "/applications", response_model=WindowReceipt, status_code=201,
    responses=problem_responses(401, 403, 409, 413, 415, 422),
)
def register(
    data: WindowApplicationIn, session: SessionDep, officer: OfficerDep,
    context: Annotated[SubmissionContext, Depends(submission_context)],
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Register a paper application on the applicant's behalf (窗口收件), with the scans handed in.

    Signed-in officers with the ``window`` role (窗口人员) only. The case follows the same flow as an online
    application and goes to the item's implementing department — in another region too (跨域通办: forwarded,
    the receiving window recorded). The answer is the receipt to print for the applicant: tracking number
    and query code. ``Idempotency-Key`` works as for ``POST /api/v1/applications`` (keys are per officer)."""
    require_role(officer, [service.ROLE])
    now, settings, registries = context.now, context.settings, context.registries
    claim = None
    if idempotency_key is not None:
        outcome = idempotency.claim(
            session, scope=_scope(officer), key=idempotency_key, request=data.model_dump(mode="json"),
            secret=settings.secret_key, ttl_s=settings.idempotency_key_ttl_s, now=now,
        )
        if isinstance(outcome, idempotency.Replay):
            return JSONResponse(outcome.body, status_code=outcome.status, headers={"Idempotent-Replayed": "true"})
        claim = outcome
    registration = service.register(session, data=data, officer=officer, now=now, settings=settings,
                                    registries=registries)
    # Commits the case and its scans before any registry is asked, then the checks' results.
    body = flows.registered(session, registration, officer, claim=claim, registries=registries, now=now,
                            settings=settings)
    return JSONResponse(body, status_code=201)


def _scope(officer: Officer) -> str:
    # Per officer: another window's key never replays this one's receipt (it holds the query code).
    return f"POST /api/v1/window/applications@{officer.id}"


@router.get(
    "/applications/{tracking_no}", response_model=WindowCaseOut, responses=problem_responses(401, 403, 404, 422)
)
def registered_case(tracking_no: TrackingNo, session: SessionDep, officer: OfficerDep, now: NowDep) -> WindowCaseOut:
    """The status of a case this window's department registered (any other: 404, as an unknown number)."""
    require_role(officer, [service.ROLE])
    case = service.case_for_window(session, tracking_no=tracking_no, officer=officer)
    return window_case(session, case, today=business_date(now))


@router.post(
    "/applications/{tracking_no}/materials", response_model=MaterialOut, status_code=201,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
)
def add_scan(
    tracking_no: TrackingNo,
    key: Annotated[str, Form(min_length=1, max_length=64)],
    file: Annotated[UploadFile, File()],
    session: SessionDep,
    officer: OfficerDep,
    settings: SettingsDep,
    now: NowDep,
) -> MaterialOut:
    """One more scan (multipart: ``key`` and ``file``) for a case this window registered — for a file too large
    for the registration's JSON body, or one handed in later."""
    require_role(officer, [service.ROLE])
    case = service.case_for_window(session, tracking_no=tracking_no, officer=officer)
    content = file.file.read(settings.max_material_bytes + 1)
    material = service.add_scan(
        session, case=case, key=key, filename=file.filename or "material",
        content_type=file.content_type or "application/octet-stream", content=content, settings=settings, now=now,
    )
    return presenters.material_out(material)
