"""Running the simulator: in a background thread (``LocalSimulator``) or in the foreground (``serve_forever``).

Why a thread: the orchestrator's scheduler runs its own event loop, and the simulator must keep answering while the
scheduler is busy; the server gets its own loop in its own thread, and renders (CPU-bound) go to a pool of two
worker threads, one per core of the machine this was sized for.

The listening socket is bound before uvicorn starts, so port 0 (any free port) works, the base URL is known at once,
and a port already in use is a clean ``ConfigError`` rather than uvicorn exiting the process.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import anyio
import uvicorn

from orchestrator.errors import ConfigError
from orchestrator.listen import bind_socket, url_for
from orchestrator.providers.local.app import create_app
from orchestrator.providers.local.persist import StateStore
from orchestrator.providers.local.state import (
    LOCAL_ACCESS_KEY,
    LOCAL_SECRET_KEY,
    SimulatorOptions,
    SimulatorState,
    SimulatorStats,
)

RENDER_WORKERS = 2
STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 10.0
_LOOPBACK_NAMES = ("localhost",)
DEFAULT_OPTIONS = SimulatorOptions()


class _DropNoise(logging.Filter):
    """Injected drops make uvicorn log an error each time; they are on purpose, so keep them out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("ASGI callable returned without completing response")


logging.getLogger("uvicorn.error").addFilter(_DropNoise())


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, *, allow_remote: bool = False) -> None:
    """Refuse a non-loopback address unless asked: the simulator takes any key and its admin routes have no auth."""
    if not allow_remote and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host}: the simulator accepts any key and anyone reaching it can change its "
            "behaviour; use 127.0.0.1, or pass --allow-remote if you really mean to expose it"
        )


def _storage(wanted: Path | None) -> Path:
    try:
        if wanted is None:
            return Path(tempfile.mkdtemp(prefix="orchestrator-sim-"))
        wanted.mkdir(parents=True, exist_ok=True)
        return wanted
    except OSError as exc:
        raise ConfigError(f"cannot use {wanted or 'a temporary directory'} for simulator videos: {exc}") from None


class _Parts:
    """The pieces one running simulator owns: state, storage, render pool and the uvicorn server."""

    def __init__(self, options: SimulatorOptions, *, log_level: str, access_log: bool, own_logging: bool) -> None:
        self.store = StateStore(options.state_dir) if options.state_dir is not None else None
        self.state = SimulatorState(options, store=self.store)
        self.own_storage = options.storage_dir is None and self.store is None
        self.storage: Path = self.store.videos if self.store is not None else _storage(options.storage_dir)
        self.executor = ThreadPoolExecutor(max_workers=RENDER_WORKERS, thread_name_prefix="sim-render")
        self.stopping = threading.Event()
        app = create_app(state=self.state, storage_dir=self.storage, executor=self.executor, stopping=self.stopping)
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=access_log,
            lifespan="off",
            timeout_graceful_shutdown=2,
            # Embedded, the host program owns logging; standalone, uvicorn's usual console format is right.
            log_config=uvicorn.config.LOGGING_CONFIG if own_logging else None,
        )
        self.server = uvicorn.Server(config)

    def close(self) -> None:
        # Renders in progress stop at their next frame (a full-size one takes seconds; Ctrl-C should not wait).
        self.stopping.set()
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.store is not None:
            self.store.close()
        if self.own_storage:
            shutil.rmtree(self.storage, ignore_errors=True)


class LocalSimulator:
    """The Kling-compatible simulator, serving on loopback from a background thread.

    Use it as a context manager (``with LocalSimulator(options) as sim: ...``); point a client at ``sim.base_url``
    with any key (``LOCAL_API_KEY`` by convention), or under the kling dialect with JWTs signed by
    ``LOCAL_SECRET_KEY`` and issued by ``LOCAL_ACCESS_KEY``. ``stats()`` and ``configure()`` act on the live server.
    """

    LOCAL_API_KEY: ClassVar[str] = "local-simulator-key"
    # The kling dialect's key pair: the simulator checks JWTs signed with this secret and issued by this access key.
    LOCAL_ACCESS_KEY: ClassVar[str] = LOCAL_ACCESS_KEY
    LOCAL_SECRET_KEY: ClassVar[str] = LOCAL_SECRET_KEY

    def __init__(self, options: SimulatorOptions = DEFAULT_OPTIONS, *, host: str = "127.0.0.1", port: int = 0):
        check_host(host)
        self._options = options
        self.host = host
        self.port = port
        self.base_url = ""
        self._parts: _Parts | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def start(self) -> None:
        if self._parts is not None:
            return
        parts = _Parts(self._options, log_level="warning", access_log=False, own_logging=False)
        try:
            sock = bind_socket(self.host, self.port)
        except ConfigError:
            parts.close()
            raise
        self.base_url = url_for(sock)
        self._parts = parts
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="local-simulator", daemon=True)
        self._thread.start()
        self._wait_until_started()

    def _serve(self, sock: socket.socket) -> None:
        assert self._parts is not None
        try:
            anyio.run(self._parts.server.serve, [sock])
        except BaseException as exc:  # recorded for start() to report; the thread must not die silently
            self._failure = exc
        finally:
            sock.close()

    def _wait_until_started(self) -> None:
        assert self._parts is not None and self._thread is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._parts.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                failure = self._failure
                self.stop()
                raise ConfigError(f"the local simulator did not start: {failure or 'timed out'}")
            time.sleep(0.005)

    def stop(self) -> None:
        parts, thread = self._parts, self._thread
        self._parts, self._thread = None, None
        if parts is None:
            return
        self._options = parts.state.options
        parts.server.should_exit = True
        if thread is not None:
            thread.join(SHUTDOWN_TIMEOUT)
        parts.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def options(self) -> SimulatorOptions:
        """The options in force (including changes made through the admin route)."""
        return self._parts.state.options if self._parts is not None else self._options

    @property
    def state(self) -> SimulatorState:
        if self._parts is None:
            raise ConfigError("the local simulator is not running")
        return self._parts.state

    @property
    def storage_dir(self) -> Path:
        if self._parts is None:
            raise ConfigError("the local simulator is not running")
        return self._parts.storage

    def stats(self) -> SimulatorStats:
        """The counters (the same data as ``GET /_sim/stats``)."""
        return self.state.stats()

    def configure(self, **changes: Any) -> None:
        """Change fault knobs at runtime (the same as ``POST /_sim/config``); ``ConfigError`` on a bad name or value."""
        self._options = self.state.configure(changes)

    def reset(self) -> None:
        """Forget every task and counter."""
        self.state.reset()


def serve_forever(
    options: SimulatorOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    allow_remote: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until interrupted (uvicorn turns Ctrl-C into a clean shutdown).

    ``on_ready(base_url)`` is called once the socket is bound, before requests are served.
    """
    check_host(host, allow_remote=allow_remote)
    parts = _Parts(options, log_level="info", access_log=True, own_logging=True)
    try:
        sock = bind_socket(host, port)
    except ConfigError:
        parts.close()
        raise
    try:
        if on_ready is not None:
            on_ready(url_for(sock))
        parts.server.run(sockets=[sock])
    finally:
        sock.close()
        parts.close()
