"""Organisation-code registry (组织机构代码) over REST/JSON with httpx."""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, StringConstraints

from adapters.errors import MalformedResponse
from adapters.http import build_http_client, get_json
from adapters.registries._common import AdapterOptions, RegistryAdapter, checked, parse_wire
from adapters.registries.base import LookupContext, OrganisationRecord
from adapters.resilience import ResiliencePolicy
from workflow.identifiers import validate_credit_code, validate_organisation_code

Text = Annotated[str, StringConstraints(min_length=1)]


class _OrganisationWire(BaseModel):
    model_config = ConfigDict(extra="ignore")
    organisation_code: Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{8}-[0-9X]$")]
    credit_code: str | None = None
    name: Text
    type: Text
    valid_from: date
    valid_to: date | None = None


def _normalise(code: str, registry: str) -> tuple[str, str]:
    """('credit', code) for 18 characters, else ('organisation', 'XXXXXXXX-X'); check characters verified."""
    if isinstance(code, str) and len(code.strip()) == 18:
        return "credit", checked(registry, validate_credit_code, code)
    return "organisation", checked(registry, validate_organisation_code, code)


class HttpOrganisationRegistry(RegistryAdapter):
    """``OrganisationRegistry`` against ``GET {base_url}/api/organisations/{code}``."""

    registry: ClassVar[str] = "organisation"

    def __init__(self, base_url: str, policy: ResiliencePolicy | None = None, options: AdapterOptions | None = None,
                 *, http_client: httpx.Client | None = None) -> None:
        super().__init__(policy, options)
        self.base_url = base_url
        self._http = http_client or build_http_client(base_url=base_url, timeout_s=self.policy.timeout_s,
                                                      max_connections=self.policy.max_concurrency)

    def lookup(self, code: str, *, context: LookupContext) -> OrganisationRecord:
        kind, normalised = _normalise(code, self.registry)
        return self._cached(("lookup", normalised), lambda: self._fetch(kind, normalised, context))

    def _fetch(self, kind: str, code: str, context: LookupContext) -> OrganisationRecord:
        data = get_json(self._http, f"/api/organisations/{quote(code)}", registry=self.registry,
                        what="代码 (code)", headers=self._http_headers(context, "organisation.lookup"),
                        timeout_s=self.policy.timeout_s)
        wire = parse_wire(_OrganisationWire, data, self.registry)
        # A credit code embeds the organisation code in characters 9–17.
        expected = code if kind == "organisation" else f"{code[8:16]}-{code[16]}"
        if wire.organisation_code != expected or (kind == "credit" and wire.credit_code not in (None, code)):
            raise MalformedResponse.because(self.registry, "the answer is for a different organisation")
        return OrganisationRecord(
            organisation_code=wire.organisation_code, credit_code=wire.credit_code, name=wire.name, type=wire.type,
            valid_from=wire.valid_from, valid_to=wire.valid_to,
        )

    def close(self) -> None:
        self._http.close()
