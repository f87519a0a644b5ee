from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RecordBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(
        min_length=1, max_length=500,
        description="envelopes (schemas/envelope.v1.json) carrying case-record.v1 or case-event.v1 payloads",
    )


class RecordResult(BaseModel):
    index: int
    message_id: str | None
    status: Literal["applied", "duplicate", "stale", "held", "rejected"]
    tracking_no: str | None = None
    reason: str | None = None
    detail: str = ""


class BatchResult(BaseModel):
    accepted: int
    rejected: int
    results: list[RecordResult]


class PartnerOut(BaseModel):
    code: str
    name: str
    kind: str
    region: str
    record_types: list[str]
    active: bool
