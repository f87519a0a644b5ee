"""Request bodies are limited before anything parses them: 413 problem+json for JSON, uploads and SOAP,
whether the size is declared (Content-Length) or only known while the body streams in (chunked)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from hub.settings import Settings
from tests.servers import serving
from tests.support import submit

KEY = "physician-practice-registration"
JSON_LIMIT, MATERIAL_LIMIT, OVERHEAD, SOAP_LIMIT = 4096, 8192, 2048, 2048
SOAP_PATH = "/soap/department-exchange"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "max_json_body_bytes": JSON_LIMIT, "max_material_bytes": MATERIAL_LIMIT,
        "multipart_overhead_bytes": OVERHEAD, "max_soap_body_bytes": SOAP_LIMIT,
    })


def big_json(size: int) -> bytes:
    return b'{"item_code": "' + b"x" * size + b'"}'


def assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("/payload-too-large") and problem["status"] == 413
    assert str(limit) in problem["detail"]


def test_a_declared_json_body_over_the_limit_is_413(client: TestClient) -> None:
    assert_too_large(client.post("/api/v1/applications", content=big_json(JSON_LIMIT),
                                 headers={"Content-Type": "application/json"}), JSON_LIMIT)
    # A sign-in form is a body like any other.
    assert_too_large(client.post("/api/v1/auth/token", data={"username": "u" * JSON_LIMIT, "password": "x"}),
                     JSON_LIMIT)


def test_a_chunked_json_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is known only while it streams
        yield b'{"item_code": "'
        for _ in range(8):
            yield b"x" * 1024
        yield b'"}'

    response = client.post("/api/v1/applications", content=chunks(), headers={"Content-Type": "application/json"})
    assert_too_large(response, JSON_LIMIT)


def test_bodies_within_the_limits_are_served_as_before(client: TestClient) -> None:
    assert submit(client, KEY)["tracking_no"]
    small = client.post("/api/v1/applications", content=big_json(100), headers={"Content-Type": "application/json"})
    assert small.status_code == 422  # parsed and validated as usual


def test_an_upload_is_limited_to_the_material_limit_plus_the_forms_overhead(client: TestClient) -> None:
    receipt = submit(client, KEY)
    url = f"/api/v1/applications/{receipt['tracking_no']}/materials"
    headers = {"X-Query-Code": receipt["query_code"]}
    key = receipt["materials"][0]["key"]
    over = client.post(url, data={"key": key}, headers=headers,
                       files={"file": ("big.pdf", b"%PDF-1.4" + b"0" * (MATERIAL_LIMIT + OVERHEAD), "application/pdf")})
    assert_too_large(over, MATERIAL_LIMIT + OVERHEAD)
    # Just over the material limit but within the form's allowance: the material rule answers, as before.
    near = client.post(url, data={"key": key}, headers=headers,
                       files={"file": ("near.pdf", b"%PDF-1.4" + b"0" * MATERIAL_LIMIT, "application/pdf")})
    assert near.status_code == 413 and near.json()["type"].endswith("/payload-too-large")
    fits = client.post(url, data={"key": key}, headers=headers,
                       files={"file": ("ok.pdf", b"%PDF-1.4" + b"0" * 1000, "application/pdf")})
    assert fits.status_code == 201, fits.text


def test_a_soap_body_over_the_soap_limit_is_413_declared_or_chunked(app: Any) -> None:
    envelope = b'<?xml version="1.0"?><Envelope>' + b"<x/>" * SOAP_LIMIT + b"</Envelope>"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(envelope), 512):
            yield envelope[start:start + 512]

    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    with serving(app) as base_url, httpx.Client(base_url=base_url, timeout=30, trust_env=False) as http:
        assert_too_large(http.post(SOAP_PATH, content=envelope, headers=headers), SOAP_LIMIT)
        assert_too_large(http.post(SOAP_PATH, content=chunks(), headers=headers), SOAP_LIMIT)  # real chunked
        small = http.post(SOAP_PATH, content=b"<not-xml", headers=headers)
        assert small.status_code == 500 and b"soap:Client" in small.content  # parsed: a fault, as before


# --- at the ASGI boundary: how much of the body the hub pulls in ----------------------------------


class Upload:
    """An ASGI request whose body arrives in chunks, recording how many the application pulled."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk, self.count, self.pulled = chunk, count, 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.pulled >= self.count:
            return {"type": "http.disconnect"}
        self.pulled += 1
        return {"type": "http.request", "body": self.chunk, "more_body": self.pulled < self.count}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.sent if m["type"] == "http.response.start"))


def scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"testserver"), *headers], "client": ("203.0.113.1", 1), "server": ("testserver", 80)}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_streamed_body_is_cut_off_at_the_limit_not_read_to_the_end(app: Any, anyio_backend: str) -> None:
    upload = Upload(b"x" * 1024, 1000)  # 1 MB offered, 4 kB allowed
    await app(scope("/api/v1/applications", [(b"content-type", b"application/json")]), upload.receive, upload.send)
    assert upload.status == 413
    assert upload.pulled <= JSON_LIMIT // 1024 + 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_declared_length_over_the_limit_is_refused_without_reading(app: Any, anyio_backend: str) -> None:
    upload = Upload(b"x" * 1024, 1000)
    headers = [(b"content-type", b"text/xml"), (b"content-length", str(1024 * 1000).encode())]
    await app(scope(SOAP_PATH, headers), upload.receive, upload.send)
    assert upload.status == 413 and upload.pulled == 0
