from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel

from hub.cases.schemas import StepOut


class DisclosedCase(BaseModel):
    """办件公示: a case as the public sees it; names, ID numbers and phones masked."""

    tracking_no: str
    item_code: str
    item_name: str
    department_name: str
    region: str
    applicant_name: str
    applicant_id_number: str
    state: str
    state_label: str
    submitted_at: datetime
    accepted_on: date | None
    deadline: date | None
    result: str | None
    completed_at: datetime | None
    steps: list[StepOut]


class DisclosurePage(BaseModel):
    total: int
    offset: int
    limit: int
    cases: list[DisclosedCase]
