"""A partner's credentials, from registration to disabling: `hub partners add|rotate|disable|enable|sync`.

One generated secret per partner, shown once, is both its REST secret and the password of its own RabbitMQ
user. The hub keeps it only hashed, twice: argon2 (``secret_hash``, REST) and RabbitMQ's sha256 format
(``amqp_password_hash``), from which `sync` re-creates a missing user without knowing the secret — and without
touching any other partner's password.

RabbitMQ users are broker-wide, vhosts are not: a hub in vhost ``/`` names the user as the partner's code, a
hub in any other vhost ``<vhost>.<code>``, so two hubs sharing a broker never overwrite each other's partners.

Services never commit: the CLI's unit of work does, after the broker call, so a refused broker call leaves
nothing behind in the database (a failed commit after it leaves a user `sync` or a repeated command fixes).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlunparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.amqp.errors import ManagementApiError
from adapters.amqp.management import (
    delete_partner_user,
    partner_permissions,
    provision_partner_user,
    rabbit_password_hash,
    read_user,
)
from hub.exchange.models import Partner
from hub.exchange.partners import hash_secret, list_partners
from hub.exchange.service import RECORD_TYPES
from hub.org.models import Department, Region
from hub.settings import SecretFileRefused, Settings, read_secret_file

KINDS = ("city_platform", "legacy_department", "national")
# The code is the partner's word in routing keys and inside permission regexes: plain, no dots.
CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
DEFAULT_RECORD_TYPES = {"city_platform": ["case-record.v1", "case-event.v1"]}
SECRET_BYTES = 24  # token_urlsafe: 32 characters of A-Z a-z 0-9 - _ (nothing to escape in a URL)
DEFAULT_MANAGEMENT_PORT = 15672


class PartnerCommandError(Exception):
    """A refused partner command: ``rule`` for machines, a bilingual message for people."""

    def __init__(self, rule: str, chinese: str, english: str) -> None:
        self.rule = rule
        self.message = f"{chinese} ({rule}: {english})"
        super().__init__(self.message)

    def as_dict(self) -> dict[str, str]:
        return {"error": self.rule, "message": self.message}


@dataclass(frozen=True)
class Broker:
    """The hub's broker as the partner commands manage it: the management API and the hub's vhost."""

    management_url: str
    admin_user: str
    admin_password: str
    vhost: str

    def username_for(self, code: str) -> str:
        return amqp_username(code, self.vhost)


def amqp_username(code: str, vhost: str) -> str:
    """The partner's RabbitMQ user: its code in vhost ``/``, else ``<vhost>.<code>``."""
    return code if vhost == "/" else f"{vhost}.{code}"


def broker_of(settings: Settings) -> Broker | None:
    """None without HUB_AMQP_URL (the in-process bus: no users to manage). The management API is
    HUB_RABBITMQ_MANAGEMENT_URL (default: the broker's host, port 15672); its credentials are that URL's
    user and password (or, with a user in the URL, the password in HUB_RABBITMQ_MANAGEMENT_PASSWORD_FILE) if
    it has them, else the hub's own AMQP user's (it needs the administrator tag)."""
    if not settings.amqp_url:
        return None
    amqp = urlparse(settings.amqp_url)
    vhost = unquote(amqp.path[1:]) if amqp.path.startswith("/") else ""
    management = settings.rabbitmq_management_url or f"http://{amqp.hostname or '127.0.0.1'}:{DEFAULT_MANAGEMENT_PORT}"
    parsed = urlparse(management)
    if parsed.username:
        user, password = unquote(parsed.username), unquote(parsed.password or "")
        if settings.rabbitmq_management_password_file is not None:
            password = _management_password(settings.rabbitmq_management_password_file, in_url=bool(password))
        management = urlunparse(parsed._replace(netloc=parsed.hostname + (f":{parsed.port}" if parsed.port else "")))
    else:
        user, password = unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
    return Broker(management_url=management, admin_user=user, admin_password=password, vhost=vhost or "/")




