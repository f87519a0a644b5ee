"""The interactive API documentation (Swagger UI at /docs, ReDoc at /redoc), served entirely by the hub.

FastAPI's own pages load their JavaScript, CSS and favicon from public CDNs, so on a government intranet
(no Internet) they stayed blank. The assets come from the `fastapi-offline` package (MIT), which ships
Swagger UI's bundle and CSS, ReDoc's standalone script and a favicon; the hub serves them under
``STATIC_URL`` and its pages name only the hub's own paths.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/static/api-docs"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# Swagger UI's default validator badge sends the document to validator.swagger.io: none on an intranet.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None, "deepLinking": True, "persistAuthorization": True}


def _assets() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Serve /docs, /redoc, their assets and /favicon.ico; the app must be built with docs_url=None and
    redoc_url=None (FastAPI's CDN pages)."""
    assets = _assets()
    app.mount(STATIC_URL, StaticFiles(directory=assets), name="api-docs-assets")
    favicon = f"{STATIC_URL}/favicon.png"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} — Swagger UI",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{favicon}", swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} — ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js", redoc_favicon_url=f"{root}{favicon}",
            with_google_fonts=False,  # fonts.googleapis.com: unreachable offline; the browser's fonts do
        )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon_ico() -> FileResponse:  # browsers ask for it on every page of the hub
        return FileResponse(assets / "favicon.png", media_type="image/png")
