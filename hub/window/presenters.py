"""The window's views: the receipt it prints and the status of a case it registered."""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.cases import presenters
from hub.cases import service as cases
from hub.cases.models import Case
from hub.org.models import Department
from hub.window.schemas import WindowCaseOut, WindowReceipt
from hub.window.service import Registration


def window_receipt(session: Session, registration: Registration, officer: Officer) -> WindowReceipt:
    case, window = registration.case, officer.department
    receipt = presenters.receipt(case, registration.query_code, session)
    return WindowReceipt(
        **receipt.model_dump(), channel=case.channel, registered_by=officer.username,
        registered_by_name=officer.name, receiving_region=window.region_code, receiving_department=window.key,
        receiving_department_name=window.name, forwarded=cases.is_forwarded(case),
        materials_received=[presenters.material_out(m) for m in registration.materials],
    )


def window_case(session: Session, case: Case, *, today: date) -> WindowCaseOut:
    status = presenters.status(session, case, today=today)
    receiving = session.get(Department, case.receiving_department_id) if case.receiving_department_id else None
    return WindowCaseOut(
        **status.model_dump(), channel=case.channel, region=case.region_code,
        receiving_region=case.receiving_region_code,
        receiving_department=receiving.key if receiving else None,
        receiving_department_name=receiving.name if receiving else None,
        forwarded=cases.is_forwarded(case),
    )
