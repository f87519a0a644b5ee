"""One pass over each HTTP request before the application sees it: body limits, then NUL characters.

A plain ASGI middleware, outside everything that reads a body (FastAPI, the SOAP endpoint). It reads the
headers once, and per request it does only what that request needs:

* a declared ``Content-Length`` over the limit (``hub.throttle.http.BodyLimits``) → 413 at once, without
  reading a byte;
* a NUL character in the path, a query parameter or a header value → 422 naming it
  (``hub.nul_guard``); the query string is parsed only when it holds ``%00`` or a NUL byte;
* JSON and URL-encoded form bodies (the only ones the NUL rule reads) are read here once, counted against
  the limit as they stream (413 as soon as they pass it, never read to the end), scanned once — a
  substring search; parsed only when it finds a NUL or a ``\\u0000`` escape — and handed to the
  application as one message;
* any other body (uploads, SOAP) goes to the application as it streams; when its length is not declared
  (chunked) it is counted and cut off with 413 once past the limit, whatever the application made of the
  truncated body;
* a request without a body, or whose declared length is within the limit, passes through untouched (the
  HTTP server delivers exactly the declared length).

Before this module the same checks were two middlewares, each with its own pass over the headers, the
body buffered inside a counting wrapper and every response sent through a wrapper (issue 8).
"""

from __future__ import annotations

from typing import Any

from hub import nul_guard
from hub.errors import FieldError
from hub.throttle.http import BodyLimits, BodyTooLarge, reject_too_large

Scope = dict[str, Any]
Message = dict[str, Any]
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class RequestGuardMiddleware:
    def __init__(self, app: Any, *, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = _Head(scope)
        limit, kind = self.limits.limit_for(scope.get("path", ""), head.content_type)
        if head.declared is not None and head.declared > limit:
            await reject_too_large(scope, send, limit, kind)
            return
        error = nul_guard.url_error(scope) or head.nul_error
        if error is not None:
            await nul_guard.reject(scope, send, error)
            return
        body_kind = nul_guard.body_kind(head.content_type)
        if body_kind is not None:
            await self._buffered(scope, receive, send, body_kind, limit, kind)
        elif head.declared is not None or (not head.chunked and scope.get("method") in BODYLESS_METHODS):
            await self.app(scope, receive, send)
        else:
            await self._counted(scope, receive, send, limit, kind)

    async def _buffered(self, scope: Scope, receive: Any, send: Any, body_kind: str, limit: int, kind: str) -> None:
        """Read the whole body here (within the limit), scan it once, hand it over as one message."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client left: the application gets what came, as it would have read it
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await reject_too_large(scope, send, limit, kind)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        error = nul_guard.json_error(body) if body_kind == "json" else nul_guard.form_error(body)
        if error is not None:
            await nul_guard.reject(scope, send, error)
            return
        pending: Message | None = {"type": "http.request", "body": body, "more_body": False}

        async def replay() -> Message:
            nonlocal pending
            if pending is not None:
                message, pending = pending, None
                return message
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _counted(self, scope: Scope, receive: Any, send: Any, limit: int, kind: str) -> None:
        """A body of unknown length the application reads as it streams: cut off once past the limit."""
        state = {"received": 0, "exceeded": False, "started": False}

        async def counted_receive() -> Message:
            message: Message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["exceeded"] = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            if state["exceeded"]:
                return  # whatever the application made of the cut-off body: the answer is 413
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["exceeded"]:
                raise
        if state["exceeded"] and not state["started"]:
            await reject_too_large(scope, send, limit, kind)


class _Head:
    """What the guard needs from the headers, read in one pass."""

    __slots__ = ("chunked", "content_type", "declared", "nul_error")

    def __init__(self, scope: Scope) -> None:
        self.content_type = b""
        self.declared: int | None = None
        self.chunked = False
        self.nul_error: FieldError | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                self.content_type = value
            elif name == b"content-length":
                raw = value.strip()
                self.declared = int(raw) if raw.isdigit() else None
            elif name == b"transfer-encoding":
                self.chunked = True
            if b"\x00" in value and self.nul_error is None:
                self.nul_error = nul_guard.header_error(name)
