"""What follows a submission's commit, in one place (docs/architecture.md, "Units of work").

The router stores the application (``service.submit_application``, flush only) and hands over here. A flow
commits the case first — with its pending registry checks and, under an ``Idempotency-Key``, the first
answer — so that a registry that is down, slow or crashing can never cost a submission; then asks the
registries within the budget and commits their results, swallowing a failure: the case keeps its pending
checks, the worker re-verifies it, and the applicant still gets the receipt.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from adapters.registries import Registries
from hub.cases import presenters, writes
from hub.cases.models import Case
from hub.cases.schemas import ApplicationReceipt
from hub.db import wrote
from hub.idempotency import service as idempotency
from hub.settings import Settings
from hub.verification import checks as verification

log = logging.getLogger("hub.cases.flows")


def submitted(session: Session, case: Case, query_code: str, *, registries: Registries | None, now: datetime,
              settings: Settings) -> ApplicationReceipt:
    """Commit the new case, verify its applicant, store the results; the receipt says how far it got."""
    session.commit()
    _verify(session, case, registries=registries, now=now, settings=settings)
    _commit_results_quietly(session)
    return presenters.receipt(case, query_code, session)


def submitted_once(session: Session, claim: idempotency.Claim, case: Case, query_code: str, *,
                   registries: Registries | None, now: datetime, settings: Settings) -> dict[str, Any]:
    """The same under an ``Idempotency-Key``: the key's first answer (checks pending) commits with the case,
    so a retry during the checks gets the same case and code; it is replaced by the answer after the checks,
    which commits with their results. Returns the answer's body (status 201)."""
    idempotency.record(session, claim, status=201, case_id=case.id,
                       body=presenters.receipt(case, query_code, session).model_dump(mode="json"))
    session.commit()
    _verify(session, case, registries=registries, now=now, settings=settings)
    body = presenters.receipt(case, query_code, session).model_dump(mode="json")
    idempotency.record(session, claim, status=201, body=body)
    _commit_results_quietly(session)
    return body


def _verify(session: Session, case: Case, *, registries: Registries | None, now: datetime,
            settings: Settings) -> None:
    """The registry checks of the committed case, when a registry is configured. The router wrote the case
    outside the session (``writes.insert_case``'s ``attach``): it and its checks join it here, to be
    updated with the results."""
    if registries is None:
        return  # nothing is asked, nothing stored
    if inspect(case).transient:
        writes.attach(session, case)
    verification.verify_on_submission(session, case, registries=registries, now=now, settings=settings)


def _commit_results_quietly(session: Session) -> None:
    """Commit the registry results of a submission that is stored already. If even that fails, the case
    keeps its pending checks (the worker re-verifies) and the applicant still gets the receipt. Nothing
    written since the case's commit (no registry asked): nothing to commit."""
    if not wrote(session):
        return
    try:
        session.commit()
    except Exception:
        session.rollback()
        log.exception("could not store verification results; left for the worker")
