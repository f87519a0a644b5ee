"""Form validation over HTTP: every error names its own field, once."""

from __future__ import annotations

import json
from importlib.resources import files

from fastapi.testclient import TestClient

from tests.support import ITEM_KEYS, company, example_form, item_code, person

KEY = "physician-practice-registration"


def test_each_missing_required_field_is_named_once(client: TestClient) -> None:
    schema = json.loads((files("schemas") / "forms" / ITEM_KEYS[KEY]["form"]).read_text("utf-8"))
    required = list(schema["required"])
    assert len(required) >= 7
    form = {name: value for name, value in example_form(KEY).items() if name not in required[:7]}
    response = client.post("/api/v1/applications",
                           json={"item_code": item_code(client, KEY), "applicant": person(), "form": form})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert all(e["rule"] == "required" for e in errors)
    assert sorted(e["field"] for e in errors) == sorted(f"form.{name}" for name in required[:7])


def test_missing_fields_of_a_nested_object_are_named_with_their_path(client: TestClient) -> None:
    key = "enterprise-establishment"
    form = example_form(key)
    form["legal_representative"] = {}  # name, id_number, mobile and position are required
    response = client.post("/api/v1/applications",
                           json={"item_code": item_code(client, key), "applicant": company(), "form": form})
    assert response.status_code == 422, response.text
    fields = sorted(e["field"] for e in response.json()["errors"] if e["rule"] == "required")
    assert fields == [f"form.legal_representative.{name}" for name in ("id_number", "mobile", "name", "position")]


def test_the_compiled_checks_format_answers_are_jsonschemas_asked_once_or_again() -> None:
    """The shared schemas' date and instant checks are memoised (a case's next record repeats its step history's
    instants): the answer is jsonschema's own, the first time and every time after."""
    from hub import validation

    values = {
        "date-time": ["2026-11-30T10:00:00+08:00", "2026-11-30t10:00:00z", "2026-02-30T10:00:00Z",
                      "2026-11-30T24:00:00Z", "2026-11-30 10:00:00Z", "garbage", ""],
        "date": ["2026-11-30", "2026-02-29", "2028-02-29", "2026-13-01", "20261130"],
        "uuid": ["2d0c0b7a-dbba-4afb-bc58-598bb0848734", "2D0C0B7A-DBBA-4AFB-BC58-598BB0848734",
                 "2d0c0b7adbba4afbbc58598bb0848734", "{2d0c0b7a-dbba-4afb-bc58-598bb0848734}",
                 "urn:uuid:2d0c0b7a-dbba-4afb-bc58-598bb0848734", "2d0c0b7a-dbba-4afb-bc58-598bb0848734\n",
                 "2d0c0b7a-dbba-4afb-bc58-598bb084873g", "2d0c0b7a-dbba-4afb-bc58598bb-0848734", ""],
    }
    for name, cases in values.items():
        check = validation._format_check(name, memo=True)
        for value in [*cases, *cases]:
            assert check(value) == validation.FORMAT_CHECKER.conforms(value, name), (name, value)
