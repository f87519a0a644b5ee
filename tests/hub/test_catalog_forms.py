"""An application form's compiled check (jsonschema-rs, hub/catalog/service.py ``validate_form``) is only a
fast pass: it never lets through a form jsonschema refuses, so applicants get jsonschema's errors — field and
rule — as before, for every item's form schema."""

from __future__ import annotations

import random
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.seed.service import read_form, read_seed
from hub.validation import compiled_check, field_errors, validator_for
from tests.hub.test_shared_validation import TRICKY, _mutate
from tests.support import example_form, item_code, person

# Values at the edges of the seeded forms' own rules: Chinese text, lengths, phone and code patterns.
FORM_TRICKY: tuple[Any, ...] = (*TRICKY, "张三", "张" * 200, "13800138000", "1380013800", "１３８００１３８０００",
                                "13800138000\n", "91210100MA0XXXXX1X", "2026-13-01", 1e308, -0.0, 10**20)


def _seeded_forms() -> list[tuple[str, dict[str, Any]]]:
    return [(row["key"], read_form(row["form"])) for row in read_seed("items") if row.get("form")]


@pytest.mark.skipif(compiled_check({"type": "object"}) is None, reason="jsonschema-rs is not installed")
def test_the_compiled_form_check_never_passes_a_form_jsonschema_refuses() -> None:
    rng = random.Random(8)
    compared = refused = 0
    for key, schema in _seeded_forms():
        quick, full = compiled_check(schema), validator_for(schema)
        assert quick is not None, key
        example = dict(schema["examples"][0])
        assert quick(example) and not list(full.iter_errors(example)), key
        for _ in range(150):
            form = _mutate(example, rng)
            if rng.random() < 0.3:
                field = rng.choice(list(schema.get("properties", {})) or ["x"])
                form[field] = rng.choice(FORM_TRICKY)
            try:
                passed = quick(form)
            except Exception:  # validate_form leaves such a form to jsonschema
                continue
            errors = list(full.iter_errors(form))
            compared += 1
            refused += bool(errors)
            assert not (passed and errors), (key, form, [e.message for e in errors])
    assert compared > 1000 and refused > compared // 4  # the mutations reached the rules


def test_a_refused_form_still_gets_jsonschemas_errors_by_field_and_rule(client: TestClient) -> None:
    key = "physician-practice-registration"
    schema = read_form(next(row["form"] for row in read_seed("items") if row["key"] == key))
    form = example_form(key)
    first = next(iter(form))
    form[first] = {"unexpected": 1}
    del form[next(name for name in schema.get("required", []) if name != first)]
    response = client.post("/api/v1/applications",
                           json={"item_code": item_code(client, key), "applicant": person(), "form": form})
    assert response.status_code == 422, response.text
    expected = [(e.field, e.rule) for e in field_errors(validator_for(schema).iter_errors(form), prefix="form")]
    assert len(expected) >= 2
    assert [(e["field"], e["rule"]) for e in response.json()["errors"]] == expected
