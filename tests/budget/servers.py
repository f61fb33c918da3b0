"""A real ``redis-server`` and the simulator, each in a process of its own, for the budget's tests and benchmark; and
the type of the fakeredis factory fixture."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.budget.shared import SharedBudget

Factory = Callable[..., SharedBudget]


ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    """A ``redis-server`` of the test's own, on a free loopback port, in a temporary folder, without persistence:
    stopped, it comes back empty (the harshest restart)."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        assert executable is not None
        args = [executable, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen([*args, "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


SIMULATOR_SLOTS = 4  # the simulated account's tasks in flight
SIMULATOR_RENDER_TIME = 1.0


@contextmanager
def simulator_process(*, slots: int = SIMULATOR_SLOTS, render_time: float = SIMULATOR_RENDER_TIME) -> Iterator[str]:
    """The Kling-compatible simulator in a process of its own on a free loopback port, its account capped at ``slots``
    tasks in flight (1303 past them): its base URL while it runs."""
    port = free_port()
    command = [sys.executable, "-m", "orchestrator", "simulate", "--port", str(port), "--render-time", str(render_time)]
    command += ["--render-jitter", "0", "--concurrency-cap", str(slots), "--cheap-video", "--no-caption", "--seed", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the simulator exited"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
