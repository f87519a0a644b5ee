"""HTTP side of the abuse limits: the caller's address, and how large a request body may be.

``hub.request_guard`` enforces the limits before anything reads a body: a declared ``Content-Length``
over the limit is answered 413 at once, without reading a byte; a body without one (chunked) is counted
as it streams, and the request is cut off with 413 as soon as it passes the limit, so no body is ever
held in full beyond its limit. Limits by kind of request: SOAP (``/soap/…``), uploads
(``multipart/form-data``: the material limit plus the form's overhead), and every other body (JSON,
forms).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from hub.problems import MEDIA_TYPE, PROBLEM_TYPE_BASE
from hub.settings import Settings

Scope = dict[str, Any]


def source_address(request: Request) -> str:
    """The peer's address as the server saw it (behind a proxy: run uvicorn with --proxy-headers and
    --forwarded-allow-ips for that proxy only, never trust a header any client can set)."""
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class BodyLimits:
    json: int
    upload: int
    soap: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        return cls(json=settings.max_json_body_bytes, soap=settings.max_soap_body_bytes,
                   upload=settings.max_material_bytes + settings.multipart_overhead_bytes)

    def limit_for(self, path: str, content_type: bytes) -> tuple[int, str]:
        if path.startswith("/soap/"):
            return self.soap, "SOAP"
        if b"multipart/form-data" in content_type.lower():
            return self.upload, "upload"
        return self.json, "JSON"


class BodyTooLarge(Exception):
    """Raised inside the application's ``receive`` once a streamed body passes its limit."""


async def reject_too_large(scope: Scope, send: Any, limit: int, kind: str) -> None:
    problem = {
        "type": PROBLEM_TYPE_BASE + "payload-too-large", "title": "请求体过大", "code": "size", "status": 413,
        "detail": f"请求体超过上限 {limit} 字节 ({kind} request bodies are limited to {limit} bytes)",
        "instance": scope.get("path"), "errors": [],
    }
    body = json.dumps(problem, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
