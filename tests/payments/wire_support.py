"""Over real sockets (part orders of issue 12): the real mock gateways (mocks/payments) each on its own port, the
hub under uvicorn on another, configured from the mocks' ``/_keys`` with the real adapters (adapters/payments),
and a browser made of plain httpx that follows the hub's pay page to the cashier and presses its buttons."""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html import unescape
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx

from hub.mocks_cli import gateway_settings
from hub.settings import Settings
from mocks.server import MockServer

HTTP = httpx.Client(timeout=30, trust_env=False)
T = TypeVar("T")


def landed_gateways() -> list[str]:
    """The gateways whose adapter and mock are in this tree (both parts merge here as they commit)."""
    names = []
    for name in ("alipay", "unionpay"):
        try:
            importlib.import_module(f"adapters.payments.{name}")
            importlib.import_module(f"mocks.payments.{name}")
        except ImportError:
            continue
        names.append(name)
    return names


@contextmanager
def mock_gateway(name: str) -> Iterator[MockServer]:
    module: Any = importlib.import_module(f"mocks.payments.{name}")
    server = MockServer(name, "rest", lambda s: module.create_app(s))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def configured(settings: Settings, urls: dict[str, str], folder: Path, **overrides: Any) -> Settings:
    """``settings`` with each mock gateway of ``urls`` configured from its ``/_keys`` as `hub up` does it."""
    values: dict[str, Any] = {"payments_timeout_s": 5.0}
    for name, url in urls.items():
        values.update(gateway_settings(name, url, folder))
    values.update(overrides)
    return settings.model_copy(update=values)


_FORM = re.compile(r'<form[^>]*id="(?P<id>[^"]+)"[^>]*action="(?P<action>[^"]+)"[^>]*>(?P<body>.*?)</form>', re.S)
_INPUT = re.compile(r'<input[^>]*name="(?P<name>[^"]+)"[^>]*value="(?P<value>[^"]*)"')


def forms(page: str) -> dict[str, tuple[str, dict[str, str]]]:
    """id → (action, hidden fields) of every form of an HTML page."""
    found = {}
    for match in _FORM.finditer(page):
        fields = {unescape(i["name"]): unescape(i["value"]) for i in _INPUT.finditer(match["body"])}
        found[match["id"]] = (unescape(match["action"]), fields)
    return found


class Browser:
    """The applicant's browser: the hub's pay page, then the gateway's cashier, then a button."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=30, trust_env=False, follow_redirects=False)
        self.at = ""

    def cashier(self, pay_url: str) -> str:
        """The gateway's cashier page, reached from the hub's pay page (``self.at``: its address)."""
        page = self.http.get(pay_url)
        if page.status_code == 303:  # a GET checkout
            cashier = self.http.get(page.headers["location"])
        else:  # a POST checkout: the hub's auto-submitting form
            assert page.status_code == 200, page.text
            action, fields = forms(page.text)["checkout"]
            cashier = self.http.post(action, data=fields)
        assert cashier.status_code == 200, cashier.text
        assert "收银台" in cashier.text
        self.at = str(cashier.url)
        return cashier.text

    def press(self, cashier: str, button: str) -> httpx.Response:
        """Press ``pay`` or ``cancel``: the gateway's 303 back to the hub's return URL (not followed)."""
        action, fields = forms(cashier)[button]
        answer = self.http.post(urljoin(self.at, action), data=fields)
        assert answer.status_code == 303, answer.text
        return answer


class Mock:
    """One mock gateway's control routes."""

    def __init__(self, url: str) -> None:
        self.url = url

    def faults(self, **switches: Any) -> None:
        HTTP.post(f"{self.url}/_control/payment-faults", json=switches).raise_for_status()

    def clear(self) -> None:
        HTTP.delete(f"{self.url}/_control/payment-faults").raise_for_status()

    def notifications(self, order_no: str) -> list[dict[str, Any]]:
        answer = HTTP.get(f"{self.url}/_control/notifications", params={"order_no": order_no}).raise_for_status()
        return list(answer.json()["notifications"])

    def pay(self, order_no: str) -> None:
        HTTP.post(f"{self.url}/_control/trades/{order_no}/pay").raise_for_status()


def wait_for(condition: Callable[[], T | None], what: str, timeout_s: float = 90) -> T:
    """Poll ``condition`` until it answers something truthy (a condition, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
