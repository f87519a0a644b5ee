"""Partner users on RabbitMQ, through the management HTTP API (plugin rabbitmq_management, port 15672).

Each partner gets its own user, so the broker authenticates every message's source (``user_id`` must equal
the connection's user) and enforces what the partner may touch:

==============  ===============================================  ==========================================
permission      pattern (partner ``p``)                          allows
==============  ===============================================  ==========================================
configure       ``^partner\\.p\\..*$``                             declaring/deleting its own queues only
write           ``^(hub\\.inbound|partner\\.p\\..*)$``              publishing to hub.inbound; binding its own
                                                                 queues (queue.bind needs write on the queue)
read            ``^(hub\\.events|partner\\.p\\..*)$``               binding to hub.events; consuming its queues
topic (write)   ``^p\\.`` on exchange hub.inbound                   publishing only routing keys ``p.<type>.vN``
topic (read)    ``^$`` on exchange hub.inbound                    (partners do not bind there)
topic (read)    ``^(partner\\.p\\.|case\\.|catalog\\.)`` on hub.events  binding keys: its own rejections and the
                                                                 public case and catalogue events, never
                                                                 another partner's ``partner.<other>.…``
topic (write)   ``^$`` on exchange hub.events                     (no write permission there anyway)
==============  ===============================================  ==========================================

The partner may not publish to hub.events, hub.dlx or the default exchange (direct to a queue). Every HTTP
call has a timeout; failures raise ManagementApiError with the status, never the password.

The RabbitMQ *user name* need not be the partner's code: a hub in a vhost other than ``/`` names its partner
users ``<vhost>.<code>`` (users are broker-wide), while the patterns above always use the code ``p`` (the
routing-key word). A user can be created from a password or from a ``password_hash`` in RabbitMQ's own format
(``rabbit_password_hashing_sha256``, see ``rabbit_password_hash``), so the hub can re-create it without
knowing the password.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from adapters.amqp.errors import ManagementApiError
from adapters.amqp.topology import EVENTS_EXCHANGE, INBOUND_EXCHANGE
from adapters.http import build_http_client

DEFAULT_TIMEOUT_S = 5.0
# A partner name is one routing-key word and appears inside permission regexes: keep it plain.
PARTNER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SHA256_HASHING = "rabbit_password_hashing_sha256"
# The routing keys of hub.events every partner may bind besides its own ``partner.<code>.…``.
PUBLIC_EVENT_PREFIXES = ("case", "catalog")


@dataclass(frozen=True)
class PartnerPermissions:
    configure: str
    write: str
    read: str
    topic_exchange: str
    topic_write: str
    topic_read: str
    events_exchange: str = EVENTS_EXCHANGE
    events_topic_write: str = "^$"
    events_topic_read: str = ".*"

    def topic_permissions(self) -> list[dict[str, str]]:
        """The bodies of ``PUT /api/topic-permissions/{vhost}/{user}``: one per exchange."""
        return [{"exchange": self.topic_exchange, "write": self.topic_write, "read": self.topic_read},
                {"exchange": self.events_exchange, "write": self.events_topic_write,
                 "read": self.events_topic_read}]


def partner_permissions(username: str, *, write_routing_key_pattern: str | None = None,
                        read_queue_pattern: str | None = None, inbound_exchange: str = INBOUND_EXCHANGE,
                        events_exchange: str = EVENTS_EXCHANGE) -> PartnerPermissions:
    """The permissions of the table above for the partner whose code is ``username`` (the routing-key word;
    the RabbitMQ user may be named otherwise); the two patterns may be overridden (full regexes)."""
    check_partner_name(username)
    own_queues = read_queue_pattern or rf"^partner\.{username}\..*$"
    own = own_queues.removeprefix("^").removesuffix("$")
    bindable = "|".join([rf"partner\.{username}\.", *(rf"{prefix}\." for prefix in PUBLIC_EVENT_PREFIXES)])
    return PartnerPermissions(
        configure=f"^{own}$",
        write=f"^({re.escape(inbound_exchange)}|{own})$",
        read=f"^({re.escape(events_exchange)}|{own})$",
        topic_exchange=inbound_exchange,
        topic_write=write_routing_key_pattern or rf"^{username}\..*",
        topic_read="^$",
        events_exchange=events_exchange,
        events_topic_read=f"^({bindable})",
    )


def check_partner_name(username: str) -> None:
    if not PARTNER_NAME.match(username):
        raise ValueError("a partner user name is 1–63 characters of a-z, 0-9, '_' or '-', starting with a letter "
                         "or digit (it is a routing-key word)")


def rabbit_password_hash(password: str, *, salt: bytes | None = None) -> str:
    """The password as RabbitMQ stores it (``rabbit_password_hashing_sha256``, its default):
    base64(salt + sha256(salt + utf-8 password)) with a 4-byte random salt. Given to the management API as
    ``password_hash``, it lets the broker check the password without anyone sending the password itself."""
    salt = secrets.token_bytes(4) if salt is None else salt
    if len(salt) != 4:
        raise ValueError("RabbitMQ's password salt is 4 bytes")
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def rabbit_password_matches(password_hash: str, password: str) -> bool:
    try:
        salt = base64.b64decode(password_hash, validate=True)[:4]
    except ValueError:
        return False
    return len(salt) == 4 and secrets.compare_digest(rabbit_password_hash(password, salt=salt), password_hash)


def provision_partner_user(management_url: str, admin_user: str, admin_password: str, vhost: str, username: str,
                           password: str | None = None, write_routing_key_pattern: str | None = None,
                           read_queue_pattern: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                           inbound_exchange: str = INBOUND_EXCHANGE, events_exchange: str = EVENTS_EXCHANGE,
                           code: str | None = None, password_hash: str | None = None) -> PartnerPermissions:
    """Create or update the partner's user (no tags: no management UI access) and set its permissions.
    Idempotent: running it again resets password and permissions to these values.

    ``code`` is the partner's routing-key word (default: the user name); ``password_hash`` (RabbitMQ's
    sha256 format) may stand in for ``password``; with neither, the user's password is left as it is (the
    user must exist)."""
    permissions = partner_permissions(code or username, write_routing_key_pattern=write_routing_key_pattern,
                                      read_queue_pattern=read_queue_pattern, inbound_exchange=inbound_exchange,
                                      events_exchange=events_exchange)
    user = _q(username)
    with _client(management_url, timeout_s) as client:
        auth = (admin_user, admin_password)
        if password is not None:
            _call(client, "PUT", f"/api/users/{user}", auth, {"password": password, "tags": ""})
        elif password_hash is not None:
            _call(client, "PUT", f"/api/users/{user}", auth,
                  {"password_hash": password_hash, "hashing_algorithm": SHA256_HASHING, "tags": ""})
        set_partner_permissions(client, auth, vhost=vhost, username=username, permissions=permissions)
    return permissions


def set_partner_permissions(client: httpx.Client, auth: tuple[str, str], *, vhost: str, username: str,
                            permissions: PartnerPermissions) -> None:
    user, host = _q(username), _q(vhost)
    _call(client, "PUT", f"/api/permissions/{host}/{user}", auth,
          {"configure": permissions.configure, "write": permissions.write, "read": permissions.read})
    for body in permissions.topic_permissions():
        _call(client, "PUT", f"/api/topic-permissions/{host}/{user}", auth, body)


@dataclass(frozen=True)
class UserState:
    """What the broker has for one user in one vhost (``exists`` False: nothing else is meaningful)."""

    exists: bool
    password_hash: str | None = None
    hashing_algorithm: str | None = None
    permissions: dict[str, str] | None = None
    topic_permissions: dict[str, dict[str, str]] | None = None  # by exchange

    def permissions_match(self, wanted: PartnerPermissions) -> bool:
        if self.permissions != {"configure": wanted.configure, "write": wanted.write, "read": wanted.read}:
            return False
        topics = {body["exchange"]: {"write": body["write"], "read": body["read"]}
                  for body in wanted.topic_permissions()}
        return self.topic_permissions == topics


def read_user(management_url: str, admin_user: str, admin_password: str, vhost: str, username: str, *,
              timeout_s: float = DEFAULT_TIMEOUT_S) -> UserState:
    """The user's password hash and its permissions in ``vhost``, as the management API reports them."""
    user, host = _q(username), _q(vhost)
    auth = (admin_user, admin_password)
    with _client(management_url, timeout_s) as client:
        found = _call(client, "GET", f"/api/users/{user}", auth, allow_missing=True)
        if found is None:
            return UserState(exists=False)
        permissions = _call(client, "GET", f"/api/permissions/{host}/{user}", auth, allow_missing=True)
        topics = _call(client, "GET", f"/api/topic-permissions/{host}/{user}", auth, allow_missing=True) or []
    return UserState(
        exists=True, password_hash=found.get("password_hash"), hashing_algorithm=found.get("hashing_algorithm"),
        permissions=({k: permissions[k] for k in ("configure", "write", "read")} if permissions else None),
        topic_permissions={t["exchange"]: {"write": t["write"], "read": t["read"]} for t in topics},
    )


