"""A run's session on the shared budget: the leases it holds, and Redis going away and coming back mid-run."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from orchestrator.budget.session import BudgetSession
from orchestrator.budget.shared import Outcome
from tests.budget.servers import Factory

pytestmark = pytest.mark.anyio


def session_of(budget: Any, notices: list[str]) -> BudgetSession:
    return BudgetSession(budget, notice=notices.append, backoff_base=0.01, backoff_cap=0.05)


async def test_the_leases_held_are_refreshed_in_one_call_and_unknown_ones_lapse(make_budget: Factory) -> None:
    session = session_of(make_budget(slots=3, lease_ttl=0.5), [])
    for key in ("ext-1", "ext-2", "ext-3"):
        assert (await session.admit(key, units=1)).admitted
    await session.bind("ext-1", "task-1")
    session.unknown("ext-3")  # its create's answer never came: the task may exist
    for _ in range(3):  # 0.75 s in all: past the ttl
        await anyio.sleep(0.25)
        await session.refresh()
    assert {lease.key for lease in (await session.budget.state()).leases} == {"task-1", "ext-2"}
    assert set(session.held) == {"task-1", "ext-2"}


async def test_adopted_tasks_of_an_earlier_run_hold_slots_again(make_budget: Factory) -> None:
    session = session_of(make_budget(slots=2), [])
    await session.adopt(["task-1", "task-2"], units=1)
    assert (await session.budget.admit("ext-3", units=1)).outcome is Outcome.FULL
    await session.release("task-1", charged=1)
    assert (await session.admit("ext-3", units=1)).admitted


async def test_redis_away_mid_run_loses_and_doubles_nothing(make_budget: Factory, fake_server: Any) -> None:
    notices: list[str] = []
    session = session_of(make_budget(slots=2), notices)
    await session.admit("ext-1", units=2)
    await session.admit("ext-2", units=2)
    fake_server.connected = False
    # Following its tasks goes on: nothing raises, what Redis cannot hear is kept.
    await session.bind("ext-1", "task-1")
    await session.refresh()
    await session.release("ext-2", charged=2)
    await session.cool_down(0.05)
    assert session.away and len(notices) == 1 and "cannot be reached" in notices[0]
    assert not await session.catch_up()

    async def back_soon() -> None:
        await anyio.sleep(0.1)
        await come_back_empty(session, fake_server)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(back_soon)
            admitted = await session.admit("ext-3", units=2)  # waits for Redis, says so once
    assert admitted.admitted and not session.away
    assert len(notices) == 2 and "answers again" in notices[1]
    state = await session.budget.state()
    # Redis came back empty: the task followed was taken back, the release told once, the new one admitted.
    assert {lease.key for lease in state.leases} == {"task-1", "ext-3"}
    assert state.spent == 2
    assert session.outages == 1


async def come_back_empty(session: BudgetSession, fake_server: Any) -> None:
    fake_server.connected = True
    await session.budget._client.flushall()  # the harshest restart: nothing persisted


async def test_the_end_of_a_run_tells_redis_its_last_releases(make_budget: Factory, fake_server: Any) -> None:
    session = session_of(make_budget(slots=2), [])
    await session.admit("ext-1", units=1)
    await session.bind("ext-1", "task-1")
    fake_server.connected = False
    await session.release("task-1", charged=1.5)
    fake_server.connected = True
    assert await session.catch_up()
    state = await session.budget.state()
    assert (state.in_use, state.spent) == (0, 1.5)


async def test_over_the_cap_is_answered_not_waited_for(make_budget: Factory) -> None:
    session = session_of(make_budget(slots=4, units_cap=5), [])
    assert (await session.admit("ext-1", units=3)).admitted
    over = await session.admit("ext-2", units=3)
    assert over.outcome is Outcome.OVER_CAP and "2 left" in str(over.exhausted(3))
    assert "ext-2" not in session.held
