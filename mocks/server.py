"""One mock counterpart served by uvicorn in a background thread, able to stop listening and come back.

"Connection refused" is simulated for real: the listening socket is closed and idle keep-alive
connections are dropped, so clients see ECONNREFUSED; ``recover`` binds the same port again. The
server owns its ``FaultState`` so that its own control API, the runner's control plane and test
code all act on one set of switches.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from mocks.faults import FaultState, WireProtocol

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
_POLL_S = 0.01

AppFactory = Callable[["MockServer"], Any]


class QuietServer(uvicorn.Server):
    """uvicorn wakes ten times a second to refresh its Date header and look at ``should_exit``; with the
    seven mocks `hub up` starts, that was most of an idle hub's CPU. This one refreshes once a second (as
    uvicorn does) and wakes at once when told to exit."""

    TICK_S = 1.0

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return bool(self.__dict__.get("_should_exit", False))

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self.__dict__["_should_exit"] = value
        loop, wake = self.__dict__.get("_tick_loop"), self.__dict__.get("_tick_wake")
        if value and loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing is waiting
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        self.__dict__["_tick_wake"] = wake = asyncio.Event()
        self.__dict__["_tick_loop"] = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # on_tick refreshes the Date header when counter % 10 == 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.TICK_S)
            should_exit = await self.on_tick(counter)


class MockServer:
    """A named mock on ``host:port`` (port 0 picks a free port, kept across refuse/recover)."""

    def __init__(self, name: str, protocol: WireProtocol, app_factory: AppFactory, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.name = name
        self.protocol = protocol
        self.host = host
        self.port = port
        self.faults = FaultState(name, protocol)
        self.app = app_factory(self)
        self._lock = threading.RLock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._old_threads: list[threading.Thread] = []
        self._timer: threading.Timer | None = None

    # --- addresses --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"{self.url}/_control"

    @property
    def listening(self) -> bool:
        return self.faults.listening

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind, serve in a daemon thread and return once the server accepts connections."""
        with self._lock:
            sock = self._bind()
            config = uvicorn.Config(
                self.app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                loop="asyncio", http="h11", timeout_graceful_shutdown=1, timeout_keep_alive=5,
            )
            server = QuietServer(config)
            thread = threading.Thread(target=self._serve, args=(server, sock), name=f"mock-{self.name}", daemon=True)
            self._server, self._thread = server, thread
            thread.start()
            self._wait_started(server, thread)
            self.faults.listening = True

    def _bind(self) -> socket.socket:
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
        # TCP, and without it every keep-alive response stalls ~40 ms (Nagle vs delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        # SO_REUSEADDR lets recover() bind the same port while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        return sock

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        asyncio.run(serve())

    @staticmethod
    def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("mock server thread ended during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("mock server did not start in time")
            time.sleep(_POLL_S)

    def stop(self) -> None:
        """Shut down for good (used when the runner stops)."""
        self.join(self.signal_stop())

    def signal_stop(self) -> list[threading.Thread]:
        """Ask the server to shut down; returns the threads to join (lets a runner stop many at once)."""
        with self._lock:
            self._cancel_timer()
            if self._server is not None:
                self._server.should_exit = True
            threads = [*self._old_threads, *([self._thread] if self._thread else [])]
            self._server, self._thread, self._old_threads = None, None, []
            self.faults.listening = False
        return threads

    @staticmethod
    def join(threads: list[threading.Thread]) -> None:
        for thread in threads:
            thread.join(_STOP_TIMEOUT_S)

    # --- connection refused and recovery ----------------------------------------------------------

    def refuse(self, for_ms: int | None = None) -> None:
        """Stop listening; with ``for_ms``, recover by itself after that long."""
        with self._lock:
            server, loop = self._server, self._loop
            if server is None or not self.faults.listening:
                return
            self.faults.listening = False
            if loop is not None and _running_in(loop):
                # Called by our own control endpoint: close right here so that the port is dark by
                # the time the control response reaches the caller.
                _close_listeners(server)
            elif loop is not None:
                done = threading.Event()
                loop.call_soon_threadsafe(lambda: (_close_listeners(server), done.set()))
                done.wait(_STOP_TIMEOUT_S)
            if self._thread is not None:
                self._old_threads.append(self._thread)
            self._server, self._thread = None, None
            self._cancel_timer()
            if for_ms is not None:
                self._timer = threading.Timer(for_ms / 1000, self.recover)
                self._timer.daemon = True
                self._timer.start()

    def recover(self) -> None:
        """Clear every fault and listen again if the port was dark."""
        with self._lock:
            self._cancel_timer()
            self.faults.clear()
            if not self.faults.listening:
                self.start()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "control_url": self.control_url, **self.faults.snapshot()}


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _close_listeners(server: uvicorn.Server) -> None:
    # What uvicorn's own shutdown does first, done synchronously: stop accepting, then ask every
    # connection to close (an in-flight response is finished first, idle keep-alives close now).
    for listener in getattr(server, "servers", []):
        listener.close()
    for connection in list(server.server_state.connections):
        connection.shutdown()
    server.should_exit = True
