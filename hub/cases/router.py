from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, FastAPI, File, Form, Header, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from adapters.registries import Registries
from hub.auth.service import require_role
from hub.calendar.service import load_calendar
from hub.cases import flows, presenters, progress, service
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
from hub.db import separate_unit_of_work
from hub.deps import NowDep, OfficerDep, SessionDep, SessionFactoryDep, SettingsDep, request_unit_of_work
from hub.errors import HubError
from hub.idempotency import service as idempotency
from hub.problems import problem_responses
from hub.settings import Settings
from hub.throttle import service as throttle

applications = APIRouter(prefix="/api/v1/applications", tags=["applications"])
cases = APIRouter(prefix="/api/v1/cases", tags=["cases"])

TrackingNo = Annotated[str, Path(pattern=r"^\d{20}[0-9X]$", description="办件编号")]
QueryCode = Annotated[
    str, Header(alias="X-Query-Code", min_length=4, max_length=16, description="查询码")
]
IdempotencyKeyHeader = Annotated[str | None, Header(
    alias=idempotency.HEADER, min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="幂等键 (optional): a new random value (a UUID) per application. A retry with the same key "
                "and the same body — after a timeout or a lost answer — gets the first answer again (same "
                "status and body, same tracking number and query code, header `Idempotent-Replayed: true`) "
                "and creates no second case, even when the requests run at the same time. The same key "
                "with a different body is refused with 422 naming this header. Keys are kept for "
                "`HUB_IDEMPOTENCY_KEY_TTL_S` seconds (default 24 h); a retry after that is a new "
                "application. Visible ASCII, at most 255 characters.",
)]


# --- the submission's Idempotency-Key, read by hand ------------------------------------------------
# FastAPI's solving of the one header parameter cost each submission more than the rest of its parameter
# handling (bench/callgrind_submit.py). The endpoint does not take the header as a parameter: it reads it
# itself and words a bad one as FastAPI did, with the same constraints (`IdempotencyKeyHeader`); the OpenAPI
# document gets FastAPI's own description of that parameter (`_documented_key_parameter`).

_KEY_HEADER = idempotency.HEADER.lower().encode("latin-1")  # ASGI servers send header names in lower case
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # IdempotencyKeyHeader's length and pattern, checked at once
_KEY_LOCATION = ("header", idempotency.HEADER)


@functools.cache
def _key_adapter() -> TypeAdapter[str | None]:
    return TypeAdapter(IdempotencyKeyHeader)


def _documented_key_parameter() -> dict[str, Any]:
    """The OpenAPI parameter object FastAPI writes for an ``IdempotencyKeyHeader`` parameter, taken from a
    one-route application: the submission's document says what it would say if FastAPI solved the header."""
    probe = FastAPI(openapi_url=None)

    @probe.post("/")
    def documented(idempotency_key: IdempotencyKeyHeader = None) -> None:
        """Never called: only its signature is read."""

    parameters: list[dict[str, Any]] = probe.openapi()["paths"]["/"]["post"]["parameters"]
    return parameters[0]


def _raw_key(request: Request) -> str | None:
    """The first ``Idempotency-Key`` header's value, as Starlette decodes it (Latin-1), as FastAPI took it."""
    for name, value in request.scope["headers"]:
        if name == _KEY_HEADER:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def _key_errors(value: str | None) -> list[dict[str, Any]]:
    """FastAPI's validation errors of the header (none when it is absent or well-formed)."""
    if value is None or _VALID_KEY.fullmatch(value):
        return []
    try:
        _key_adapter().validate_python(value)
    except ValidationError as exc:
        return [{**error, "loc": (*_KEY_LOCATION, *error["loc"])} for error in exc.errors()]
    return []  # pragma: no cover - the pattern above is the adapter's own constraints


class _BadKey(RequestValidationError):
    """A bad ``Idempotency-Key`` with a valid body: the header's errors alone, as FastAPI answered."""


