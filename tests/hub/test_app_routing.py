"""How the application finds a request's route: FastAPI tries the included routers in order, each by matching
every route of its own, so the routers placed ahead of the submission's cost every submission their matching."""

from __future__ import annotations

from typing import Any

from starlette.routing import Match, Route


def _http_scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}


def test_a_submission_is_matched_by_the_first_router_tried(app: Any) -> None:
    scope = _http_scope("POST", "/api/v1/applications")
    tried = []
    for route in app.router.routes:
        if type(route) is Route:  # the OpenAPI document and its pages: plain routes, one comparison each
            continue
        match, _ = route.matches(scope)
        tried.append(route)
        if match == Match.FULL:
            break
    assert len(tried) == 1, f"{len(tried) - 1} routers are matched before the submission's"
