"""hub/serving.py: each worker process of `hub api --workers N` accepts on a listening socket of its own."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from hub.serving import ReusePortListener, reuse_port_socket

HOST = "127.0.0.1"


@contextmanager
def held_address() -> Iterator[int]:
    """A port held as `serve_workers` holds it (bound with SO_REUSEPORT, not listening)."""
    holder = reuse_port_socket(HOST, 0)
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def unpickled(listener: ReusePortListener) -> socket.socket:
    # What each worker process does with the listener uvicorn's supervisor passes to it.
    return pickle.loads(pickle.dumps(listener))


def test_each_unpickled_listener_is_a_listening_socket_of_its_own_on_the_held_port() -> None:
    with held_address() as port, ExitStack() as stack:
        first, second = (stack.enter_context(unpickled(ReusePortListener(HOST, port, 64))) for _ in range(2))
        assert first.fileno() != second.fileno()
        assert first.getsockname() == second.getsockname() == (HOST, port)
        assert first.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1


def test_connections_opened_together_are_spread_over_the_workers_sockets() -> None:
    # 32 connections at once, nobody accepting yet: with one shared socket the first worker to wake took them
    # all; with a socket per worker the kernel spreads them (all in one of two: 1 in 2 billion).
    with held_address() as port, ExitStack() as stack:
        sockets = [stack.enter_context(unpickled(ReusePortListener(HOST, port, 64))) for _ in range(2)]
        clients = [stack.enter_context(socket.create_connection((HOST, port), timeout=10)) for _ in range(32)]
        accepted = []
        for listening in sockets:
            listening.settimeout(0)
            count = 0
            while True:
                try:
                    connection, _ = listening.accept()
                except BlockingIOError:
                    break
                stack.enter_context(connection)
                count += 1
            accepted.append(count)
        assert sum(accepted) == len(clients)
        assert all(count > 0 for count in accepted), accepted


def test_an_address_another_program_listens_on_fails_at_once() -> None:
    # No SO_REUSEPORT on the other program's socket: the port is not shareable.
    with socket.create_server((HOST, 0)) as taken, pytest.raises(OSError):
        reuse_port_socket(HOST, taken.getsockname()[1]).close()
