"""Shared plumbing: exchange headers, HTTP and SOAP error classification, the TTL cache."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
import requests
from lxml import etree

from adapters.cache import TtlCache
from adapters.errors import (
    MalformedResponse,
    NotFoundInRegistry,
    RegistryRejected,
    RegistryTimeout,
    RegistryUnavailable,
)
from adapters.http import build_http_client, exchange_headers, json_body, raise_for_registry_status
from adapters.soap import _contract_schema, _OnceTransport, classify_soap_error
from mocks.runner import RunningMocks
from tests.adapters.conftest import FakeClock

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "soap"


def test_exchange_headers_carry_every_identifier_ascii_safe() -> None:
    headers = exchange_headers(message_id="3f0c", client="hub", service="tax.GetTaxRegistration",
                               on_behalf_of="officer.li", purpose="申请人核验 (verify)", case="2101X")
    assert set(headers) == {"X-Message-Id", "X-Client", "X-Service", "X-On-Behalf-Of", "X-Purpose", "X-Case"}
    assert all(value.isascii() for value in headers.values())
    assert unquote(headers["X-Purpose"]) == "申请人核验 (verify)"
    assert "X-Case" not in exchange_headers(message_id="m", client="c", service="s", on_behalf_of="o", purpose="p")


def test_http_client_has_timeouts_and_ignores_proxy_settings(monkeypatch: pytest.MonkeyPatch,
                                                             mocks: RunningMocks) -> None:
    # A proxy variable must not divert registry traffic: the request still reaches the loopback mock.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with build_http_client(base_url=mocks.enterprise_url, timeout_s=1.5, max_connections=3) as client:
        assert client.timeout == httpx.Timeout(1.5)
        assert "ln-approval-hub" in client.headers["User-Agent"]
        assert client.get("/_control").status_code == 200


def response(status: int, content_type: str = "application/json", body: bytes = b"{}") -> httpx.Response:
    return httpx.Response(status, headers={"content-type": content_type}, content=body,
                          request=httpx.Request("GET", "http://127.0.0.1/x"))


@pytest.mark.parametrize(("status", "content_type", "error"), [
    (500, "text/html", RegistryUnavailable),
    (503, "application/problem+json", RegistryUnavailable),
    (429, "application/problem+json", RegistryUnavailable),
    (404, "application/problem+json", NotFoundInRegistry),
    (404, "text/html", RegistryRejected),
    (400, "application/problem+json", RegistryRejected),
    (401, "application/problem+json", RegistryRejected),
])
def test_http_statuses_are_classified(status: int, content_type: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        raise_for_registry_status(response(status, content_type), "enterprise", "code")


def test_a_bare_404_points_at_the_base_url() -> None:
    with pytest.raises(RegistryRejected, match="base URL"):
        raise_for_registry_status(response(404, "text/html"), "enterprise", "code")


@pytest.mark.parametrize(("content_type", "body", "fragment"), [
    ("text/html", b"<html/>", "not JSON"),
    ("application/json", b'{"a": ', "not valid JSON"),
    ("application/json", b"\xff\xfe", "not valid"),
])
def test_bad_json_bodies_are_malformed_with_a_reason(content_type: str, body: bytes, fragment: str) -> None:
    with pytest.raises(MalformedResponse, match=fragment):
        json_body(response(200, content_type, body), "enterprise")


def test_soap_transport_failures_are_classified_without_copying_their_text() -> None:
    timeout = classify_soap_error(requests.exceptions.ReadTimeout("secret 210102199003071234"), "population",
                                  what="id", timeout_s=2)
    assert isinstance(timeout, RegistryTimeout)
    refused = classify_soap_error(requests.exceptions.ConnectionError("secret"), "population", what="id", timeout_s=2)
    assert type(refused) is RegistryUnavailable
    assert "secret" not in str(timeout) + str(refused)
    missing = requests.HTTPError(response=_requests_response(404))
    assert isinstance(classify_soap_error(missing, "population", what="WSDL", timeout_s=2, loading=True),
                      RegistryRejected)
    gateway = requests.HTTPError(response=_requests_response(502))
    assert isinstance(classify_soap_error(gateway, "population", what="id", timeout_s=2), RegistryUnavailable)


def _requests_response(status: int) -> requests.Response:
    result = requests.Response()
    result.status_code = status
    return result


def test_cache_expires_entries_after_the_ttl() -> None:
    clock = FakeClock()
    cache: TtlCache[str, int] = TtlCache(10, clock=clock)
    cache.put("a", 1)
    clock.advance(9.9)
    assert cache.get("a") == 1
    clock.advance(0.1)
    assert cache.get("a") is None
    assert len(cache) == 0


def test_cache_drops_the_oldest_entry_when_full() -> None:
    cache: TtlCache[str, int] = TtlCache(10, max_entries=2, clock=FakeClock())
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        cache.put(key, value)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)


def test_a_zero_ttl_disables_the_cache() -> None:
    cache: TtlCache[str, int] = TtlCache(0, clock=FakeClock())
    cache.put("a", 1)
    assert cache.get("a") is None


def test_a_wsdl_with_an_inline_schema_still_gets_its_answers_validated(tmp_path: Path) -> None:
    # Real registries often inline their types in the WSDL instead of importing an XSD.
    xsd = etree.parse(str(SCHEMAS / "tax.v1.xsd")).getroot()
    wsdl = etree.parse(str(SCHEMAS / "tax.v1.wsdl")).getroot()
    types = wsdl.find("{http://schemas.xmlsoap.org/wsdl/}types")
    types.clear()
    types.append(xsd)
    path = tmp_path / "inline.wsdl"
    path.write_bytes(etree.tostring(wsdl))
    schema = _contract_schema(path.as_uri(), _OnceTransport(timeout_s=1))
    assert schema is not None
    ns = "urn:ln:registry:tax:v1"
    good = etree.fromstring(f'<t:GetTaxRegistration xmlns:t="{ns}"><t:creditCode>91110000600037341L</t:creditCode>'
                            "</t:GetTaxRegistration>")
    bad = etree.fromstring(f'<t:GetTaxRegistration xmlns:t="{ns}"><t:creditCode>nope</t:creditCode>'
                           "</t:GetTaxRegistration>")
    assert schema.validate(good)
    assert not schema.validate(bad)
