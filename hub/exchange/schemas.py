from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RecordBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[Any] = Field(
        min_length=1, max_length=500,
        description="envelopes (schemas/envelope.v1.json) carrying case-record.v1 or case-event.v1 payloads",
    )


class RecordResult(BaseModel):
    """The answer for one record of a batch, in the order sent (``index``)."""

    index: int = Field(description="position of the record in the batch, from 0")
    message_id: str | None = Field(description="the envelope's message_id, when it had one")
    status: Literal["applied", "duplicate", "stale", "held", "rejected"]
    tracking_no: str | None = None
    reason: str | None = Field(None, description="for rejected: the category, e.g. schema, identifier, state, "
                               "applicant_type, text, source_mismatch, wrong_region, unknown_item")
    field: str | None = Field(None, description="for rejected: dotted path of the offending field, e.g. "
                              "payload.submitted_at or payload.applicant.name")
    rule: str | None = Field(None, description="for rejected: the rule the field broke, e.g. format, required, "
                             "follows_steps, matches_identifier, not_blank, no_control_characters")
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
