from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from hub.cases import service as cases
from hub.clock import business_date
from hub.deps import NowDep, SessionDep
from hub.problems import problem_responses
from hub.transparency import service
from hub.transparency.schemas import DisclosedCase, DisclosurePage

router = APIRouter(prefix="/api/v1/transparency", tags=["transparency"])


@router.get("/cases", response_model=DisclosurePage, responses=problem_responses(422))
def list_disclosed(
    session: SessionDep,
    now: NowDep,
    region: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
    item_code: Annotated[str | None, Query(pattern=r"^\d{17}[0-9X]$")] = None,
    state: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DisclosurePage:
    page = service.list_cases(
        session, region=region, item_code=item_code, state=state, offset=offset, limit=limit
    )
    today = business_date(now)
    return DisclosurePage(
        total=page.total, offset=page.offset, limit=page.limit,
        cases=[service.disclose(session, c, today=today) for c in page.rows],
    )


@router.get(
    "/cases/{tracking_no}", response_model=DisclosedCase, responses=problem_responses(404, 422)
)
def disclosed_case(
    tracking_no: Annotated[str, Path(pattern=r"^\d{20}[0-9X]$")], session: SessionDep, now: NowDep
) -> DisclosedCase:
    """One case's steps and result; a joint case with every department's progress side by side."""
    return service.disclose(session, cases.get_case(session, tracking_no), today=business_date(now))
