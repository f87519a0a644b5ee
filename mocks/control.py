"""The control API that injects faults into a mock.

Mounted twice: under ``/_control`` on every mock's own port, and under ``/_control/{name}`` on the
runner's control plane, which stays up while a mock refuses connections so that it can be told to
recover. Handlers are plain ``def`` so they run in a worker thread, never blocking the mock's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from mocks.server import MockServer


class FaultsUpdate(BaseModel):
    """Switches to change; omitted ones keep their value, null restores the default."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int | None = Field(default=None, ge=0, le=120_000, description="added latency per request")
    error_rate: float | None = Field(default=None, ge=0, le=1, description="share of requests that fail")
    fail_next: int | None = Field(default=None, ge=0, le=10_000, description="fail exactly the next N requests")
    error: Literal["http_5xx", "soap_fault"] | None = Field(
        default=None, description="how a failing request fails: HTTP 5xx, or a SOAP Server fault (SOAP mocks)"
    )
    error_status: int | None = Field(default=None, ge=500, le=599, description="status code for http_5xx")
    malformed: Literal["syntax", "schema", "invalid_json", "non_xml", "schema_mismatch"] | None = Field(
        default=None, description="garble every answer: not JSON/XML at all (syntax) or not matching the contract"
    )


class RefuseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    for_ms: int | None = Field(default=None, ge=1, le=3_600_000, description="recover by itself after this long")


Resolver = Callable[..., MockServer]


def _apply(target: MockServer, update: FaultsUpdate) -> dict[str, Any]:
    changes = {key: getattr(update, key) for key in update.model_fields_set}
    try:
        target.faults.update(changes)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return target.describe()


def _routes(router: APIRouter, resolve: Resolver) -> None:
    target_dep = Depends(resolve)

    @router.get("", summary="current faults, request counts and recent exchange identifiers")
    def state(target: MockServer = target_dep) -> dict[str, Any]:
        return target.describe()

    @router.post("/faults", summary="change fault switches")
    def faults(update: FaultsUpdate, target: MockServer = target_dep) -> dict[str, Any]:
        return _apply(target, update)

    @router.post("/refuse", status_code=202, summary="stop listening (connection refused) until recovery")
    def refuse(request: RefuseRequest | None = Body(default=None), target: MockServer = target_dep) -> dict[str, Any]:
        target.refuse(request.for_ms if request else None)
        return target.describe()

    @router.post("/recover", summary="clear every fault and listen again")
    def recover(target: MockServer = target_dep) -> dict[str, Any]:
        target.recover()
        return target.describe()

    @router.post("/reset-counts", summary="zero the request counters")
    def reset_counts(target: MockServer = target_dep) -> dict[str, Any]:
        target.faults.reset_counts()
        return target.describe()


def own_control_router(server: MockServer) -> APIRouter:
    """``/_control`` on the mock's own port."""
    router = APIRouter(prefix="/_control", tags=["control"])
    _routes(router, lambda: server)
    return router


def plane_control_router(servers: dict[str, MockServer]) -> APIRouter:
    """``/_control/{name}`` on the control plane, plus a summary and recover-all."""
    router = APIRouter(prefix="/_control", tags=["control"])

    def resolve(name: str) -> MockServer:
        try:
            return servers[name]
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no mock named {name!r}; known: {sorted(servers)}") from None

    @router.get("", summary="every mock's state")
    def summary() -> dict[str, Any]:
        return {"mocks": {name: server.describe() for name, server in servers.items()}}

    @router.post("/recover", summary="recover every mock")
    def recover_all() -> dict[str, Any]:
        for server in servers.values():
            server.recover()
        return summary()

    mock_router = APIRouter(prefix="/{name}")
    _routes(mock_router, resolve)
    router.include_router(mock_router)
    return router
