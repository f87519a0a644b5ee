"""Rejects NUL characters anywhere in a request, naming the field, before they reach a database.

PostgreSQL text and JSONB cannot hold U+0000; without this guard such input would surface as a
database error instead of a clear 422.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from hub.errors import FieldError
from hub.problems import MEDIA_TYPE, PROBLEM_TYPE_BASE

Scope = dict[str, Any]


class NulGuardMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = _url_error(scope)
        kind = _body_kind(scope)
        if error is None and kind is not None:
            body, receive = await _buffer(receive)
            error = _json_error(body) if kind == "json" else _form_error(body)
        if error is None:
            await self.app(scope, receive, send)
            return
        await _reject(scope, send, error)


def _url_error(scope: Scope) -> FieldError | None:
    if "\x00" in scope.get("path", ""):
        return FieldError("path", "no_nul_character", "路径中不得包含 NUL 字符")
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return FieldError(name.replace("\x00", ""), "no_nul_character", "参数中不得包含 NUL 字符")
    for name, value in scope.get("headers", []):
        if b"\x00" in value:
            return FieldError(name.decode("latin-1"), "no_nul_character", "请求头中不得包含 NUL 字符")
    return None


def _body_kind(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            if b"json" in value:
                return "json"
            if b"x-www-form-urlencoded" in value:
                return "form"
    return None


def _form_error(body: bytes) -> FieldError | None:
    if b"%00" not in body and b"\x00" not in body:
        return None
    for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return FieldError(name.replace("\x00", ""), "no_nul_character", "不得包含 NUL 字符")
    return None


async def _buffer(receive: Any) -> tuple[bytes, Any]:
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _json_error(body: bytes) -> FieldError | None:
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


async def _reject(scope: Scope, send: Any, error: FieldError) -> None:
    problem = {
        "type": PROBLEM_TYPE_BASE + "validation-failed", "title": "提交的数据未通过校验",
        "status": 422, "detail": f"{error.field}: {error.message}", "instance": scope.get("path"),
        "errors": [error.as_dict()],
    }
    body = json.dumps(problem, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": 422,
                "headers": [(b"content-type", MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
