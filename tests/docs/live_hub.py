"""A live hub in production shape, for the tests that play a partner: `hub api` and `hub worker` as their own
processes on a fresh PostgreSQL database and a fresh RabbitMQ vhost, created from the test environment's
servers (HUB_TEST_POSTGRES_URL, HUB_TEST_AMQP_URL, HUB_TEST_RABBITMQ_MANAGEMENT_URL) and dropped afterwards.

The hub is driven only as an operator drives it — its command line, in new processes — so nothing here
imports the project's code: a partner's tests cannot lean on what a partner does not have. Without those
variables the tests that need this hub are skipped, with the reason.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.e2e.cli_support import Ran, Server, answers, free_port, hub_executable, operator_env, run_process

NEEDED = ("HUB_TEST_POSTGRES_URL", "HUB_TEST_AMQP_URL", "HUB_TEST_RABBITMQ_MANAGEMENT_URL")
KEEP = os.environ.get("HUB_TEST_EXCHANGE_KEEP") == "1"  # keep database and vhost for a post-mortem


def require_services() -> dict[str, str]:
    missing = [name for name in NEEDED if not os.environ.get(name)]
    if missing:
        pytest.skip(f"needs PostgreSQL and RabbitMQ ({', '.join(missing)} unset; scripts/test.sh sets them)")
    return {name: os.environ[name] for name in NEEDED}


@dataclass
class LiveHub:
    base_url: str  # http://127.0.0.1:<port>
    amqp_url: str  # the hub's (administrator's) URL, in the hub's vhost
    management_url: str
    vhost: str
    env: dict[str, str]  # the operator's environment: what `hub …` commands run with
    workdir: Path
    processes: dict[str, Server] = field(default_factory=dict)

    @property
    def amqp_host(self) -> str:
        return urlsplit(self.amqp_url).hostname or "127.0.0.1"

    @property
    def amqp_port(self) -> int:
        return urlsplit(self.amqp_url).port or 5672

    def amqp_url_for(self, user: str, password: str) -> str:
        """The URL a partner connects with: its own user and secret, the hub's vhost."""
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{self.amqp_host}:{self.amqp_port}"
        return urlunsplit(("amqp", netloc, "/" + quote(self.vhost, safe=""), "", ""))

    def hub(self, *args: str, timeout_s: float = 180) -> Ran:
        """One `hub` command, as the hub's operator types it."""
        return run_process([*hub_executable(), *args], self.env, cwd=self.workdir, timeout_s=timeout_s)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{server.output()[-3000:]}" for name, server in self.processes.items())


@contextmanager
def live_hub(workdir: Path) -> Iterator[LiveHub]:
    services = require_services()
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        database_url = stack.enter_context(_database(services["HUB_TEST_POSTGRES_URL"]))
        amqp_url, vhost = stack.enter_context(_vhost(services["HUB_TEST_AMQP_URL"],
                                                     services["HUB_TEST_RABBITMQ_MANAGEMENT_URL"]))
        port = free_port()
        env = operator_env(
            workdir / "var", HUB_DATABASE_URL=database_url, HUB_AMQP_URL=amqp_url,
            HUB_RABBITMQ_MANAGEMENT_URL=services["HUB_TEST_RABBITMQ_MANAGEMENT_URL"],
            HUB_SECRET_KEY=secrets.token_urlsafe(48), HUB_AUDIT_KEY=secrets.token_urlsafe(48),
        )
        live = LiveHub(f"http://127.0.0.1:{port}", amqp_url, services["HUB_TEST_RABBITMQ_MANAGEMENT_URL"].rstrip("/"),
                       vhost, env, workdir)
        for command in (("db", "upgrade"), ("db", "seed")):
            ran = live.hub(*command, timeout_s=300)
            if ran.code != 0:
                pytest.fail(f"`hub {' '.join(command)}` failed:\n{ran}")
        for name, args in (("worker", ["worker"]), ("api", ["api", "--port", str(port)])):
            server = Server([*hub_executable(), *args], env, cwd=workdir, log=workdir / f"{name}.log")
            live.processes[name] = server
            stack.callback(_stop, server)
        live.processes["api"].wait_until(lambda: answers(f"{live.base_url}/ready"), "the API answers /ready",
                                         timeout_s=180)
        live.processes["worker"].wait_until(lambda: _consuming(live), "the worker consumes hub.inbound.records",
                                            timeout_s=180)
        stack.callback(_delete_vhost_users, live)
        yield live


def wait_for(condition: Callable[[], object], what: str, *, timeout_s: float = 90, hub: LiveHub | None = None) -> None:
    """Poll ``condition`` until it is truthy (bounded), failing with ``what`` and the hub's logs."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g} s: {what}" + (f"\n{hub.logs()}" if hub else ""))
        time.sleep(0.2)


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


def _consuming(live: LiveHub) -> bool:
    user, password = _credentials(live.amqp_url)
    try:
        answer = httpx.get(f"{live.management_url}/api/queues/{quote(live.vhost, safe='')}/hub.inbound.records",
                           auth=(user, password), timeout=5, trust_env=False)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and int(answer.json().get("consumers", 0)) > 0


def _credentials(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return unquote(parts.username or ""), unquote(parts.password or "")


@contextmanager
def _database(server_url: str) -> Iterator[str]:
    base = make_url(server_url)
    name = f"hub_docs_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"cannot create a database on {base.host} ({type(exc).__name__}: {exc})")
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        if not KEEP:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def _vhost(amqp_url: str, management_url: str) -> Iterator[tuple[str, str]]:
    """A fresh vhost where the test environment's administrator may do anything (the hub's own user)."""
    user, password = _credentials(amqp_url)
    vhost = f"hub_docs_{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=management_url.rstrip("/"), auth=(user, password), timeout=15,
                      trust_env=False) as api:
        try:
            api.put(f"/api/vhosts/{vhost}").raise_for_status()
            api.put(f"/api/permissions/{vhost}/{quote(user, safe='')}",
                    json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        except httpx.HTTPError as exc:
            pytest.fail(f"cannot create a RabbitMQ vhost through {management_url} ({exc})")
        parts = urlsplit(amqp_url)
        try:
            yield urlunsplit(parts._replace(path="/" + quote(vhost, safe=""))), vhost
        finally:
            if not KEEP:
                api.delete(f"/api/vhosts/{vhost}")


def _delete_vhost_users(live: LiveHub) -> None:
    """The partner users `hub partners add` made for this vhost (named ``<vhost>.<code>``): users are
    broker-wide and would outlive the vhost."""
    if KEEP:
        return
    user, password = _credentials(live.amqp_url)
    with httpx.Client(base_url=live.management_url, auth=(user, password), timeout=15, trust_env=False) as api, \
            suppress(httpx.HTTPError):
        for entry in api.get("/api/users").json():
            if str(entry.get("name", "")).startswith(live.vhost + "."):
                api.delete(f"/api/users/{quote(entry['name'], safe='')}")
