"""Tax-registration registry (税务登记信息) over SOAP 1.1 with zeep."""

from __future__ import annotations

from typing import ClassVar

from adapters.errors import MalformedResponse
from adapters.registries._common import AdapterOptions, RegistryAdapter, checked
from adapters.registries.base import LookupContext, TaxRecord
from adapters.resilience import ResiliencePolicy
from adapters.soap import call_operation, load_endpoint
from workflow.identifiers import validate_credit_code


class SoapTaxRegistry(RegistryAdapter):
    """``TaxRegistry`` against a WSDL with GetTaxRegistration (schemas/soap/tax.v1.wsdl)."""

    registry: ClassVar[str] = "tax"

    def __init__(self, wsdl_url: str, policy: ResiliencePolicy | None = None, options: AdapterOptions | None = None,
                 *, endpoint_url: str | None = None) -> None:
        super().__init__(policy, options)
        self.wsdl_url = wsdl_url
        self.endpoint_url = endpoint_url

    def registration(self, credit_code: str, *, context: LookupContext) -> TaxRecord:
        code = checked(self.registry, validate_credit_code, credit_code)
        return self._cached(("registration", code), lambda: self._fetch(code, context))

    def _fetch(self, code: str, context: LookupContext) -> TaxRecord:
        endpoint = load_endpoint(self.wsdl_url, registry=self.registry, timeout_s=self.policy.timeout_s,
                                 endpoint_url=self.endpoint_url)
        service = "tax.GetTaxRegistration"
        answer = call_operation(
            endpoint, "GetTaxRegistration", registry=self.registry, what="统一社会信用代码 (credit code)",
            timeout_s=self.policy.timeout_s, http_headers=self._http_headers(context, service),
            soap_headers={"exchange": self._soap_exchange(context, service)}, creditCode=code,
        )
        if answer.creditCode != code:
            raise MalformedResponse.because(self.registry, "the answer is for a different credit code")
        return TaxRecord(
            credit_code=code, taxpayer_name=answer.taxpayerName, registration_status=answer.registrationStatus,
            tax_office=answer.taxOffice, credit_grade=answer.creditGrade, arrears=bool(answer.arrears),
        )
