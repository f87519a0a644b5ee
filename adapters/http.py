"""The one httpx setup for REST counterparts, the exchange headers, and HTTP error classification.

Every exchange carries the same identifiers (DESIGN §5): ``X-Message-Id`` (a UUID, reused by the
retries of one exchange so the counterpart can deduplicate), ``X-Client`` (the calling system),
``X-Service`` (what is called), ``X-On-Behalf-Of`` (officer or system), ``X-Case`` (the tracking
number) and ``X-Purpose`` (why personal data is looked up). Values are percent-encoded because header
values must be ASCII and purposes are usually written in Chinese.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import httpx

from adapters.errors import (
    AdapterError,
    MalformedResponse,
    NotFoundInRegistry,
    RegistryRejected,
    RegistryTimeout,
    RegistryUnavailable,
)

DEFAULT_CLIENT_ID = "ln-approval-hub"
USER_AGENT = "ln-approval-hub/0.1 (provincial approval exchange hub)"
PROBLEM_JSON = "application/problem+json"

# httpx logs every request URL at INFO, and registry URLs carry identifiers; the hub logs its own
# (masked) access records instead.
logging.getLogger("httpx").setLevel(logging.WARNING)
# Unreserved characters stay readable; everything else (CJK, spaces, ':') is percent-encoded.
_HEADER_SAFE = "-._~@"


def exchange_headers(*, message_id: str, client: str, service: str, on_behalf_of: str, purpose: str,
                     case: str | None = None) -> dict[str, str]:
    """The exchange-identifier headers of one request."""
    values = {
        "X-Message-Id": message_id,
        "X-Client": client,
        "X-Service": service,
        "X-On-Behalf-Of": on_behalf_of,
        "X-Purpose": purpose,
    }
    if case:
        values["X-Case"] = case
    return {name: quote(value, safe=_HEADER_SAFE) for name, value in values.items()}


def build_http_client(*, base_url: str = "", timeout_s: float, max_connections: int,
                      user_agent: str = USER_AGENT) -> httpx.Client:
    """An httpx client with the policy's timeout on connect, read, write and pool acquisition."""
    return httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        headers={"User-Agent": user_agent, "Accept": "application/json, application/problem+json"},
        follow_redirects=False,
        # Proxy variables must not send registry traffic (personal data) anywhere unexpected.
        trust_env=False,
    )


def classify_transport_error(exc: httpx.HTTPError, registry: str, timeout_s: float) -> AdapterError:
    """Timeouts and connection failures are transient; anything else from httpx is a bad exchange."""
    if isinstance(exc, httpx.TimeoutException):
        return RegistryTimeout.after(registry, timeout_s)
    if isinstance(exc, httpx.TransportError):
        return RegistryUnavailable.because(registry, f"connection failed ({type(exc).__name__})")
    return RegistryUnavailable.because(registry, type(exc).__name__)


def _media_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower()


def raise_for_registry_status(response: httpx.Response, registry: str, what: str) -> None:
    """Map a non-2xx answer onto the error hierarchy; ``what`` names the identifier for not-found."""
    status = response.status_code
    if status < 300:
        return
    # 429 is the counterpart asking us to slow down: transient, so retried with backoff like a 503.
    if status >= 500 or status == 429:
        raise RegistryUnavailable.because(registry, f"HTTP {status}")
    if status == 404:
        # Only a problem document proves the registry itself answered "no such record"; a bare 404
        # usually means a wrong base URL, and must not turn every applicant into "not found".
        if _media_type(response) == PROBLEM_JSON:
            raise NotFoundInRegistry.for_identifier(registry, what)
        raise RegistryRejected.because(registry, "HTTP 404 without problem details; check the registry base URL")
    raise RegistryRejected.because(registry, f"HTTP {status}")


def json_body(response: httpx.Response, registry: str) -> Any:
    """The decoded JSON of a 2xx answer, or MalformedResponse saying what is wrong with it."""
    media_type = _media_type(response)
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise MalformedResponse.because(registry, f"content type {media_type or 'missing'!r} is not JSON")
    try:
        return json.loads(response.content)
    except json.JSONDecodeError as exc:
        # exc.msg and the position describe the defect without quoting the (personal) content.
        raise MalformedResponse.because(registry, f"body is not valid JSON ({exc.msg}, char {exc.pos})") from None
    except UnicodeDecodeError:
        raise MalformedResponse.because(registry, "body is not valid UTF-8 JSON") from None


def get_json(client: httpx.Client, path: str, *, registry: str, what: str, headers: dict[str, str],
             timeout_s: float) -> Any:
    """GET ``path`` and return its JSON, with every failure classified."""
    try:
        response = client.get(path, headers=headers)
    except httpx.HTTPError as exc:
        raise classify_transport_error(exc, registry, timeout_s) from None
    raise_for_registry_status(response, registry, what)
    return json_body(response, registry)
