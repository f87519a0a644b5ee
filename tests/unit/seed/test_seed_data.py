"""Validation of the demo seed catalogue in hub/seed/data and the item forms in schemas/forms."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "hub" / "seed" / "data"
FORMS = ROOT / "schemas" / "forms"

LEVELS = {"province", "city", "county"}
APPLICANT_TYPES = {"1", "2", "3", "4", "5", "6", "9"}
MATERIAL_FORMS = {"original", "copy", "electronic"}
REPLACEABLE_BY = {None, "population", "enterprise", "tax", "organisation"}
ROLES = {"intake", "reviewer", "approver", "supervisor", "admin", "window"}

# GB 32100 (unified social credit code) and GB 11714 (organisation code) check characters,
# implemented here independently of the project's own module.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def org_check(first8: str) -> str:
    def value(ch: str) -> int:
        return int(ch) if ch.isdigit() else ord(ch) - ord("A") + 10

    c = 11 - sum(value(ch) * w for ch, w in zip(first8, ORG_WEIGHTS, strict=True)) % 11
    return {10: "X", 11: "0"}.get(c, str(c))


def uscc_check(first17: str) -> str:
    total = sum(USCC_ALPHABET.index(ch) * w for ch, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def credit_code_valid(code: str) -> bool:
    if len(code) != 18 or any(ch not in USCC_ALPHABET for ch in code):
        return False
    return org_check(code[8:16]) == code[16] and uscc_check(code[:17]) == code[17]


def load(name: str):
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def regions():
    return {r["code"]: r for r in load("regions.json")}


@pytest.fixture(scope="module")
def departments():
    return load("departments.json")


@pytest.fixture(scope="module")
def dept_keys(departments):
    return {(d["region"], d["code"]) for d in departments}


@pytest.fixture(scope="module")
def item_types():
    return {t["code"]: t for t in load("item_types.json")}


@pytest.fixture(scope="module")
def items():
    return load("items.json")


@pytest.fixture(scope="module")
def officers():
    return load("officers.json")


def test_check_algorithms_match_published_samples():
    assert credit_code_valid("91110000600037341L")
    assert credit_code_valid("91110108551385082Q")
    assert not credit_code_valid("91110000600037341M")
    assert not credit_code_valid("91110000600037342L")


def test_regions(regions):
    raw = load("regions.json")
    assert len(raw) == len(regions), "duplicate region codes"
    assert regions["210000"] == {
        "code": "210000",
        "name": "辽宁省",
        "level": "province",
        "parent": None,
    }
    cities = [r for r in regions.values() if r["level"] == "city"]
    counties = [r for r in regions.values() if r["level"] == "county"]
    assert len(cities) == 14
    assert len(counties) >= 12
    for r in regions.values():
        assert re.fullmatch(r"21\d{4}", r["code"])
        assert r["level"] in LEVELS
        if r["level"] == "province":
            assert r["parent"] is None
            continue
        parent = regions[r["parent"]]
        if r["level"] == "city":
            assert r["code"].endswith("00") and parent["level"] == "province"
        else:
            assert not r["code"].endswith("00")
            assert parent["level"] == "city" and r["parent"] == r["code"][:4] + "00"


def test_departments(departments, regions):
    keys = [(d["region"], d["code"]) for d in departments]
    assert len(keys) == len(set(keys)), "department code not unique within region"
    credit_codes = [d["credit_code"] for d in departments]
    assert len(credit_codes) == len(set(credit_codes))
    for d in departments:
        assert d["region"] in regions
        assert re.fullmatch(r"\d{3}", d["code"])
        assert d["name"] and d["short_name"]
        assert re.fullmatch(r"0\d{2,3}-\d{7,8}", d["phone"]), d["phone"]
        code = d["credit_code"]
        assert credit_code_valid(code), code
        assert code[:2] == "11", "government organs: registering authority 1, category 1"
        assert code[2:8] == d["region"]
    assert sum(1 for d in departments if d["region"] == "210000") >= 8


def test_item_types(item_types):
    assert set(item_types) == {"01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "20"}
    on_application = {c for c, t in item_types.items() if t["on_application"]}
    assert on_application == {"01", "05", "07", "08", "09", "10", "20"}
    assert item_types["01"]["name"] == "行政许可"
    assert item_types["20"]["name"] == "公共服务"


def test_items_reference_integrity(items, regions, dept_keys, item_types):
    keys = [i["key"] for i in items]
    assert len(keys) == len(set(keys))
    for i in items:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i["key"])
        assert i["region"] in regions
        assert i["level"] == regions[i["region"]]["level"], i["key"]
        assert (i["region"], i["department"]) in dept_keys, i["key"]
        assert i["item_type"] in item_types
        for co in i["departments"]:
            assert (co["region"], co["code"]) in dept_keys, (i["key"], co)
            assert (co["region"], co["code"]) != (i["region"], i["department"])


def test_item_fields(items):
    for i in items:
        k = i["key"]
        assert re.fullmatch(r"\d{3}", i["main_item"]) and re.fullmatch(r"\d{3}", i["sub_item"])
        assert re.fullmatch(r"[0-9A-Z]{12}", i["national_code"]), k
        assert i["kind"] in {"instant", "promised"}
        assert i["legal_basis"].startswith("《"), k
        assert i["conditions"] and all(isinstance(c, str) and c for c in i["conditions"])
        assert i["materials"], k
        mkeys = [m["key"] for m in i["materials"]]
        assert len(mkeys) == len(set(mkeys)), k
        for m in i["materials"]:
            assert m["form"] in MATERIAL_FORMS, (k, m["key"])
            assert m["replaceable_by"] in REPLACEABLE_BY, (k, m["key"])
            assert isinstance(m["count"], int) and m["count"] >= 1
            assert isinstance(m["required"], bool)
            assert m["name"]
        assert 0 <= i["promised_limit_days"] <= i["statutory_limit_days"], k
        if i["kind"] == "instant":
            assert i["promised_limit_days"] == 0, k
        else:
            assert i["promised_limit_days"] > 0, k
        if i["fee"] is not None:
            assert isinstance(i["fee"]["amount_fen"], int) and i["fee"]["amount_fen"] > 0
            assert i["fee"]["basis"] and i["fee"]["description"]
        assert set(i["how"]) <= {"online", "window"} and i["how"]
        assert isinstance(i["visits"], int) and i["visits"] >= 0
        assert i["applicant_types"] and set(i["applicant_types"]) <= APPLICANT_TYPES
        assert isinstance(i["national_reporting"], bool)
        for sp in i["special_procedures"]:
            assert sp["kind"] and isinstance(sp["counts_in_limit"], bool)
            assert isinstance(sp["max_days"], int) and sp["max_days"] > 0
        assert i["where"] and i["hours"] and i["enquiry_phone"] and i["complaint_phone"]


def test_main_item_unique_per_department_and_type(items):
    counts = Counter((i["region"], i["department"], i["item_type"], i["main_item"]) for i in items)
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]


def test_forms_are_valid_schemas(items):
    for i in items:
        path = FORMS / i["form"]
        assert i["form"] == f"{i['key']}.v1.json"
        assert path.is_file(), path
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://hub.example.gov.cn/schemas/forms/{i['form']}"
        assert schema["title"] == i["name"]
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(schema["properties"])
        for name, prop in schema["properties"].items():
            assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
            assert prop.get("title"), (i["form"], name)
        # identity belongs to the common applicant block, not to item forms
        forbidden = {
            "applicant_name",
            "applicant_type",
            "id_number",
            "credit_code",
            "phone",
            "applicant_phone",
            "applicant_address",
        }
        assert not forbidden & set(schema["properties"]), i["form"]


def test_every_form_file_belongs_to_an_item(items):
    referenced = {i["form"] for i in items}
    on_disk = {p.name for p in FORMS.glob("*.json")}
    assert referenced <= on_disk


def test_catalogue_coverage(items):
    assert len(items) >= 12
    assert len({(i["region"], i["department"]) for i in items}) >= 6
    assert len({i["department"] for i in items}) >= 6
    levels = Counter(i["level"] for i in items)
    assert levels["province"] >= 2 and levels["city"] >= 6 and levels["county"] >= 4
    assert any(i["departments"] for i in items), "need a multi-department item"
    assert any(i["fee"] for i in items), "need an item with a fee"
    assert sum(i["kind"] == "instant" for i in items) >= 2
    assert sum(i["national_reporting"] for i in items) >= 3
    assert any("1" in i["applicant_types"] for i in items)
    assert any("2" in i["applicant_types"] for i in items)


def test_officers(officers, dept_keys, items):
    usernames = [o["username"] for o in officers]
    assert len(usernames) == len(set(usernames))
    for o in officers:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", o["username"]), o["username"]
        assert o["password"] == "demo-Password-1"
        assert o["name"]
        assert (o["region"], o["department"]) in dept_keys, o["username"]
        assert o["roles"] and set(o["roles"]) <= ROLES
    roles_by_dept: dict[tuple[str, str], set[str]] = {}
    for o in officers:
        roles_by_dept.setdefault((o["region"], o["department"]), set()).update(o["roles"])
    acting = {(i["region"], i["department"]) for i in items}
    acting |= {(c["region"], c["code"]) for i in items for c in i["departments"]}
    for key in acting:
        assert {"intake", "reviewer", "approver"} <= roles_by_dept.get(key, set()), key
    assert any("supervisor" in o["roles"] and o["region"] == "210000" for o in officers)
    assert any("admin" in o["roles"] for o in officers)
