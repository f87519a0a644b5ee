"""The request guard's one pass: bodies read once across chunks, NUL characters wherever they hide, the
query parsed only when it may hold one, and the request metrics counted per route and status."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from tests.support import citizen_id, example_form, item_code, person

KEY = "physician-practice-registration"


def application(client: TestClient, **applicant: Any) -> bytes:
    body = {"item_code": item_code(client, KEY), "applicant": person(**applicant), "form": example_form(KEY)}
    return json.dumps(body, ensure_ascii=False).encode()


def in_chunks(body: bytes, *cuts: int) -> Iterator[bytes]:
    """The body as a client streams it (no Content-Length), cut at the given offsets."""
    start = 0
    for cut in (*cuts, len(body)):
        yield body[start:cut]
        start = cut


def test_a_json_body_streamed_in_chunks_is_served_whole(client: TestClient) -> None:
    body = application(client, id_number=citizen_id(seq=301))
    response = client.post("/api/v1/applications", content=in_chunks(body, 7, 100, 101, len(body) - 3),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["tracking_no"]


def test_a_nul_escape_split_across_chunks_is_still_named(client: TestClient) -> None:
    body = application(client, name="张\x00三")
    escape = body.index(b"\\u0000")
    response = client.post("/api/v1/applications", content=in_chunks(body, escape + 3),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"field": "applicant.name", "rule": "no_nul_character", "message": "不得包含 NUL 字符"}]


def test_a_nul_in_a_header_value_is_named(client: TestClient) -> None:
    response = client.get("/api/v1/items", headers={"X-Request-Note": "a\x00b"})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "x-request-note", "rule": "no_nul_character", "message": "请求头中不得包含 NUL 字符"}]


def test_a_percent_encoded_nul_in_any_query_parameter_is_named(client: TestClient) -> None:
    response = client.get("/api/v1/items?limit=5&q=%E9%A3%9F%00")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "q"


def test_an_escaped_percent_sign_is_not_a_nul(client: TestClient) -> None:
    response = client.get("/api/v1/items?q=%2500")  # the text "%00", not the character
    assert response.status_code == 200, response.text


def test_requests_are_counted_per_route_and_status_every_time(client: TestClient) -> None:
    def served(status: str) -> float:
        text = client.get("/metrics").text
        pattern = (r'hub_http_requests_total\{method="GET",route="/api/v1/items",status="' + status
                   + r'"\} ([0-9.e+]+)')
        found = re.search(pattern, text)
        return float(found.group(1)) if found else 0.0

    ok, refused = served("200"), served("422")
    for _ in range(3):
        assert client.get("/api/v1/items", params={"q": KEY}).status_code == 200
    assert client.get("/api/v1/items", params={"limit": "many"}).status_code == 422
    assert served("200") == ok + 3
    assert served("422") == refused + 1
