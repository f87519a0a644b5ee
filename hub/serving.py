"""`hub api --workers N`: uvicorn's worker processes, each accepting on a listening socket of its own.

uvicorn's own multi-process mode binds one socket in the supervisor and hands it to every worker; the workers
then race to accept from it, and asyncio accepts every connection waiting at once (up to the listen backlog) in
the worker that wakes first. A client that opens its keep-alive connections together — a city platform's
connection pool, a gateway, the submission benchmark's 16 — lands them all in one worker, which then serves
them alone for as long as they live while the others idle: measured with two workers (bench.submit, 12,000
submissions over 16 connections) one worker at 100 % of a core with all 16 connections, the other with none.

Here each worker binds its own socket to the same address with ``SO_REUSEPORT``, and the kernel spreads new
connections over the workers' sockets by a hash of each connection's addresses and ports, whichever worker is
awake (16 connections from one client: both of two workers get some, unless 1 in 30,000). The supervisor stays
uvicorn's (``Multiprocess``: health pings, a dead worker replaced, SIGHUP restarts, SIGTERM/SIGINT stop): it
is handed a ``ReusePortListener`` where it expects the socket, which each worker process it starts unpickles
into a socket bound there — a replaced worker binds a new one. The supervisor holds the address with a socket
bound the same way but not listening (the kernel hands connections to listening sockets only), so another
program cannot take the port between two workers' sockets and a port already in use fails the start at once.

What it costs: a worker that stops resets the connections still waiting in its own socket's accept queue
(not yet accepted: a client retries them) instead of leaving them to the others, as a shared socket did.
Linux only: elsewhere the workers share one socket as uvicorn makes them (BSD's and macOS's ``SO_REUSEPORT``
lets several sockets bind one port without spreading the connections over them).
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any, cast

log = logging.getLogger(__name__)


class ReusePortListener:
    """A listening address that becomes a socket of its own in each process that unpickles it."""

    def __init__(self, host: str, port: int, backlog: int) -> None:
        self.host, self.port, self.backlog = host, port, backlog

    def __reduce__(self) -> tuple[Any, tuple[str, int, int]]:
        return listening_socket, (self.host, self.port, self.backlog)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (and ``SO_REUSEADDR``), not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """This process's own listening socket on ``host:port`` (unpickling a ``ReusePortListener``)."""
    sock = reuse_port_socket(host, port)
    sock.listen(backlog)
    return sock


# uvicorn replaces a worker that does not answer its supervisor's ping within this time (5 s by default): on a
# loaded machine a busy but healthy worker missed it and was restarted, dropping its requests.
WORKER_HEALTHCHECK_TIMEOUT_S = 60


def serve(app: str, *, host: str, port: int, workers: int, **options: Any) -> None:
    """Serve the ASGI app at ``app`` (an import string: each worker imports it) with uvicorn: in this process for
    one worker, else in ``workers`` processes under uvicorn's supervisor, each on its own ``SO_REUSEPORT`` socket
    (see the module). ``options``: uvicorn's settings."""
    import uvicorn

    if workers == 1:
        uvicorn.run(app, host=host, port=port, **options)
        return
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(app, host=host, port=port, workers=workers,
                            timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT_S, **options)
    if not sys.platform.startswith("linux"):
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    holder = reuse_port_socket(host, port)  # the address is ours (or the start fails here, with the reason)
    try:
        bound_port = holder.getsockname()[1]  # port 0: the one the kernel chose, for every worker
        log.info("serving http://%s:%d with %d worker processes, each on its own socket (SO_REUSEPORT)", host,
                 bound_port, workers)
        listener = ReusePortListener(host, bound_port, config.backlog)
        Multiprocess(config, sockets=[cast(socket.socket, listener)]).run()
    finally:
        holder.close()
