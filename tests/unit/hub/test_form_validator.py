"""The form validator's fast path (hub/validation.py FormValidator): the compiled validator may only say
"valid" where jsonschema says valid too. Every form schema's examples and many invalid variants of them
(wrong types, missing and extra fields, bad formats, too long, patterns, enums, bounds, duplicates) get the
same verdict from both; where ECMA-262 patterns match less than Python's (a trailing newline before ``$``,
non-ASCII digits for ``\\d``), the compiled one may only be the stricter."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest

from hub.validation import FormValidator

FORMS = sorted(p.name for p in (files("schemas") / "forms").iterdir() if p.name.endswith(".json"))
# Strings on which Python's re and ECMA-262 differ, ECMA-262 always the stricter.
STRICTER = ("1" * 11 + "\n", "١٣٨٠٠٠٠٠٠٠٠", "２０２４")


def schema_of(name: str) -> dict[str, Any]:
    return dict(json.loads((files("schemas") / "forms" / name).read_text(encoding="utf-8")))


def bad_values(schema: dict[str, Any], example: Any) -> Iterator[Any]:
    """Values for one field: each breaks, or probes the edge of, one of its rules."""
    yield from (None, True, 1, 1.0, 1.5, -1, "", "x", [], {}, "2024-02-29", "2023-02-29", "2024-1-01",
                "2024-01-01T00:00:00Z", "http://example.com/", 10**30, *STRICTER)
    if isinstance(example, str):
        yield example + "\n"
        yield example + " "
        yield example.upper()
        yield example.lower()
        yield example[:-1]
        yield example + example[-1:]
    for bound in ("maxLength", "minLength"):
        if bound in schema:
            yield "a" * (schema[bound] + 1)
            yield "中" * max(schema[bound] - 1, 0)
            yield "中" * schema[bound]
    for bound in ("maximum", "minimum", "exclusiveMinimum", "exclusiveMaximum"):
        if bound in schema:
            yield from (schema[bound], schema[bound] + 1, schema[bound] - 1, schema[bound] + 0.5, float(schema[bound]))
    for value in schema.get("enum", ()):
        yield value
        if isinstance(value, str):
            yield value + "x"
    if isinstance(example, list):
        yield example + example
        yield example * (schema.get("maxItems", 3) + 1)
        yield example[:-1]
        yield [*example, None]


def variants(schema: dict[str, Any], document: Any) -> Iterator[Any]:
    """The document, and copies of it each with one field missing, added or given a bad value — recursively
    into objects and arrays of objects."""
    yield document
    if not isinstance(document, dict):
        return
    properties = schema.get("properties", {})
    yield {**document, "unexpected": "x"}
    for key, value in document.items():
        without = {k: v for k, v in document.items() if k != key}
        yield without
        sub = properties.get(key, {})
        for bad in bad_values(sub, value):
            yield {**document, key: bad}
        inner = sub.get("items", {}) if isinstance(value, list) else sub
        children = value if isinstance(value, list) else [value]
        for index, child in enumerate(children):
            if isinstance(child, dict):
                for changed in variants(inner, child):
                    if isinstance(value, list):
                        items = copy.copy(value)
                        items[index] = changed
                        yield {**document, key: items}
                    else:
                        yield {**document, key: changed}
    for key, sub in properties.items():  # the fields the example leaves out
        if key not in document:
            for bad in bad_values(sub, None):
                yield {**document, key: bad}


@pytest.mark.parametrize("name", FORMS)
def test_the_fast_path_says_valid_only_where_jsonschema_does(name: str) -> None:
    schema = schema_of(name)
    validator = FormValidator(schema)
    checked = disagreements = 0
    for example in schema.get("examples", []):
        for document in variants(schema, example):
            expected = validator.errors.is_valid(document)
            fast = validator.surely_valid(document)
            if validator.fast and not fast and expected:
                text = json.dumps(document, ensure_ascii=False)
                assert any(s.replace("\n", "\\n") in text for s in STRICTER) or "\\n" in text, (name, document)
                disagreements += 1
            else:
                assert fast == (expected and validator.fast), (name, document)
            checked += 1
    assert checked > 100


def test_most_forms_take_the_fast_path_and_a_uri_format_does_not() -> None:
    fast = {name: FormValidator(schema_of(name)).fast for name in FORMS}
    assert sum(fast.values()) >= len(FORMS) - 3, fast
    uri = [name for name in FORMS if '"format": "uri"' in (files("schemas") / "forms" / name).read_text("utf-8")]
    assert uri and not any(fast[name] for name in uri)


@pytest.mark.parametrize("schema", [
    {"type": "string", "format": "uri"},
    {"type": "string", "format": "date-time"},
    {"type": "string", "pattern": "^\\s+$"},
    {"type": "string", "pattern": "(?i)^a$"},
    {"type": "number", "multipleOf": 0.01},
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"type": "string"}}},
])
def test_a_schema_with_a_rule_checked_otherwise_has_no_fast_path(schema: dict[str, Any]) -> None:
    assert not FormValidator(schema).fast
