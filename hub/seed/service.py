"""Loads the demo province: regions, departments, item types, catalogue and officers.

Idempotent: rows that exist are left alone, so `hub up` can run it on every start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.auth.service import hash_password
from hub.catalog import service as catalog
from hub.catalog.models import Item, ItemType
from hub.catalog.schemas import ItemWrite
from hub.exchange.partners import seed_partners
from hub.org.models import Department, Region
from hub.org.service import get_department


@dataclass(frozen=True)
class SeedReport:
    regions: int
    departments: int
    items: int
    officers: int
    partners: int


def read_seed(name: str) -> Any:
    return json.loads((files("hub.seed") / "data" / f"{name}.json").read_text(encoding="utf-8"))


def read_form(name: str) -> dict[str, Any]:
    return json.loads((files("schemas") / "forms" / name).read_text(encoding="utf-8"))


def seed_reference_data(session: Session) -> tuple[int, int]:
    """Regions, departments and item types: what every installation needs."""
    regions = 0
    for row in read_seed("regions"):
        if session.get(Region, row["code"]) is None:
            session.add(Region(code=row["code"], name=row["name"], level=row["level"],
                               parent_code=row["parent"]))
            session.flush()
            regions += 1
    for row in read_seed("item_types"):
        if session.get(ItemType, row["code"]) is None:
            session.add(ItemType(**row))
    departments = 0
    for row in read_seed("departments"):
        exists = session.scalar(select(Department).where(
            Department.region_code == row["region"], Department.code == row["code"]))
        if exists is None:
            session.add(Department(
                region_code=row["region"], code=row["code"], name=row["name"],
                short_name=row["short_name"], credit_code=row["credit_code"],
                phone=row.get("phone"),
            ))
            departments += 1
    session.flush()
    return regions, departments


def seed_demo(session: Session, *, now: datetime) -> SeedReport:
    regions, departments = seed_reference_data(session)
    items = 0
    for row in read_seed("items"):
        if session.scalar(select(Item).where(Item.key == row["key"])) is None:
            catalog.write_item(session, data=_item_write(row), now=now)
            items += 1
    officers = seed_officers(session, now=now)
    partners = seed_partners(session, read_seed("partners"), now=now)
    return SeedReport(regions, departments, items, officers, partners)


def _item_write(row: dict[str, Any]) -> ItemWrite:
    data = {k: v for k, v in row.items() if k != "form"}
    data["form_schema"] = read_form(row["form"])
    return ItemWrite.model_validate(data)


def seed_officers(session: Session, *, now: datetime) -> int:
    created = 0
    # The demo accounts share one published password: hash it once (argon2 costs ~0.1-0.3 s a hash, and
    # every fresh `hub up` / `hub db seed` / test database seeds 65 officers).
    hashes: dict[str, str] = {}
    for row in read_seed("officers"):
        if session.scalar(select(Officer).where(Officer.username == row["username"])):
            continue
        department = get_department(session, region_code=row["region"], code=row["department"])
        if row["password"] not in hashes:
            hashes[row["password"]] = hash_password(row["password"])
        session.add(Officer(
            username=row["username"], password_hash=hashes[row["password"]],
            name=row["name"], region_code=row["region"], department_id=department.id,
            roles=row["roles"], created_at=now,
        ))
        created += 1
    session.flush()
    return created


def demo_accounts() -> list[dict[str, Any]]:
    return [
        {k: row[k] for k in ("username", "password", "name", "region", "department", "roles")}
        for row in read_seed("officers")
    ]


def demo_partner_secret() -> str:
    """The published secret of the demo partners (`hub up` prints it; docs/amqp.md names it)."""
    return ", ".join(sorted({str(row["secret"]) for row in read_seed("partners")}))
