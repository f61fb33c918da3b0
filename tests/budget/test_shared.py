"""The budget's scripts against fakeredis with Lua: admission, re-keying, refresh, expiry, cooldown, the spend cap."""

from __future__ import annotations

import random
from functools import partial

import anyio
import pytest

from orchestrator.budget.shared import Outcome
from orchestrator.errors import BudgetError, BudgetExhaustedError, BudgetUnavailableError
from tests.budget.servers import Factory

pytestmark = pytest.mark.anyio

SHORT_TTL = 0.3  # seconds: leases that lapse within a test, waited out with a little margin
LAPSE = SHORT_TTL + 0.15


async def test_admission_stops_at_the_slots_and_a_release_frees_one(make_budget: Factory) -> None:
    budget = make_budget(slots=2)
    assert (await budget.admit("ext-1", units=2)).admitted
    second = await budget.admit("ext-2", units=2)
    assert second.admitted and second.in_use == 2
    full = await budget.admit("ext-3", units=2)
    assert full.outcome is Outcome.FULL and full.in_use == 2
    assert await budget.release("ext-1", charged=2)
    assert (await budget.admit("ext-3", units=2)).admitted


async def test_the_slots_are_shared_by_runs_of_other_projects_and_hosts(make_budget: Factory) -> None:
    trailer = make_budget(slots=3, project="trailer", host="render-01")
    teaser = make_budget(slots=3, project="teaser", host="render-02")
    for key in ("t1", "t2"):
        assert (await trailer.admit(key, units=1)).admitted
    assert (await teaser.admit("s1", units=1)).admitted
    assert (await teaser.admit("s2", units=1)).outcome is Outcome.FULL
    state = await teaser.state()
    assert state.in_use == 3 and state.slots == 3
    assert state.by_owner() == {("trailer", "render-01"): 2, ("teaser", "render-02"): 1}


async def test_asking_again_for_a_lease_held_is_the_same_lease(make_budget: Factory) -> None:
    # The first answer lost on the way (a timeout): the retried admission must not take a second slot.
    budget = make_budget(slots=2)
    assert (await budget.admit("ext-1", units=1)).admitted
    again = await budget.admit("ext-1", units=1)
    assert again.admitted and again.in_use == 1


async def test_bind_rekeys_the_lease_to_the_task_id(make_budget: Factory) -> None:
    budget = make_budget(slots=1)
    await budget.admit("ext-1", units=3)
    assert await budget.bind("ext-1", "task-9", units=3)
    [lease] = (await budget.state()).leases
    assert (lease.key, lease.project, lease.units) == ("task-9", "trailer", 3.0)
    assert await budget.release("task-9", charged=3)
    assert (await budget.state()).in_use == 0


async def test_bind_after_the_lease_lapsed_takes_a_slot_again_beyond_the_limit(make_budget: Factory) -> None:
    slow = make_budget(slots=1, lease_ttl=SHORT_TTL)
    other = make_budget(slots=1, project="teaser")
    await slow.admit("ext-1", units=1)
    await anyio.sleep(LAPSE)
    assert (await other.admit("ext-2", units=1)).admitted  # the lapsed lease was swept: its slot went to another
    # The create's answer arrives late: the task exists at the provider, so it is counted, even over the limit.
    assert not await slow.bind("ext-1", "task-1", units=1)
    assert {lease.key for lease in (await other.state()).leases} == {"ext-2", "task-1"}


async def test_refresh_keeps_leases_alive_in_one_call(make_budget: Factory) -> None:
    poller = make_budget(slots=3, lease_ttl=0.6)
    for key in ("a", "b", "c"):
        await poller.admit(key, units=1)
    for _ in range(3):  # 0.75 s in all: past the ttl, and each lease refreshed well within it
        await anyio.sleep(0.25)
        assert await poller.refresh(["a", "b", "c"]) == 0  # nothing had lapsed: nothing taken again
    assert (await poller.state()).in_use == 3
    assert (await poller.admit("d", units=1)).outcome is Outcome.FULL


async def test_refresh_takes_back_leases_that_are_gone(make_budget: Factory, fake_server: object) -> None:
    budget = make_budget(slots=2)
    await budget.admit("a", units=1)
    await budget._client.flushall()  # Redis restarted empty
    assert await budget.refresh(["a", "b"]) == 2
    assert {lease.key for lease in (await budget.state()).leases} == {"a", "b"}


