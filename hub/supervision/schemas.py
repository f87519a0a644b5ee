"""Bodies and answers of ``/api/v1/supervision`` (alerts, explanation, ruling, thresholds)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.pagination import PageOut
from hub.text_fields import FreeText, Name, OptionalFreeText


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountabilityIn(StrictModel):
    """责任追究 (Administrative Licensing Law Art. 72–77): the measure taken, the person held responsible, the day."""

    measure: FreeText = Field(min_length=1, max_length=200, examples=["诫勉谈话"])
    person: Name = Field(min_length=1, max_length=64, examples=["张三"])
    date: date


class AccountabilityOut(BaseModel):
    measure: str
    person: str
    date: date


class ExplanationIn(StrictModel):
    explanation: FreeText = Field(min_length=1, max_length=2000, description="情况说明：why the alert arose")
    correction: FreeText = Field(min_length=1, max_length=2000, description="整改情况：the correction made")


class RulingIn(StrictModel):
    ruling: Literal["accepted", "accountability"] = Field(
        description="`accepted` (说明采纳) or `accountability` (责任追究: `accountability` required)")
    opinion: OptionalFreeText = Field(default=None, max_length=2000)
    accountability: AccountabilityIn | None = None


class HistoryStep(BaseModel):
    model_config = ConfigDict(extra="allow")

    step: str | None = None
    at: str | None = None
    by: str | None = None


class AlertOut(BaseModel):
    id: int
    tracking_no: str
    rule: str
    kind: str
    level: str
    status: str
    status_label: str
    department: str
    department_name: str
    region_code: str
    supervisor_region_code: str = Field(description="the supervising region it sits with (one level up per escalation)")
    escalations: int
    message: str
    detail: dict[str, Any]
    raised_at: datetime
    raised_on: date
    closed_at: datetime | None
    explanation: str | None
    correction: str | None
    explained_by: str | None
    explained_at: datetime | None
    ruling: str | None
    ruled_by: str | None
    ruled_at: datetime | None
    accountability: AccountabilityOut | None
    history: list[dict[str, Any]]
    available_actions: list[str] = Field(description="what the caller may do: `explain`, `rule`")


class AlertPage(PageOut):
    alerts: list[AlertOut]


class ThresholdsIn(StrictModel):
    yellow_used_percent: int = Field(ge=1, le=100, description="yellow at ≥ this share of the limit used")
    yellow_days_left: int = Field(ge=0, le=30, description="yellow at ≤ this many working days left")
    red_escalation_days: int = Field(ge=1, le=60, description="a red alert unresolved this many working days "
                                                                "escalates one level up")


class ThresholdsOut(BaseModel):
    region_code: str
    source: Literal["own", "inherited", "default"]
    source_region_code: str | None
    yellow_used_percent: int
    yellow_days_left: int
    red_escalation_days: int
    updated_at: datetime | None