def idempotency_key_of(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (None without one); raises FastAPI's 422 for a malformed one."""
    value = _raw_key(request)
    errors = _key_errors(value)
    if errors:
        raise _BadKey(errors)
    return value


class _SubmissionRoute(APIRoute):
    """``POST /api/v1/applications``: FastAPI solves the body, the endpoint reads ``Idempotency-Key`` itself
    (``idempotency_key_of``). A request with a bad body and a bad header still gets one 422 naming both, the
    header first, as when FastAPI solved the header; a body that is not JSON at all is refused alone, as
    FastAPI does before it reads any parameter."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def app(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                if isinstance(exc, _BadKey) or isinstance(exc.__cause__, json.JSONDecodeError):
                    raise
                errors = _key_errors(_raw_key(request))
                if not errors:
                    raise
                raise RequestValidationError([*errors, *exc.errors()], body=exc.body) from exc.__cause__

        return app


class SubmissionContext(NamedTuple):
    now: datetime
    settings: Settings
    registries: Registries | None


def context_of(request: Request) -> SubmissionContext:
    """The clock's time, the settings and the registries, read from the application's state."""
    state = request.app.state
    return SubmissionContext(state.clock.now(), state.settings, getattr(state, "registries", None))


async def submission_context(request: Request) -> SubmissionContext:
    """``context_of`` as one dependency (the window's registration): each dependency FastAPI solves costs
    the request more than the work of these three together."""
    return context_of(request)


def submit(request: Request, data: ApplicationIn) -> Response:
    """Submit an application (any hour, any region); returns the tracking number and query code.

    The applicant is verified against the registries after the application is stored; when a registry
    is down the answer is the same 201 with ``verification: pending``, and the hub re-verifies later.
    Send an ``Idempotency-Key`` so that retrying a submission whose answer was lost is safe."""
    # No dependency: solving the session and the context as FastAPI dependencies cost the submission more
    # CPU than its own write (bench/callgrind_submit.py). The unit of work is the request dependency's.
    # Read by hand, documented by `_documented_key_parameter`, a bad one worded as FastAPI did (`_SubmissionRoute`).
    key = idempotency_key_of(request)
    now, settings, registries = context_of(request)
    with request_unit_of_work(request) as session:
        if key is not None:
            return _submit_once(session, data, now, settings, registries, key)
        case, query_code = service.submit_application(session, data=data, now=now, registries=registries,
                                                      audit_key=settings.audit_key, attach=False)
        # Commits the case before any registry is asked, then the checks' results (hub/cases/flows.py).
        receipt = flows.submitted(session, case, query_code, registries=registries, now=now, settings=settings)
    # Serialised once, here: the response model documents the answer, it is not validated a second time.
    return Response(receipt.model_dump_json(), status_code=201, media_type="application/json")


applications.add_api_route(
    "", submit, methods=["POST"], response_model=ApplicationReceipt, status_code=201,
    responses=problem_responses(409, 422), route_class_override=_SubmissionRoute,
    openapi_extra={"parameters": [_documented_key_parameter()]},
)


def _submit_once(
    session: Session, data: ApplicationIn, now: datetime, settings: Settings, registries: Registries | None,
    key: str,
) -> JSONResponse:
    """The submission under an ``Idempotency-Key``: the key is claimed in the case's transaction and the
    answer stored with it (then replaced by the answer after the registry checks), so a retry gets the
    first answer back and concurrent duplicates make one case."""
    outcome = idempotency.claim(
        session, scope=idempotency.SUBMISSION, key=key, request=data.model_dump(mode="json"),
        secret=settings.secret_key, ttl_s=settings.idempotency_key_ttl_s, now=now,
    )
    if isinstance(outcome, idempotency.Replay):
        # The request dependency commits what the claim purged (expired keys).
        return JSONResponse(outcome.body, status_code=outcome.status, headers={"Idempotent-Replayed": "true"})
    case, query_code = service.submit_application(session, data=data, now=now, registries=registries,
                                                  audit_key=settings.audit_key, attach=False)
    # Until the registry checks are stored, a retry gets the first answer (same case and code, checks pending).
    body = flows.submitted_once(session, outcome, case, query_code, registries=registries, now=now,
                                settings=settings)
    return JSONResponse(body, status_code=201)


@applications.get(
    "/{tracking_no}", response_model=StatusOut, responses=problem_responses(404, 422, 429)
)
def application_status(
    tracking_no: TrackingNo, query_code: QueryCode, session: SessionDep, factory: SessionFactoryDep,
    settings: SettingsDep, now: NowDep,
) -> StatusOut:
    """Every step of the case with its time, department and opinion."""
    case = applicant_case(session, factory, tracking_no, query_code, settings=settings, now=now)
    return presenters.status(session, case, today=business_date(now))


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
    factory: SessionFactoryDep,
    settings: SettingsDep,
    now: NowDep,
) -> MaterialOut:
    """Upload one material of the item's list (PDF, JPEG, PNG or OFD), stored with its SHA-256."""
    case = applicant_case(session, factory, tracking_no, query_code, settings=settings, now=now)
    content = file.file.read(settings.max_material_bytes + 1)
    material = add_material(
        session, case=case, key=key, filename=file.filename or "material",
        content_type=file.content_type or "application/octet-stream", content=content,
        purpose="supplement" if case.state.endswith("supplement") else "application",
        settings=settings, now=now,
    )
    return presenters.material_out(material)


@applications.post(
    "/{tracking_no}/supplement", response_model=StatusOut,
    responses=problem_responses(404, 409, 422, 429),
)
def submit_supplement(
    tracking_no: TrackingNo, query_code: QueryCode, data: SupplementIn, session: SessionDep,
    factory: SessionFactoryDep, now: NowDep, settings: SettingsDep,
) -> StatusOut:
    """Tell the department the requested supplement (补正) is complete; the clock resumes."""
    case = applicant_case(session, factory, tracking_no, query_code, settings=settings, now=now)
    service.supplement(session, case=case, note=data.note, now=now, audit_key=settings.audit_key)
    return presenters.status(session, case, today=business_date(now))


@applications.post(
    "/{tracking_no}/withdraw", response_model=StatusOut,
    responses=problem_responses(404, 409, 422, 429),
)
def withdraw(
    tracking_no: TrackingNo, query_code: QueryCode, data: WithdrawIn, session: SessionDep,
    factory: SessionFactoryDep, now: NowDep, settings: SettingsDep,
) -> StatusOut:
    """Withdraw (撤回) the application before it is decided."""
    case = applicant_case(session, factory, tracking_no, query_code, settings=settings, now=now)
    service.withdraw(session, case=case, reason=data.reason, now=now, audit_key=settings.audit_key)
    return presenters.status(session, case, today=business_date(now))


def applicant_case(session: Session, factory: sessionmaker[Session], tracking_no: str, query_code: str, *,
                   settings: Settings, now: datetime) -> Case:
    """The case of a tracking number and its query code, within the tracking number's budget of wrong
    codes: past it, 429 until the window ends, even for the right code. The attempt is counted in a unit
    of work of its own (held briefly: the code check is one hash), committed whatever the answer — a wrong
    code counts although its request fails, a right one is given back although the request may fail
    later — and the case then joins the request's session (loaded already: no second query)."""
    with separate_unit_of_work(factory, commit_on=(HubError,)) as attempts:
        verdict = throttle.begin_query_code(attempts, tracking_no=tracking_no, settings=settings, now=now)
        verdict.raise_if_blocked()
        case = service.case_for_applicant(attempts, tracking_no=tracking_no, query_code=query_code)
        throttle.query_code_accepted(attempts, tracking_no=tracking_no)
    session.add(case)
    return case


@cases.get("/queue", response_model=QueueOut, responses=problem_responses(401))
def work_queue(
    session: SessionDep, officer: OfficerDep, now: NowDep,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> QueueOut:
    """The signed-in officer's work queue, nearest deadline first."""
    page = service.work_queue(session, officer=officer, offset=offset, limit=limit)
    calendar = load_calendar(session)
    today = business_date(now)
    taken = service.once_taken(session, page.rows)
    parents = progress.parent_numbers(session, page.rows)
    return QueueOut(
        officer=officer.username, total=page.total,
        entries=[presenters.queue_entry(c, officer, today, calendar, taken.get(c.id, frozenset()),
                                        parent_tracking_no=parents.get(c.parent_id or 0))
                 for c in page.rows],
    )


@cases.get(
    "/{tracking_no}", response_model=CaseOut, responses=problem_responses(401, 404, 422)
)
def get_case(
    tracking_no: TrackingNo, session: SessionDep, officer: OfficerDep, now: NowDep
) -> CaseOut:
    """The whole case, unmasked, for its department and supervisors over its region; any other
    officer gets the same 404 as for an unknown number."""
    case = service.case_for_officer(session, tracking_no=tracking_no, officer=officer)
    return presenters.officer_view(session, case, officer, business_date(now))


@cases.post(
    "/{tracking_no}/actions", response_model=ActionOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def act(
    tracking_no: TrackingNo, data: ActionIn, session: SessionDep, officer: OfficerDep,
    now: NowDep, settings: SettingsDep,
) -> ActionOut:
    """受理 / 不予受理 / 补正 / 审核 / 批准 / 不予批准 / 办结, with the officer's opinion; and the law's clock.

    404 for a case the officer may not see (as for an unknown number); 409 ``once-per-step`` for a
    second one-time supplement notice (一次性告知补正, Art. 32) in the same step (intake, review);
    409 ``intake-notice-late`` for a supplement notice at intake after its 5 working days (Art. 32: the case
    counts as accepted — accept it; a late ``accept`` records the day the application was received as the
    acceptance day); 409 ``partner-system-of-record`` for a case a partner platform reports (read-only in the hub).

    Clock actions (the state does not change; the event records the old and new deadlines):

    * ``extend`` (approver; the reason as ``opinion``, required): Administrative Licensing Law Art. 42 —
      once per case, by 10 working days (15 for joint handling, Art. 26). A second one: 409 ``already-extended``.
    * ``start_special_procedure`` (reviewer or approver; ``opinion`` = reason, required; ``data`` =
      ``{"kind": "hearing" | "tendering" | "auction" | "testing" | "inspection" | "quarantine" | "appraisal" |
      "expert_review", "declared_days": 1..365}``): Art. 45 — the clock stops; until it ends only
      ``end_special_procedure`` (and the applicant's withdrawal) is possible (409 ``special-procedure-open``).
    * ``end_special_procedure`` (reviewer or approver; ``data`` = ``{"result": text}``): the clock runs again and
      every deadline moves by the working days the procedure took.

    Bad ``data`` is a 422 naming the field (``data.kind``, ``data.declared_days``, ``data.result``,
    ``opinion``) and the rule; a clock action before acceptance or after the decision: 409 ``clock-not-running``."""
    require_role(officer, ["intake", "reviewer", "approver"])
    case = service.case_for_officer(session, tracking_no=tracking_no, officer=officer)
    event = service.act(
        session, case=case, actor=service.Actor.officer(officer), action=data.action,
        opinion=data.opinion, now=now, audit_key=settings.audit_key, data=data.data,
    )
    return ActionOut(
        tracking_no=case.tracking_no, action=data.action, from_state=event.from_state or "",
        state=case.state, state_label=service.definition_for(case).states[case.state],
        seq=event.seq, deadline=case.deadline,
    )
