"""Runs an ASGI app under a real uvicorn server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

_LOWEST_PORT = 10000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port free now and outside the kernel's ephemeral range. A port the kernel hands out for ``bind(0)`` is one
    it also hands to outgoing connections: between choosing it and a server's bind (a `hub api` started after
    `hub db upgrade`, `db seed` and a worker that connects to PostgreSQL and RabbitMQ) a client socket took one in
    a full run (``[Errno 98] address already in use``). Below the range no client socket is ever given it."""
    low, _ = _ephemeral_range()
    for port in (random.randrange(_LOWEST_PORT, low) for _ in range(200 if low - _LOWEST_PORT >= 1000 else 0)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # an unusual range setting: the kernel's choice, as before
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(size: int) -> int:
    """A first port such that it and the next ``size - 1`` are free (the mocks take consecutive ports)."""
    for _ in range(50):
        base = free_port()
        if base + size >= 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {size} consecutive free ports")


@contextmanager
def serving(app: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
