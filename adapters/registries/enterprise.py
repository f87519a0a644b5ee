"""Enterprise legal-person registry (市场监管企业登记) over REST/JSON with httpx."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, StringConstraints

from adapters.errors import MalformedResponse
from adapters.http import build_http_client, get_json
from adapters.registries._common import AdapterOptions, RegistryAdapter, checked, parse_wire
from adapters.registries.base import EnterpriseRecord, LookupContext
from adapters.resilience import ResiliencePolicy
from workflow.identifiers import validate_credit_code

Text = Annotated[str, StringConstraints(min_length=1)]
# Money travels as a decimal string in yuan; a JSON number would go through a float.
Yuan = Annotated[str, StringConstraints(pattern=r"^\d{1,15}(\.\d{1,2})?$")]


class _Representative(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Text
    id_number: str | None = None


class _EnterpriseWire(BaseModel):
    model_config = ConfigDict(extra="ignore")
    credit_code: Text
    name: Text
    type: Text
    legal_representative: _Representative
    registered_capital: Yuan
    address: Text
    status: Literal["active", "revoked", "cancelled"]
    business_scope: str
    established_on: date


class HttpEnterpriseRegistry(RegistryAdapter):
    """``EnterpriseRegistry`` against ``GET {base_url}/api/enterprises/{credit_code}``."""

    registry: ClassVar[str] = "enterprise"

    def __init__(self, base_url: str, policy: ResiliencePolicy | None = None, options: AdapterOptions | None = None,
                 *, http_client: httpx.Client | None = None) -> None:
        super().__init__(policy, options)
        self.base_url = base_url
        self._http = http_client or build_http_client(base_url=base_url, timeout_s=self.policy.timeout_s,
                                                      max_connections=self.policy.max_concurrency)

    def lookup(self, credit_code: str, *, context: LookupContext) -> EnterpriseRecord:
        code = checked(self.registry, validate_credit_code, credit_code)
        return self._cached(("lookup", code), lambda: self._fetch(code, context))

    def _fetch(self, code: str, context: LookupContext) -> EnterpriseRecord:
        data = get_json(self._http, f"/api/enterprises/{quote(code)}", registry=self.registry,
                        what="统一社会信用代码 (credit code)", headers=self._http_headers(context, "enterprise.lookup"),
                        timeout_s=self.policy.timeout_s)
        wire = parse_wire(_EnterpriseWire, data, self.registry)
        if wire.credit_code != code:
            raise MalformedResponse.because(self.registry, "the answer is for a different credit code")
        return EnterpriseRecord(
            credit_code=code, name=wire.name, type=wire.type, legal_representative=wire.legal_representative.name,
            registered_capital=Decimal(wire.registered_capital), address=wire.address, status=wire.status,
            business_scope=wire.business_scope, established_on=wire.established_on,
            legal_representative_id_number=wire.legal_representative.id_number,
        )

    def close(self) -> None:
        self._http.close()