async def test_a_refresh_crossing_a_release_or_a_rekey_takes_nothing_back(make_budget: Factory) -> None:
    # The poller's refresh was on its way while the task ended (or its lease was re-keyed): it arrives second.
    budget = make_budget(slots=3)
    await budget.admit("ext-1", units=1)
    await budget.admit("ext-2", units=1)
    await budget.release("ext-1", charged=1)
    await budget.bind("ext-2", "task-2")
    assert await budget.refresh(["ext-1", "ext-2", "task-2"]) == 0
    assert [lease.key for lease in (await budget.state()).leases] == ["task-2"]


async def test_a_killed_runs_leases_stay_until_unrefreshed_for_the_ttl(make_budget: Factory) -> None:
    killed = make_budget(slots=2, project="killed", lease_ttl=SHORT_TTL)
    survivor = make_budget(slots=2, project="survivor", lease_ttl=SHORT_TTL)
    await killed.admit("k1", units=1)
    await killed.admit("k2", units=1)
    assert (await survivor.admit("s1", units=1)).outcome is Outcome.FULL  # its tasks are still at the provider
    await anyio.sleep(LAPSE)  # ... and nobody refreshed them: the admission itself frees them
    assert (await survivor.admit("s1", units=1)).admitted
    assert (await survivor.admit("s2", units=1)).admitted
    assert {lease.project for lease in (await survivor.state()).leases} == {"survivor"}


async def test_an_unknown_outcome_keeps_its_lease_until_it_expires(make_budget: Factory) -> None:
    # The create's answer never came: the task may exist. Not released, not refreshed: held for the ttl, then freed.
    budget = make_budget(slots=1, lease_ttl=SHORT_TTL * 2)
    await budget.admit("ext-unknown", units=2)
    await anyio.sleep(SHORT_TTL)
    assert (await budget.admit("ext-next", units=2)).outcome is Outcome.FULL
    await anyio.sleep(SHORT_TTL + 0.15)
    assert (await budget.admit("ext-next", units=2)).admitted


async def test_an_expired_lease_counts_its_reservation_as_spent_once(make_budget: Factory) -> None:
    budget = make_budget(slots=2, lease_ttl=SHORT_TTL)
    await budget.admit("ext-1", units=4)
    await anyio.sleep(LAPSE)
    assert (await budget.state()).spent == 4  # it may have rendered and been billed
    await budget.release("ext-1", charged=3)  # a resumed run learns what it cost: corrected, not added
    assert (await budget.state()).spent == 3


async def test_a_release_counted_twice_counts_once(make_budget: Factory) -> None:
    budget = make_budget(slots=2)
    await budget.admit("ext-1", units=2)
    await budget.bind("ext-1", "task-1")
    assert await budget.release("task-1", charged=2.5)
    assert not await budget.release("task-1", charged=2.5)
    state = await budget.state()
    assert (state.spent, state.in_use) == (2.5, 0)


async def test_a_cooldown_delays_every_runs_admissions(make_budget: Factory) -> None:
    first = make_budget(slots=4, project="trailer")
    second = make_budget(slots=4, project="teaser")
    assert await first.cool_down(0.6) == pytest.approx(0.6, abs=0.01)
    cooling = await second.admit("s1", units=1)
    assert cooling.outcome is Outcome.COOLING and 0.3 < cooling.retry_after <= 0.6
    assert await second.cool_down(0.05) > 0.3  # a shorter one never cuts a longer one short
    await anyio.sleep(0.65)
    assert await second.cooldown() == 0
    assert (await second.admit("s1", units=1)).admitted


async def test_acquire_waits_out_the_cooldown(make_budget: Factory) -> None:
    budget = make_budget(slots=1, wait_poll=0.02)
    await budget.cool_down(0.2)
    started = anyio.current_time()
    assert (await budget.acquire("ext-1", units=1)).admitted
    assert anyio.current_time() - started >= 0.19


async def test_acquire_waits_for_a_slot_another_run_frees(make_budget: Factory) -> None:
    holder = make_budget(slots=1, project="holder")
    waiter = make_budget(slots=1, project="waiter", wait_poll=0.02)
    await holder.admit("h1", units=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(waiter.acquire, "w1", units=1))
        await anyio.sleep(0.1)
        assert (await holder.state()).by_owner() == {("holder", "render-01"): 1}
        await holder.release("h1", charged=1)
    assert {lease.key for lease in (await holder.state()).leases} == {"w1"}


