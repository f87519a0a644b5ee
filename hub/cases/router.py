from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Path, Query, UploadFile
from sqlalchemy.orm import Session

from hub.auth.service import require_role
from hub.calendar.service import load_calendar
from hub.cases import presenters, service
from hub.cases.materials import add_material
from hub.cases.models import Case
from hub.cases.schemas import (
    ActionIn,
    ActionOut,
    ApplicationIn,
    ApplicationReceipt,
    CaseOut,
    MaterialOut,
    QueueOut,
    StatusOut,
    SupplementIn,
    WithdrawIn,
)
from hub.clock import business_date
from hub.deps import NowDep, OfficerDep, SessionDep, SettingsDep
from hub.errors import HubError
from hub.problems import problem_responses
from hub.settings import Settings
from hub.throttle import service as throttle
from hub.verification import service as verification
from hub.verification.registries import RegistriesDep

applications = APIRouter(prefix="/api/v1/applications", tags=["applications"])
cases = APIRouter(prefix="/api/v1/cases", tags=["cases"])

TrackingNo = Annotated[str, Path(pattern=r"^\d{20}[0-9X]$", description="办件编号")]
QueryCode = Annotated[
    str, Header(alias="X-Query-Code", min_length=4, max_length=16, description="查询码")
]


@applications.post(
    "", response_model=ApplicationReceipt, status_code=201, responses=problem_responses(422)
)
def submit(
    data: ApplicationIn, session: SessionDep, now: NowDep, settings: SettingsDep, registries: RegistriesDep
) -> ApplicationReceipt:
    """Submit an application (any hour, any region); returns the tracking number and query code.

    The applicant is verified against the registries after the application is stored; when a registry
    is down the answer is the same 201 with ``verification: pending``, and the hub re-verifies later."""
    case, query_code = service.submit_application(session, data=data, now=now, registries=registries)
    session.commit()
    verification.verify_on_submission(session, case, registries=registries, now=now, settings=settings)
    verification.commit_quietly(session)  # the case is stored already: its checks may stay pending
    return presenters.receipt(case, query_code, session)


@applications.get(
    "/{tracking_no}", response_model=StatusOut, responses=problem_responses(404, 422, 429)
)
def application_status(
    tracking_no: TrackingNo, query_code: QueryCode, session: SessionDep, settings: SettingsDep, now: NowDep,
) -> StatusOut:
    """Every step of the case with its time, department and opinion."""
    case = applicant_case(session, tracking_no, query_code, settings=settings, now=now)
    return presenters.status(session, case)


@applications.post(
    "/{tracking_no}/materials", response_model=MaterialOut, status_code=201,
    responses=problem_responses(404, 409, 413, 415, 422, 429),
)
def upload_material(
    tracking_no: TrackingNo,
    query_code: QueryCode,
    key: Annotated[str, Form(min_length=1, max_length=64)],
    file: Annotated[UploadFile, File()],
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> MaterialOut:
    """Upload one material of the item's list (PDF, JPEG, PNG or OFD), stored with its SHA-256."""
    case = applicant_case(session, tracking_no, query_code, settings=settings, now=now)
    content = file.file.read(settings.max_material_bytes + 1)
    material = add_material(
        session, case=case, key=key, filename=file.filename or "material",
        content_type=file.content_type or "application/octet-stream", content=content,
        purpose="supplement" if case.state.endswith("supplement") else "application",
        settings=settings, now=now,
    )
    session.commit()
    return presenters.material_out(material)


@applications.post(
    "/{tracking_no}/supplement", response_model=StatusOut,
    responses=problem_responses(404, 409, 422, 429),
)
def submit_supplement(
    tracking_no: TrackingNo, query_code: QueryCode, data: SupplementIn, session: SessionDep,
    now: NowDep, settings: SettingsDep,
) -> StatusOut:
    """Tell the department the requested supplement (补正) is complete; the clock resumes."""
    case = applicant_case(session, tracking_no, query_code, settings=settings, now=now)
    service.supplement(session, case=case, note=data.note, now=now)
    session.commit()
    return presenters.status(session, case)


@applications.post(
    "/{tracking_no}/withdraw", response_model=StatusOut,
    responses=problem_responses(404, 409, 422, 429),
)
def withdraw(
    tracking_no: TrackingNo, query_code: QueryCode, data: WithdrawIn, session: SessionDep,
    now: NowDep, settings: SettingsDep,
) -> StatusOut:
    """Withdraw (撤回) the application before it is decided."""
    case = applicant_case(session, tracking_no, query_code, settings=settings, now=now)
    service.withdraw(session, case=case, reason=data.reason, now=now)
    session.commit()
    return presenters.status(session, case)


def applicant_case(session: Session, tracking_no: str, query_code: str, *, settings: Settings,
                   now: datetime) -> Case:
    """The case of a tracking number and its query code, within the tracking number's budget of wrong
    codes: past it, 429 until the window ends, even for the right code. The attempt is counted and
    committed in this transaction (held briefly: the code check is one hash), whatever the answer."""
    verdict = throttle.begin_query_code(session, tracking_no=tracking_no, settings=settings, now=now)
    try:
        verdict.raise_if_blocked()
        case = service.case_for_applicant(session, tracking_no=tracking_no, query_code=query_code)
    except HubError:
        session.commit()
        raise
    throttle.query_code_accepted(session, tracking_no=tracking_no)
    session.commit()
    return case


@cases.get("/queue", response_model=QueueOut, responses=problem_responses(401))
def work_queue(
    session: SessionDep, officer: OfficerDep, now: NowDep,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> QueueOut:
    """The signed-in officer's work queue, nearest deadline first."""
    total, rows = service.work_queue(session, officer=officer, offset=offset, limit=limit)
    calendar = load_calendar(session)
    today = business_date(now)
    return QueueOut(
        officer=officer.username, total=total,
        entries=[presenters.queue_entry(c, officer, today, calendar) for c in rows],
    )


@cases.get(
    "/{tracking_no}", response_model=CaseOut, responses=problem_responses(401, 403, 404, 422)
)
def get_case(
    tracking_no: TrackingNo, session: SessionDep, officer: OfficerDep, now: NowDep
) -> CaseOut:
    case = service.case_for_officer(session, tracking_no=tracking_no, officer=officer)
    return presenters.officer_view(session, case, officer, business_date(now))


@cases.post(
    "/{tracking_no}/actions", response_model=ActionOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def act(
    tracking_no: TrackingNo, data: ActionIn, session: SessionDep, officer: OfficerDep,
    now: NowDep,
) -> ActionOut:
    """受理 / 不予受理 / 补正 / 审核 / 批准 / 不予批准 / 办结, with the officer's opinion."""
    require_role(officer, ["intake", "reviewer", "approver"])
    case = service.get_case(session, tracking_no)
    event = service.act(
        session, case=case, actor=service.Actor.officer(officer), action=data.action,
        opinion=data.opinion, now=now,
    )
    session.commit()
    return ActionOut(
        tracking_no=case.tracking_no, action=data.action, from_state=event.from_state or "",
        state=case.state, state_label=service.definition_for(case).states[case.state],
        seq=event.seq, deadline=case.deadline,
    )