def _management_password(path: Path, *, in_url: bool) -> str:
    """The broker administrator's password from HUB_RABBITMQ_MANAGEMENT_PASSWORD_FILE (compose's
    `rabbitmq_admin_password` secret): only the jobs that manage partners hold it, never the api or worker."""
    variable = "HUB_RABBITMQ_MANAGEMENT_PASSWORD_FILE"
    if in_url:
        raise PartnerCommandError("management_password_twice", "RabbitMQ 管理密码重复设置",
                                  f"both HUB_RABBITMQ_MANAGEMENT_URL (with a password) and {variable} are set")
    try:
        return read_secret_file(path, variable=variable)  # the one reader of secret files (hub/settings.py)
    except SecretFileRefused as exc:
        raise PartnerCommandError("management_password_file", "RabbitMQ 管理密码文件不可用", str(exc)) from None


@dataclass(frozen=True)
class Credentials:
    """What a partner receives, once: its code, secret and where to use them."""

    code: str
    secret: str
    amqp_username: str
    vhost: str | None  # None: the hub has no broker (HUB_AMQP_URL unset) — REST only for now

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "secret": self.secret, "amqp_username": self.amqp_username,
                "vhost": self.vhost, "publish_routing_keys": f"{self.code}.<type>.v1",
                "events_queue_prefix": f"partner.{self.code}."}


def add_partner(session: Session, *, code: str, name: str, region: str, kind: str, department: str | None,
                record_types: list[str] | None, broker: Broker | None, now: datetime, secret: str | None = None,
                endpoint: str | None = None) -> Credentials:
    """Register a partner with a new secret (or ``secret``: `hub bootstrap`'s from a file) and, with a broker,
    its own RabbitMQ user."""
    _check_new(session, code=code, name=name, kind=kind)
    region_row = session.get(Region, region)
    if region_row is None:
        raise PartnerCommandError("unknown_region", f"行政区划 {region} 不存在", f"no region with code {region}")
    department_id = _department_id(session, region=region, code=department, kind=kind)
    types = _record_types(record_types, kind)
    secret = secret or new_secret()
    partner = Partner(code=code, name=name, kind=kind, region_code=region, secret_hash=hash_secret(secret),
                      record_types=types, department_id=department_id, created_at=now, endpoint=endpoint,
                      amqp_password_hash=rabbit_password_hash(secret), secret_rotated_at=now)
    session.add(partner)
    session.flush()
    _provision(broker, partner)
    return _credentials(partner, secret, broker)


def rotate_secret(session: Session, *, code: str, broker: Broker | None, now: datetime,
                  close_connections: bool = False) -> Credentials:
    """A new secret for REST and RabbitMQ alike; the old one stops working for every new login."""
    partner = _get(session, code)
    secret = new_secret()
    partner.secret_hash = hash_secret(secret)
    partner.amqp_password_hash = rabbit_password_hash(secret)
    partner.secret_rotated_at = now
    session.flush()
    if partner.active:
        _provision(broker, partner)
        if close_connections and broker is not None:
            _close_connections(broker, partner)
    return _credentials(partner, secret, broker)


def disable_partner(session: Session, *, code: str, broker: Broker | None, now: datetime) -> dict[str, Any]:
    """REST refused from now on; the RabbitMQ user deleted, which closes its open connections. Its queues
    and stored hashes stay: `enable` restores the same secret."""
    partner = _get(session, code)
    partner.active = False
    partner.disabled_at = now
    session.flush()
    deleted = False
    if broker is not None:
        deleted = _broker_call(lambda: delete_partner_user(
            broker.management_url, broker.admin_user, broker.admin_password, _username(partner, broker)))
    return {"code": code, "active": False, "amqp_user_deleted": deleted,
            "amqp_username": _username(partner, broker) if broker else partner.amqp_username}


