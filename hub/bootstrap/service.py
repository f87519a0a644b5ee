"""`hub bootstrap`: a production hub's first data from one declarative file, without demo data.

The file (schemas/bootstrap.v1.json, docs/bootstrap.md) names the region and department tree, the catalogue
(the built-in one or a file of items), the first administrator and the exchange partners. ``read_plan`` checks
all of it before anything is written — the schema, then the rules a schema cannot say (unique codes, files
that exist, secrets that differ) — and ``bootstrap`` applies it in the caller's unit of work (never commits).

Idempotent: a row that exists is compared and left alone when equal; names, phones, endpoints and items that
differ are updated. A secret or password is set only when its partner or the administrator is created — never
printed, never in the file itself: the administrator's password comes from a file named on the command line,
a partner's secret from its ``secret_file`` or is generated once into ``<credentials-dir>/<code>.secret``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.auth.service import hash_password
from hub.catalog.schemas import ItemWrite
from hub.errors import ValidationFailed
from hub.exchange.models import Partner
from hub.exchange.partners import set_endpoint
from hub.exchange.provisioning import Broker, add_partner, new_secret
from hub.keys import publish_secret_file
from hub.org.models import Department, Region
from hub.seed.service import (
    Outcome,
    item_write,
    load_reference_data,
    put_item,
    read_form,
    read_seed,
)
from hub.settings import SecretFileRefused, read_secret_file
from hub.validation import load_schema, validator_for

SCHEMA = "bootstrap.v1.json"
BUILTIN = "builtin"
ADMIN_ROLES = ["admin"]
MIN_ADMIN_PASSWORD = 12
MIN_PARTNER_SECRET = 24
KINDS = ("regions", "departments", "item_types", "items", "administrator", "partners")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file: where (a JSON path, in ``file``), which rule, and why."""

    file: str
    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '(root)'}: {self.message} ({self.rule})"

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "path": self.path, "rule": self.rule, "message": self.message}


class BootstrapFileError(Exception):
    """The file (or a file it names) is wrong: `hub bootstrap` exits 2 naming each problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class BootstrapRefused(Exception):
    """Not the file's fault (a missing or weak administrator password): exit 1."""


@dataclass(frozen=True)
class PlannedItem:
    source: str  # where it came from, for errors: "builtin" or the items file
    index: int
    data: ItemWrite


@dataclass(frozen=True)
class Plan:
    """A checked bootstrap file: its document, the catalogue's items and the partners' secrets from files."""

    file: Path
    document: dict[str, Any]
    items: list[PlannedItem]
    partner_secrets: dict[str, str]  # code → secret, for partners with a secret_file


@dataclass
class Report:
    outcomes: dict[str, Counter[Outcome]] = field(default_factory=lambda: {k: Counter() for k in KINDS})
    credentials: list[dict[str, str]] = field(default_factory=list)  # code, file, how (never the secret)

    def totals(self) -> Counter[Outcome]:
        total: Counter[Outcome] = Counter()
        for counts in self.outcomes.values():
            total.update(counts)
        return total

    def as_dict(self) -> dict[str, Any]:
        def counts(c: Counter[Outcome]) -> dict[str, int]:
            return {k: c[k] for k in ("created", "updated", "unchanged")}

        return {"totals": counts(self.totals()), **{k: counts(v) for k, v in self.outcomes.items()},
                "credentials": self.credentials}


# --- reading and checking the file --------------------------------------------------------------------------


def read_plan(*, file: Path) -> Plan:
    """The file, checked against schemas/bootstrap.v1.json and the rules beyond it; ``BootstrapFileError``
    names every problem found (the schema's all at once; then the catalogue's and the secrets')."""
    name = str(file)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BootstrapFileError([Problem(name, "", "file_exists", "the file does not exist")]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BootstrapFileError([Problem(name, "", "json", f"not a UTF-8 JSON document: {exc}")]) from None
    validator = validator_for(load_schema(SCHEMA))
    problems = [Problem(name, _error_path(e), str(e.validator), _schema_message(e))
                for e in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))]
    if problems:
        raise BootstrapFileError(problems)
    problems = _duplicates(name, document)
    items = _read_items(file, document["catalogue"]["items"], problems)
    partner_secrets = _read_partner_secrets(file, document["partners"], problems)
    if problems:
        raise BootstrapFileError(problems)
    return Plan(file=file, document=document, items=items, partner_secrets=partner_secrets)


