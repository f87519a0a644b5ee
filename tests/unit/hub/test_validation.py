"""Formats are checked wherever a schema declares them — which needs the checkers' packages installed.

jsonschema skips a format silently when its checker's package is missing (date-time: rfc3339-validator; uri:
rfc3986-validator), so these tests fail on an installation without them rather than let "garbage" pass.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files

import pytest
from jsonschema import Draft202012Validator

from hub.validation import DECLARED_FORMATS, FORMAT_CHECKER, shared_validator, validator_for
from workflow.definition import _schema_validator


@pytest.mark.parametrize(("fmt", "bad", "good"), [
    ("date-time", "garbage", "2026-03-09T09:00:00+08:00"),
    ("date-time", "2026-03-09T09:00:00", "2026-03-09T01:00:00Z"),  # RFC 3339 needs the offset
    ("date", "2026-02-30", "2026-02-28"),
    ("uuid", "not-a-uuid", "7f0c6a52-7f5e-4a3e-9a53-3f1c1b7f2d10"),
    ("uri", "no scheme here", "https://hr.example.gov.cn/licences"),
])
def test_the_format_checker_rejects_what_its_format_forbids(fmt: str, bad: str, good: str) -> None:
    assert not Draft202012Validator.FORMAT_CHECKER.conforms(bad, fmt)
    assert Draft202012Validator.FORMAT_CHECKER.conforms(good, fmt)


def test_every_format_the_schemas_declare_has_a_checker() -> None:
    declared = set()
    for path in [*files("schemas").iterdir(), *(files("schemas") / "forms").iterdir()]:
        if path.name.endswith(".json"):
            declared |= set(re.findall(r'"format":\s*"([^"]+)"', path.read_text("utf-8")))
    assert declared <= set(DECLARED_FORMATS), declared - set(DECLARED_FORMATS)
    assert declared <= set(FORMAT_CHECKER.checkers), declared - set(FORMAT_CHECKER.checkers)


def test_every_validator_the_hub_builds_checks_formats() -> None:
    schema = {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}}
    assert not validator_for(schema).is_valid({"at": "garbage"})  # item forms
    record = json.loads((files("schemas") / "case-record.v1.json").read_text("utf-8"))
    assert record["$defs"]["timestamp"]["format"] == "date-time"
    assert any(e.validator == "format" for e in shared_validator("envelope.v1.json").iter_errors(
        {"occurred_at": "garbage"}))  # exchange envelopes, records, events
    assert _schema_validator().format_checker is not None  # workflow definitions


def test_errors_say_the_rule_but_never_quote_the_value() -> None:
    from hub.validation import field_errors, validator_for

    schema = {"type": "object", "properties": {
        "id_number": {"type": "string", "pattern": "^[0-9]{17}[0-9X]$"},
        "phone": {"type": "string", "maxLength": 11},
        "at": {"type": "string", "format": "date-time"},
        "kind": {"enum": ["1", "2"]},
    }, "required": ["name"]}
    document = {"id_number": "11010519491231002Y", "phone": "138123456789", "at": "1949-12-31 secret",
                "kind": "13812345678"}
    errors = {e.field: e for e in field_errors(validator_for(schema).iter_errors(document), prefix="form")}
    assert set(errors) == {"form.id_number", "form.phone", "form.at", "form.kind", "form.name"}
    for error in errors.values():
        assert not any(value in error.message for value in document.values()), error.message
    assert errors["form.id_number"].rule == "pattern" and "^[0-9]{17}[0-9X]$" in errors["form.id_number"].message
    assert "at most 11 characters" in errors["form.phone"].message
    assert "date-time" in errors["form.at"].message
    assert "'name' is a required property" in errors["form.name"].message  # names, not values, are kept
