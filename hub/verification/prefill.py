"""Prefill: what a portal may fill in for an applicant, from the registries (logged like any look-up)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy.orm import Session

from adapters.errors import (
    AdapterError,
    InvalidIdentifier,
    NotFoundInRegistry,
    label,
)
from adapters.registries import Registries
from hub.clock import business_date
from hub.errors import FieldError, HubError, NotFound, ValidationFailed
from hub.settings import Settings
from hub.verification.access_log import PURPOSES, Lookups, access_log_key
from hub.verification.registries import RegistryNotConfigured, is_configured
from hub.verification.schemas import (
    PrefillOut,
)
from workflow import identifiers as ids

PORTAL_ACTOR = "portal"



class RegistryUnavailableProblem(HubError):
    def __init__(self, detail: str, type_slug: str = "registry-unavailable") -> None:
        super().__init__(detail=detail, title="信息库暂时无法访问", status=503, type_slug=type_slug)


def prefill(session: Session, *, registries: Registries | None, id_type: str, id_number: str, name: str | None,
            now: datetime, settings: Settings) -> PrefillOut:
    """What a portal may fill in for an applicant. Adds access-log rows (also when it raises).

    A person gets only what the ID number itself encodes, and the population registry is not asked:
    an anonymous answer must not confirm that a name belongs to a number or that the person is living
    (docs/registries.md). The applicant is verified at submission, for the case."""
    today = business_date(now)
    number = id_number.strip().upper()
    try:
        number = (ids.validate_citizen_id(number, today=today) if id_type == "citizen_id"
                  else ids.validate_credit_code(number))
    except ids.IdentifierError as exc:
        raise ValidationFailed([FieldError("id_number", exc.rule, str(exc))]) from exc
    if id_type == "citizen_id":
        return PrefillOut(id_type="citizen_id", registry="population", registry_label=label("population"),
                          verified=None, checked_at=now,
                          fields={"gender": ids.citizen_id_gender(number, today=today),
                                  "birth_date": ids.citizen_id_birth_date(number, today=today).isoformat()})
    clean_name = (name or "").strip()
    registry = "enterprise" if number.startswith("9") else "organisation"
    if not is_configured(registries, registry):
        raise RegistryUnavailableProblem(RegistryNotConfigured(registry).message, "registry-not-configured")
    assert registries is not None
    lookups = Lookups(access_log_key(settings.secret_key), PORTAL_ACTOR, "portal", now)
    try:
        verified, fields = _prefill_lookup(registries, lookups, registry, number, clean_name, today)
    except NotFoundInRegistry as exc:
        raise NotFound(exc.message) from exc
    except InvalidIdentifier as exc:
        raise ValidationFailed([FieldError("name" if exc.rule == "name" else "id_number", exc.rule,
                                           exc.message)]) from exc
    except AdapterError as exc:
        raise RegistryUnavailableProblem(exc.message) from exc
    finally:
        lookups.flush_to(session)
    return PrefillOut(id_type=id_type, registry=registry, registry_label=label(registry),  # type: ignore[arg-type]
                      verified=verified, fields=fields, checked_at=now)


def _prefill_lookup(registries: Registries, lookups: Lookups, registry: str, number: str, name: str,
                    today: date) -> tuple[bool, dict[str, str | None]]:
    purpose = PURPOSES["prefill"]
    if registry == "enterprise":
        company, _ = lookups.call("enterprise", "lookup", subject_kind="credit_code", subject=number, purpose=purpose,
                                  fn=lambda ctx: registries.enterprise.lookup(number, context=ctx))
        # Publicly disclosed registration data (企业信用信息公示); the representative's name masked.
        return company.active, {
            "credit_code": company.credit_code, "name": company.name, "type": company.type,
            "legal_representative": ids.mask_name(company.legal_representative),
            "registered_capital": str(company.registered_capital), "address": company.address,
            "status": company.status, "business_scope": company.business_scope,
            "established_on": company.established_on.isoformat(),
        }
    org, _ = lookups.call("organisation", "lookup", subject_kind="credit_code", subject=number, purpose=purpose,
                          fn=lambda ctx: registries.organisation.lookup(number, context=ctx))
    return org.valid_on(today), {
        "credit_code": org.credit_code, "organisation_code": org.organisation_code, "name": org.name,
        "type": org.type, "valid_from": org.valid_from.isoformat(),
        "valid_to": org.valid_to.isoformat() if org.valid_to else None,
    }