def json_path(parts: Any) -> str:
    """``["partners", 1, "endpoint"]`` → ``partners[1].endpoint``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _error_path(error: Any) -> str:
    """The value's path; for a missing property, the property's (``partners[0].department``)."""
    parts = list(error.absolute_path)
    missing = re.match(r"^'([^']+)' is a required property", str(error.message))
    if error.validator == "required" and missing:
        parts.append(missing.group(1))
    return json_path(parts)


def _schema_message(error: Any) -> str:
    # jsonschema's message quotes the value: fine here (a bootstrap file holds no personal data or secret).
    return str(error.message)[:300]


def _duplicates(name: str, document: dict[str, Any]) -> list[Problem]:
    problems = []
    for section, key in (("regions", lambda r: r["code"]), ("departments", lambda d: (d["region"], d["code"])),
                         ("departments", lambda d: d["credit_code"]), ("partners", lambda p: p["code"])):
        seen: set[Any] = set()
        for i, row in enumerate(document[section]):
            if key(row) in seen:
                problems.append(Problem(name, f"{section}[{i}]", "unique", f"{key(row)} appears twice in {section}"))
            seen.add(key(row))
    return problems


def _read_items(file: Path, source: str, problems: list[Problem]) -> list[PlannedItem]:
    if source == BUILTIN:
        return _item_rows(BUILTIN, read_seed("items"), read_form, problems)
    items_file = file.parent / source
    try:
        rows = json.loads(items_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(Problem(str(file), "catalogue.items", "file_exists", f"the items file {items_file} does "
                                "not exist (a path relative to this file, or \"builtin\")"))
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(Problem(str(file), "catalogue.items", "json", f"{items_file} is not a JSON document: {exc}"))
        return []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        problems.append(Problem(str(items_file), "", "type", "must be an array of items (as hub/seed/data/items.json)"))
        return []

    def form(name: str) -> dict[str, Any]:
        return dict(json.loads((items_file.parent / name).read_text(encoding="utf-8")))

    return _item_rows(str(items_file), rows, form, problems)


def _item_rows(source: str, rows: list[dict[str, Any]], form: Callable[[str], dict[str, Any]],
               problems: list[Problem]) -> list[PlannedItem]:
    items = []
    for i, row in enumerate(rows):
        if not isinstance(row.get("form"), str):
            problems.append(Problem(source, f"[{i}].form", "required", "each item names its form schema file"))
            continue
        try:
            items.append(PlannedItem(source, i, item_write(row, forms=form)))
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(Problem(source, f"[{i}].form", "file_exists",
                                    f"its form schema {row['form']} cannot be read: {type(exc).__name__}"))
        except ValidationError as exc:
            problems += [Problem(source, f"[{i}]" + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]), e["type"], e["msg"])
                for e in exc.errors(include_url=False)]
    return items


def _read_partner_secrets(file: Path, partners: list[dict[str, Any]], problems: list[Problem]) -> dict[str, str]:
    found: dict[str, str] = {}
    demo = {str(row["secret"]) for row in read_seed("partners")}
    for i, row in enumerate(partners):
        if "secret_file" not in row:
            continue
        where = f"partners[{i}].secret_file"
        try:
            secret = read_secret_file(file.parent / row["secret_file"], variable=where)
        except SecretFileRefused as exc:
            problems.append(Problem(str(file), where, "secret_file", str(exc)))
            continue
        problem = partner_secret_problem(secret, demo=demo, taken=found)
        if problem:
            problems.append(Problem(str(file), where, *problem))
            continue
        found[row["code"]] = secret
    return found


def partner_secret_problem(secret: str, *, demo: set[str], taken: dict[str, str]) -> tuple[str, str] | None:
    """(rule, message) when a partner may not have this secret; None when it may."""
    if secret in demo:
        return "not_demo", "is the published demo partner secret"
    if len(secret) < MIN_PARTNER_SECRET:
        return "min_length", f"a partner secret needs at least {MIN_PARTNER_SECRET} characters, it has {len(secret)}"
    twin = next((code for code, other in taken.items() if secrets.compare_digest(other, secret)), None)
    if twin is not None:
        return "distinct_secret", f"the same secret as partner {twin}: every partner has its own"
    return None


def check_admin_password(*, password: str, source: str) -> None:
    demo = {str(row["password"]) for row in read_seed("officers")}
    if password in demo:
        raise BootstrapRefused(f"{source}: the administrator's password is the published demo password")
    if len(password) < MIN_ADMIN_PASSWORD:
        raise BootstrapRefused(f"{source}: the administrator's password has {len(password)} characters; at least "
                               f"{MIN_ADMIN_PASSWORD} are needed")


# --- applying it ----------------------------------------------------------------------------------------------


def bootstrap(session: Session, *, plan: Plan, admin_password: str | None, credentials_dir: Path,
              broker: Broker | None, now: datetime) -> Report:
    """Apply a checked plan in ``session`` (the caller's unit of work commits). ``admin_password``: needed only
    when the administrator does not exist yet. Raises ``BootstrapFileError`` when the file contradicts the
    database (a region or department that exists nowhere, a partner of another kind) — before writing any
    row — or an item the catalogue refuses; the caller's rollback then undoes everything."""
    document, name = plan.document, str(plan.file)
    problems = _reference_problems(session, name, document)
    if problems:
        raise BootstrapFileError(problems)
    report = Report()
    reference = load_reference_data(session, regions=document["regions"], departments=document["departments"],
                                    item_types=read_seed("item_types"), update=True)
    for kind, counts in reference.items():
        report.outcomes[kind] = counts
    for planned in plan.items:
        report.outcomes["items"][_put_item(session, planned, now=now)] += 1
    report.outcomes["administrator"][
        _put_administrator(session, name, document["administrator"], password=admin_password, now=now)] += 1
    demo = {str(row["secret"]) for row in read_seed("partners")}
    taken = dict(plan.partner_secrets)
    for i, row in enumerate(document["partners"]):
        outcome = _put_partner(session, name, i, row, plan=plan, taken=taken, demo=demo,
                               credentials_dir=credentials_dir, broker=broker, now=now, report=report)
        report.outcomes["partners"][outcome] += 1
    session.flush()
    return report


def _reference_problems(session: Session, name: str, document: dict[str, Any]) -> list[Problem]:
    """Every region, department and partner the file refers to exists — in the file or in the database — and
    an existing partner keeps its kind, region and department."""
    regions = {r["code"] for r in document["regions"]} | set(session.scalars(select(Region.code)))
    departments = {(d["region"], d["code"]) for d in document["departments"]} | set(
        session.execute(select(Department.region_code, Department.code)).tuples())
    problems = []
    declared: set[str] = set()
    for i, row in enumerate(document["regions"]):
        if row["parent"] is not None and row["parent"] not in declared | set(session.scalars(
                select(Region.code).where(Region.code == row["parent"]))):
            problems.append(Problem(name, f"regions[{i}].parent", "known_region",
                                    f"region {row['parent']} is neither earlier in the file nor in the database"))
        declared.add(row["code"])
    for i, row in enumerate(document["departments"]):
        if row["region"] not in regions:
            problems.append(Problem(name, f"departments[{i}].region", "known_region", f"no region {row['region']}"))
        holder = session.scalar(select(Department).where(Department.credit_code == row["credit_code"]))
        if holder is not None and (holder.region_code, holder.code) != (row["region"], row["code"]):
            problems.append(Problem(name, f"departments[{i}].credit_code", "unique",
                                    f"department {holder.region_code}-{holder.code} has this credit code"))
    admin = document["administrator"]
    if (admin["region"], admin["department"]) not in departments:
        problems.append(Problem(name, "administrator.department", "known_department",
                                f"no department {admin['department']} in region {admin['region']}"))
    for i, row in enumerate(document["partners"]):
        if row["region"] not in regions:
            problems.append(Problem(name, f"partners[{i}].region", "known_region", f"no region {row['region']}"))
        if "department" in row and (row["region"], row["department"]) not in departments:
            problems.append(Problem(name, f"partners[{i}].department", "known_department",
                                    f"no department {row['department']} in region {row['region']}"))
        existing = session.get(Partner, row["code"])
        if existing is not None:
            problems += _partner_conflicts(session, name, i, row, existing)
    return problems


def _partner_conflicts(session: Session, name: str, i: int, row: dict[str, Any], partner: Partner) -> list[Problem]:
    department = session.get(Department, partner.department_id) if partner.department_id is not None else None
    stored = {"kind": partner.kind, "region": partner.region_code,
              "department": department.code if department is not None else None}
    return [Problem(name, f"partners[{i}].{key}", "immutable",
                    f"partner {partner.code} exists with {key} {value}: a partner's {key} does not change "
                    f"(register a new partner, `hub partners disable` the old one)")
            for key, value in stored.items() if row.get(key) != value]


def _put_item(session: Session, planned: PlannedItem, *, now: datetime) -> Outcome:
    try:
        return put_item(session, data=planned.data, now=now, update=True)
    except ValidationFailed as exc:  # refused before anything of the item is written
        where = f"[{planned.index}]"
        raise BootstrapFileError([Problem(planned.source, f"{where}.{e.field}", e.rule, e.message)
                                  for e in exc.errors] or [Problem(planned.source, where, "catalogue", exc.detail)]
                                 ) from None


def _put_administrator(session: Session, name: str, row: dict[str, Any], *, password: str | None,
                       now: datetime) -> Outcome:
    department = session.scalar(select(Department).where(
        Department.region_code == row["region"], Department.code == row["department"]))
    assert department is not None  # checked by _reference_problems
    officer = session.scalar(select(Officer).where(Officer.username == row["username"]))
    if officer is None:
        if password is None:
            raise BootstrapRefused(
                f"the administrator {row['username']} does not exist yet and no password was given: "
                "--admin-password-file PATH or HUB_BOOTSTRAP_ADMIN_PASSWORD_FILE (a file holding it)")
        session.add(Officer(username=row["username"], password_hash=hash_password(password), name=row["name"],
                            region_code=row["region"], department_id=department.id, roles=list(ADMIN_ROLES),
                            created_at=now))
        session.flush()
        return "created"
    if "admin" not in officer.roles:
        raise BootstrapFileError([Problem(name, "administrator.username", "is_administrator",
                                          f"officer {row['username']} exists without the admin role")])
    wanted = {"name": row["name"], "region_code": row["region"], "department_id": department.id}
    changed = {k: v for k, v in wanted.items() if getattr(officer, k) != v}
    for key, value in changed.items():  # the password is never changed here
        setattr(officer, key, value)
    return "updated" if changed else "unchanged"


def _put_partner(session: Session, name: str, i: int, row: dict[str, Any], *, plan: Plan, taken: dict[str, str],
                 demo: set[str], credentials_dir: Path, broker: Broker | None, now: datetime,
                 report: Report) -> Outcome:
    partner = session.get(Partner, row["code"])
    if partner is not None:
        return _update_partner(session, partner, row)
    secret, how = _partner_secret(name, i, row, plan=plan, taken=taken, demo=demo, credentials_dir=credentials_dir)
    add_partner(session, code=row["code"], name=row["name"], region=row["region"], kind=row["kind"],
                department=row.get("department"), record_types=row.get("record_types"), broker=broker, now=now,
                secret=secret, endpoint=row.get("endpoint"))
    report.credentials.append({"code": row["code"], "how": how,
                               "file": str(plan.file.parent / row["secret_file"]) if "secret_file" in row
                               else str(credentials_file(credentials_dir, row["code"]))})
    return "created"


def _update_partner(session: Session, partner: Partner, row: dict[str, Any]) -> Outcome:
    changed = False
    if partner.name != row["name"]:
        partner.name, changed = row["name"], True
    if "record_types" in row and list(partner.record_types) != row["record_types"]:
        partner.record_types, changed = list(row["record_types"]), True
    if partner.endpoint != row.get("endpoint"):
        set_endpoint(session, code=partner.code, endpoint=row.get("endpoint"))
        changed = True
    return "updated" if changed else "unchanged"


def credentials_file(credentials_dir: Path, code: str) -> Path:
    return credentials_dir / f"{code}.secret"


def _partner_secret(name: str, i: int, row: dict[str, Any], *, plan: Plan, taken: dict[str, str], demo: set[str],
                    credentials_dir: Path) -> tuple[str, str]:
    """The new partner's secret and where it came from: its secret_file; else the credentials file a
    previous run wrote (a database bootstrapped again keeps the secret the partner holds); else generated
    once into that file (0600)."""
    code = row["code"]
    if code in plan.partner_secrets:
        return plan.partner_secrets[code], "secret_file"
    path = credentials_file(credentials_dir, code)
    generated = not path.exists() and publish_secret_file(path, new_secret())
    how = "generated" if generated else "credentials file"
    try:
        secret = read_secret_file(path, variable=f"partners[{i}] credentials")
    except SecretFileRefused as exc:
        raise BootstrapRefused(str(exc)) from None
    others = {c: s for c, s in taken.items() if c != code}
    problem = partner_secret_problem(secret, demo=demo, taken=others)
    if problem:
        raise BootstrapFileError([Problem(name, f"partners[{i}]", problem[0], f"{path}: {problem[1]}")])
    taken[code] = secret
    return secret, how
