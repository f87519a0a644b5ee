"""National approval-results system (国家政务服务平台办件结果接收) over SOAP 1.1 with zeep.

Contract: ``schemas/soap/national-results.v1.wsdl``. The hub depends on ``NationalResults``; the
implementation here is chosen per partner from the partners table (its endpoint is the WSDL URL).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from adapters.outbound import OutboundContext, Receipt, SoapPartnerAdapter

Outcome = Literal["granted", "denied"]


@dataclass(frozen=True)
class NationalResult:
    """The result of one completed case, as the national tables want it. No personal data."""

    message_id: str
    case_number: str
    item_national_code: str
    item_code: str
    item_name: str
    region: str
    department_credit_code: str
    department_name: str
    applicant_type: str
    result: Outcome
    completed_at: datetime
    accepted_on: date | None = None
    decided_at: datetime | None = None
    certificate_name: str | None = None
    certificate_number: str | None = None


@runtime_checkable
class NationalResults(Protocol):
    """Reports case results to a national system; raises ``adapters.errors.AdapterError`` subclasses."""

    def submit_result(self, result: NationalResult, *, context: OutboundContext) -> Receipt: ...

    def status(self) -> dict[str, Any]: ...


class SoapNationalResults(SoapPartnerAdapter):
    """``NationalResults`` against national-results.v1.wsdl (SubmitResult → receipt id)."""

    service = "national-results"
    purpose = "办件结果上报 (case result report)"

    def submit_result(self, result: NationalResult, *, context: OutboundContext) -> Receipt:
        params = {
            "messageId": result.message_id,
            "caseNumber": result.case_number,
            "itemNationalCode": result.item_national_code,
            "itemCode": result.item_code,
            "itemName": result.item_name,
            "region": result.region,
            "departmentCreditCode": result.department_credit_code,
            "departmentName": result.department_name,
            "applicantType": result.applicant_type,
            "result": result.result,
            "acceptedOn": result.accepted_on,
            "decidedAt": result.decided_at,
            "completedAt": result.completed_at,
            "certificateName": result.certificate_name,
            "certificateNumber": result.certificate_number,
        }
        answer = self._call("SubmitResult", context, what="办件结果 (case result)", **params)
        return Receipt(id=str(answer.receiptId), duplicate=bool(answer.duplicate))
