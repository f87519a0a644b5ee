"""`hub partners sync`: one RabbitMQ user per partner that may publish only its own routing keys."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlparse

from sqlalchemy.orm import Session

from adapters.amqp.management import provision_partner_user
from hub.exchange.partners import list_partners
from hub.settings import Settings


def sync_partners(
    session: Session, *, settings: Settings, management_url: str, secret_for: Callable[[str], str]
) -> list[str]:
    if not settings.amqp_url:
        raise SystemExit("HUB_AMQP_URL is not set: there is no broker to provision")
    url = urlparse(settings.amqp_url)
    admin_user, admin_password = unquote(url.username or "guest"), unquote(url.password or "guest")
    vhost = unquote(url.path.lstrip("/")) or "/"
    provisioned = []
    for partner in list_partners(session, kind="city_platform"):
        if not partner.active:
            continue
        provision_partner_user(management_url, admin_user, admin_password, vhost, partner.code,
                               secret_for(partner.code))
        provisioned.append(partner.code)
    return provisioned
