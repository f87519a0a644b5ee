"""Test helpers for the Alipay-style mock: the mock on a free port, an adapter configured from its ``/_keys``, and
a stand-in for the hub's notification endpoint (a real HTTP server) that answers as told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from fastapi import FastAPI, Request, Response

from adapters.payments.alipay import AlipayGateway, cst_timestamp, request_sign_content, response_sign_content
from adapters.payments.base import Checkout, NotificationRejected, OrderRequest
from adapters.payments.signing import load_private_key, load_public_key, sign, verify
from adapters.resilience import ResiliencePolicy
from mocks.payments import alipay as alipay_app
from mocks.server import MockServer

# Short timeout and tiny backoff: the fault tests stay fast; the policy's shape is the production one.
FAST_POLICY = ResiliencePolicy(timeout_s=0.5, attempts=2, backoff_initial_s=0.001, backoff_max_s=0.005)
WAIT_S = 20.0


def wait_until(condition: Callable[[], Any], *, timeout_s: float = WAIT_S, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy (its value is returned); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Received:
    """One notification POST the receiver got, and what it answered."""

    form: dict[str, str]
    content_type: str
    body: bytes
    answer: str
    rule: str | None = None  # the adapter's rejection rule, if it rejected it


@dataclass
class NotifyReceiver:
    """The hub's notification endpoint stand-in: verifies with the adapter, answers ``success``/``failure``;
    ``script`` answers the next posts with given bodies first (e.g. ["failure", "failure"])."""

    gateway: AlipayGateway | None = None
    script: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: MockServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/notify"

    def app(self, _: MockServer) -> FastAPI:
        app = FastAPI()

        @app.post("/notify")
        async def notify(request: Request) -> Response:
            body = await request.body()
            content_type = request.headers.get("content-type", "")
            rule = None
            answer = "success"
            if self.gateway is not None:
                try:
                    self.gateway.parse_notification(body=body, content_type=content_type)
                except NotificationRejected as exc:
                    rule, answer = exc.rule, "failure"
            with self.lock:
                if self.script:
                    answer = self.script.pop(0)
                self.received.append(Received(dict(parse_qsl(body.decode())), content_type, body, answer, rule))
            return Response(answer, media_type="text/plain")

        return app

    def posts(self, order_no: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if order_no is None or r.form.get("out_trade_no") == order_no]


class AlipayMockHandle:
    """The mock on a free loopback port and what a test needs around it."""

    def __init__(self) -> None:
        self.server = MockServer("alipay", "rest", alipay_app.create_app)
        self.server.start()
        self.http = httpx.Client(base_url=self.server.url, timeout=60, trust_env=False, follow_redirects=False)
        self.keys: dict[str, str] = self.http.get("/_keys").json()
        self.receiver = NotifyReceiver()
        self.receiver.server = MockServer("hub-notify", "rest", self.receiver.app)
        self.receiver.server.start()
        self.receiver.gateway = self.gateway()
        self._orders = 0

    @property
    def url(self) -> str:
        return self.server.url

    def gateway(self, **overrides: Any) -> AlipayGateway:
        options: dict[str, Any] = {
            "url": self.server.url, "app_id": self.keys["app_id"], "seller_id": self.keys["seller_id"],
            "private_key_pem": self.keys["merchant_private_key"],
            "gateway_public_key_pem": self.keys["gateway_public_key"], "timeout_s": 0.5, "policy": FAST_POLICY,
        }
        options.update(overrides)
        return AlipayGateway(**options)

    def order_no(self) -> str:
        self._orders += 1
        return f"P{datetime.now(UTC):%Y%m%d}{int(time.time() * 1000) % 10**8:08d}{self._orders:04d}"

    def order(self, order_no: str, amount_fen: int = 2000, *, gateway: AlipayGateway | None = None) -> Checkout:
        now = datetime.now(UTC)
        request = OrderRequest(order_no=order_no, amount_fen=amount_fen, subject="居民身份证换领工本费",
                               created_at=now, expires_at=now + timedelta(minutes=30), notify_url=self.receiver.url,
                               return_url="http://127.0.0.1:9/api/v1/payments/return/alipay")
        return (gateway or self.receiver.gateway or self.gateway()).create(request)

    def open_cashier(self, checkout: Checkout) -> httpx.Response:
        """The buyer's browser following the checkout (a GET of the signed URL)."""
        return httpx.get(checkout.url, trust_env=False, timeout=10)

    def click(self, cashier: httpx.Response, form_id: str) -> httpx.Response:
        """Submit the cashier page's ``<form id=...>`` like a browser (no redirect following)."""
        marker = f'<form id="{form_id}" method="post" action="'
        start = cashier.text.index(marker) + len(marker)
        action = cashier.text[start:cashier.text.index('"', start)]
        return httpx.post(str(cashier.url.join(action)), trust_env=False, timeout=10, follow_redirects=False)

    def paid_order(self, amount_fen: int = 2000) -> str:
        """An order opened at the cashier and paid through its form."""
        order_no = self.order_no()
        cashier = self.open_cashier(self.order(order_no, amount_fen))
        assert cashier.status_code == 200, cashier.text
        assert self.click(cashier, "pay").status_code == 303
        return order_no

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        answer = self.http.post("/_control/payment-faults", json=faults)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def notifications(self, order_no: str | None = None) -> list[dict[str, Any]]:
        params = {"order_no": order_no} if order_no else {}
        return list(self.http.get("/_control/notifications", params=params).json()["notifications"])

    def settled(self, order_no: str) -> list[dict[str, Any]]:
        """Wait until every notification of the order is finished (acknowledged, given up or lost)."""
        return list(wait_until(lambda: (lambda n: n if n and all(r["finished"] for r in n) else None)(
            self.notifications(order_no)), what=f"notifications of {order_no} to settle"))

    def raw_call(self, method: str, biz: dict[str, Any], *, tamper: Callable[[dict[str, str]], None] | None = None,
                 private_key_pem: str | None = None) -> httpx.Response:
        """A gateway.do call signed by hand (``tamper`` edits the parameters after signing)."""
        params = {"app_id": self.keys["app_id"], "method": method, "format": "JSON", "charset": "utf-8",
                  "sign_type": "RSA2", "timestamp": cst_timestamp(datetime.now(UTC)), "version": "1.0",
                  "biz_content": json.dumps(biz, ensure_ascii=False)}
        key = load_private_key((private_key_pem or self.keys["merchant_private_key"]).encode())
        params["sign"] = sign(key, request_sign_content(params))
        if tamper is not None:
            tamper(params)
        return self.http.post("/gateway.do", data=params)

    def answer(self, response: httpx.Response, method: str) -> dict[str, Any]:
        """The ``*_response`` object of a gateway answer, once the gateway's signature over its text verified."""
        assert response.status_code == 200, response.text
        found = response_sign_content(response.text, method.replace(".", "_") + "_response")
        assert found is not None, response.text
        content, signature = found
        assert signature and verify(load_public_key(self.keys["gateway_public_key"].encode()), content, signature)
        return dict(json.loads(content))

    def stop(self) -> None:
        self.server.app.state.payment.stop()
        self.server.stop()
        assert self.receiver.server is not None
        self.receiver.server.stop()
        self.http.close()


@contextmanager
def alipay_mock() -> Iterator[AlipayMockHandle]:
    handle = AlipayMockHandle()
    try:
        yield handle
    finally:
        handle.stop()


def query_params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
