"""Helpers for the UnionPay-style mock and adapter tests: the mock on a free port, a merchant endpoint that
receives its notifications, and a browser that goes through the cashier with plain httpx."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urljoin

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import FastAPI, Request, Response

from adapters.payments import signing
from mocks.payments.unionpay import UnionPayMock, create_app
from mocks.server import MockServer
from tests.servers import serving

# Short enough that a test waiting for the third attempt waits about a second.
FAST_SCHEDULE = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0)
WAIT_S = 15.0


@dataclass
class Received:
    body: bytes
    content_type: str

    @property
    def fields(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class Merchant:
    """The merchant's notify endpoint: records every POST and answers the next queued status (then 200)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def notify_url(self) -> str:
        return f"{self.url}/notify"

    @property
    def return_url(self) -> str:
        return f"{self.url}/return"

    def answer_with(self, *statuses: int) -> None:
        with self.cond:
            self.statuses[:] = list(statuses)

    def reset(self) -> None:
        with self.cond:
            self.received.clear()
            self.statuses.clear()

    def record(self, body: bytes, content_type: str) -> int:
        with self.cond:
            self.received.append(Received(body, content_type))
            self.cond.notify_all()
            return self.statuses.pop(0) if self.statuses else 200

    def wait_for(self, count: int, *, order_no: str | None = None, timeout_s: float = WAIT_S) -> list[Received]:
        """Block until ``count`` notifications (of ``order_no``, if given) arrived; fail after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s

        def matching() -> list[Received]:
            return [r for r in self.received
                    if order_no is None or order_no in (r.fields.get("orderId"), r.fields.get("reqReserved"))]

        with self.cond:
            while len(matching()) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"expected {count} notifications, got {len(matching())}"
                self.cond.wait(left)
            return matching()


@contextmanager
def merchant_endpoint() -> Iterator[Merchant]:
    merchant = Merchant()
    app = FastAPI()

    @app.post("/notify")
    async def notify(request: Request) -> Response:
        status = merchant.record(await request.body(), request.headers.get("content-type", ""))
        return Response("ok" if status == 200 else "fail", status_code=status)

    @app.get("/return")
    def front_return() -> Response:
        return Response("returned")

    with serving(app) as url:
        merchant.url = url
        yield merchant


@contextmanager
def unionpay_mock() -> Iterator[tuple[MockServer, UnionPayMock]]:
    server = MockServer("unionpay", "rest", lambda s: create_app(s, schedule=FAST_SCHEDULE))
    server.start()
    try:
        yield server, server.app.state.unionpay
    finally:
        server.app.state.payment.notifier.stop()
        server.stop()


def fresh(server: MockServer, mock: UnionPayMock) -> None:
    """Every switch off and the mock listening."""
    server.recover()
    mock.state.payment_faults.clear()
    mock.clear_faults()


@functools.lru_cache(maxsize=8)
def _private_key(pem: str) -> rsa.RSAPrivateKey:
    return signing.load_private_key(pem.encode())  # parsed once: loading checks the key (tens of ms)


def merchant_signed(keys: dict[str, str], fields: dict[str, str]) -> dict[str, str]:
    """A merchant request signed as the UnionPay SDK does, written independently of the adapter."""
    signed = {**fields, "certId": keys["merchant_cert_id"]}
    text = "&".join(f"{k}={v}" for k, v in sorted(signed.items()) if k != "signature" and v != "")
    digest = hashlib.sha256(text.encode()).hexdigest()
    key = _private_key(keys["merchant_private_key"])
    signed["signature"] = base64.b64encode(key.sign(digest.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return signed


def gateway_signature_ok(keys: dict[str, str], fields: dict[str, str]) -> bool:
    """Does an answer verify with the gateway certificate from /_keys (and carry exactly that certificate)?"""
    if fields.get("signPubKeyCert", "").strip() != keys["gateway_certificate"].strip():
        return False
    text = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "signature" and v != "")
    digest = hashlib.sha256(text.encode()).hexdigest()
    key = signing.load_public_key(keys["gateway_certificate"].encode())
    return signing.verify(key, digest, fields.get("signature", ""))


def wait_until(condition: Callable[[], Any], *, timeout_s: float = WAIT_S, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy (and return that); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


FORM_RE = r'<form id="{name}" method="post" action="([^"]+)">'


def form_action(page: str, name: str, base: str) -> str:
    found = re.search(FORM_RE.format(name=name), page)
    assert found, f"the cashier page has no form {name!r}"
    return urljoin(base, found.group(1).replace("&amp;", "&"))


class Browser:
    """An applicant's browser with plain httpx: posts the checkout form, then a cashier form."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=60, trust_env=False, follow_redirects=False)

    def open_cashier(self, url: str, fields: dict[str, str]) -> httpx.Response:
        return self.http.post(url, data=fields)

    def press(self, cashier: httpx.Response, name: str) -> httpx.Response:
        return self.http.post(form_action(cashier.text, name, str(cashier.url)))

    def close(self) -> None:
        self.http.close()


def parse_answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(parse_qsl(response.text, keep_blank_values=True))
