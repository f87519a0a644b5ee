"""Mock organisation-code registry (全国组织机构代码管理中心): REST/JSON.

``GET /api/organisations/{code}`` takes a GB 11714 organisation code (``XXXXXXXX-X`` or 9 characters)
or an 18-character unified social credit code, whose characters 9–17 are the organisation code.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response

from mocks.control import own_control_router
from mocks.registries.checks import is_credit_code, is_organisation_code
from mocks.registries.seed import Organisation, Seed
from mocks.registries.service import RestProblem, problem, rest_answer
from mocks.server import MockServer


def organisation_json(org: Organisation) -> dict[str, Any]:
    return {
        "organisation_code": org.organisation_code,
        "credit_code": org.credit_code,
        "name": org.name,
        "type": org.organisation_type,
        "valid_from": org.established_on.isoformat(),
        "valid_to": org.valid_to.isoformat() if org.valid_to else None,
    }


def _invalid(detail: str) -> RestProblem:
    return RestProblem(problem(400, "Invalid organisation code", detail, "invalid-identifier"))


def create_app(server: MockServer, seed: Seed) -> FastAPI:
    app = FastAPI(title="Mock organisation-code registry (REST)")
    app.include_router(own_control_router(server))

    def find(code: str) -> dict[str, Any]:
        if len(code) == 18:
            if not is_credit_code(code):
                raise _invalid("统一社会信用代码校验错误 (credit code fails the GB 32100 check)")
            org = seed.organisation(code)
        elif is_organisation_code(code):
            org = seed.organisation_by_code(code)
        else:
            raise _invalid("组织机构代码校验错误 (code fails the GB 11714 check; use XXXXXXXX-X, 9 or 18 characters)")
        if org is None:
            raise RestProblem(problem(404, "Not Found", "未查到该组织机构 (no organisation with this code)",
                                      "not-found"))
        return organisation_json(org)

    @app.get("/api/organisations/{code}", summary="an organisation by organisation code or credit code")
    async def lookup(code: str, request: Request) -> Response:
        return await rest_answer(server, request, "lookup", lambda: find(code))

    return app
