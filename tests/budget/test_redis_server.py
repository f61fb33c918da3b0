"""The shared budget against a real ``redis-server`` of the test's own: runs in several processes, one killed with
SIGKILL, and Redis itself stopped and started again under a client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from orchestrator.budget.config import BudgetConfig
from orchestrator.budget.shared import Outcome, SharedBudget
from orchestrator.errors import BudgetUnavailableError
from tests.budget.servers import RedisServer

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("worker.py")


def start_worker(*args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(WORKER), *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen[str]) -> dict[str, int]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


def start_holding(url: str, project: str, slots: int, ttl: float, *keys: str) -> None:
    """A run that takes a slot for each of ``keys``, then dies by SIGKILL (it never refreshes nor releases)."""
    process = start_worker("hold", url, project, slots, ttl, *keys)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL


def reader(url: str) -> SharedBudget:
    return SharedBudget.connect(BudgetConfig(url=url, slots=1), project="test")


async def test_runs_in_three_processes_never_pass_the_shared_slots(redis_server: RedisServer) -> None:
    slots, tasks_each = 4, 12
    workers = [start_worker("render", redis_server.url, project, tasks_each, slots) for project in ("a", "b", "c")]
    peaks = [finish(worker)["peak"] for worker in workers]
    assert 2 <= max(peaks) <= slots  # shared (each process renders one task at a time), and never passed
    async with reader(redis_server.url) as budget:
        state = await budget.state()
    assert (state.in_use, state.spent, state.slots) == (0, 3 * tasks_each, slots)


async def test_a_killed_runs_slots_stay_taken_then_come_back(redis_server: RedisServer) -> None:
    ttl = 4.0  # room for a Python process to start again on a loaded machine, within the lease's life
    start_holding(redis_server.url, "killed", 3, ttl, "task-1", "task-2")
    config = BudgetConfig(url=redis_server.url, slots=3, lease_ttl=ttl)
    async with SharedBudget.connect(config, project="other") as other:
        assert (await other.admit("o1", units=1)).admitted
        assert (await other.admit("o2", units=1)).outcome is Outcome.FULL  # its tasks are still at the provider
        # Started again within the ttl: it refreshes its tasks' leases (taking none twice) and releases them.
        assert finish(start_worker("resume", redis_server.url, "killed", 3, ttl, "task-1", "task-2")) == {"retaken": 0}
        state = await other.state()
        assert (state.in_use, state.spent) == (1, 2)  # nothing billed twice

        # Killed again, never started again: after the ttl, its slots come back by themselves.
        start_holding(redis_server.url, "killed", 3, ttl, "task-3", "task-4")
        assert (await other.admit("o2", units=1)).outcome is Outcome.FULL
        await anyio.sleep(ttl + 0.2)
        assert (await other.admit("o2", units=1)).admitted
        assert (await other.admit("o3", units=1)).admitted
        assert {lease.project for lease in (await other.state()).leases} == {"other"}


async def test_redis_stopped_and_started_again_loses_and_doubles_nothing(redis_server: RedisServer) -> None:
    config = BudgetConfig(url=redis_server.url, slots=2, timeout=0.5)
    async with SharedBudget.connect(config, project="trailer") as budget:
        for key in ("a", "b"):
            assert (await budget.admit(f"ext-{key}", units=1)).admitted
            await budget.bind(f"ext-{key}", f"task-{key}", units=1)
        redis_server.stop()
        with pytest.raises(BudgetUnavailableError) as caught:
            await budget.admit("ext-c", units=1)
        assert f"127.0.0.1:{redis_server.port}" in str(caught.value) and "\n" not in str(caught.value)
        with pytest.raises(BudgetUnavailableError):
            await budget.refresh(["task-a", "task-b"])
        redis_server.start()  # empty: it kept nothing
        with anyio.fail_after(10):
            await budget.wait_reachable(base=0.05, cap=0.2)
        # The gate refreshes the tasks it follows before it admits again: their slots are taken back, once.
        assert await budget.refresh(["task-a", "task-b"]) == 2
        assert (await budget.admit("ext-c", units=1)).outcome is Outcome.FULL
        for key in ("a", "b"):
            await budget.release(f"task-{key}", charged=1)
        assert (await budget.admit("ext-c", units=1)).admitted
        state = await budget.state()
        assert (state.in_use, state.spent) == (1, 2)