async def test_the_spend_cap_counts_spent_and_reserved_and_says_what_is_left(make_budget: Factory) -> None:
    budget = make_budget(slots=5, units_cap=10)
    await budget.admit("a", units=4)
    await budget.release("a", charged=4)  # spent 4
    assert (await budget.admit("b", units=4)).admitted  # reserved 4: 8 of 10
    over = await budget.admit("c", units=4)
    assert over.outcome is Outcome.OVER_CAP and over.left == pytest.approx(2)
    message = str(over.exhausted(4))
    assert "cap of 10 units" in message and "2 left" in message
    assert isinstance(over.exhausted(4), BudgetExhaustedError)
    assert (await budget.admit("c", units=2)).admitted  # exactly at the cap is allowed


async def test_raising_the_cap_resumes_admission(make_budget: Factory) -> None:
    tight = make_budget(slots=5, units_cap=3)
    await tight.admit("a", units=3)
    assert (await tight.admit("b", units=3)).outcome is Outcome.OVER_CAP
    raised = make_budget(slots=5, units_cap=6)
    assert (await raised.admit("b", units=3)).admitted
    state = await raised.state()
    assert (state.cap, state.reserved, state.left) == (6, 6, 0)


async def test_state_lists_leases_about_to_expire(make_budget: Factory) -> None:
    budget = make_budget(slots=3, lease_ttl=1.0)
    await budget.admit("stale", units=1)
    await anyio.sleep(0.6)
    await budget.admit("fresh", units=1)
    state = await budget.state()
    assert [lease.key for lease in state.expiring()] == ["stale"]
    assert state.to_json()["expiring"] == ["stale"]


async def test_a_storm_of_admitters_never_exceeds_the_slots(make_budget: Factory) -> None:
    slots, runs, tasks_each = 3, 6, 8
    rng = random.Random(12)
    in_flight = 0
    peak = 0
    finished = 0

    async def run(index: int) -> None:
        nonlocal in_flight, peak, finished
        budget = make_budget(slots=slots, project=f"p{index}", wait_poll=0.005)
        for task in range(tasks_each):
            key = f"p{index}-{task}"
            assert (await budget.acquire(key, units=1)).admitted
            in_flight += 1
            peak = max(peak, in_flight)
            await anyio.sleep(rng.uniform(0, 0.01))
            await budget.bind(key, f"task-{key}", units=1)
            await anyio.sleep(rng.uniform(0, 0.01))
            in_flight -= 1
            await budget.release(f"task-{key}", charged=1)
            finished += 1

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for index in range(runs):
                tg.start_soon(run, index)
    assert peak == slots  # reached, never passed
    assert finished == runs * tasks_each
    state = await make_budget().state()
    assert (state.in_use, state.spent) == (0, runs * tasks_each)


async def test_redis_going_away_is_one_error_and_coming_back_is_waited_for(
    make_budget: Factory, fake_server: object
) -> None:
    budget = make_budget(slots=2)
    await budget.admit("a", units=1)
    fake_server.connected = False  # type: ignore[attr-defined]
    for call in (budget.admit("b", units=1), budget.refresh(["a"]), budget.release("a", charged=1), budget.state()):
        with pytest.raises(BudgetUnavailableError) as caught:
            await call
        assert "cannot be reached" in str(caught.value) and "127.0.0.1:6379" in str(caught.value)
    assert not await budget.reachable()
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            fake_server.connected = True  # type: ignore[attr-defined]

    assert await budget.wait_reachable(base=0.1, cap=1.0, sleep=nap) == 4
    assert naps[0] <= naps[2] * 4  # the backoff grows
    assert await budget.refresh(["a"]) == 0  # nothing lost while away
    assert (await budget.admit("b", units=1)).admitted


async def test_a_script_error_is_a_budget_error_not_a_traceback(make_budget: Factory) -> None:
    budget = make_budget(slots=2)
    await budget._client.set("{orchestrator:budget}:leases", "not a sorted set")
    with pytest.raises(BudgetError) as caught:
        await budget.admit("a", units=1)
    assert not isinstance(caught.value, BudgetUnavailableError)
