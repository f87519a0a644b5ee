"""A department's legacy approval system (部门原审批业务系统) over SOAP 1.1 with zeep.

Contract: ``schemas/soap/legacy-department.v1.wsdl`` — the endpoint the department's own system
exposes; the hub pushes each new case of that department to it (ReceiveCase → acknowledgement id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

from adapters.outbound import OutboundContext, Receipt, SoapPartnerAdapter


@dataclass(frozen=True)
class LegacyApplicant:
    type: str
    name: str
    id_type: str
    id_number: str
    phone: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class LegacyCase:
    """A new case as the department's system receives it: unmasked, it is the department's case."""

    message_id: str
    tracking_no: str
    item_code: str
    item_name: str
    national_code: str
    region: str
    department: str  # region + department number
    department_name: str
    channel: str
    state: str
    submitted_at: datetime
    promised_limit_days: int
    statutory_limit_days: int
    applicant: LegacyApplicant
    form_json: str
    intake_deadline: date | None = None


@runtime_checkable
class LegacyDepartment(Protocol):
    """Pushes new cases to a legacy system; raises ``adapters.errors.AdapterError`` subclasses."""

    def receive_case(self, case: LegacyCase, *, context: OutboundContext) -> Receipt: ...

    def status(self) -> dict[str, Any]: ...


class SoapLegacyDepartment(SoapPartnerAdapter):
    """``LegacyDepartment`` against legacy-department.v1.wsdl."""

    service = "legacy-department"
    purpose = "推送新办件 (new case push)"

    def receive_case(self, case: LegacyCase, *, context: OutboundContext) -> Receipt:
        applicant = {
            "type": case.applicant.type, "name": case.applicant.name, "idType": case.applicant.id_type,
            "idNumber": case.applicant.id_number, "phone": case.applicant.phone, "region": case.applicant.region,
        }
        answer = self._call(
            "ReceiveCase", context, what="办件 (case)",
            messageId=case.message_id, trackingNo=case.tracking_no, itemCode=case.item_code, itemName=case.item_name,
            nationalCode=case.national_code, region=case.region, department=case.department,
            departmentName=case.department_name, channel=case.channel, state=case.state,
            submittedAt=case.submitted_at, intakeDeadline=case.intake_deadline,
            promisedLimitDays=case.promised_limit_days, statutoryLimitDays=case.statutory_limit_days,
            applicant=applicant, formJson=case.form_json,
        )
        return Receipt(id=str(answer.ackId), duplicate=bool(answer.duplicate))
