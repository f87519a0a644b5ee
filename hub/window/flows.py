"""What follows a window registration's flush, as for an online submission (hub/cases/flows.py): the case and
its scans commit first — with, under an ``Idempotency-Key``, the first answer — so a registry that is down
can never cost the registration; then the registries are asked and their results committed, a failure
swallowed (the case keeps its pending checks and the worker re-verifies)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from adapters.registries import Registries
from hub.auth.models import Officer
from hub.db import wrote
from hub.idempotency import service as idempotency
from hub.settings import Settings
from hub.verification import checks as verification
from hub.window.presenters import window_receipt
from hub.window.service import Registration

log = logging.getLogger("hub.window.flows")


def registered(session: Session, registration: Registration, officer: Officer, *,
               claim: idempotency.Claim | None, registries: Registries | None, now: datetime,
               settings: Settings) -> dict[str, Any]:
    """Commit the registration, verify the applicant, store the results; returns the receipt's body."""
    case = registration.case
    if claim is not None:
        idempotency.record(session, claim, status=201, case_id=case.id, body=_body(session, registration, officer))
    session.commit()
    verification.verify_on_submission(session, case, registries=registries, now=now, settings=settings)
    body = _body(session, registration, officer)
    if claim is not None:
        idempotency.record(session, claim, status=201, body=body)
    if wrote(session):
        try:
            session.commit()
        except Exception:
            session.rollback()
            log.exception("could not store verification results; left for the worker")
    return body


def _body(session: Session, registration: Registration, officer: Officer) -> dict[str, Any]:
    return window_receipt(session, registration, officer).model_dump(mode="json")
