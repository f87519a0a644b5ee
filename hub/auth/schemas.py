from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class OfficerOut(BaseModel):
    username: str
    name: str
    region: str
    department: str
    department_name: str
    roles: list[str]


Role = Literal["intake", "reviewer", "approver", "supervisor", "admin", "window"]


class OfficerCreate(BaseModel):
    """An officer an administrator adds (issue 13): its password is set here and never shown again."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$")
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=12, max_length=128, json_schema_extra={"writeOnly": True})
    region: str = Field(pattern=r"^[0-9]{6}$")
    department: str = Field(pattern=r"^[0-9]{3}$")
    roles: list[Role] = Field(min_length=1, max_length=6)
