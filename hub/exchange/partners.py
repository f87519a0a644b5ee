"""The registry of exchange partners and how they prove who they are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub import refcache
from hub.errors import Unauthorized
from hub.exchange.models import Partner
from hub.org.service import get_department

_hasher = PasswordHasher()


def authenticate_partner(session: Session, *, code: str, secret: str) -> Partner:
    partner = find_partner(session, code)
    if partner is None or not partner.active or not _secret_matches(partner, secret):
        raise Unauthorized("交换伙伴认证失败 (partner code or secret wrong)")
    return partner


def _secret_matches(partner: Partner, secret: str) -> bool:
    try:
        return _hasher.verify(partner.secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class PartnerDirectory:
    """Every partner as the process's reference cache keeps it (hub/refcache.py): read whole, once per
    change of the partners table (a few dozen rows), here or in any other process."""

    by_code: dict[str, refcache.Snapshot]
    # Per department: the active legacy system the hub pushes new cases to (an endpoint set; lowest code).
    legacy_by_department: dict[int, str]
    national: tuple[str, ...]  # the active national partners a completed, reported case owes its result, by code
    # The partner's code by the RabbitMQ user that proves it (the broker-checked ``user_id``): the user the hub
    # provisioned (``Partner.amqp_username``), or — for a partner the hub never provisioned — its code.
    by_amqp_user: dict[str, str]


def directory(session: Session) -> PartnerDirectory:
    return refcache.lookup(session, refcache.PARTNERS, "directory", lambda: _read_directory(session))


def find_partner(session: Session, code: str) -> Partner | None:
    """The partner with this code, attached to ``session`` (no query while the directory is current)."""
    snap = directory(session).by_code.get(code)
    return refcache.attach(session, snap) if snap is not None else None  # type: ignore[no-any-return]


def _read_directory(session: Session) -> PartnerDirectory:
    rows = refcache.read(session, select(Partner.__table__).order_by(Partner.code))
    legacy: dict[int, str] = {}
    for row in rows:
        if (row["kind"] == "legacy_department" and row["active"] and row["endpoint"]
                and row["department_id"] is not None):
            legacy.setdefault(row["department_id"], row["code"])
    return PartnerDirectory(
        by_code={row["code"]: refcache.row_snapshot(Partner, row) for row in rows},
        legacy_by_department=legacy,
        national=tuple(row["code"] for row in rows if row["kind"] == "national" and row["active"]),
        by_amqp_user={row["amqp_username"] or row["code"]: row["code"] for row in rows},
    )


def partner_of_amqp_user(session: Session, user_id: str) -> str | None:
    """The code of the partner whose RabbitMQ user is ``user_id``, or None."""
    return directory(session).by_amqp_user.get(user_id)


def list_partners(session: Session, *, kind: str | None = None) -> list[Partner]:
    query = select(Partner).order_by(Partner.kind, Partner.code)
    if kind:
        query = query.where(Partner.kind == kind)
    return list(session.scalars(query))


def hash_secret(secret: str) -> str:
    """The REST side of a partner's secret (argon2)."""
    return _hasher.hash(secret)


def seed_partners(session: Session, rows: list[dict[str, Any]], *, now: datetime) -> int:
    """The demo partners, with the published demo secret of hub/seed/data/partners.json (docs/amqp.md): each
    stored as `hub partners add` stores a generated one — argon2 for REST, RabbitMQ's hash for its user."""
    from adapters.amqp.management import rabbit_password_hash

    created = 0
    # argon2 costs ~0.1-0.3 s a hash and every test database seeds these: one argon2 hash per distinct demo
    # secret (it is salted; sharing it reveals nothing more than the published secret itself).
    hashes: dict[str, str] = {}
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
            amqp_password_hash=rabbit_password_hash(row["secret"]), secret_rotated_at=now,
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
    if endpoint:
        _release_parked_deliveries(session, code=code)
    session.flush()
    return partner


def _release_parked_deliveries(session: Session, *, code: str) -> None:
    """The deliveries parked while the partner had no endpoint are due again (since they were parked)."""
    from hub.deliveries.models import NO_ENDPOINT_ERROR, Delivery

    session.execute(
        update(Delivery)
        .where(Delivery.partner_code == code, Delivery.status == "failed", Delivery.next_attempt_at.is_(None),
               Delivery.last_error.startswith(NO_ENDPOINT_ERROR, autoescape=True))
        .values(status="pending", next_attempt_at=Delivery.updated_at)
        .execution_options(synchronize_session=False)
    )
