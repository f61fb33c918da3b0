"""Running the review app: on 127.0.0.1 only, at a free port, in the foreground (the CLI) or in a thread (tests).

The socket is bound before uvicorn starts, so port 0 works and the address (with its token) is known at once; a port
in use is a ``ConfigError``, one line.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import anyio
import uvicorn

from orchestrator.errors import ConfigError
from orchestrator.listen import bind_socket
from orchestrator.review.api import Review
from orchestrator.review.app import create_app, new_token

HOST = "127.0.0.1"  # loopback only, always: the page decides on a production's takes
STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 5.0


def bind_loopback(port: int) -> socket.socket:
    return bind_socket(HOST, port, backlog=64)


def _server(review: Review, sock: socket.socket, token: str, *, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(review, token=token, port=sock.getsockname()[1]),
        log_level=log_level,
        access_log=False,  # the first request's address holds the token
        lifespan="off",
        proxy_headers=False,  # nothing sits in front of it: never trust X-Forwarded-*
        server_header=False,
        timeout_graceful_shutdown=1,
        log_config=None,
    )
    return uvicorn.Server(config)


def address(sock: socket.socket, token: str) -> str:
    return f"http://{HOST}:{sock.getsockname()[1]}/?token={token}"


class ReviewServer:
    """The review app in a background thread: ``with ReviewServer(review) as server: server.url ...``."""

    def __init__(self, review: Review, *, port: int = 0, token: str | None = None) -> None:
        self.review = review
        self.port = port
        self.token = token or new_token()
        self.url = ""  # with the token
        self.base_url = ""  # without it
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sock = bind_loopback(self.port)
        self.port = sock.getsockname()[1]
        self.url, self.base_url = address(sock, self.token), f"http://{HOST}:{self.port}"
        server = self._server = _server(self.review, sock, self.token, log_level="warning")

        def serve() -> None:
            try:
                anyio.run(server.serve, [sock])
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name="review-app", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError("the review app did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(SHUTDOWN_TIMEOUT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_forever(review: Review, *, port: int = 0, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until Ctrl-C (uvicorn turns it into a clean shutdown); ``on_ready(address)`` once the port is bound."""
    token = new_token()
    sock = bind_loopback(port)
    try:
        server = _server(review, sock, token, log_level="warning")
        if on_ready is not None:
            on_ready(address(sock, token))
        server.run(sockets=[sock])
    finally:
        sock.close()