def enable_partner(session: Session, *, code: str, broker: Broker | None) -> dict[str, Any]:
    """Undo `disable`: REST accepted again, the RabbitMQ user re-created from the stored hash."""
    partner = _get(session, code)
    partner.active = True
    partner.disabled_at = None
    session.flush()
    provisioned = _provision(broker, partner) if partner.amqp_password_hash else False
    return {"code": code, "active": True, "amqp_user_created": provisioned, "amqp_username": partner.amqp_username}


@dataclass
class SyncResult:
    code: str
    amqp_username: str
    status: str  # created | ok | permissions_fixed | removed | absent | skipped | password_differs | error
    detail: str = ""
    actions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "amqp_username": self.amqp_username, "status": self.status,
                "detail": self.detail}


def sync_partners(session: Session, *, broker: Broker | None) -> list[SyncResult]:
    """Bring the broker in line with the partners table, one partner at a time, reporting each: a missing
    user is created from the stored hash, wrong permissions are set again, a disabled partner's user is
    removed. An existing user's password is never changed (a differing one is reported)."""
    if broker is None:
        raise PartnerCommandError("no_broker", "未配置消息中间件（HUB_AMQP_URL 未设置），无需同步 RabbitMQ 用户",
                                  "HUB_AMQP_URL is not set: there is no broker to provision")
    results = []
    for partner in list_partners(session):
        try:
            results.append(_sync_one(partner, broker))
        except ManagementApiError as exc:
            if exc.status in (None, 401):  # unreachable, or not an administrator: all would fail alike
                raise _broker_error(exc) from None
            results.append(SyncResult(partner.code, broker.username_for(partner.code), "error", str(exc)))
    session.flush()
    return results


def _sync_one(partner: Partner, broker: Broker) -> SyncResult:
    username = broker.username_for(partner.code)
    args = (broker.management_url, broker.admin_user, broker.admin_password)
    state = read_user(*args, broker.vhost, username)
    if not partner.active:
        if state.exists:
            delete_partner_user(*args, username)
            return SyncResult(partner.code, username, "removed", "disabled partner: its user was deleted")
        return SyncResult(partner.code, username, "absent", "disabled partner: no user, as it should be")
    if not partner.amqp_password_hash:
        return SyncResult(partner.code, username, "skipped",
                          f"no stored RabbitMQ password hash (registered before 0013): run "
                          f"`hub partners rotate {partner.code}` to give it a secret of its own")
    wanted = partner_permissions(partner.code)
    partner.amqp_username = username
    if not state.exists:
        provision_partner_user(*args, broker.vhost, username, code=partner.code,
                               password_hash=partner.amqp_password_hash)
        return SyncResult(partner.code, username, "created", "user created from the stored password hash")
    status, detail = "ok", "user and permissions as they should be"
    if not state.permissions_match(wanted):
        provision_partner_user(*args, broker.vhost, username, code=partner.code)  # permissions only
        status, detail = "permissions_fixed", "permissions set again"
    if state.password_hash != partner.amqp_password_hash:
        return SyncResult(partner.code, username, "password_differs",
                          f"{detail}; its password differs from the stored one and was left alone — "
                          f"`hub partners rotate {partner.code}` issues a new secret")
    return SyncResult(partner.code, username, status, detail)


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def partner_row(partner: Partner) -> dict[str, Any]:
    """One partner for `hub partners list --json` (never a hash)."""
    def at(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"code": partner.code, "name": partner.name, "kind": partner.kind, "region": partner.region_code,
            "department_id": partner.department_id, "record_types": list(partner.record_types),
            "active": partner.active, "amqp_username": partner.amqp_username, "endpoint": partner.endpoint,
            "created_at": at(partner.created_at), "secret_rotated_at": at(partner.secret_rotated_at),
            "disabled_at": at(partner.disabled_at)}


