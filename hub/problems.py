"""Maps the hub's errors (and FastAPI's own) to RFC 9457 problem documents, once; and the one bilingual
pattern of every error the hub answers (docs/architecture.md, "Errors: one bilingual pattern").

Chinese for people, then the rule id for machines. Over HTTP a problem's ``title`` is Chinese text only
(``申请材料不完整``) and its ``code`` the rule id (``form.required``); ``errors`` name each field and its rule.
Over SOAP the faultstring joins the two as ``申请材料不完整 [form.required]`` (``bilingual``), and the fault
detail carries the code, the rule, the field and the full message. The rule ids are the same on both
protocols (``rule_of``).
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.errors import FieldError, HubError
from workflow.errors import ActionNotAvailable, OncePerStep, OpinionRequired, RoleNotAllowed

PROBLEM_TYPE_BASE = "https://hub.example.gov.cn/problems/"
MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("hub.problems")


class FieldProblem(BaseModel):
    field: str
    rule: str
    message: str


class Problem(BaseModel):
    type: str
    title: str = Field(description="中文标题，供人阅读 (Chinese, for people)")
    code: str = Field(description="rule id, for machines: the same as the SOAP fault's rule")
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] = Field(default_factory=list)


# --- the pattern ---------------------------------------------------------------------------------

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def bilingual(people: str, rule: str) -> str:
    """The one pattern: Chinese text for people, then the rule id for machines in brackets."""
    return f"{people} [{rule}]"


def chinese_part(message: str, fallback: str) -> str:
    """The Chinese lead of a hub message written "中文说明 (English explanation)"; ``fallback`` (a Chinese
    title) when the message holds no Chinese (e.g. an XML validator's English)."""
    lead = message.split(" (", 1)[0].split(" [rule ", 1)[0].strip()
    return lead if _CJK.search(lead) else fallback


# Rules of the generic errors that name none of their own: the same ids on HTTP and SOAP.
STATUS_RULES: dict[int, tuple[str, str | None]] = {
    400: ("request", None), 401: ("credentials", None), 403: ("permission", None), 404: ("exists", None),
    405: ("method", None), 409: ("state", None), 413: ("size", None), 415: ("media_type", None),
    422: ("validation", None), 429: ("too_many_attempts", None), 500: ("internal", None),
}
_GENERIC_SLUGS = {"bad-request", "unauthorized", "forbidden", "not-found", "conflict", "validation-failed"}


def rule_of(exc: HubError) -> tuple[str, str | None]:
    """(rule id, field) of a hub error: the workflow rule it broke, else its first field error's rule,
    else the rule its service named (its type slug), else the status's generic rule."""
    cause = exc.__cause__
    if isinstance(cause, RoleNotAllowed):
        return "role", "action"
    if isinstance(cause, ActionNotAvailable):
        return "state", "action"
    if isinstance(cause, OncePerStep):
        return "once_per_step", "action"
    if isinstance(cause, OpinionRequired):
        return "required", "opinion"
    if exc.errors:
        return exc.errors[0].rule, exc.errors[0].field
    if exc.type_slug not in _GENERIC_SLUGS:
        return exc.type_slug.replace("-", "_"), None  # e.g. verification-pending: the service named its rule
    if "本部门" in exc.detail:
        return "department_scope", None  # a case of another department (hub.cases.service's wording)
    if "角色" in exc.detail:
        return "role", None
    return STATUS_RULES.get(exc.status, ("request", None))


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
        type=PROBLEM_TYPE_BASE + exc.type_slug, title=exc.title, code=rule_of(exc)[0], status=exc.status,
        detail=exc.detail, errors=[FieldProblem(**e.as_dict()) for e in exc.errors],
    )
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if "retry_after" in exc.extra:  # 429 too many attempts: when the window ends
        headers = {"Retry-After": str(exc.extra["retry_after"])}
    return _response(request, problem, headers)


async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [_pydantic_error(e) for e in exc.errors()]
    problem = Problem(
        type=PROBLEM_TYPE_BASE + "validation-failed", title="提交的数据未通过校验",
        code=errors[0].rule if errors else "validation", status=422,
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
        code=STATUS_RULES.get(exc.status_code, ("request", None))[0],
        detail=str(exc.detail),
    )
    return _response(request, problem, getattr(exc, "headers", None))


async def _concurrent_change(request: Request, exc: StaleDataError) -> JSONResponse:
    problem = Problem(
        type=PROBLEM_TYPE_BASE + "concurrent-change", title="状态冲突", code="concurrent_change", status=409,
        detail="办件已被他人同时处理，请刷新后重试 (the case changed meanwhile; reload and try again)",
    )
    return _response(request, problem)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    problem = Problem(
        type=PROBLEM_TYPE_BASE + "internal", title="系统内部错误", code="internal", status=500,
        detail="服务器处理请求时出错，请稍后重试 (internal error; it has been logged)",
    )
    return _response(request, problem)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HubError, _hub_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(StaleDataError, _concurrent_change)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
