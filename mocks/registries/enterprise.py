"""Mock enterprise legal-person registry (市场监管企业登记): REST/JSON.

``GET /api/enterprises/{credit_code}`` answers the registered facts of an enterprise, a 404 problem
for an unknown code (institutions are not enterprises, so their codes are unknown here) and a 400
problem for a code that fails the GB 32100 check.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response

from mocks.control import own_control_router
from mocks.registries.checks import is_credit_code
from mocks.registries.seed import Organisation, Seed
from mocks.registries.service import RestProblem, problem, rest_answer
from mocks.server import MockServer


def enterprise_json(org: Organisation) -> dict[str, Any]:
    return {
        "credit_code": org.credit_code,
        "name": org.name,
        "type": org.enterprise_type,
        "legal_representative": {"name": org.legal_representative_name, "id_number": org.legal_representative_id},
        # Money as a decimal string in yuan: JSON numbers are floats to most parsers.
        "registered_capital": f"{org.registered_capital:.2f}",
        "address": org.address,
        "status": org.status,
        "business_scope": org.business_scope,
        "established_on": org.established_on.isoformat(),
    }


def create_app(server: MockServer, seed: Seed) -> FastAPI:
    app = FastAPI(title="Mock enterprise legal-person registry (REST)")
    app.include_router(own_control_router(server))

    def find(credit_code: str) -> dict[str, Any]:
        if not is_credit_code(credit_code):
            detail = "统一社会信用代码校验错误 (credit_code fails the GB 32100 check)"
            raise RestProblem(problem(400, "Invalid credit code", detail, "invalid-identifier"))
        org = seed.organisation(credit_code)
        if org is None or org.kind != "enterprise":
            raise RestProblem(problem(404, "Not Found",
                                      "未查到该企业 (no enterprise is registered under this credit code)", "not-found"))
        return enterprise_json(org)

    @app.get("/api/enterprises/{credit_code}", summary="an enterprise by unified social credit code")
    async def lookup(credit_code: str, request: Request) -> Response:
        return await rest_answer(server, request, "lookup", lambda: find(credit_code))

    return app
