from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from hub.cases.schemas import BranchProgress
from hub.pagination import PageOut


class DisclosedStep(BaseModel):
    """One step as the public sees it: who acted only as a role, free text redacted or withheld."""

    seq: int
    action: str
    label: str
    state: str
    state_label: str
    at: datetime = Field(description="China Standard Time (+08:00)")
    department: str | None
    actor: str = Field(description="申请人, 经办人 or 系统 (the hub itself: a join, a merged notice): never a "
                                   "person's name")
    opinion: str | None = Field(
        description="the officer's or platform's opinion with ID numbers, credit codes, phone numbers, long "
                    "numbers and personal names masked; applicants' own notes and reasons are not published")


class DisclosedCase(BaseModel):
    """办件公示: a case as the public sees it; structured fields only, personal data masked."""

    tracking_no: str
    item_code: str
    item_name: str
    department_name: str
    region: str
    applicant_name: str = Field(description="natural persons masked (张*明); organisations in full")
    applicant_id_number: str = Field(
        description="masked by what the number is, whatever applicant type the record claims: citizen ID "
                    "numbers 210102********123X, credit codes in full, other documents first and last character")
    state: str
    state_label: str
    submitted_at: datetime = Field(description="China Standard Time (+08:00)")
    accepted_on: date | None
    deadline: date | None
    result: str | None = Field(description="办理结果 in Chinese: 准予许可, 不予许可, 不予受理, 已撤回")
    result_code: str | None = Field(description="the same result as a code: granted, denied, intake_refused, withdrawn")
    completed_at: datetime | None = Field(description="China Standard Time (+08:00)")
    steps: list[DisclosedStep]
    branch: str | None = Field(default=None, description="a joint case's branch: its name")
    parent_tracking_no: str | None = Field(default=None, description="a joint case's branch: the joint case")
    branches: list[BranchProgress] = Field(
        default_factory=list, description="a joint case (并联审批): every department's progress side by side; "
                                          "their requests to the applicant redacted as opinions are")
    rating_level: int | None = Field(
        default=None, description="the applicant's rating (好差评), its level only: 5 非常满意 … 1 非常不满意; the "
                                  "comment is not published")
    rating_label: str | None = Field(default=None, description="the level's name, e.g. 满意")


class DisclosurePage(PageOut):
    cases: list[DisclosedCase]
