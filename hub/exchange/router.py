from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from sqlalchemy.orm import Session

from hub.deps import NowDep, SessionDep, SettingsDep
from hub.errors import Unauthorized
from hub.exchange import service
from hub.exchange.models import Partner
from hub.exchange.partners import authenticate_partner
from hub.exchange.schemas import BatchResult, RecordBatch, RecordResult
from hub.problems import problem_responses

router = APIRouter(prefix="/api/v1/exchange", tags=["exchange"])
basic = HTTPBasic(auto_error=False, description="partner code and secret")


def current_partner(
    session: SessionDep, credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]
) -> Partner:
    if credentials is None:
        raise Unauthorized("需要交换伙伴凭证 (HTTP Basic: partner code and secret)")
    return authenticate_partner(session, code=credentials.username, secret=credentials.password)


@router.post("/records", response_model=BatchResult, responses=problem_responses(401, 422))
def push_records(
    batch: RecordBatch, session: SessionDep, now: NowDep, settings: SettingsDep,
    partner: Annotated[Partner, Depends(current_partner)],
) -> BatchResult:
    """For partners without AMQP: a batch of case records/events, with a result for each record.

    Each record is applied in its own savepoint, so one bad record does not hold back the others.
    """
    results = [_apply_one(session, partner.code, index, envelope, now, settings.audit_key)
               for index, envelope in enumerate(batch.records)]
    session.commit()
    rejected = sum(1 for r in results if r.status == "rejected")
    return BatchResult(accepted=len(results) - rejected, rejected=rejected, results=results)


def _apply_one(
    session: Session, source: str, index: int, envelope: dict[str, Any], now: Any, audit_key: str
) -> RecordResult:
    message_id = envelope.get("message_id") if isinstance(envelope.get("message_id"), str) else None
    try:
        with session.begin_nested():
            outcome = service.ingest(session, envelope=envelope, authenticated_source=source, now=now,
                                     audit_key=audit_key)
    except service.RecordRejected as exc:
        return RecordResult(index=index, message_id=message_id, status="rejected", reason=exc.reason,
                            detail=exc.detail)
    return RecordResult(index=index, message_id=message_id, status=outcome.outcome,  # type: ignore[arg-type]
                        tracking_no=outcome.tracking_no, detail=outcome.detail)
