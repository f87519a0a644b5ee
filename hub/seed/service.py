"""Loads the demo province: regions, departments, item types, catalogue and officers.

Idempotent: rows that exist are left alone, so `hub up` can run it on every start.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import Any, Literal

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


Outcome = Literal["created", "updated", "unchanged"]


def seed_reference_data(session: Session) -> tuple[int, int]:
    """Regions, departments and item types: what every installation needs."""
    tally = load_reference_data(session, regions=read_seed("regions"), departments=read_seed("departments"),
                                item_types=read_seed("item_types"), update=False)
    return tally["regions"]["created"], tally["departments"]["created"]


def load_reference_data(session: Session, *, regions: list[dict[str, Any]], departments: list[dict[str, Any]],
                        item_types: list[dict[str, Any]], update: bool) -> dict[str, Counter[Outcome]]:
    """Rows in the seed files' shape (regions parents first). Existing rows are left alone, or — ``update``
    (`hub bootstrap`) — given the row's names and phone where they differ. Outcomes counted per kind."""
    tally: dict[str, Counter[Outcome]] = {"regions": Counter(), "departments": Counter(), "item_types": Counter()}
    for row in regions:
        tally["regions"][put_region(session, row=row, update=update)] += 1
    for row in item_types:
        tally["item_types"][_put(session, ItemType, session.get(ItemType, row["code"]), row, update=update)] += 1
    for row in departments:
        tally["departments"][put_department(session, row=row, update=update)] += 1
    session.flush()
    return tally


def put_region(session: Session, *, row: dict[str, Any], update: bool) -> Outcome:
    values = {"code": row["code"], "name": row["name"], "level": row["level"], "parent_code": row["parent"]}
    outcome = _put(session, Region, session.get(Region, row["code"]), values, update=update)
    session.flush()  # its children refer to it
    return outcome


def put_department(session: Session, *, row: dict[str, Any], update: bool) -> Outcome:
    existing = session.scalar(select(Department).where(
        Department.region_code == row["region"], Department.code == row["code"]))
    values = {"region_code": row["region"], "code": row["code"], "name": row["name"],
              "short_name": row["short_name"], "credit_code": row["credit_code"], "phone": row.get("phone")}
    return _put(session, Department, existing, values, update=update)


def _put(session: Session, model: type[Any], existing: Any, values: dict[str, Any], *, update: bool) -> Outcome:
    if existing is None:
        session.add(model(**values))
        return "created"
    changed = {k: v for k, v in values.items() if getattr(existing, k) != v}
    if not update or not changed:
        return "unchanged"
    for key, value in changed.items():
        setattr(existing, key, value)
    return "updated"


def put_item(session: Session, *, data: ItemWrite, now: datetime, update: bool) -> Outcome:
    """An item of the catalogue by its key: written when new or — ``update`` — when it differs."""
    existing = session.scalar(select(Item).where(Item.key == data.key))
    if existing is not None and (not update or not catalog.item_differs(session, item=existing, data=data)):
        return "unchanged"
    catalog.write_item(session, data=data, now=now)
    return "created" if existing is None else "updated"


SEED_STEPS = 4  # reference data, the catalogue (one step per item), officers, partners: 3 + items


def seed_steps() -> int:
    """How many steps ``seed_demo`` reports to its ``progress`` callback."""
    return SEED_STEPS - 1 + len(read_seed("items"))


def seed_demo(session: Session, *, now: datetime, progress: Callable[[int], None] | None = None) -> SeedReport:
    step = progress or (lambda _: None)  # the CLI's progress bar or lines (hub.progress); one call per step
    regions, departments = seed_reference_data(session)
    step(1)
    items = 0
    for row in read_seed("items"):
        items += put_item(session, data=_item_write(row), now=now, update=False) == "created"
        step(1)
    officers = seed_officers(session, now=now)
    step(1)
    partners = seed_partners(session, read_seed("partners"), now=now)
    step(1)
    return SeedReport(regions, departments, items, officers, partners)


def _item_write(row: dict[str, Any]) -> ItemWrite:
    return item_write(row, forms=read_form)


def item_write(row: dict[str, Any], *, forms: Callable[[str], dict[str, Any]]) -> ItemWrite:
    """An items.json row as the catalogue writes it: its ``form`` (a file name) read by ``forms``."""
    data = {k: v for k, v in row.items() if k != "form"}
    data["form_schema"] = forms(row["form"])
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
