"""RSA signing as both gateway styles use it (SHA256withRSA, PKCS#1 v1.5, base64), and key material for tests
and mocks generated at run time — no key is ever committed."""

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


def sorted_string(params: Mapping[str, str], *, exclude: frozenset[str] = frozenset({"sign"})) -> str:
    """``k=v&…`` of every non-empty parameter but the excluded ones, sorted by key (both styles' base string)."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] not in ("", None))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sign(private_key: rsa.RSAPrivateKey, data: str) -> str:
    return base64.b64encode(private_key.sign(data.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(public_key: rsa.RSAPublicKey, data: str, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature, validate=True), data.encode("utf-8"), padding.PKCS1v15(),
                          hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """A PEM public key, or the public key of a PEM certificate."""
    key: object  # a certificate's and a bare key's loaders return different unions
    if b"BEGIN CERTIFICATE" in pem:
        key = x509.load_pem_x509_certificate(pem).public_key()
    else:
        key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def load_certificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes
    certificate_pem: bytes  # self-signed, for the UnionPay style (certId = its serial number)

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        return load_private_key(self.private_pem)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return load_public_key(self.public_pem)

    @property
    def cert_id(self) -> str:
        return str(load_certificate(self.certificate_pem).serial_number)


def generate_key_pair(common_name: str, *, bits: int = 2048) -> KeyPair:
    """A fresh RSA key with a self-signed certificate (tests, mocks, `hub up`): generated, never stored in git."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
    return KeyPair(
        private_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()),
        public_pem=key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
    )