def delete_partner_user(management_url: str, admin_user: str, admin_password: str, username: str, *,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Delete the partner's user with its permissions; RabbitMQ closes the user's open connections at once
    (320 CONNECTION_FORCED). Returns False if there was no such user. The partner's queues stay until
    deleted separately (they may still hold events the partner has not read)."""
    if not username or len(username) > 255:
        raise ValueError("a RabbitMQ user name is 1–255 characters")
    with _client(management_url, timeout_s) as client:
        deleted = _call(client, "DELETE", f"/api/users/{_q(username)}", (admin_user, admin_password),
                        allow_missing=True)
    return deleted is not None


def close_user_connections(management_url: str, admin_user: str, admin_password: str, username: str, *,
                           reason: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """Close every open connection of ``username`` (e.g. after its password changed: RabbitMQ checks a
    password only at login). Returns how many were closed."""
    auth = (admin_user, admin_password)
    closed = 0
    with _client(management_url, timeout_s) as client:
        for connection in _call(client, "GET", "/api/connections?columns=name,user", auth) or []:
            if connection.get("user") == username:
                response = _call(client, "DELETE", f"/api/connections/{_q(connection['name'])}", auth,
                                 allow_missing=True, headers={"X-Reason": reason})
                closed += response is not None
    return closed


def _q(segment: str) -> str:
    # Path segments: the default vhost "/" must travel as %2F.
    return quote(segment, safe="")


def _client(management_url: str, timeout_s: float) -> httpx.Client:
    return build_http_client(base_url=management_url.rstrip("/"), timeout_s=timeout_s, max_connections=2)


def _call(client: httpx.Client, method: str, path: str, auth: tuple[str, str], body: dict[str, Any] | None = None,
          *, allow_missing: bool = False, headers: dict[str, str] | None = None) -> Any:
    try:
        response = client.request(method, path, json=body, auth=auth, headers=headers)
    except httpx.HTTPError as exc:
        raise ManagementApiError(
            f"RabbitMQ 管理接口无法访问 (rabbitmq management API: {method} {path} failed: "
            f"{type(exc).__name__})") from None
    if response.status_code == 404 and allow_missing:
        return None
    if response.status_code >= 300:
        raise ManagementApiError(
            f"RabbitMQ 管理接口拒绝了请求 (rabbitmq management API: {method} {path} answered "
            f"HTTP {response.status_code}: {_reason(response)})", status=response.status_code)
    if response.status_code == 204 or not response.content:
        return {}
    return response.json()


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("reason", ""))[:200]
    except ValueError:
        return ""
