from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, Field

from hub.auth.service import require_role
from hub.calendar import service
from hub.deps import NowDep, OfficerDep, SessionDep, SettingsDep
from hub.problems import problem_responses

router = APIRouter(prefix="/api/v1/calendar", tags=["calendar"])


class Override(BaseModel):
    day: str
    working: bool
    name: str
    source: str


class YearOut(BaseModel):
    year: int
    coverage: str
    working_days: int
    overrides: list[Override]


class NoticeLoaded(BaseModel):
    year: int
    days: int
    recomputed: list[str] = Field(description="tracking numbers of the open cases whose deadlines the notice changed "
                                              "(each got a `deadline_recomputed` event with the old and new dates)")


@router.get("/{year}", response_model=YearOut, responses=problem_responses(422))
def year(year: Annotated[int, Path(ge=2004, le=2100)], session: SessionDep) -> YearOut:
    """Working days of a year and where they come from (notice, built-in table, Mon–Fri)."""
    return YearOut.model_validate(service.year_overview(session, year))


@router.post(
    "/notices", response_model=NoticeLoaded, status_code=201,
    responses=problem_responses(401, 403, 422),
)
def load_notice(
    notice: Annotated[dict[str, Any], Body(examples=[{
        "year": 2027, "source": "国务院办公厅关于2027年部分节假日安排的通知",
        "holidays": [{"name": "元旦", "from": "2027-01-01", "to": "2027-01-03"}],
        "workdays": [{"name": "春节调休", "date": "2027-02-07"}],
    }])],
    session: SessionDep, officer: OfficerDep, now: NowDep, settings: SettingsDep,
) -> NoticeLoaded:
    """Load a year's State Council holiday notice (administrators).

    The deadlines of every open case whose working days the notice changes are recomputed from the case's
    recorded facts (acceptance, limits, extension, suspensions; Art. 82); each change is an event
    `deadline_recomputed` on the case with the old and new dates, and a `case.deadline_recomputed.v1` message."""
    require_role(officer, ["admin"])
    loaded = service.load_notice(session, notice=notice, now=now, audit_key=settings.audit_key)
    return NoticeLoaded(year=int(notice["year"]), days=loaded.days, recomputed=loaded.recomputed)
