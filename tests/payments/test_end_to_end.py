"""Issue 12, "Done when", over real sockets: `hub api` twice, `hub worker` and `hub mocks` as their own processes
on a fresh PostgreSQL database and RabbitMQ vhost; the applicant, the officers, the browser and the operator are
played with httpx, the operator's commands and the mocks' control API — nothing of the hub is imported.

* a fee case is paid through EACH mock gateway end to end (order, hub pay page, cashier form, notification) and
  is accepted / completed only after payment;
* forged signature, wrong amount, wrong merchant or app, unknown order, duplicate and out-of-order
  notifications change nothing wrongly;
* a payment made while the hub heard nothing (notifications lost) is found by the query job, and by
  `hub payments reconcile` while the worker is stopped;
* a refund retried after a timeout refunds once;
* the same notification delivered to two API processes at once is applied once;
* a browser return without a notification never marks an order paid.

Conditions are waited on (bounded polls), never slept on. The worker's payment jobs run on short intervals
(query after 1 s) so the query job's rescue of a silent order shows within the test's time budget.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import create_engine, text

from tests.docs.live_hub import _consuming, _database, _vhost, require_services
from tests.e2e.cli_support import (
    ROOT,
    Ran,
    Server,
    answers,
    free_port,
    free_port_block,
    hub_executable,
    operator_env,
    run_process,
)

DEMO_PASSWORD = "demo-Password-1"
GATEWAYS = ("alipay", "unionpay")
MOCK_OFFSET = {"alipay": 5, "unionpay": 6}  # from `hub mocks --base-port` (mocks/runner.py SPECS)
# 史叶: a valid citizen ID (the registries are not configured here: verification is not what this file tests).
APPLICANT = {"type": "1", "name": "史叶", "id_type": "citizen_id", "id_number": "210105198501309747",
             "phone": "13812345678", "region": "210105"}
PAID_SOURCES = {"notification", "query", "statement"}  # the gateway's signed word; never "return"/"api"
SEED = ROOT / "hub" / "seed" / "data"


def _seed(name: str) -> list[dict[str, Any]]:
    return list(json.loads((SEED / f"{name}.json").read_text(encoding="utf-8")))


ITEMS = {row["key"]: row for row in _seed("items")}
OFFICERS = _seed("officers")


# --- the stack -------------------------------------------------------------------------------------------------


class FanOut:
    """A loopback HTTP relay in front of API process B: every POST (a gateway's notification) is sent to BOTH API
    processes at the same instant, and the mock gets B's answer; GETs (the browser) go to B only. It records
    what each API answered, per path."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self.answers: list[dict[str, Any]] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                content_type = self.headers.get("Content-Type", "application/x-www-form-urlencoded")
                barrier = threading.Barrier(len(relay.targets))

                def send(target: str) -> httpx.Response:
                    barrier.wait(timeout=10)  # both requests leave together
                    return httpx.post(target + self.path, content=body, headers={"Content-Type": content_type},
                                      timeout=30, trust_env=False)

                with ThreadPoolExecutor(len(relay.targets)) as pool:
                    responses = list(pool.map(send, relay.targets))
                relay.answers.append({"path": self.path, "body": body.decode("utf-8", "replace"),
                                      "answers": [(r.status_code, r.text) for r in responses]})
                self._reply(responses[-1])

            def do_GET(self) -> None:
                self._reply(httpx.get(relay.targets[-1] + self.path, timeout=30, trust_env=False))

            def _reply(self, response: httpx.Response) -> None:
                self.send_response(response.status_code)
                for name in ("Content-Type", "Location"):
                    if name in response.headers:
                        self.send_header(name, response.headers[name])
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Stack:
    api: str  # API process A: orders made here are called back here
    api_b: str  # API process B: orders made here are called back through the fan-out relay (A and B at once)
    mocks: dict[str, str]  # gateway → the mock's base URL
    amqp_url: str
    keys: dict[str, dict[str, str]]
    database_url: str
    management_url: str
    vhost: str
    amqp_auth: tuple[str, str]
    env: dict[str, str]
    workdir: Path
    relay: FanOut
    processes: dict[str, Server] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def hub(self, *args: str, timeout_s: float = 120) -> Ran:
        return run_process([*hub_executable(), *args], self.env, cwd=self.workdir, timeout_s=timeout_s)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{server.output()[-3000:]}" for name, server in self.processes.items())

    def sql(self, query: str, **params: Any) -> list[Any]:
        """Read-only looks at the hub's database (the inbox), as an operator with psql would."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(text(query), params))
        finally:
            engine.dispose()


def _write_pem(path: Path, pem: str) -> str:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(pem, encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def _payment_env(workdir: Path, keys: dict[str, dict[str, str]], mocks: dict[str, str]) -> dict[str, str]:
    """The hub's payment settings, from the keys the mocks issued (`GET /_keys`), as `hub up` does."""
    folder = workdir / "var" / "payments"
    alipay, unionpay = keys["alipay"], keys["unionpay"]
    return {
        "HUB_PAYMENTS_ALIPAY_URL": mocks["alipay"], "HUB_PAYMENTS_ALIPAY_APP_ID": alipay["app_id"],
        "HUB_PAYMENTS_ALIPAY_SELLER_ID": alipay["seller_id"],
        "HUB_PAYMENTS_ALIPAY_PRIVATE_KEY_FILE": _write_pem(folder / "alipay-merchant.pem",
                                                           alipay["merchant_private_key"]),
        "HUB_PAYMENTS_ALIPAY_PUBLIC_KEY_FILE": _write_pem(folder / "alipay-gateway.pem", alipay["gateway_public_key"]),
        "HUB_PAYMENTS_UNIONPAY_URL": mocks["unionpay"], "HUB_PAYMENTS_UNIONPAY_MER_ID": unionpay["mer_id"],
        "HUB_PAYMENTS_UNIONPAY_PRIVATE_KEY_FILE": _write_pem(folder / "unionpay-merchant.pem",
                                                             unionpay["merchant_private_key"]),
        "HUB_PAYMENTS_UNIONPAY_CERT_FILE": _write_pem(folder / "unionpay-merchant-cert.pem",
                                                      unionpay["merchant_certificate"]),
        "HUB_PAYMENTS_UNIONPAY_GATEWAY_CERT_FILE": _write_pem(folder / "unionpay-gateway-cert.pem",
                                                              unionpay["gateway_certificate"]),
        # Short enough for this file's budget: a call that outlasts 2 s has timed out (the refund test's
        # slow gateway); silent orders are queried after 1 s; refunds are retried every second.
        "HUB_PAYMENTS_TIMEOUT_S": "2", "HUB_PAYMENTS_QUERY_AFTER_S": "1", "HUB_PAYMENTS_QUERY_INTERVAL_S": "1",
        "HUB_PAYMENTS_REFUND_INTERVAL_S": "1", "HUB_PAYMENTS_RECONCILE_HOUR": "-1",
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    services = require_services()
    workdir = tmp_path_factory.mktemp("payments-e2e")
    started = time.monotonic()

    def mark(what: str) -> None:
        if os.environ.get("HUB_TEST_E2E_TIMING"):
            print(f"[{time.monotonic() - started:6.1f}s] {what}", file=sys.stderr, flush=True)

    with ExitStack() as stack:
        database_url = stack.enter_context(_database(services["HUB_TEST_POSTGRES_URL"]))
        amqp_url, vhost = stack.enter_context(_vhost(services["HUB_TEST_AMQP_URL"],
                                                     services["HUB_TEST_RABBITMQ_MANAGEMENT_URL"]))
        base_env = operator_env(workdir / "var", HUB_DATABASE_URL=database_url, HUB_AMQP_URL=amqp_url,
                                HUB_SECRET_KEY=secrets.token_urlsafe(48), HUB_AUDIT_KEY=secrets.token_urlsafe(48))
        processes: dict[str, Server] = {}
        stack.callback(_stop_all, processes)

        def serve(name: str, *args: str, **extra: str) -> Server:
            server = Server([*hub_executable(), *args], {**base_env, **extra}, cwd=workdir, log=workdir / f"{name}.log")
            processes[name] = server
            return server

        base_port = free_port_block(9)
        mocks_process = serve("mocks", "mocks", "--base-port", str(base_port))
        # `hub db seed` migrates, then seeds: the API and the worker start as soon as the schema is there.
        seeding = serve("seed", "db", "seed")
        seeding.wait_until(lambda: "seeding the demo province" in seeding.output(), "the database migrated",
                           timeout_s=180)
        mark("db migrated")
        mocks = {name: f"http://127.0.0.1:{base_port + offset}" for name, offset in MOCK_OFFSET.items()}
        for url in mocks.values():
            mocks_process.wait_until(lambda u=url: answers(f"{u}/_keys"), f"{url}/_keys answers", timeout_s=120)
        keys = {name: httpx.get(f"{url}/_keys", timeout=60, trust_env=False).json() for name, url in mocks.items()}
        mark("mocks' keys")
        base_env.update(_payment_env(workdir, keys, mocks))

        port_a, port_b = free_port(), free_port()
        api_a, api_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        relay = FanOut([api_a, api_b])
        stack.callback(relay.close)
        serve("worker", "worker", HUB_PAYMENTS_PUBLIC_URL=api_a)
        serve("api-a", "api", "--port", str(port_a), HUB_PAYMENTS_PUBLIC_URL=api_a)
        serve("api-b", "api", "--port", str(port_b), HUB_PAYMENTS_PUBLIC_URL=relay.url)
        deadline = time.monotonic() + 180  # the catalogue and officers are only needed by the tests
        while seeding.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert seeding.process.returncode == 0, seeding.output()[-3000:]
        mark("db seeded")
        amqp_user = httpx.URL(amqp_url)
        live = Stack(api_a, api_b, mocks, amqp_url, keys, database_url,
                     services["HUB_TEST_RABBITMQ_MANAGEMENT_URL"].rstrip("/"), vhost,
                     (amqp_user.username, amqp_user.password), {**base_env, "HUB_PAYMENTS_PUBLIC_URL": api_a},
                     workdir, relay, processes)
        for name, url in (("api-a", api_a), ("api-b", api_b)):
            processes[name].wait_until(lambda u=url: answers(f"{u}/ready"), f"{name} answers /ready", timeout_s=120)
            mark(f"{name} ready")
        processes["worker"].wait_until(lambda: _consuming(live), "the worker consumes", timeout_s=120)
        mark("worker consuming")
        _bind_event_queue(live)
        yield live
        if os.environ.get("HUB_TEST_E2E_TIMING"):  # the figures docs/payments.md quotes
            print("figures:", json.dumps(figures(live), ensure_ascii=False), file=sys.stderr, flush=True)


def figures(live: Stack) -> dict[str, Any]:
    """What the run did: notifications the mocks sent and how the hub answered, the inbox, orders, sources."""
    sent: dict[str, Any] = {}
    for gateway, url in live.mocks.items():
        records = httpx.get(f"{url}/_control/notifications", timeout=60, trust_env=False).json()["notifications"]
        attempts = [a for r in records for a in r["attempts"]]
        sent[gateway] = {
            "notifications": len(records), "by_label": _count(r["label"] for r in records),
            "lost": sum(r["lost"] for r in records), "attempts": len(attempts),
            "acknowledged": sum(a["acknowledged"] for a in attempts),
            "refused": sum(1 for a in attempts if a["status_code"] is not None and not a["acknowledged"]),
        }
    rows = live.sql("SELECT gateway, outcome, count(*) AS n FROM payment_notifications GROUP BY gateway, outcome")
    states = live.sql("SELECT gateway, state, count(*) AS n FROM payment_orders GROUP BY gateway, state")
    paid = live.sql("SELECT source, count(*) AS n FROM payment_order_events WHERE to_state = 'paid' GROUP BY source")
    return {"mocks": sent, "inbox": [tuple(r) for r in rows], "orders": [tuple(r) for r in states],
            "paid_by": [tuple(r) for r in paid], "cases": live.sql("SELECT count(*) FROM cases")[0][0]}


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _stop_all(processes: dict[str, Server]) -> None:
    """Ctrl-C to every process at once, then wait for each (one after the other took seconds apiece)."""
    for server in processes.values():
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)
    for server in processes.values():
        begun = time.monotonic()
        _stop(server)
        if os.environ.get("HUB_TEST_E2E_TIMING"):
            print(f"stopped {server.args[1:3]} in {time.monotonic() - begun:.1f} s", file=sys.stderr, flush=True)


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


EVENT_QUEUE = "e2e.payment-events"


def _bind_event_queue(live: Stack) -> None:
    """A queue of every `payment.*` event the hub publishes (hub.events), read through the management API."""
    vhost = quote(live.vhost, safe="")
    with httpx.Client(base_url=live.management_url, auth=live.amqp_auth, timeout=15, trust_env=False) as api:
        api.put(f"/api/queues/{vhost}/{EVENT_QUEUE}", json={"durable": False}).raise_for_status()
        api.post(f"/api/bindings/{vhost}/e/hub.events/q/{EVENT_QUEUE}",
                 json={"routing_key": "payment.#"}).raise_for_status()


def payment_events(live: Stack, order_no: str) -> list[str]:
    """The routing keys of the events published so far about one order (messages left in the queue)."""
    vhost = quote(live.vhost, safe="")
    try:
        with httpx.Client(base_url=live.management_url, auth=live.amqp_auth, timeout=15, trust_env=False) as api:
            got = api.post(f"/api/queues/{vhost}/{EVENT_QUEUE}/get",
                           json={"count": 10_000, "ackmode": "ack_requeue_true", "encoding": "auto"})
    except httpx.TransportError:
        return []  # the management API restarting on this shared machine: the caller waits and asks again
    got.raise_for_status()
    return [m["routing_key"] for m in got.json() if order_no in str(m.get("payload", ""))]


def wait_for(condition: Callable[[], Any], what: str, live: Stack, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g} s: {what}\n{live.logs()}")
        time.sleep(0.1)


# --- the applicant, the officers, the browser -------------------------------------------------------------------


@dataclass
class Case:
    tracking_no: str
    query_code: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Query-Code": self.query_code}


def item_with_fee(due: str) -> str:
    """A seeded item whose fee is due at ``due`` and a person may apply for (its example form is not exempt)."""
    for key, row in ITEMS.items():
        fee = row.get("fee") or {}
        if fee and "1" in row["applicant_types"] and (fee.get("due") or "before_completion") == due:
            return key
    pytest.fail(f"no seeded item has a fee due {due}")


def submit(live: Stack, key: str, api: str | None = None) -> Case:
    api = api or live.api
    found = httpx.get(f"{api}/api/v1/items", params={"q": key}, timeout=30).json()["items"]
    code = next(i["code"] for i in found if i["key"] == key)
    form = httpx.get(f"{api}/api/v1/items/{code}/form-schema", timeout=30).json()["examples"][0]
    answer = httpx.post(f"{api}/api/v1/applications", json={"item_code": code, "form": form, "applicant": APPLICANT},
                        timeout=60)
    assert answer.status_code == 201, answer.text
    return Case(answer.json()["tracking_no"], answer.json()["query_code"], key)


def officer(key: str, role: str) -> str:
    row = ITEMS[key]
    return next(o["username"] for o in OFFICERS
                if (o["region"], o["department"]) == (row["region"], row["department"]) and role in o["roles"])


def act(live: Stack, case: Case, role: str, action: str) -> httpx.Response:
    username = officer(case.key, role)
    if username not in live.tokens:
        token = httpx.post(f"{live.api}/api/v1/auth/token", data={"username": username, "password": DEMO_PASSWORD},
                           timeout=30)
        assert token.status_code == 200, token.text
        live.tokens[username] = token.json()["access_token"]
    return httpx.post(f"{live.api}/api/v1/cases/{case.tracking_no}/actions",
                      json={"action": action, "opinion": "符合条件"}, timeout=60,
                      headers={"Authorization": f"Bearer {live.tokens[username]}"})


def create_order(live: Stack, case: Case, gateway: str, api: str | None = None) -> dict[str, Any]:
    answer = httpx.post(f"{api or live.api}/api/v1/payments", timeout=60,
                        json={"tracking_no": case.tracking_no, "query_code": case.query_code, "gateway": gateway})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def order_of(live: Stack, case: Case, order_no: str) -> dict[str, Any]:
    answer = httpx.get(f"{live.api}/api/v1/payments/{order_no}", params={"query_code": case.query_code}, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def paid_by(order: dict[str, Any]) -> list[str]:
    """The sources of every transition to paid in an order's history."""
    return [h["source"] for h in order["history"] if h["to_state"] == "paid"]


class Forms(HTMLParser):
    """Every <form> of a page: id → (method, action, {input name: value})."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, tuple[str, str, dict[str, str]]] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = values.get("id") or f"form{len(self.forms)}"
            self.forms[self._current] = (values.get("method", "get").upper(), values.get("action", ""), {})
        elif tag == "input" and self._current is not None and values.get("name"):
            self.forms[self._current][2][values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def forms_of(page: httpx.Response) -> dict[str, tuple[str, str, dict[str, str]]]:
    parser = Forms()
    parser.feed(page.text)
    return {name: (method, urljoin(str(page.url), action), fields)
            for name, (method, action, fields) in parser.forms.items()}


def open_cashier(browser: httpx.Client, pay_url: str) -> httpx.Response:
    """The applicant follows pay_url: the hub's page sends the browser on to the gateway (a redirect, or a form
    that submits itself), which answers its cashier page."""
    page = browser.get(pay_url)
    if page.status_code == 200 and "<form" in page.text and 'id="pay"' not in page.text:
        method, action, fields = next(iter(forms_of(page).values()))  # the auto-submitting form to the gateway
        page = browser.request(method, action, data=fields)
    assert page.status_code == 200, (page.status_code, page.text[:500])
    return page


def pay_at_cashier(browser: httpx.Client, pay_url: str, order: dict[str, Any]) -> httpx.Response:
    """收银台: check what it shows, press 确认付款; answers the gateway's redirect back to the hub (not followed)."""
    cashier = open_cashier(browser, pay_url)
    assert order["order_no"] in cashier.text, cashier.text[:1000]
    assert f"{order['amount_fen'] / 100:.2f}" in cashier.text, cashier.text[:1000]  # the amount in 元
    method, action, fields = forms_of(cashier)["pay"]
    assert method == "POST"
    paid = browser.post(action, data=fields, follow_redirects=False)
    assert paid.status_code == 303, (paid.status_code, paid.text[:500])
    return paid


def browser() -> httpx.Client:
    return httpx.Client(timeout=60, trust_env=False, follow_redirects=True)


# --- the mocks' control API -----------------------------------------------------------------------------------


@contextmanager
def faults(live: Stack, gateway: str, **switches: Any) -> Iterator[None]:
    control = f"{live.mocks[gateway]}/_control/payment-faults"
    httpx.post(control, json=switches, timeout=60, trust_env=False).raise_for_status()
    try:
        yield
    finally:
        httpx.delete(control, timeout=60, trust_env=False).raise_for_status()  # every switch off


def pay_without_browser(live: Stack, gateway: str, order_no: str) -> None:
    answer = httpx.post(f"{live.mocks[gateway]}/_control/trades/{order_no}/pay", timeout=30, trust_env=False)
    assert answer.status_code < 300, answer.text


def notifications(live: Stack, gateway: str, order_no: str) -> list[dict[str, Any]]:
    """What the mock sent about one order: each notification with its attempts and the hub's answers."""
    sent = httpx.get(f"{live.mocks[gateway]}/_control/notifications", params={"order_no": order_no}, timeout=60,
                     trust_env=False)
    return list(sent.raise_for_status().json()["notifications"])


def answers_to(live: Stack, gateway: str, order_no: str) -> list[dict[str, Any]]:
    """Every attempt the hub answered (status code and body), over all notifications of the order."""
    return [a for n in notifications(live, gateway, order_no) for a in n["attempts"] if a["status_code"] is not None]


def trade_at_gateway(live: Stack, gateway: str, order_no: str) -> dict[str, Any]:
    return dict(httpx.get(f"{live.mocks[gateway]}/_control/trades/{order_no}", timeout=60,
                          trust_env=False).raise_for_status().json())


def inbox(live: Stack, order_no: str) -> list[Any]:
    return live.sql("SELECT notify_id, kind, outcome FROM payment_notifications WHERE order_no = :o ORDER BY id",
                    o=order_no)


def new_fee_order(live: Stack, gateway: str, api: str | None = None) -> tuple[Case, dict[str, Any]]:
    """A fee case and its order, the applicant's browser at the cashier (so the gateway knows the trade)."""
    case = submit(live, item_with_fee("before_completion"), api)
    order = create_order(live, case, gateway, api)
    with browser() as applicant:
        open_cashier(applicant, order["pay_url"])
    return case, order


# --- the tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gateway,due", [("alipay", "before_acceptance"), ("unionpay", "before_completion")])
def test_a_fee_case_is_paid_through_each_gateway_end_to_end_and_completes_only_after(
        stack: Stack, gateway: str, due: str) -> None:
    case = submit(stack, item_with_fee(due))
    fee = httpx.get(f"{stack.api}/api/v1/cases/{case.tracking_no}/fee", params={"query_code": case.query_code},
                    timeout=30).json()
    assert fee["status"] == "due" and fee["amount_fen"] > 0, fee
    blocked_at = "accept" if due == "before_acceptance" else "complete"
    steps = [("intake", "accept"), ("reviewer", "review"), ("approver", "grant"), ("intake", "complete")]
    for role, action in steps:
        if action == blocked_at:
            break
        assert act(stack, case, role, action).status_code == 200
    refused = act(stack, case, "intake", blocked_at)
    assert refused.status_code == 409, refused.text
    assert {(e["field"], e["rule"]) for e in refused.json()["errors"]} == {("fee", "fee_unpaid")}

    order = create_order(stack, case, gateway)
    assert order["state"] in ("created", "pending") and order["amount_fen"] == fee["amount_fen"], order
    again = httpx.post(f"{stack.api}/api/v1/payments", timeout=60, json={
        "tracking_no": case.tracking_no, "query_code": case.query_code, "gateway": gateway})
    assert again.status_code == 200 and again.json()["order_no"] == order["order_no"], again.text  # one order

    with browser() as applicant:
        back = pay_at_cashier(applicant, order["pay_url"], order)
        returned = applicant.get(back.headers["location"])
        assert returned.status_code == 200 and "支付结果以支付机构通知为准" in returned.text, returned.text[:500]
    paid = wait_for(lambda: (o := order_of(stack, case, order["order_no"]))["state"] == "paid" and o,
                    f"order {order['order_no']} paid by the {gateway} notification", stack)
    assert paid_by(paid) == ["notification"], paid["history"]
    assert [n.outcome for n in inbox(stack, order["order_no"])] == ["applied"]

    for role, action in steps[steps.index(next(s for s in steps if s[1] == blocked_at)):]:
        done = act(stack, case, role, action)
        assert done.status_code == 200, done.text
    assert done.json()["state"] == "completed"
    assert httpx.get(f"{stack.api}/api/v1/cases/{case.tracking_no}/fee", params={"query_code": case.query_code},
                     timeout=30).json()["status"] == "paid"
    wait_for(lambda: "payment.paid.v1" in payment_events(stack, order["order_no"]),
             "payment.paid.v1 published on hub.events", stack)
    assert payment_events(stack, order["order_no"]).count("payment.paid.v1") == 1


FORGERIES = [("alipay", "forge_signature"), ("alipay", "wrong_amount"), ("alipay", "wrong_merchant"),
             ("alipay", "wrong_app"), ("unionpay", "forge_signature"), ("unionpay", "wrong_amount"),
             ("unionpay", "wrong_merchant")]


@pytest.mark.parametrize("gateway,fault", FORGERIES)
def test_a_forged_or_mismatched_notification_changes_nothing(stack: Stack, gateway: str, fault: str) -> None:
    case, order = new_fee_order(stack, gateway)
    with faults(stack, gateway, **{fault: True}):
        pay_without_browser(stack, gateway, order["order_no"])
        # The hub refused it, the mock resent it, the hub refused it again.
        answered = wait_for(lambda: (a := answers_to(stack, gateway, order["order_no"])) and len(a) >= 2 and a,
                            f"the {fault} notification answered twice", stack)
    assert not any(a["acknowledged"] for a in answered), answered  # failure / 400: the gateway keeps trying
    state = order_of(stack, case, order["order_no"])
    assert "notification" not in paid_by(state), state["history"]  # at most the query job's own finding
    stored = inbox(stack, order["order_no"])
    assert all(row.outcome == "rejected" for row in stored), stored
    if fault == "forge_signature":
        assert stored == []  # never stored: a forger's notify id takes no one's place


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_duplicate_and_out_of_order_notifications_are_applied_once(stack: Stack, gateway: str) -> None:
    case, order = new_fee_order(stack, gateway)
    with faults(stack, gateway, duplicate=True, out_of_order=True):
        pay_without_browser(stack, gateway, order["order_no"])
        wait_for(lambda: len(inbox(stack, order["order_no"])) >= 2 and
                 order_of(stack, case, order["order_no"])["state"] == "paid",
                 "the paid and the older notification both received", stack)
    state = order_of(stack, case, order["order_no"])
    assert state["state"] == "paid" and paid_by(state) == ["notification"], state["history"]
    outcomes = [row.outcome for row in inbox(stack, order["order_no"])]
    assert outcomes.count("applied") == 1 and "stale" in outcomes, outcomes
    assert len({row.notify_id for row in inbox(stack, order["order_no"])}) == len(outcomes)  # each stored once


def _merchant_signed(fields: dict[str, str], private_pem: str) -> dict[str, str]:
    """A UnionPay-style request signed as the merchant: SHA256withRSA over the lowercase SHA-256 hex of the
    sorted ``k=v&…`` of every non-empty field but ``signature`` (the merchant key the mock issued)."""
    base = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature" and fields[k] != "")
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    digest = hashlib.sha256(base.encode()).hexdigest().encode()
    return {**fields, "signature": base64.b64encode(key.sign(digest, padding.PKCS1v15(), hashes.SHA256())).decode()}


def test_a_genuine_notification_for_an_order_the_hub_never_issued_changes_nothing(stack: Stack) -> None:
    """The gateway really took money for an order number the hub never issued (a request signed with the
    merchant's key, not made by the hub): its genuine notification is kept as rejected, creates nothing."""
    case, order = new_fee_order(stack, "unionpay")
    with browser() as applicant:
        page = applicant.get(order["pay_url"])
        method, action, fields = next(iter(forms_of(page).values()))  # the hub's own signed request …
        unknown = order["order_no"][:-6] + f"{(int(order['order_no'][-6:]) + 1) % 10**6:06d}"
        forged = _merchant_signed({**fields, "orderId": unknown}, stack.keys["unionpay"]["merchant_private_key"])
        cashier = applicant.request(method, action, data=forged)  # … for another order number
        assert cashier.status_code == 200 and unknown in cashier.text, cashier.text[:500]
        _, pay_action, pay_fields = forms_of(cashier)["pay"]
        assert applicant.post(pay_action, data=pay_fields, follow_redirects=False).status_code == 303
    answered = wait_for(lambda: answers_to(stack, "unionpay", unknown), "the hub answering the notification", stack)
    assert not any(a["acknowledged"] for a in answered), answered
    assert [(row.outcome) for row in inbox(stack, unknown)] == ["rejected"]
    assert stack.sql("SELECT count(*) AS n FROM payment_orders WHERE order_no = :o", o=unknown)[0].n == 0
    assert httpx.get(f"{stack.api}/api/v1/payments/{unknown}", params={"query_code": case.query_code},
                     timeout=30).status_code == 404
    assert order_of(stack, case, order["order_no"])["state"] in ("created", "pending")  # the real one untouched


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_payment_whose_notifications_were_lost_is_found_by_the_query_job(stack: Stack, gateway: str) -> None:
    case, order = new_fee_order(stack, gateway)
    with faults(stack, gateway, lose_notifications=True):
        pay_without_browser(stack, gateway, order["order_no"])
        paid = wait_for(lambda: (o := order_of(stack, case, order["order_no"]))["state"] == "paid" and o,
                        "the worker's query job finding the payment", stack)
    assert paid_by(paid) == ["query"], paid["history"]
    assert inbox(stack, order["order_no"]) == []


def test_the_same_notification_at_two_api_processes_at_once_is_applied_once(stack: Stack) -> None:
    case, order = new_fee_order(stack, "alipay", api=stack.api_b)  # called back through the fan-out relay
    pay_without_browser(stack, "alipay", order["order_no"])
    paid = wait_for(lambda: (o := order_of(stack, case, order["order_no"]))["state"] == "paid" and o,
                    "the order paid", stack)
    relayed = wait_for(lambda: [a for a in stack.relay.answers if order["order_no"] in a["body"]],
                       "the relay's record", stack)
    assert all(status == 200 and body.strip() == "success" for status, body in relayed[0]["answers"]), relayed
    assert paid_by(paid) == ["notification"], paid["history"]
    assert [row.outcome for row in inbox(stack, order["order_no"])] == ["applied"]
    wait_for(lambda: "payment.paid.v1" in payment_events(stack, order["order_no"]), "payment.paid.v1", stack)
    assert payment_events(stack, order["order_no"]).count("payment.paid.v1") == 1


def test_a_refund_retried_after_a_timeout_refunds_once(stack: Stack) -> None:
    case, order = new_fee_order(stack, "alipay")
    pay_without_browser(stack, "alipay", order["order_no"])
    wait_for(lambda: order_of(stack, case, order["order_no"])["state"] == "paid", "paid", stack)
    calls_before = refund_calls(stack)
    # Slower than HUB_PAYMENTS_TIMEOUT_S: the gateway refunds, but the hub times out and hears nothing.
    with faults(stack, "alipay", slow_ms=3000):
        withdrawn = httpx.post(f"{stack.api}/api/v1/applications/{case.tracking_no}/withdraw", headers=case.headers,
                               json={"reason": "申请人主动撤回申请"}, timeout=60)
        assert withdrawn.status_code == 200, withdrawn.text
        wait_for(lambda: trade_at_gateway(stack, "alipay", order["order_no"])["refunds"],
                 "the gateway refunding the first (timed out) request", stack)
    refunded = wait_for(lambda: (o := order_of(stack, case, order["order_no"]))["state"] == "refunded" and o,
                        "the refund retried and confirmed", stack, timeout_s=60)
    assert [h["to_state"] for h in refunded["history"]].count("refunded") == 1, refunded["history"]
    refunds = stack.sql("SELECT r.refund_no, r.state, r.attempts FROM payment_refunds r JOIN payment_orders o "
                        "ON o.id = r.order_id WHERE o.order_no = :o", o=order["order_no"])
    assert len(refunds) == 1 and refunds[0].state == "succeeded", refunds
    assert refund_calls(stack) - calls_before >= 2  # asked again (same request number) after the timeout
    trade = trade_at_gateway(stack, "alipay", order["order_no"])
    assert [r["refund_no"] for r in trade["refunds"]] == [refunds[0].refund_no], trade  # refunded once
    assert trade["refunded_fen"] == order["amount_fen"], trade


def refund_calls(live: Stack) -> int:
    """How many refund requests the Alipay mock received (its request counters)."""
    control = httpx.get(f"{live.mocks['alipay']}/_control", timeout=60, trust_env=False).raise_for_status().json()
    return int(control["requests"]["by_operation"].get("alipay.trade.refund", 0))


def test_a_browser_return_never_marks_paid_and_reconciliation_finds_the_payment(stack: Stack) -> None:
    """Last: the worker is stopped (the hub hears nothing and queries nothing), so only the operator's
    reconciliation can find what the gateway took."""
    worker = stack.processes["worker"]
    worker.process.send_signal(signal.SIGINT)
    orders = {gateway: new_fee_order(stack, gateway) for gateway in GATEWAYS}  # while it stops
    _stop(worker)
    for gateway, (case, order) in orders.items():
        with faults(stack, gateway, lose_notifications=True), browser() as applicant:
            back = pay_at_cashier(applicant, order["pay_url"], order)
            returned = applicant.get(back.headers["location"])
            assert returned.status_code == 200 and "支付结果以支付机构通知为准" in returned.text
        state = order_of(stack, case, order["order_no"])
        assert state["state"] in ("created", "pending") and paid_by(state) == [], state
    day = next(iter(orders.values()))[1]["order_no"][1:9]
    with ThreadPoolExecutor(len(GATEWAYS)) as pool:  # the operator reconciles both gateways' day
        ran = dict(zip(GATEWAYS, pool.map(lambda g: stack.hub(
            "payments", "reconcile", "--gateway", g, "--date", f"{day[:4]}-{day[4:6]}-{day[6:]}", "--json"),
            GATEWAYS), strict=True))
    for gateway, (case, order) in orders.items():
        assert ran[gateway].code == 2, ran[gateway]  # differences found
        report = json.loads(ran[gateway].stdout)
        assert report["status"] == "differences", report
        found_by = [d for d in report["differences"] if d["order_no"] == order["order_no"]]
        assert [(d["kind"], d["corrected"]) for d in found_by] == [("missing_at_hub", True)], report
        found = order_of(stack, case, order["order_no"])
        assert found["state"] == "paid" and paid_by(found) == ["statement"], found["history"]
