"""What the reconcile tests share (part reconcile of issue 12): the hub configured against the real mock gateways
(their keys from ``GET /_keys``), a fee case with an order, and the mock's control routes over real sockets.

Notifications go to an address nobody listens on (``UNREACHABLE``): as far as the gateways can tell, the hub is
down, so only the query job and the reconciliation can learn of a payment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import FixedClock
from hub.db import unit_of_work
from hub.payments.gateways import Gateways
from hub.payments.models import PaymentOrder, PaymentRefund
from hub.settings import Settings
from mocks.runner import RunningMocks
from tests.payments.orders_support import order_row
from tests.payments.wire_support import configured
from tests.support import submit

GATEWAYS = ("alipay", "unionpay")
FEE_ITEM = "id-card-renewal"  # 2000 fen, due before completion
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: the gateways' notifications never arrive
HTTP = httpx.Client(timeout=30, trust_env=False)


def real_time_clock() -> FixedClock:
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


def payment_settings(settings: Settings, mocks: RunningMocks, folder: Path, **overrides: Any) -> Settings:
    """``settings`` with both mock gateways configured from their ``/_keys``; notifications go nowhere."""
    urls = {name: mocks.endpoint(name).url for name in GATEWAYS}
    return configured(settings, urls, folder, **{"payments_public_url": UNREACHABLE, "payments_timeout_s": 2.0,
                                                 **overrides})


# The fixtures of the two modules that drive the gateways in real time; each module binds them by name
# (``clock = reconcile_support.clock_fixture``), so they replace the root conftest's for those modules only.
@pytest.fixture(name="clock")
def clock_fixture() -> FixedClock:
    """The mock gateways keep real time (a cashier refuses a trade past its expiry by their clock): so does the
    hub here, from now on, moved by the tests."""
    return real_time_clock()


@pytest.fixture(name="pay_settings")
def pay_settings_fixture(settings: Settings, mocks: RunningMocks, tmp_path: Path) -> Settings:
    return payment_settings(settings, mocks, tmp_path / "payments")


@pytest.fixture(name="app")
def app_fixture(pay_settings: Settings, clock: FixedClock, engine: Any) -> Any:
    from hub.app import create_app

    return create_app(pay_settings, clock=clock, engine=engine)


def settings_env(settings: Settings) -> dict[str, str]:
    """The payment settings as ``HUB_…`` variables, for `hub` run as a process."""
    env = {"HUB_DATABASE_URL": settings.resolved_database_url(), "HUB_DATA_DIR": str(settings.data_dir)}
    for name, value in settings.model_dump().items():
        if name.startswith("payments_") and value not in (None, ""):
            env[f"HUB_{name.upper()}"] = str(value)
    return env


class MockGateway:
    """One mock gateway's control routes (on its own port)."""

    def __init__(self, mocks: RunningMocks, name: str) -> None:
        self.name = name
        self.url = mocks.endpoint(name).url

    def faults(self, **switches: Any) -> dict[str, Any]:
        return dict(HTTP.post(f"{self.url}/_control/payment-faults", json=switches).raise_for_status().json())

    def clear(self) -> None:
        HTTP.delete(f"{self.url}/_control/payment-faults").raise_for_status()

    def pay(self, order_no: str, *, at: datetime) -> dict[str, Any]:
        return dict(HTTP.post(f"{self.url}/_control/trades/{order_no}/pay",
                              json={"paid_at": at.isoformat()}).raise_for_status().json())

    def trade(self, order_no: str) -> dict[str, Any]:
        return dict(HTTP.get(f"{self.url}/_control/trades/{order_no}").raise_for_status().json())


@contextmanager
def gateway_faults(gateway: MockGateway, **switches: Any) -> Iterator[None]:
    gateway.faults(**switches)
    try:
        yield
    finally:
        gateway.clear()


def fee_case(client: TestClient) -> dict[str, Any]:
    """A new case of the ID-card renewal (2000 fen): its receipt (tracking_no, query_code)."""
    return submit(client, FEE_ITEM)


def new_order(client: TestClient, receipt: dict[str, Any], gateway: str) -> dict[str, Any]:
    response = client.post("/api/v1/payments", json={"tracking_no": receipt["tracking_no"],
                                                     "query_code": receipt["query_code"], "gateway": gateway})
    assert response.status_code == 201, response.text
    order = dict(response.json())
    open_cashier(order_row(client.app.state.session_factory, order["order_no"]))  # type: ignore[attr-defined]
    return order


def open_cashier(order: PaymentOrder) -> str:
    """What the applicant's browser does with the checkout (the hub's pay page sends it there): the gateway
    creates its trade and shows the cashier page, which is returned."""
    checkout = order.checkout or {}
    if checkout.get("method", "GET") == "GET":
        response = HTTP.get(checkout["url"], follow_redirects=True)
    else:
        response = HTTP.post(checkout["url"], data=checkout.get("fields") or {}, follow_redirects=True)
    assert response.status_code == 200 and "收银台" in response.text, response.text[:500]
    return response.text


def refunds_of(factory: sessionmaker[Session], order_no: str) -> list[PaymentRefund]:
    with factory() as session:
        order = session.scalars(select(PaymentOrder).where(PaymentOrder.order_no == order_no)).one()
        rows = list(session.scalars(select(PaymentRefund).where(PaymentRefund.order_id == order.id)
                                    .order_by(PaymentRefund.id)))
        for row in rows:
            session.expunge(row)
        return rows


def settle_order(factory: sessionmaker[Session], order_no: str, **values: Any) -> None:
    """Change an order's row behind the hub's back (a test's way of making the hub's books differ)."""
    with unit_of_work(factory) as session:
        order = session.scalars(select(PaymentOrder).where(PaymentOrder.order_no == order_no)).one()
        for name, value in values.items():
            setattr(order, name, value)


def gateways_for(settings: Settings) -> Gateways:
    return Gateways.from_settings(settings)