def _check_new(session: Session, *, code: str, name: str, kind: str) -> None:
    if not CODE.match(code):
        raise PartnerCommandError(
            "invalid_code",
            f"交换伙伴代码 {code!r} 不合规：只能使用小写字母、数字、- 和 _，以字母或数字开头，最长 40 位",
            "a partner code is 1-40 characters of a-z, 0-9, '-' or '_', starting with a letter or digit "
            "(it is a routing-key word: no dots)")
    if kind not in KINDS:
        raise PartnerCommandError("unknown_kind", f"交换伙伴类型 {kind} 不存在，可选：{'、'.join(KINDS)}",
                                  f"--kind must be one of {', '.join(KINDS)}")
    if not name.strip() or len(name) > 128:
        raise PartnerCommandError("invalid_name", "交换伙伴名称不能为空，最长 128 个字符",
                                  "--name must be 1-128 characters")
    if session.get(Partner, code) is not None:
        raise PartnerCommandError("duplicate_partner", f"交换伙伴 {code} 已存在", f"partner {code} exists already; "
                                  f"`hub partners rotate {code}` issues it a new secret")


def _department_id(session: Session, *, region: str, code: str | None, kind: str) -> int | None:
    if code is None:
        if kind == "legacy_department":
            raise PartnerCommandError("department_required", "原部门系统必须指定所属部门（--department）",
                                      "a legacy_department partner needs --department")
        return None
    department_id = session.scalar(
        select(Department.id).where(Department.region_code == region, Department.code == code))
    if department_id is None:
        raise PartnerCommandError("unknown_department", f"行政区划 {region} 下不存在部门 {code}",
                                  f"no department {code} in region {region}")
    return int(department_id)


def _record_types(given: list[str] | None, kind: str) -> list[str]:
    types = list(DEFAULT_RECORD_TYPES.get(kind, [])) if given is None else given
    unknown = [t for t in types if t not in RECORD_TYPES]
    if unknown:
        raise PartnerCommandError("unknown_record_type", f"报送数据类型 {'、'.join(unknown)} 不存在，可选："
                                  f"{'、'.join(RECORD_TYPES)}",
                                  f"--record-types must name only {', '.join(RECORD_TYPES)}")
    return list(dict.fromkeys(types))


def _get(session: Session, code: str) -> Partner:
    partner = session.get(Partner, code)
    if partner is None:
        raise PartnerCommandError("unknown_partner", f"交换伙伴 {code} 不存在", f"no partner {code}")
    return partner


def _username(partner: Partner, broker: Broker) -> str:
    return partner.amqp_username or broker.username_for(partner.code)


def _provision(broker: Broker | None, partner: Partner) -> bool:
    """The partner's user with its stored hash and permissions; False without a broker."""
    if broker is None:
        return False
    username = broker.username_for(partner.code)
    partner.amqp_username = username
    _broker_call(lambda: provision_partner_user(
        broker.management_url, broker.admin_user, broker.admin_password, broker.vhost, username,
        code=partner.code, password_hash=partner.amqp_password_hash))
    return True


def _close_connections(broker: Broker, partner: Partner) -> None:
    from adapters.amqp.management import close_user_connections

    _broker_call(lambda: close_user_connections(
        broker.management_url, broker.admin_user, broker.admin_password, _username(partner, broker),
        reason="partner secret rotated"))


def _broker_call(call: Any) -> Any:
    try:
        return call()
    except ManagementApiError as exc:
        raise _broker_error(exc) from None


def _broker_error(exc: ManagementApiError) -> PartnerCommandError:
    if exc.status is None:
        return PartnerCommandError("broker_unreachable", "无法连接 RabbitMQ 管理接口，数据库未作更改",
                                   f"{exc}; the database was left unchanged")
    return PartnerCommandError("broker_refused", "RabbitMQ 管理接口拒绝了请求，数据库未作更改",
                               f"{exc}; the database was left unchanged")


def _credentials(partner: Partner, secret: str, broker: Broker | None) -> Credentials:
    return Credentials(code=partner.code, secret=secret,
                       amqp_username=partner.amqp_username or (broker.username_for(partner.code) if broker
                                                               else partner.code),
                       vhost=broker.vhost if broker else None)
