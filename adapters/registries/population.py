"""Population registry (公安人口信息库) over SOAP 1.1 with zeep."""

from __future__ import annotations

from typing import Any, ClassVar

from adapters.errors import InvalidIdentifier
from adapters.registries._common import AdapterOptions, RegistryAdapter, checked
from adapters.registries.base import IdentityCheck, LookupContext, PersonRecord, VerificationStatus
from adapters.resilience import ResiliencePolicy
from adapters.soap import call_operation, load_endpoint
from workflow.identifiers import validate_citizen_id

_NAME_MAX = 64


class SoapPopulationRegistry(RegistryAdapter):
    """``PopulationRegistry`` against a WSDL with VerifyIdentity and LookupPerson (schemas/soap/population.v1.wsdl)."""

    registry: ClassVar[str] = "population"

    def __init__(self, wsdl_url: str, policy: ResiliencePolicy | None = None, options: AdapterOptions | None = None,
                 *, endpoint_url: str | None = None) -> None:
        super().__init__(policy, options)
        self.wsdl_url = wsdl_url
        self.endpoint_url = endpoint_url

    def verify_identity(self, id_number: str, name: str, *, context: LookupContext) -> IdentityCheck:
        number = checked(self.registry, validate_citizen_id, id_number)
        clean_name = _checked_name(name, self.registry)
        return self._cached(("verify", number, clean_name), lambda: self._verify(number, clean_name, context))

    def lookup_person(self, id_number: str, *, context: LookupContext) -> PersonRecord:
        number = checked(self.registry, validate_citizen_id, id_number)
        return self._cached(("person", number), lambda: self._lookup(number, context))

    def _verify(self, number: str, name: str, context: LookupContext) -> IdentityCheck:
        answer = self._call("VerifyIdentity", context, idNumber=number, name=name)
        status: VerificationStatus = "not_found" if answer.status == "notFound" else answer.status
        return IdentityCheck(id_number=number, match=bool(answer.match), status=status)

    def _lookup(self, number: str, context: LookupContext) -> PersonRecord:
        answer = self._call("LookupPerson", context, idNumber=number)
        return PersonRecord(
            id_number=number, name=answer.name, gender=answer.gender, birth_date=answer.birthDate,
            registered_address=answer.registeredAddress, status=answer.status, photo_digest=answer.photoDigest,
        )

    def _call(self, operation: str, context: LookupContext, **params: Any) -> Any:
        # The WSDL is loaded inside the guarded call: a registry that is down at start-up counts
        # as down (breaker, retries) instead of breaking the hub's start.
        endpoint = load_endpoint(self.wsdl_url, registry=self.registry, timeout_s=self.policy.timeout_s,
                                 endpoint_url=self.endpoint_url)
        service = f"population.{operation}"
        return call_operation(
            endpoint, operation, registry=self.registry, what="身份证号码 (ID number)",
            timeout_s=self.policy.timeout_s, http_headers=self._http_headers(context, service),
            soap_headers={"exchange": self._soap_exchange(context, service)}, **params,
        )


def _checked_name(name: str, registry: str) -> str:
    clean = name.strip() if isinstance(name, str) else ""
    if not clean or len(clean) > _NAME_MAX:
        raise InvalidIdentifier(registry, f"姓名为空或过长 (name must have 1–{_NAME_MAX} characters)", rule="name")
    return clean
