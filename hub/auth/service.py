"""Officer authentication (argon2 hashes, short-lived JWT bearer tokens) and authorisation."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.errors import Forbidden, Unauthorized
from hub.org import service as org_service
from hub.org.models import Department
from workflow.errors import ROLE_LABELS

_hasher = PasswordHasher()
TOKEN_ALGORITHM = "HS256"
TOKEN_AUDIENCE = "approval-hub/officer"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def authenticate(session: Session, *, username: str, password: str) -> Officer:
    """The officer, or 401. An unknown username costs the same argon2 verification as a known one
    (against a dummy hash), so the answer's timing does not tell which usernames exist."""
    officer = session.scalar(select(Officer).where(Officer.username == username))
    stored = officer.password_hash if officer is not None else _dummy_hash()
    matches = _password_matches(stored, password)
    if officer is None or not officer.active or not matches:
        raise Unauthorized("用户名或密码错误 (invalid username or password)")
    return officer


# The hash of a random, forgotten password, made with the hasher's own parameters.
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$bTa6MjDXCrKCqUnA3IG17w$MWcH5SjyAf6a5DiXemFbMxwsF1zBZcAMVo5SwDo/lcc"


@cache
def _dummy_hash() -> str:
    if _hasher.check_needs_rehash(_DUMMY_HASH):  # the hasher's parameters changed: match them
        return _hasher.hash(secrets.token_urlsafe(24))
    return _DUMMY_HASH


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def issue_token(officer: Officer, *, secret: str, now: datetime, ttl_minutes: int) -> IssuedToken:
    claims = {
        "sub": str(officer.id),
        "aud": TOKEN_AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=ttl_minutes)).timestamp()),
        "roles": officer.roles,
    }
    return IssuedToken(jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM), ttl_minutes * 60)


def officer_from_token(session: Session, *, token: str, secret: str, now: datetime) -> Officer:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[TOKEN_ALGORITHM], audience=TOKEN_AUDIENCE,
            options={"verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized("登录凭证无效 (invalid bearer token)") from exc
    # Expiry is checked against the hub's injectable clock, not the wall clock.
    if int(claims.get("exp", 0)) <= int(now.timestamp()):
        raise Unauthorized("登录凭证已过期 (bearer token expired)")
    officer = session.get(Officer, int(claims["sub"]))
    if officer is None or not officer.active:
        raise Unauthorized("账号不存在或已停用 (officer unknown or disabled)")
    return officer


def require_role(officer: Officer, roles: Iterable[str]) -> None:
    wanted = set(roles)
    if not wanted & set(officer.roles):
        names = "、".join(ROLE_LABELS.get(role, role) for role in sorted(wanted))
        raise Forbidden(f"需要以下角色之一：{names} (requires role: {', '.join(sorted(wanted))})")


def can_oversee_region(session: Session, officer: Officer, region_code: str) -> bool:
    """Authority flows down the region tree: a supervisor sees his region and all below it."""
    return org_service.is_within(session, region_code=region_code, ancestor=officer.region_code)



def add_officer(session: Session, *, admin: Officer, username: str, name: str, region: str, department: str,
                roles: Iterable[str], password: str, now: datetime) -> Officer:
    """A new officer of ``department`` in ``region``, created by ``admin`` (issue 13: a bootstrapped hub has only
    its administrator; the demo officers are for `hub up` and the dev profile). Never commits.

    403 unless ``admin`` has the admin role and the region is his or below it; 422 naming the field for an
    unknown department or the published demo password; 409 for a username that exists."""
    from hub.errors import Conflict, FieldError, ValidationFailed
    from hub.seed.service import read_seed

    require_role(admin, ["admin"])
    if not can_oversee_region(session, admin, region):
        raise Forbidden(f"只能为本辖区（{admin.region_code}）及下级的部门创建工作人员 (region {region} is outside "
                        f"the administrator's region {admin.region_code})")
    if password in {str(row["password"]) for row in read_seed("officers")}:
        raise ValidationFailed([FieldError("password", "not_demo", "不得使用公开的演示密码 (the published demo "
                                                                   "password is refused)")])
    unit = session.scalar(select(Department).where(Department.region_code == region, Department.code == department))
    if unit is None:
        raise ValidationFailed([FieldError("department", "exists", f"部门 {region}-{department} 不存在 (no such "
                                                                   "department in that region)")])
    if session.scalar(select(Officer.id).where(Officer.username == username)) is not None:
        raise Conflict(f"用户名 {username} 已存在 (an officer named {username} exists)")
    officer = Officer(username=username, password_hash=hash_password(password), name=name, region_code=region,
                      department_id=unit.id, roles=list(dict.fromkeys(roles)), created_at=now)
    session.add(officer)
    session.flush()
    return officer
