"""Runs `hub` as an operator does: a new process with its own environment, its output captured.

Short commands run to completion (`run_hub`); long-running ones (`hub up`, `hub api`, `hub worker`,
`hub mocks`) are started, waited on by polling a condition (a port answering, rows in the database),
checked, then stopped with Ctrl-C (SIGINT) as an operator stops them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.servers import free_port, free_port_block  # noqa: F401  (the CLI tests take them from here)

ROOT = Path(__file__).resolve().parents[2]
DEMO_PASSWORD = "demo-Password-1"


def hub_executable() -> list[str]:
    """The installed `hub` entry point next to this interpreter (what an operator types)."""
    script = Path(sys.executable).with_name("hub")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hub.cli"]


def operator_env(data_dir: Path, **variables: str) -> dict[str, str]:
    """The caller's environment without any HUB_* setting, plus a data folder and readable logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATA_DIR=str(data_dir), HUB_LOG_JSON="false", HUB_LOG_LEVEL="WARNING", COLUMNS="200",
               PYTHONUNBUFFERED="1", NO_COLOR="1")
    env.update(variables)
    return env


@dataclass
class Ran:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\nexit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run_process(args: Sequence[str], env: dict[str, str], *, cwd: Path, timeout_s: float = 120) -> Ran:
    done = subprocess.run(list(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL)
    return Ran(list(args), done.returncode, done.stdout, done.stderr)


class Server:
    """A long-running command whose output goes to a log file."""

    def __init__(self, args: Sequence[str], env: dict[str, str], *, cwd: Path, log: Path) -> None:
        self.args = list(args)
        self.log = log
        with open(log, "wb") as handle:
            self.process = subprocess.Popen(self.args, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_until(self, condition: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"`{' '.join(self.args[-3:])}` exited ({self.process.returncode}) before {what}:\n"
                            f"{self.output()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"not within {timeout_s} s: {what}\n{self.output()[-4000:]}")
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                pytest.fail(f"`{' '.join(self.args)}` ignored signal {sig} for {timeout_s} s:\n{self.output()[-3000:]}")
        return int(self.process.returncode)


@contextmanager
def started(args: Sequence[str], env: dict[str, str], *, cwd: Path, log: Path) -> Iterator[Server]:
    server = Server(args, env, cwd=cwd, log=log)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)




def answers(url: str, status: int = 200) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == status
    except httpx.HTTPError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is unset: run scripts/test.sh (it starts PostgreSQL and RabbitMQ and exports it)")
    return value


@contextmanager
def fresh_postgres_database(prefix: str = "hub_cli") -> Iterator[str]:
    """An empty database of its own on the test PostgreSQL server, dropped afterwards."""
    base = make_url(required_env("HUB_TEST_POSTGRES_URL"))
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    # Plain SQLAlchemy, not hub.db: the partner-contract tests import this file and must import nothing of the hub.
    admin = create_engine(base.render_as_string(hide_password=False), poolclass=NullPool)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def count_rows(database_url: str, sql: str, **params: Any) -> int:
    """One number from the database a hub process wrote (plain SQLAlchemy: no hub import here)."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(sql), params).scalar_one())
    finally:
        engine.dispose()
