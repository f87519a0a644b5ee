from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.text_fields import FreeText, Name, OptionalFreeText
from hub.verification.schemas import VerificationBrief, VerificationOut, VerificationSummary

ApplicantType = Literal["1", "2", "3", "4", "5", "6", "9"]
IdType = Literal["citizen_id", "credit_code", "passport", "other"]
Channel = Literal["online", "window", "partner"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApplicantIn(StrictModel):
    type: ApplicantType = Field(
        description="1 自然人, 2 企业法人, 3 事业单位, 4 社会组织, 5 非法人企业, 6 行政机关, 9 其他"
    )
    name: Name = Field(min_length=1, max_length=128, description="normalised (NFC, edges trimmed); blank, "
                                                                  "invisible or control characters are refused")
    id_type: IdType
    id_number: str = Field(min_length=5, max_length=32)
    phone: str = Field(pattern=r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
    region: str | None = Field(default=None, pattern=r"^\d{6}$", description="the applicant's own region")


class ApplicationIn(StrictModel):
    item_code: str = Field(min_length=18, max_length=18)
    applicant: ApplicantIn
    form: dict[str, Any] = Field(default_factory=dict)
    channel: Channel = "online"


class MaterialRequest(BaseModel):
    key: str
    name: str
    form: str
    count: int
    required: bool
    replaceable_by: str | None
    replaced_by_registry: bool = Field(
        default=False, description="a registry check of this applicant succeeded: the material is not needed")


class ApplicationReceipt(BaseModel):
    tracking_no: str
    query_code: str = Field(description="keep it: the status query needs it with the tracking number")
    state: str
    state_label: str
    item_code: str
    item_name: str
    department: str
    department_name: str
    submitted_at: datetime
    received_on: date | None = Field(
        default=None, description="the working day the application counts as received: after 17:00, on a weekend "
                                  "or a holiday, the next working day (docs/time-rules.md)")
    intake_deadline: date | None = Field(description="the last day for the intake decision or the one supplement "
                                                     "notice: 5 working days after receipt (Art. 32)")
    materials: list[MaterialRequest]
    verification: VerificationSummary = Field(
        default="none", description="registry checks of the applicant: verified, failed, pending (re-verified "
                                    "later; the application is accepted all the same), not_configured, none")
    status_url: str


class StepOut(BaseModel):
    seq: int
    action: str
    label: str
    state: str
    state_label: str
    at: datetime
    department: str | None
    actor: str
    opinion: str | None


class MaterialOut(BaseModel):
    id: int = Field(description="referenced as evidence of a manual verification")
    key: str
    filename: str
    content_type: str
    size: int
    sha256: str
    purpose: str
    uploaded_at: datetime


class ClockFields(BaseModel):
    """The law's clock of a case or branch, computed for today in working days (Art. 82)."""

    statutory_deadline: date | None = Field(description="法定期限: acceptance + the statutory limit (Art. 42), "
                                                        "its one extension and every suspension")
    promised_deadline: date | None = Field(description="承诺期限: acceptance + the item's promised limit + suspensions")
    working_days_used: int = Field(description="working days counted since acceptance, suspensions excluded")
    days_suspended: int = Field(description="working days not counted: supplements and special procedures (Art. 45)")
    days_remaining: int | None = Field(description="working days left before the statutory deadline (negative when "
                                                   "overdue); null before acceptance")


class BranchProgress(BaseModel):
    """One department's progress on a joint case (并联审批), shown side by side with the others."""

    branch: str = Field(description="the branch's name in the item's workflow definition, e.g. seal_engraving")
    label: str = Field(description="the branch's Chinese name, e.g. 公章刻制（公安）")
    tracking_no: str = Field(description="the branch case's own tracking number")
    department: str = Field(description="the department handling the branch: region code + department number")
    department_name: str
    state: str
    state_label: str
    current_step: str | None = Field(description="the step the branch is at (同步预审, 审核, 决定); null once ended")
    deadline: date | None = Field(description="the branch's promised deadline (its time allocation, suspensions "
                                              "not counted)")
    statutory_deadline: date | None
    days_remaining: int | None
    suspended: bool = Field(description="the branch's clock is stopped (a supplement or an Art. 45 procedure)")
    result: str | None
    supplement_request: str | None = Field(
        default=None, description="while the branch waits for the applicant: what it asked for (one line of the "
                                  "merged supplement notice, Art. 32)")
    reasons: str | None = Field(default=None, description="a denied branch: the department's reasons (Art. 38)")


class JointFields(BaseModel):
    """Where a case stands in a joint approval: a branch names its parent; a parent lists its branches."""

    branch: str | None = Field(default=None, description="a branch case: its branch name")
    parent_tracking_no: str | None = Field(default=None, description="a branch case: the joint case's tracking "
                                                                     "number (the applicant's)")
    branches: list[BranchProgress] = Field(
        default_factory=list, description="a joint case: every department's progress, side by side")


class CaseRating(BaseModel):
    """The applicant's rating of the case (好差评, hub/supervision/ratings.py)."""

    service_event: str = Field(description="the service rated: completion (办结)")
    level: int = Field(description="5 非常满意, 4 满意, 3 基本满意, 2 不满意, 1 非常不满意")
    level_label: str
    comment: str | None
    source: Literal["applicant", "partner"] = Field(description="partner: carried in a city platform's record")
    rated_at: datetime
    follow_up_status: Literal["open", "done"] | None = Field(
        description="a rating of 2 (不满意) or worse: the department's follow-up, open until it is recorded")
    follow_up_due_on: date | None = Field(description="15 working days after the rating")


class FeeBrief(BaseModel):
    """The case's fee (issue 12): what it owes and where that stands; GET /api/v1/cases/{tracking_no}/fee has
    the rest (basis, exemption, payment orders)."""

    amount_fen: int = Field(description="应缴金额（分）")
    paid_fen: int
    due: Literal["before_acceptance", "before_completion"]
    status: Literal["due", "paid", "waived", "exempt", "refunded"]
    source: Literal["hub", "partner"] = Field(description="partner: as the city platform reported it")


class StatusOut(JointFields, ClockFields):
    tracking_no: str
    item_code: str
    item_name: str
    department: str
    department_name: str
    applicant_name: str
    applicant_id_number: str
    state: str
    state_label: str
    submitted_at: datetime
    accepted_on: date | None
    deadline: date | None
    suspended: bool
    result: str | None
    completed_at: datetime | None
    steps: list[StepOut]
    materials: list[MaterialOut]
    applicant_actions: list[str]
    verifications: list[VerificationBrief] = Field(default_factory=list, description="registry checks (masked)")
    rating: CaseRating | None = Field(default=None, description="the rating once given (好差评): after completion, "
                                                                "POST /api/v1/applications/{tracking_no}/rating")
    fee: FeeBrief | None = Field(default=None, description="the fee the case owes (收费) and its status; none: the "
                                                           "item charges nothing")


class CaseOut(StatusOut):
    region: str
    channel: str
    origin: str
    applicant_type: str
    applicant_id_type: str
    applicant_phone: str | None
    form: dict[str, Any]
    received_on: date | None
    intake_deadline: date | None
    extension_days: int = Field(description="the one Art. 42 extension granted, in working days (0: none)")
    suspensions: list[dict[str, Any]] = Field(description="every stop of the clock: kind (supplement or an Art. 45 "
                                                          "procedure), reason, declared_days, started_on, ended_on")
    step_deadlines: dict[str, Any]
    suspended_working_days: int
    working_days_left: int | None
    available_actions: list[str]
    missing_materials: list[str]
    verifications: list[VerificationOut] = Field(  # type: ignore[assignment]
        default_factory=list, description="registry checks with source registry, time and outcome")


class ActionIn(StrictModel):
    action: str = Field(min_length=1, max_length=32, pattern=r"^[a-z_]+$")
    opinion: OptionalFreeText = Field(default=None, max_length=2000)
    data: dict[str, Any] | None = Field(
        default=None, max_length=8,
        description="the clock actions' details: `start_special_procedure` {\"kind\": one of hearing, tendering, "
                    "auction, testing, inspection, quarantine, appraisal, expert_review; \"declared_days\": working "
                    "days told to the applicant, 1–365} (Art. 45); `end_special_procedure` {\"result\": text}; "
                    "`extend` none (the reason is the opinion; Art. 42)",
        examples=[{"kind": "expert_review", "declared_days": 10}],
    )


class ActionOut(BaseModel):
    tracking_no: str
    action: str
    from_state: str
    state: str
    state_label: str
    seq: int
    deadline: date | None


class SupplementIn(StrictModel):
    note: FreeText = Field(min_length=1, max_length=2000)


class WithdrawIn(StrictModel):
    reason: FreeText = Field(min_length=1, max_length=500)


class QueueEntry(BaseModel):
    tracking_no: str
    branch: str | None = Field(default=None, description="a joint case's branch: its name")
    parent_tracking_no: str | None = Field(default=None, description="a joint case's branch: the joint case")
    item_name: str
    state: str
    state_label: str
    applicant_name: str
    submitted_at: datetime
    deadline: date | None
    step_deadline: date | None
    working_days_left: int | None
    overdue: bool
    actions: list[str]


class QueueOut(BaseModel):
    officer: str
    total: int
    entries: list[QueueEntry]
