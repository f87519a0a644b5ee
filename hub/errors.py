"""The hub's one error hierarchy, mapped once to RFC 9457 problem documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    field: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


@dataclass
class HubError(Exception):
    detail: str
    title: str = "请求无法处理"
    status: int = 400
    type_slug: str = "bad-request"
    errors: list[FieldError] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.detail


class ValidationFailed(HubError):
    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        summary = detail or "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        super().__init__(
            detail=summary, title="提交的数据未通过校验", status=422,
            type_slug="validation-failed", errors=errors,
        )


class NotFound(HubError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, title="未找到", status=404, type_slug="not-found")


class Unauthorized(HubError):
    def __init__(self, detail: str = "需要有效的登录凭证 (valid bearer token required)") -> None:
        super().__init__(detail=detail, title="未认证", status=401, type_slug="unauthorized")


class Forbidden(HubError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, title="无权操作", status=403, type_slug="forbidden")


class Conflict(HubError):
    def __init__(self, detail: str, type_slug: str = "conflict") -> None:
        super().__init__(detail=detail, title="状态冲突", status=409, type_slug=type_slug)


class PayloadTooLarge(HubError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, title="文件过大", status=413, type_slug="payload-too-large")
