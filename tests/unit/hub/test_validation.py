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
