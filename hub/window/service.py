"""The window channel (窗口): a service-centre officer registers a paper application on the applicant's behalf.

The application then follows the same flow as an online one (hub/cases/service.submit_application): the
case goes to the item's implementing department, whichever region the window is in — a window of one city
may take an application for another region's item (跨域通办, forwarded; the receiving window is recorded on
the case). The officer is the submit step's actor; the scans handed in are stored as the application's
materials (hub/cases/materials.py), in the same unit of work as the case.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.registries import Registries
from hub.auth.models import Officer
from hub.cases import service as cases
from hub.cases.materials import add_material
from hub.cases.models import Case, Material
from hub.cases.schemas import ApplicationIn
from hub.errors import FieldError, ValidationFailed
from hub.settings import Settings
from hub.window.schemas import ScannedMaterialIn, WindowApplicationIn

ROLE = "window"
WINDOW_CHANNEL: Literal["window"] = "window"


@dataclass(frozen=True)
class Scan:
    key: str
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Registration:
    case: Case
    query_code: str
    materials: list[Material]


def register(
    session: Session, *, data: WindowApplicationIn, officer: Officer, now: datetime, settings: Settings,
    registries: Registries | None = None,
) -> Registration:
    """Register the paper application and store its scans; nothing is committed (the flow commits)."""
    scans = decoded(data.materials)
    application = ApplicationIn(item_code=data.item_code, applicant=data.applicant, form=data.form,
                                channel=WINDOW_CHANNEL)
    case, query_code = cases.submit_application(
        session, data=application, now=now, audit_key=settings.audit_key, registries=registries,
        registered_by=cases.Actor.officer(officer), receiving_department=officer.department,
    )
    _check_window_item(case)
    stored = [
        add_material(session, case=case, key=scan.key, filename=scan.filename, content_type=scan.content_type,
                     content=scan.content, purpose="application", settings=settings, now=now)
        for scan in scans
    ]
    return Registration(case, query_code, stored)


def decoded(materials: list[ScannedMaterialIn]) -> list[Scan]:
    """The scans' bytes; a material that is not base64 is refused naming it."""
    scans, errors = [], []
    for index, material in enumerate(materials):
        try:
            content = base64.b64decode(material.content_base64, validate=True)
        except (binascii.Error, ValueError):
            errors.append(FieldError(f"materials.{index}.content_base64", "base64",
                                     "扫描件内容须为 base64 编码 (content must be base64)"))
            continue
        scans.append(Scan(material.key, material.filename, material.content_type, content))
    if errors:
        raise ValidationFailed(errors)
    return scans


def _check_window_item(case: Case) -> None:
    # The guide says how an item is applied for (办理形式); the seed's items all take window applications.
    if WINDOW_CHANNEL not in case.item.guide.get("how", [WINDOW_CHANNEL]):
        raise ValidationFailed([FieldError("item_code", "window_accepted", "该事项不受理窗口申请")])


def case_for_window(session: Session, *, tracking_no: str, officer: Officer) -> Case:
    """A case this window's department registered; any other is answered as an unknown number."""
    case = session.scalar(select(Case).where(Case.tracking_no == tracking_no))
    if case is None or case.channel != WINDOW_CHANNEL or case.receiving_department_id != officer.department_id:
        raise cases.case_not_found(tracking_no)
    return case


def add_scan(
    session: Session, *, case: Case, key: str, filename: str, content_type: str, content: bytes,
    settings: Settings, now: datetime,
) -> Material:
    """One more scan for a case the window registered (a large file, or one handed in later)."""
    purpose = "supplement" if case.state.endswith("supplement") else "application"
    return add_material(session, case=case, key=key, filename=filename, content_type=content_type,
                        content=content, purpose=purpose, settings=settings, now=now)
