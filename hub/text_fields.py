"""hub/text.py applied at the hub's own entrances: API fields, item forms and SOAP parameters.

Three shapes of the same rule, so every entrance refuses the same text with the same rule slug:

* ``Name`` / ``FreeText`` / ``OptionalFreeText``: pydantic field types for request bodies; a refusal is
  a 422 problem whose error names the field (``applicant.name``) and the rule (``not_blank``,
  ``no_control_characters``, ``valid_characters``, ``no_invisible_characters``, ``single_line``).
* ``normalize_form``: every string of an item's application form, named by its form path
  (``form.spouse_name``), before the form is checked against its JSON Schema.
* ``checked_text``: one parameter of a non-pydantic entrance (SOAP), raising ``ValidationFailed``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from hub.errors import FieldError, ValidationFailed
from hub.text import TextRuleViolation, normalize_name, normalize_text

# Form fields whose schema title says they hold a person's or an organisation's name.
_NAME_TITLES = ("姓名", "名称", "负责人", "主持人")


@functools.lru_cache(maxsize=1024)
def _names_a_name(title: str) -> bool:
    """A form field whose title says it holds a name (the items' schemas have a few hundred titles)."""
    return any(word in title for word in _NAME_TITLES)


def _as_pydantic_error(violation: TextRuleViolation) -> PydanticCustomError:
    return PydanticCustomError(violation.rule, violation.message)


def _name(value: str) -> str:
    try:
        return normalize_name(value)
    except TextRuleViolation as violation:
        raise _as_pydantic_error(violation) from None


def _free_text(value: str) -> str:
    try:
        return normalize_text(value)
    except TextRuleViolation as violation:
        raise _as_pydantic_error(violation) from None


def _empty_as_none(value: Any) -> Any:
    # An optional text sent empty was not given; one sent as spaces or invisible characters is refused.
    return None if value == "" else value


def _optional_free_text(value: str | None) -> str | None:
    return None if value is None else _free_text(value)


Name = Annotated[str, AfterValidator(_name)]
FreeText = Annotated[str, AfterValidator(_free_text)]
OptionalFreeText = Annotated[str | None, BeforeValidator(_empty_as_none), AfterValidator(_optional_free_text)]


def checked_text(value: str | None, *, field: str, optional: bool = False, name: bool = False,
                 max_length: int | None = None) -> str | None:
    """One parameter normalised, or ``ValidationFailed`` naming ``field`` and the rule.

    With ``optional``, a missing or empty value is ``None``; blank or invisible-only text is still refused."""
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise ValidationFailed([FieldError(field, "required", "缺少必填项")])
    try:
        if name:
            return normalize_name(value, max_length=max_length or 128)
        return normalize_text(value, max_length=max_length)
    except TextRuleViolation as violation:
        raise ValidationFailed([FieldError(field, violation.rule, violation.message)]) from None


def normalize_form(form: Mapping[str, Any], schema: Mapping[str, Any], *, prefix: str = "form") -> dict[str, Any]:
    """The form with every string normalised (names as names, the rest as free text).

    Raises ``ValidationFailed`` with one error per refused string, each naming its form path."""
    errors: list[FieldError] = []
    result = _normalize_value(dict(form), schema, prefix, key="", errors=errors)
    if errors:
        raise ValidationFailed(errors)
    return dict(result)


def _normalize_value(value: Any, schema: Any, path: str, *, key: str, errors: list[FieldError]) -> Any:
    schema = schema if isinstance(schema, Mapping) else {}
    if isinstance(value, str):
        return _normalize_string(value, schema, path, key=key, errors=errors)
    if isinstance(value, Mapping):
        properties = schema.get("properties") or {}
        return {k: _normalize_value(v, properties.get(k), f"{path}.{k}", key=str(k), errors=errors)
                for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [_normalize_value(v, items, f"{path}.{i}", key=key, errors=errors) for i, v in enumerate(value)]
    return value


def _normalize_string(value: str, schema: Mapping[str, Any], path: str, *, key: str,
                      errors: list[FieldError]) -> str:
    title = str(schema.get("title") or "")
    try:
        if key == "name" or key.endswith("_name") or (title and _names_a_name(title)):
            return normalize_name(value, max_length=max(128, int(schema.get("maxLength") or 0)))
        return normalize_text(value)
    except TextRuleViolation as violation:
        label = f"「{title}」" if title else ""
        errors.append(FieldError(path, violation.rule, f"{label}{violation.message}"))
        return value
