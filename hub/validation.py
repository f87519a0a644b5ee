"""JSON Schema validation that reports every error by field and rule, in the hub's error type."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from hub.errors import FieldError

RULE_TEXT = {
    "required": "缺少必填项",
    "type": "类型不正确",
    "enum": "取值不在允许范围内",
    "const": "取值不正确",
    "pattern": "格式不正确",
    "format": "格式不正确",
    "minLength": "内容过短",
    "maxLength": "内容过长",
    "minimum": "数值过小",
    "maximum": "数值过大",
    "exclusiveMinimum": "数值过小",
    "exclusiveMaximum": "数值过大",
    "additionalProperties": "包含未定义的字段",
    "minItems": "项目过少",
    "maxItems": "项目过多",
    "uniqueItems": "存在重复项",
    "multipleOf": "数值不符合步长",
}


# Formats the hub's schemas declare (grep schemas/ for "format"). jsonschema silently skips a format whose
# checker's package is missing (date-time: rfc3339-validator; uri: rfc3986-validator), so the hub refuses
# to start without them rather than accept "garbage" as a timestamp.
DECLARED_FORMATS = ("date-time", "date", "uuid", "uri")
FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER
_missing = [name for name in DECLARED_FORMATS if name not in FORMAT_CHECKER.checkers]
if _missing:  # pragma: no cover - a broken installation
    raise ImportError(f"jsonschema cannot check the formats {_missing}: install the project's dependencies "
                      "(rfc3339-validator, rfc3986-validator)")


# The shared schemas a partner message is checked against (envelope and payload).
SHARED_SCHEMAS = ("envelope.v1.json", "case-record.v1.json", "case-event.v1.json")


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)


@lru_cache(maxsize=64)
def load_schema(name: str) -> dict[str, Any]:
    """A schema from the shared `schemas/` package, e.g. ``case-record.v1.json``."""
    import json
    from importlib.resources import files

    return dict(json.loads((files("schemas") / name).read_text(encoding="utf-8")))


@lru_cache(maxsize=64)
def shared_validator(name: str) -> Draft202012Validator:
    """A validator for a shared schema; `$ref`s between shared schemas resolve by their `$id`.

    Compiled once per process. Its plain `$ref`s are inlined (`_inline_refs`): jsonschema would resolve
    each one again for every instance it checks, about a fifth of the time a partner record's validation
    took. Errors read the same: a reference yields the errors of its target, and so does the target."""
    from referencing import Registry, Resource

    registry: Registry = Registry().with_resources(
        (load_schema(n)["$id"], Resource.from_contents(load_schema(n))) for n in SHARED_SCHEMAS
    )
    schema = load_schema(name)
    inlined = _inline_refs(schema, registry.resolver(base_uri=schema.get("$id", "")), depth=0)
    return Draft202012Validator(inlined, registry=registry, format_checker=FORMAT_CHECKER)


def _inline_refs(node: Any, resolver: Any, *, depth: int) -> Any:
    """``node`` with every ``{"$ref": …}`` that has no sibling keywords replaced by its target (itself
    inlined); a reference nested too deep (a recursive schema) is left to jsonschema."""
    if isinstance(node, list):
        return [_inline_refs(value, resolver, depth=depth) for value in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"$ref"} and isinstance(node["$ref"], str) and depth < 8:
        resolved = resolver.lookup(node["$ref"])
        return _inline_refs(resolved.contents, resolved.resolver, depth=depth + 1)
    return {key: _inline_refs(value, resolver, depth=depth) for key, value in node.items()}


@lru_cache(maxsize=64)
def fast_check(name: str) -> Callable[[Any], bool] | None:
    """A compiled yes/no check of a shared schema (jsonschema-rs), ≈15× cheaper than ``shared_validator``; None
    when the package is missing. Only a quick pass: a document it refuses is checked again by
    ``shared_validator``, whose errors (field and rule) are the ones reported, and which has the last word.

    Never laxer than jsonschema, so a document it passes is one jsonschema passes too: the formats are checked
    by the very checkers jsonschema uses (``FORMAT_CHECKER``), and the shared schemas' patterns are ASCII
    classes, anchors and ``\\d`` — where Rust's regex differs from Python's ``re`` it is stricter (``$`` does
    not match before a final newline). tests/hub/test_validation.py compares the two on mutated records."""
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - an installation without it still validates, more slowly
        return None
    registry = jsonschema_rs.Registry([(load_schema(n)["$id"], load_schema(n)) for n in SHARED_SCHEMAS])
    formats = {name: _format_check(name, memo=True) for name in DECLARED_FORMATS}
    validator = jsonschema_rs.Draft202012Validator(load_schema(name), registry=registry, validate_formats=True,
                                                   formats=formats)
    return validator.is_valid


def compiled_check(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """A compiled yes/no check of any schema (an item's form schema), as ``fast_check`` is of a shared one: a
    quick pass only, whose "no" is for ``validator_for(schema)`` to word and whose "yes" it never contradicts.
    Every format jsonschema checks is checked by jsonschema's own checker. None without jsonschema-rs, or for a
    schema it cannot compile (a pattern its regex engine refuses): jsonschema alone then."""
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - an installation without it still validates, more slowly
        return None
    formats = {name: _format_check(name) for name in FORMAT_CHECKER.checkers}
    try:
        validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True, formats=formats)
    except Exception:  # a schema jsonschema-rs cannot compile: jsonschema decides alone
        return None
    return validator.is_valid


def _format_check(name: str, *, memo: bool = False) -> Callable[[str], bool]:
    """jsonschema's own checker of format ``name``, answering as ``FORMAT_CHECKER.conforms`` does — its
    function's truth, False for the exceptions it declares — without ``conforms``' look-up and FormatError (built
    with its message for every refused value): jsonschema-rs calls it for every formatted value of a record (≈5).
    ``memo``: dates and instants answered from a bounded memo (``_MEMOISED_FORMATS``; the shared schemas')."""
    function, raises = FORMAT_CHECKER.checkers[name]

    def check(value: str) -> bool:
        try:
            return bool(function(value))
        except raises:
            return False

    if memo and name in _MEMOISED_FORMATS:
        return lru_cache(maxsize=8192)(check)
    if name == "uuid":
        return _canonical_uuid_first(check)
    return check


# A UUID in its canonical text (36 characters, hex digits, hyphens at 8, 13, 18, 23): one that jsonschema's
# is_uuid passes (UUID() parses it, the hyphens stand where it looks for them). Anything else is asked of it.
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _canonical_uuid_first(check: Callable[[str], bool]) -> Callable[[str], bool]:
    """Every partner message's id is a canonical UUID: a pattern says yes to it without jsonschema's two passes
    (parsing it into a UUID, then looking for its hyphens); the rest goes to ``check``."""
    match = _CANONICAL_UUID.fullmatch

    def check_uuid(value: str) -> bool:
        return match(value) is not None or check(value)

    return check_uuid


# A partner's record carries its case's whole step history, so a case's next record checks the same instants
# again (≈5 per record); a format's answer depends on the string alone. Not uuid or uri: message ids never repeat.
_MEMOISED_FORMATS = frozenset({"date-time", "date"})


def shared_errors(name: str, document: Any, *, prefix: str) -> list[FieldError]:
    """Every error of ``document`` against the shared schema ``name``, by field and rule (none: valid). The
    compiled check first; jsonschema only for a document it refuses."""
    fast = fast_check(name)
    try:
        if fast is not None and fast(document):
            return []
    except Exception:  # something it cannot take (a huge integer?): jsonschema decides
        pass
    return field_errors(shared_validator(name).iter_errors(document), prefix=prefix)


def field_errors(errors: Iterable[ValidationError], *, prefix: str) -> list[FieldError]:
    result = [_field_error(error, prefix) for error in errors]
    return sorted(result, key=lambda e: (e.field, e.rule))


def _field_error(error: ValidationError, prefix: str) -> FieldError:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = _missing_property(error)
        if missing:
            path.append(missing)
    field = ".".join([prefix, *path]) if prefix else ".".join(path) or "(root)"
    rule = str(error.validator)
    text = RULE_TEXT.get(rule, "不符合要求")
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    label = f"「{title}」" if title and rule != "required" else ""
    return FieldError(field=field, rule=rule, message=f"{label}{text} ({_describe(error)})")


# jsonschema's own messages quote the offending value ("'11010519491231002Y' does not match …"); these
# messages travel into dead-letter reasons, AMQP headers and logs, so they say the rule, never the value.
_RULE_DESCRIPTIONS = {
    "type": "must be of type {}",
    "enum": "must be one of {}",
    "const": "must equal {}",
    "pattern": "must match the pattern {}",
    "format": "must be a valid {}",
    "minLength": "must be at least {} characters long",
    "maxLength": "must be at most {} characters long",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "exclusiveMinimum": "must be greater than {}",
    "exclusiveMaximum": "must be less than {}",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "uniqueItems": "items must be unique",
    "multipleOf": "must be a multiple of {}",
}
# Messages that name properties, not values: kept as jsonschema writes them.
_NAMES_ONLY = frozenset({"required", "additionalProperties", "dependentRequired", "unevaluatedProperties"})


def _describe(error: ValidationError) -> str:
    rule = str(error.validator)
    if rule in _NAMES_ONLY:
        return error.message
    template = _RULE_DESCRIPTIONS.get(rule)
    if template is None:
        return f"fails the {rule!r} rule"
    return template.format(str(error.validator_value)[:200])


def _missing_property(error: ValidationError) -> str | None:
    """The property this ``required`` error is about.

    jsonschema yields one error per missing property, each with the whole object as its instance and
    the whole list as its value; only the message tells them apart ("'name' is a required property").
    Taking the first missing name would name that one field once per missing field."""
    missing = [name for name in error.validator_value if name not in error.instance]
    for name in missing:
        if error.message == f"{name!r} is a required property":
            return str(name)
    return str(missing[0]) if missing else None
