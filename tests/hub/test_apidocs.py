"""/docs and /redoc work with the network cut: every asset they load is served by the hub itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

HUB = "http://testserver"
URL = re.compile(r"""https?://[^\s"'<>)]+""")


class _References(HTMLParser):
    """The src/href of every element a browser loads with the page (scripts, styles, icons)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.found.append(value)


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_documentation_page_names_no_external_url(client: TestClient, page: str) -> None:
    answer = client.get(page)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    external = [url for url in URL.findall(answer.text) if not url.startswith(HUB)]
    assert external == [], f"{page} loads from outside the hub: {external}"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_of_a_documentation_page_is_served_by_the_hub(client: TestClient, page: str) -> None:
    html = client.get(page).text
    assets = references(html)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200, f"{page} → {asset}: {answer.status_code}"
        assert len(answer.content) > 0, asset
    assert "/openapi.json" in html  # the page documents the hub's own API


def test_swagger_ui_bundle_and_styles_are_real(client: TestClient) -> None:
    html = client.get("/docs").text
    script = next(a for a in references(html) if a.endswith("swagger-ui-bundle.js"))
    css = next(a for a in references(html) if a.endswith(".css"))
    assert "SwaggerUIBundle" in client.get(script).text
    assert client.get(css).headers["content-type"].startswith("text/css")
    redoc = next(a for a in references(client.get("/redoc").text) if a.endswith(".js"))
    assert "redoc" in client.get(redoc).text.lower()


def test_swagger_ui_sends_the_document_to_no_online_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


def test_favicon_is_served(client: TestClient) -> None:
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.content.startswith(b"\x89PNG")


def test_oauth2_redirect_page_is_local(client: TestClient) -> None:
    answer = client.get("/docs/oauth2-redirect")
    assert answer.status_code == 200
    assert [u for u in URL.findall(answer.text) if not u.startswith(HUB)] == []


def test_documentation_pages_stay_out_of_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/redoc", "/favicon.ico", "/docs/oauth2-redirect"} & set(paths)
