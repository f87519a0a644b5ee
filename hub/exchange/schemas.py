from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from hub.contracts.catalogue import self_contained


def _record_schema() -> dict[str, Any]:
    """The OpenAPI shape of one record: the envelope (schemas/envelope.v1.json) whose payload is a case record or
    a case step, embedded whole (every reference inlined) so the document stands alone, offline too."""
    payload = {
        "oneOf": [self_contained("case-record.v1.json"), self_contained("case-event.v1.json")],
        "description": "envelope type case-record (version 1): the whole case, /schemas/case-record.v1.json; "
                       "envelope type case-event (version 1): one new step, /schemas/case-event.v1.json",
    }
    return {
        **self_contained("envelope.v1.json", replace={"payload": payload}),
        "title": "Record envelope",
        "description": "One record as served at /schemas/envelope.v1.json with its payload per "
                       "/schemas/case-record.v1.json or /schemas/case-event.v1.json. Each record is checked on its "
                       "own: one that breaks a rule is answered `rejected` in the results, naming the field and "
                       "the rule (and told on partner.<code>.rejected.v1); the batch is not refused for it.",
    }


# Validation stays per record (hub/exchange/service.py), so a bad record is one `rejected` result, never a 422
# for the batch: the schema below documents the records, it does not make pydantic check them.
Record = Annotated[Any, WithJsonSchema(_record_schema())]


class RecordBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[Record] = Field(
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


class RecordError(BaseModel):
    field: str | None = Field(description="dotted path of the offending field; null when the whole message is at "
                              "fault")
    rule: str = Field(description="the rule it broke, e.g. required, format, within_partner_region")
    message: str


class RecordStatus(BaseModel):
    """What became of one message of the calling partner (``GET /api/v1/exchange/records/{message_id}``)."""

    message_id: str
    partner_code: str
    status: Literal["applied", "duplicate", "stale", "held", "rejected", "dead_lettered"]
    received_at: datetime = Field(description="when the hub applied, or decided about, the message")
    tracking_no: str | None = Field(None, description="the hub's tracking number of the case it applied to")
    reason: str | None = Field(None, description="rejected/dead_lettered: why, in Chinese then in English")
    errors: list[RecordError] = Field(default_factory=list, description="rejected: the offending fields and rules")
