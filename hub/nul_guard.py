"""Rejects NUL characters anywhere in a request, naming the field, before they reach a database.

PostgreSQL text and JSONB cannot hold U+0000; without this rule such input would surface as a
database error instead of a clear 422. The checks; ``hub.request_guard`` applies them to every request.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from hub.errors import FieldError
from hub.problems import MEDIA_TYPE, PROBLEM_TYPE_BASE

Scope = dict[str, Any]


def url_error(scope: Scope) -> FieldError | None:
    """A NUL in the (decoded) path or in a query parameter; the query is parsed only when it may hold one."""
    if "\x00" in scope.get("path", ""):
        return FieldError("path", "no_nul_character", "路径中不得包含 NUL 字符")
    raw: bytes = scope.get("query_string", b"")
    if b"%00" not in raw and b"\x00" not in raw:
        return None  # a NUL reaches a parameter only as %00 or as the byte itself
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return FieldError(name.replace("\x00", ""), "no_nul_character", "参数中不得包含 NUL 字符")
    return None


def header_error(name: bytes) -> FieldError:
    return FieldError(name.decode("latin-1"), "no_nul_character", "请求头中不得包含 NUL 字符")


def body_kind(content_type: bytes) -> str | None:
    """Which bodies this rule reads: JSON ("json") and URL-encoded forms ("form"); None for the others
    (uploaded files may hold NUL bytes)."""
    if b"json" in content_type:
        return "json"
    if b"x-www-form-urlencoded" in content_type:
        return "form"
    return None


def form_error(body: bytes) -> FieldError | None:
    if b"%00" not in body and b"\x00" not in body:
        return None
    for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return FieldError(name.replace("\x00", ""), "no_nul_character", "不得包含 NUL 字符")
    return None


def json_error(body: bytes) -> FieldError | None:
    if b"\\u0000" not in body and b"\x00" not in body:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None  # unparseable bodies get FastAPI's own 400/422
    path = _find_nul(document, [])
    if path is None:
        return None
    return FieldError(".".join(path) or "(body)", "no_nul_character", "不得包含 NUL 字符")


def _find_nul(value: Any, path: list[str]) -> list[str] | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
        for key in value:
            if "\x00" in str(key):
                return [*path, str(key).replace("\x00", "")]
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    for key, child in items:
        found = _find_nul(child, [*path, key])
        if found is not None:
            return found
    return None


async def reject(scope: Scope, send: Any, error: FieldError) -> None:
    problem = {
        "type": PROBLEM_TYPE_BASE + "validation-failed", "title": "提交的数据未通过校验",
        "code": error.rule, "status": 422, "detail": f"{error.field}: {error.message}", "instance": scope.get("path"),
        "errors": [error.as_dict()],
    }
    body = json.dumps(problem, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": 422,
                "headers": [(b"content-type", MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
