from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from sqlalchemy.exc import IntegrityError

from hub.deps import NowDep, SessionDep, SettingsDep
from hub.errors import Conflict, Unauthorized
from hub.exchange import feedback, service
from hub.exchange.models import Partner
from hub.exchange.partners import authenticate_partner
from hub.exchange.schemas import BatchResult, RecordBatch, RecordResult, RecordStatus
from hub.problems import problem_responses

router = APIRouter(prefix="/api/v1/exchange", tags=["exchange"])
basic = HTTPBasic(auto_error=False, description="partner code and secret")


def current_partner(
    session: SessionDep, credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]
) -> Partner:
    if credentials is None:
        raise Unauthorized("需要交换伙伴凭证 (HTTP Basic: partner code and secret)")
    return authenticate_partner(session, code=credentials.username, secret=credentials.password)


@router.post("/records", response_model=BatchResult, responses=problem_responses(401, 409, 422))
def push_records(
    batch: RecordBatch, session: SessionDep, now: NowDep, settings: SettingsDep,
    partner: Annotated[Partner, Depends(current_partner)],
) -> BatchResult:
    """For partners without AMQP: a batch of case records/events, with a result for each record.

    A record that can never apply is answered ``rejected`` with its ``field`` and ``rule`` and leaves
    nothing behind (each record is applied in its own savepoint, ``service.ingest_batch``, with the batch's
    look-ups made once); the others are applied and the batch commits once, as a whole. The sender is
    the partner of the credentials, never the envelope.
    """
    try:
        applied = service.ingest_batch(session, envelopes=[(envelope, partner.code) for envelope in batch.records],
                                       now=now, audit_key=settings.audit_key)
        results = [_result(index, envelope, done) for index, (envelope, done)
                   in enumerate(zip(batch.records, applied, strict=True))]
        feedback.tell_rejected_records(session, partner=partner, envelopes=batch.records,
                                       rejections=[done.rejected for done in applied], now=now)
        # Flushed here, where a duplicate is still a 409; the request dependency commits the batch.
        session.flush()
    except IntegrityError as exc:
        # Another request applied one of these message ids at the same moment; nothing of this batch is
        # kept (the request dependency rolls it back), and sending it again answers those records as
        # duplicates.
        raise Conflict("同一消息正被并发处理，请重发整批 (a message of this batch was applied concurrently; "
                       "send the batch again)") from exc
    rejected = sum(1 for r in results if r.status == "rejected")
    return BatchResult(accepted=len(results) - rejected, rejected=rejected, results=results)


def _result(index: int, envelope: Any, applied: service.Applied) -> RecordResult:
    message_id = envelope.get("message_id") if isinstance(envelope, dict) else None
    message_id = message_id if isinstance(message_id, str) else None
    if applied.error is not None:
        raise applied.error  # IntegrityError: answered 409 above; anything else stays a server error
    if applied.rejected is not None:
        exc = applied.rejected
        return RecordResult(index=index, message_id=message_id, status="rejected", reason=exc.reason,
                            field=exc.field, rule=exc.rule, detail=exc.detail)
    outcome = applied.result
    assert outcome is not None
    return RecordResult(index=index, message_id=message_id, status=outcome.outcome,  # type: ignore[arg-type]
                        tracking_no=outcome.tracking_no, detail=outcome.detail)


@router.get("/records/{message_id}", response_model=RecordStatus, responses=problem_responses(401, 404, 422))
def record_status(
    message_id: Annotated[str, Path(min_length=1, max_length=64, description="the message's id (its envelope's "
                                    "message_id, else the AMQP message_id property)")],
    session: SessionDep, partner: Annotated[Partner, Depends(current_partner)],
) -> RecordStatus:
    """What became of one message of the calling partner, sent over REST or AMQP: ``applied``, ``duplicate``,
    ``stale`` (an older record version), ``held`` (a step waiting for its predecessor), ``rejected`` (it can
    never apply: ``reason`` and ``errors`` say which field broke which rule) or ``dead_lettered`` (not applied
    within the delivery limit). 404 for an id the hub has no answer for — unknown, still queued, or another
    partner's message."""
    return RecordStatus(**feedback.record_status(session, partner_code=partner.code, message_id=message_id))
