"""Typed results and interfaces of the four registries the hub verifies applicants against.

The hub depends on these Protocols only; implementations (zeep for SOAP, httpx for REST) live next to
this module and are chosen by settings through ``adapters.registries.build_registries``.

Every method validates the identifier's check character before any call and raises
``InvalidIdentifier`` (no request is made); other failures raise the classes of ``adapters.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable
from uuid import uuid4

PersonStatus = Literal["normal", "deceased", "cancelled"]
VerificationStatus = Literal["normal", "deceased", "cancelled", "not_found"]
EnterpriseStatus = Literal["active", "revoked", "cancelled"]
TaxRegistrationStatus = Literal["normal", "abnormal", "cancelled"]
CreditGrade = Literal["A", "B", "M", "C", "D"]
Gender = Literal["male", "female"]


@dataclass(frozen=True)
class LookupContext:
    """Who looks up personal data, why, and for which case — sent with the request and logged by the hub.

    One context is one exchange: its ``message_id`` goes out with every retry of that exchange so the
    registry can recognise the duplicates. Make a new context for each look-up.
    """

    actor: str  # officer username or system name on whose behalf the look-up is made
    purpose: str  # e.g. "申请人身份核验 (applicant identity verification)"
    case: str | None = None  # tracking number
    message_id: str = field(default_factory=lambda: str(uuid4()))

    def __post_init__(self) -> None:
        if not self.actor.strip() or not self.purpose.strip():
            raise ValueError("a registry look-up needs an actor and a purpose (personal-data access rules)")


@dataclass(frozen=True)
class IdentityCheck:
    """The population registry's verdict on an ID number + name pair."""

    id_number: str
    match: bool  # the name is the one registered under the number
    status: VerificationStatus

    @property
    def verified(self) -> bool:
        """The applicant is a living, registered person with this name."""
        return self.match and self.status == "normal"


@dataclass(frozen=True)
class PersonRecord:
    id_number: str
    name: str
    gender: Gender
    birth_date: date
    registered_address: str
    status: PersonStatus
    photo_digest: str  # SHA-256 hex of the registered photo


@dataclass(frozen=True)
class EnterpriseRecord:
    credit_code: str
    name: str
    type: str
    legal_representative: str  # name
    registered_capital: Decimal  # yuan
    address: str
    status: EnterpriseStatus
    business_scope: str
    established_on: date
    legal_representative_id_number: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class TaxRecord:
    credit_code: str
    taxpayer_name: str
    registration_status: TaxRegistrationStatus
    tax_office: str
    credit_grade: CreditGrade
    arrears: bool

    @property
    def in_good_standing(self) -> bool:
        return self.registration_status == "normal" and not self.arrears


@dataclass(frozen=True)
class OrganisationRecord:
    organisation_code: str  # XXXXXXXX-X
    credit_code: str | None
    name: str
    type: str
    valid_from: date
    valid_to: date | None  # None: open-ended

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


class PopulationRegistry(Protocol):
    def verify_identity(self, id_number: str, name: str, *, context: LookupContext) -> IdentityCheck: ...

    def lookup_person(self, id_number: str, *, context: LookupContext) -> PersonRecord: ...


class EnterpriseRegistry(Protocol):
    def lookup(self, credit_code: str, *, context: LookupContext) -> EnterpriseRecord: ...


class TaxRegistry(Protocol):
    def registration(self, credit_code: str, *, context: LookupContext) -> TaxRecord: ...


class OrganisationRegistry(Protocol):
    def lookup(self, code: str, *, context: LookupContext) -> OrganisationRecord: ...


@runtime_checkable
class Monitored(Protocol):
    """Implementations that report breaker state and call statistics for the ops view."""

    def status(self) -> dict[str, Any]: ...
