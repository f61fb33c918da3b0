"""Fixtures of the shared budget: an in-process fakeredis with Lua, and a real ``redis-server`` on loopback."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.budget.config import BudgetConfig
from orchestrator.budget.shared import SharedBudget
from tests.budget.servers import Factory, RedisServer, simulator_process

pytest.importorskip("redis", reason="the shared budget's tests need redis-py: pip install 'orchestrator[studio]'")
fakeredis = pytest.importorskip("fakeredis", reason="the script tests need fakeredis[lua]")
pytest.importorskip("lupa", reason="fakeredis runs Lua scripts with lupa: pip install 'fakeredis[lua]'")


@pytest.fixture
def fake_server() -> Any:
    return fakeredis.FakeServer()


@pytest.fixture
async def make_budget(fake_server: Any) -> AsyncIterator[Factory]:
    """``make_budget(slots=2, project=..., host=..., units_cap=..., lease_ttl=...)``: runs sharing one fake Redis."""
    opened: list[SharedBudget] = []

    def make(
        *,
        slots: int = 2,
        project: str = "trailer",
        host: str = "render-01",
        units_cap: float | None = None,
        **more: Any,
    ) -> SharedBudget:
        config = BudgetConfig(url="redis://127.0.0.1:6379/0", slots=slots, units_cap=units_cap, **more)
        client = fakeredis.FakeAsyncRedis(server=fake_server, decode_responses=True)
        budget = SharedBudget(config, client, project=project, host=host)
        opened.append(budget)
        return budget

    yield make
    for budget in opened:
        await budget.aclose()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/run installs Debian's redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def simulator() -> Iterator[str]:
    """The simulator in its own process, its account capped at 4 tasks in flight: its base URL."""
    with simulator_process() as base_url:
        yield base_url
