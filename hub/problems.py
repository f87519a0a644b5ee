"""Maps the hub's errors (and FastAPI's own) to RFC 9457 problem documents, once."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.errors import FieldError, HubError

PROBLEM_TYPE_BASE = "https://hub.example.gov.cn/problems/"
MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("hub.problems")


class FieldProblem(BaseModel):
    field: str
    rule: str
    message: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] = Field(default_factory=list)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI entries so that every documented error has the problem schema."""
    return {
        status: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": _DESCRIPTIONS[status]}
        for status in statuses
    }


_DESCRIPTIONS = {
    400: "请求格式错误", 401: "未认证", 403: "无权操作", 404: "未找到", 409: "状态冲突",
    413: "文件过大", 415: "文件类型不支持", 422: "数据未通过校验", 429: "请求过多",
}


def _response(request: Request, problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    problem.instance = request.url.path
    return JSONResponse(
        problem.model_dump(mode="json"), status_code=problem.status,
        media_type=MEDIA_TYPE, headers=headers,
    )


async def _hub_error(request: Request, exc: HubError) -> JSONResponse:
    problem = Problem(
        type=PROBLEM_TYPE_BASE + exc.type_slug, title=exc.title, status=exc.status,
        detail=exc.detail, errors=[FieldProblem(**e.as_dict()) for e in exc.errors],
    )
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if "retry_after" in exc.extra:  # 429 too many attempts: when the window ends
        headers = {"Retry-After": str(exc.extra["retry_after"])}
    return _response(request, problem, headers)


async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [_pydantic_error(e) for e in exc.errors()]
    problem = Problem(
        type=PROBLEM_TYPE_BASE + "validation-failed", title="提交的数据未通过校验", status=422,
        detail="; ".join(f"{e.field}: {e.message}" for e in errors[:5]) or "请求数据无效",
        errors=[FieldProblem(**e.as_dict()) for e in errors],
    )
    return _response(request, problem)


def _pydantic_error(error: dict[str, object]) -> FieldError:
    loc = [str(p) for p in error.get("loc", ())]  # type: ignore[union-attr]
    if loc and loc[0] in {"body", "query", "path", "header", "form", "cookie"}:
        loc = loc[1:] if len(loc) > 1 else loc
    return FieldError(
        field=".".join(loc) or "(body)", rule=str(error.get("type", "invalid")),
        message=str(error.get("msg", "invalid")),
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    title = _DESCRIPTIONS.get(exc.status_code, "请求无法处理")
    problem = Problem(
        type=PROBLEM_TYPE_BASE + str(exc.status_code), title=title, status=exc.status_code,
        detail=str(exc.detail),
    )
    return _response(request, problem, getattr(exc, "headers", None))


async def _concurrent_change(request: Request, exc: StaleDataError) -> JSONResponse:
    problem = Problem(
        type=PROBLEM_TYPE_BASE + "concurrent-change", title="状态冲突", status=409,
        detail="办件已被他人同时处理，请刷新后重试 (the case changed meanwhile; reload and try again)",
    )
    return _response(request, problem)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    problem = Problem(
        type=PROBLEM_TYPE_BASE + "internal", title="系统内部错误", status=500,
        detail="服务器处理请求时出错，请稍后重试 (internal error; it has been logged)",
    )
    return _response(request, problem)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HubError, _hub_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(StaleDataError, _concurrent_change)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
