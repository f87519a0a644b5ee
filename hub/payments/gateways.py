"""The hub's payment gateways, built once per process from the settings (``app.state.payment_gateways``, the
worker's attribute): the adapters of adapters/payments behind the one ``PaymentGateway`` interface, and what
the hub expects each gateway's words to name (its merchant and app)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from adapters.payments.base import PaymentGateway
from hub.errors import FieldError, ValidationFailed
from hub.settings import Settings

GATEWAY_NAMES = ("alipay", "unionpay")


@dataclass(frozen=True)
class GatewayIdentity:
    """Who a gateway's word must be about: the configured merchant (Alipay seller id, UnionPay merId) and app
    (Alipay app id; UnionPay has none). None: not checked."""

    merchant_id: str | None = None
    app_id: str | None = None


class Gateways:
    """The configured gateways by name; ``get`` answers 422 (field ``gateway``, rule
    ``gateway_not_configured``) for one that is not offered."""

    def __init__(self, gateways: Mapping[str, PaymentGateway],
                 identities: Mapping[str, GatewayIdentity] | None = None) -> None:
        self._gateways = dict(gateways)
        self._identities = dict(identities or {})

    @classmethod
    def from_settings(cls, settings: Settings) -> Gateways:
        gateways: dict[str, PaymentGateway] = {}
        identities: dict[str, GatewayIdentity] = {}
        if settings.payments_alipay_url:
            gateways["alipay"] = _alipay(settings)
            identities["alipay"] = GatewayIdentity(merchant_id=settings.payments_alipay_seller_id or None,
                                                   app_id=settings.payments_alipay_app_id or None)
        if settings.payments_unionpay_url:
            gateways["unionpay"] = _unionpay(settings)
            identities["unionpay"] = GatewayIdentity(merchant_id=settings.payments_unionpay_mer_id or None)
        return cls(gateways, identities)

    def get(self, name: str) -> PaymentGateway:
        gateway = self._gateways.get(name)
        if gateway is None:
            raise ValidationFailed([FieldError(
                field="gateway", rule="gateway_not_configured",
                message=f"本平台未开通该支付渠道 (payment gateway {name!r} is not configured; offered: "
                        f"{', '.join(self.names()) or 'none'})",
            )])
        return gateway

    def identity(self, name: str) -> GatewayIdentity:
        return self._identities.get(name, GatewayIdentity())

    def names(self) -> list[str]:
        return [name for name in GATEWAY_NAMES if name in self._gateways]

    def __contains__(self, name: object) -> bool:
        return name in self._gateways


def _read(path: Path | None, setting: str) -> bytes:
    if path is None:
        raise ValueError(f"HUB_{setting.upper()} is required when the gateway's url is set")
    return Path(path).read_bytes()


def _alipay(settings: Settings) -> PaymentGateway:
    from adapters.payments.alipay import AlipayGateway  # the adapter of part alipay

    return AlipayGateway(
        url=settings.payments_alipay_url, app_id=settings.payments_alipay_app_id,
        seller_id=settings.payments_alipay_seller_id,
        private_key_pem=_read(settings.payments_alipay_private_key_file, "payments_alipay_private_key_file"),
        gateway_public_key_pem=_read(settings.payments_alipay_public_key_file, "payments_alipay_public_key_file"),
        timeout_s=settings.payments_timeout_s,
    )


def _unionpay(settings: Settings) -> PaymentGateway:
    from adapters.payments.unionpay import UnionPayGateway  # the adapter of part unionpay

    return UnionPayGateway(
        url=settings.payments_unionpay_url, mer_id=settings.payments_unionpay_mer_id,
        private_key_pem=_read(settings.payments_unionpay_private_key_file, "payments_unionpay_private_key_file"),
        certificate_pem=_read(settings.payments_unionpay_cert_file, "payments_unionpay_cert_file"),
        gateway_certificate_pem=_read(settings.payments_unionpay_gateway_cert_file,
                                      "payments_unionpay_gateway_cert_file"),
        timeout_s=settings.payments_timeout_s,
    )
