"""HTTP: the applicant's rating of a completed case (好差评), and the follow-ups of bad ratings for departments and
supervisors (hub/supervision/ratings.py)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from hub.cases.router import QueryCode, TrackingNo, applicant_case
from hub.cases.schemas import CaseRating
from hub.clock import business_date
from hub.deps import NowDep, OfficerDep, SessionDep, SessionFactoryDep, SettingsDep
from hub.pagination import PageOut
from hub.problems import problem_responses
from hub.supervision import ratings
from hub.text_fields import FreeText, OptionalFreeText

applicant_ratings = APIRouter(prefix="/api/v1/applications", tags=["applications"])
follow_ups = APIRouter(prefix="/api/v1/supervision/follow-ups", tags=["supervision"])

Level = Annotated[int, Field(strict=True, ge=1, le=5,
                             description="5 非常满意, 4 满意, 3 基本满意, 2 不满意, 1 非常不满意")]


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Level
    comment: OptionalFreeText = Field(
        default=None, max_length=500,
        description="optional; normalised like every free text (NFC, edges trimmed; control or invisible-only text "
                    "refused). Shown to the applicant, the department and supervisors; never published or logged")


class FollowUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: FreeText = Field(min_length=1, max_length=2000,
                           description="what the department found and did (回访、整改), in its own words")


class FollowUpOut(BaseModel):
    id: int = Field(description="the rating's id: POST /api/v1/supervision/follow-ups/{id} records the follow-up")
    tracking_no: str
    item_name: str
    department: str = Field(description="region code + department number")
    department_name: str
    region: str
    level: int
    level_label: str
    comment: str | None
    source: Literal["applicant", "partner"]
    rated_at: datetime
    due_on: date
    status: Literal["open", "done"]
    overdue: bool = Field(description="open past its day, or recorded after it")
    note: str | None
    followed_up_by: str | None
    followed_up_at: datetime | None


class FollowUpPage(PageOut):
    follow_ups: list[FollowUpOut]


def follow_up_out(item: ratings.FollowUp) -> FollowUpOut:
    rating = item.rating
    assert rating.follow_up_due_on is not None and rating.follow_up_status is not None
    return FollowUpOut(
        id=rating.id, tracking_no=item.tracking_no, item_name=item.item_name, department=item.department.key,
        department_name=item.department.name, region=rating.region_code, level=rating.level,
        level_label=ratings.LEVELS[rating.level], comment=rating.comment, source=rating.source,  # type: ignore[arg-type]
        rated_at=rating.rated_at, due_on=rating.follow_up_due_on, status=rating.follow_up_status,  # type: ignore[arg-type]
        overdue=item.overdue, note=rating.follow_up_note, followed_up_by=rating.followed_up_by,
        followed_up_at=rating.followed_up_at,
    )


@applicant_ratings.post(
    "/{tracking_no}/rating", response_model=CaseRating, status_code=201,
    responses=problem_responses(404, 409, 422, 429),
)
def rate(
    tracking_no: TrackingNo, query_code: QueryCode, data: RatingIn, session: SessionDep, factory: SessionFactoryDep,
    settings: SettingsDep, now: NowDep,
) -> CaseRating:
    """Rate the service (好差评) once the case is completed: 5 非常满意 … 1 非常不满意, with an optional comment.

    The tracking number and its query code as for the status (wrong codes count against the same budget: 429
    past it). 409 ``case-not-completed`` before the case has ended with the department's answer (or when it was
    withdrawn); 409 ``already-rated`` for a second rating of the case; 409 ``partner-system-of-record`` for a case
    a city platform handles (rated on the platform). A rating of 2 (不满意) or worse opens a follow-up for the
    department, due in 15 working days."""
    case = applicant_case(session, factory, tracking_no, query_code, settings=settings, now=now)
    return ratings.case_rating(ratings.rate(session, case=case, level=data.level, comment=data.comment, now=now))


@follow_ups.get("", response_model=FollowUpPage, responses=problem_responses(401, 403, 422))
def list_follow_ups(
    session: SessionDep, officer: OfficerDep, now: NowDep,
    region: Annotated[str | None, Query(
        pattern=r"^\d{6}$", description="a supervisor's region or one below (default: his own), with its descendants",
    )] = None,
    department: Annotated[str | None, Query(pattern=r"^\d{9}$", description="region code + department number")] = None,
    status: Annotated[Literal["open", "done"] | None, Query()] = None,
    overdue: Annotated[bool | None, Query(description="true: open past their day")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> FollowUpPage:
    """Follow-ups of bad ratings (不满意, 非常不满意), the nearest due first, overdue ones marked: a supervisor's
    region and below; a department officer's own department."""
    page = ratings.list_follow_ups(
        session, officer=officer, region=region, department=department, status=status, overdue=overdue,
        today=business_date(now), offset=offset, limit=limit,
    )
    return FollowUpPage(total=page.total, offset=page.offset, limit=page.limit,
                        follow_ups=[follow_up_out(item) for item in page.rows])


@follow_ups.post("/{rating_id}", response_model=FollowUpOut, responses=problem_responses(401, 404, 409, 422))
def record_follow_up(
    rating_id: Annotated[int, Path(ge=1, le=2_147_483_647)], data: FollowUpIn, session: SessionDep,
    officer: OfficerDep, now: NowDep,
) -> FollowUpOut:
    """The department records its follow-up of a bad rating (once): an officer of the case's department. A
    rating without a follow-up, or another department's, is answered as an unknown id (404)."""
    return follow_up_out(ratings.record_follow_up(session, rating_id=rating_id, officer=officer, note=data.note,
                                                  now=now))
