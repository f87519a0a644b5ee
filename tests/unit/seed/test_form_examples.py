"""Every item form in schemas/forms carries one example that its own schema accepts.

The examples are used as ready-made valid submissions (tests/support.py), so each must pass the
same validator the hub uses, and must actually exercise the schema's required fields.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[3]
ITEMS = json.loads((ROOT / "hub" / "seed" / "data" / "items.json").read_text(encoding="utf-8"))
FORMS = ROOT / "schemas" / "forms"

JsonPath = tuple[str | int, ...]


def load_form(item: dict[str, Any]) -> dict[str, Any]:
    return json.loads((FORMS / item["form"]).read_text(encoding="utf-8"))


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def example_of(schema: dict[str, Any]) -> dict[str, Any]:
    examples = schema.get("examples")
    assert isinstance(examples, list) and len(examples) == 1, "expected exactly one example"
    example = examples[0]
    assert isinstance(example, dict)
    return example


def error_report(schema: dict[str, Any], instance: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator(schema).iter_errors(instance)
    ]


def required_paths(schema: dict[str, Any], instance: Any, at: JsonPath = ()) -> Iterator[JsonPath]:
    """Paths of the required properties present in the instance, nested objects included."""
    if isinstance(instance, dict):
        for name in schema.get("required", []):
            if name in instance:
                yield (*at, name)
        for name, sub in schema.get("properties", {}).items():
            if name in instance:
                yield from required_paths(sub, instance[name], (*at, name))
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, element in enumerate(instance):
            yield from required_paths(schema["items"], element, (*at, index))


def without(instance: dict[str, Any], path: JsonPath) -> dict[str, Any]:
    pruned = copy.deepcopy(instance)
    parent: Any = pruned
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return pruned


@pytest.mark.parametrize("item", ITEMS, ids=[i["key"] for i in ITEMS])
def test_example_is_valid(item: dict[str, Any]) -> None:
    schema = load_form(item)
    errors = error_report(schema, example_of(schema))
    assert not errors, f"{item['form']} example is invalid:\n" + "\n".join(errors)


@pytest.mark.parametrize("item", ITEMS, ids=[i["key"] for i in ITEMS])
def test_example_without_a_required_field_is_invalid(item: dict[str, Any]) -> None:
    schema = load_form(item)
    example = example_of(schema)
    paths = list(required_paths(schema, example))
    assert set(schema["required"]) <= {p[0] for p in paths if len(p) == 1}, (
        "example lacks top-level required fields"
    )
    still_valid = [
        "/".join(str(p) for p in path)
        for path in paths
        if validator(schema).is_valid(without(example, path))
    ]
    assert not still_valid, f"{item['form']} accepts the example without: {still_valid}"
