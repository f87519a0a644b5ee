from __future__ import annotations

from pydantic import BaseModel


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
