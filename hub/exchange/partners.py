"""The registry of exchange partners and how they prove who they are."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.errors import Unauthorized
from hub.exchange.models import Partner
from hub.org.service import get_department

_hasher = PasswordHasher()


def authenticate_partner(session: Session, *, code: str, secret: str) -> Partner:
    partner = session.get(Partner, code)
    if partner is None or not partner.active or not _secret_matches(partner, secret):
        raise Unauthorized("交换伙伴认证失败 (partner code or secret wrong)")
    return partner


def _secret_matches(partner: Partner, secret: str) -> bool:
    try:
        return _hasher.verify(partner.secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def list_partners(session: Session, *, kind: str | None = None) -> list[Partner]:
    query = select(Partner).order_by(Partner.kind, Partner.code)
    if kind:
        query = query.where(Partner.kind == kind)
    return list(session.scalars(query))


def seed_partners(session: Session, rows: list[dict[str, Any]], *, now: datetime) -> int:
    created = 0
    hashes: dict[str, str] = {}  # the demo partners share one published secret: hash it once
    for row in rows:
        if session.get(Partner, row["code"]) is not None:
            continue
        if row["secret"] not in hashes:
            hashes[row["secret"]] = _hasher.hash(row["secret"])
        department_id = None
        if row.get("department"):
            department_id = get_department(session, region_code=row["region"], code=row["department"]).id
        session.add(Partner(
            code=row["code"], name=row["name"], kind=row["kind"], region_code=row["region"],
            secret_hash=hashes[row["secret"]], record_types=row["record_types"],
            department_id=department_id, endpoint=row.get("endpoint"), created_at=now,
        ))
        created += 1
    session.flush()
    return created


def set_endpoint(session: Session, *, code: str, endpoint: str | None) -> Partner:
    """Where the hub calls a national or legacy partner (its WSDL); None stops outbound calls."""
    from hub.errors import NotFound

    partner = session.get(Partner, code)
    if partner is None:
        raise NotFound(f"交换伙伴 {code} 不存在 (unknown partner)")
    partner.endpoint = endpoint
    session.flush()
    return partner
