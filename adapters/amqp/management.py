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
topic (write)   ``^p\\..*`` on exchange hub.inbound                publishing only routing keys ``p.<type>.vN``
topic (read)    ``.*`` on exchange hub.inbound                    (binding keys; partners do not bind there)
==============  ===============================================  ==========================================

The partner may not publish to hub.events, hub.dlx or the default exchange (direct to a queue). Every HTTP
call has a timeout; failures raise ManagementApiError with the status, never the password.
"""

from __future__ import annotations

import re
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


@dataclass(frozen=True)
class PartnerPermissions:
    configure: str
    write: str
    read: str
    topic_exchange: str
    topic_write: str
    topic_read: str


def partner_permissions(username: str, *, write_routing_key_pattern: str | None = None,
                        read_queue_pattern: str | None = None, inbound_exchange: str = INBOUND_EXCHANGE,
                        events_exchange: str = EVENTS_EXCHANGE) -> PartnerPermissions:
    """The permissions of the table above; the two patterns may be overridden (full regexes)."""
    check_partner_name(username)
    own_queues = read_queue_pattern or rf"^partner\.{username}\..*$"
    own = own_queues.removeprefix("^").removesuffix("$")
    return PartnerPermissions(
        configure=f"^{own}$",
        write=f"^({re.escape(inbound_exchange)}|{own})$",
        read=f"^({re.escape(events_exchange)}|{own})$",
        topic_exchange=inbound_exchange,
        topic_write=write_routing_key_pattern or rf"^{username}\..*",
        topic_read=".*",
    )


def check_partner_name(username: str) -> None:
    if not PARTNER_NAME.match(username):
        raise ValueError("a partner user name is 1–63 characters of a-z, 0-9, '_' or '-', starting with a letter "
                         "or digit (it is a routing-key word)")


def provision_partner_user(management_url: str, admin_user: str, admin_password: str, vhost: str, username: str,
                           password: str, write_routing_key_pattern: str | None = None,
                           read_queue_pattern: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                           inbound_exchange: str = INBOUND_EXCHANGE,
                           events_exchange: str = EVENTS_EXCHANGE) -> PartnerPermissions:
    """Create or update the partner's user (no tags: no management UI access) and set its permissions.
    Idempotent: running it again resets password and permissions to these values."""
    permissions = partner_permissions(username, write_routing_key_pattern=write_routing_key_pattern,
                                      read_queue_pattern=read_queue_pattern, inbound_exchange=inbound_exchange,
                                      events_exchange=events_exchange)
    user, host = _q(username), _q(vhost)
    with _client(management_url, timeout_s) as client:
        auth = (admin_user, admin_password)
        _call(client, "PUT", f"/api/users/{user}", auth, {"password": password, "tags": ""})
        _call(client, "PUT", f"/api/permissions/{host}/{user}", auth,
              {"configure": permissions.configure, "write": permissions.write, "read": permissions.read})
        _call(client, "PUT", f"/api/topic-permissions/{host}/{user}", auth,
              {"exchange": permissions.topic_exchange, "write": permissions.topic_write,
               "read": permissions.topic_read})
    return permissions


def delete_partner_user(management_url: str, admin_user: str, admin_password: str, username: str, *,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Delete the partner's user with its permissions; RabbitMQ closes the user's open connections at once
    (320 CONNECTION_FORCED). Returns False if there was no such user. The partner's queues stay until
    deleted separately (they may still hold events the partner has not read)."""
    check_partner_name(username)
    with _client(management_url, timeout_s) as client:
        deleted = _call(client, "DELETE", f"/api/users/{_q(username)}", (admin_user, admin_password),
                        allow_missing=True)
    return deleted is not None


def _q(segment: str) -> str:
    # Path segments: the default vhost "/" must travel as %2F.
    return quote(segment, safe="")


def _client(management_url: str, timeout_s: float) -> httpx.Client:
    return build_http_client(base_url=management_url.rstrip("/"), timeout_s=timeout_s, max_connections=2)


def _call(client: httpx.Client, method: str, path: str, auth: tuple[str, str], body: dict[str, Any] | None = None,
          *, allow_missing: bool = False) -> Any:
    try:
        response = client.request(method, path, json=body, auth=auth)
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
