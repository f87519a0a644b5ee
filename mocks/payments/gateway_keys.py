"""Key material and RSA signatures for the mock gateways, written against ``cryptography`` directly: mocks know
nothing of ``adapters`` (import contract in pyproject.toml), so a mock checks the hub's signatures with its own
code — a shared bug cannot make both sides agree on a wrong signature.

Keys are generated at start and never stored: each mock issues its own gateway key and the merchant key it hands
to the hub in dev (``GET /_keys``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class GatewayKey:
    """One RSA key with its self-signed certificate (``cert_id`` = the certificate's serial, UnionPay's certId).
    The key objects are parsed once: loading a PEM private key checks the key and costs tens of milliseconds."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls, common_name: str, *, bits: int = 2048) -> GatewayKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                       .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                       .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
        return cls(key, certificate)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @property
    def cert_id(self) -> str:
        return str(self.certificate.serial_number)

    @property
    def private_pem(self) -> str:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()

    @property
    def public_pem(self) -> str:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, data: str) -> str:
        """SHA256withRSA (PKCS#1 v1.5) of the UTF-8 text, base64."""
        raw = self.private_key.sign(data.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode("ascii")


def verify(public_key: rsa.RSAPublicKey, data: str, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature, validate=True), data.encode("utf-8"), padding.PKCS1v15(),
                          hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def sorted_string(params: Mapping[str, str], *, exclude: frozenset[str]) -> str:
    """``k=v&…`` of every non-empty parameter but the excluded ones, sorted by key."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] != "")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
