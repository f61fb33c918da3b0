"""Rate bucket, AIMD slots and backoff."""

from __future__ import annotations

import random
import time

import anyio
import pytest

from orchestrator.run.limits import AdaptiveSlots, RateBucket, Stopped, backoff_delay


@pytest.mark.anyio
async def test_rate_bucket_spaces_requests() -> None:
    bucket = RateBucket(50.0, burst=1)
    started = time.monotonic()
    for _ in range(6):
        await bucket.acquire()
    assert time.monotonic() - started >= 5 / 50 * 0.9


@pytest.mark.anyio
async def test_unlimited_bucket_never_waits() -> None:
    bucket = RateBucket(None)
    with anyio.fail_after(0.5):
        for _ in range(1000):
            await bucket.acquire()
    assert bucket.acquired == 1000


def test_aimd_halves_once_per_cooldown_and_recovers_slowly() -> None:
    now = [0.0]
    slots = AdaptiveSlots(8, cooldown=1.0, clock=lambda: now[0])
    assert slots.congested() and slots.capacity == 4
    assert not slots.congested() and slots.capacity == 4  # same burst of refusals
    now[0] = 2.0
    assert slots.congested() and slots.capacity == 2
    for t in (4.0, 6.0, 8.0):
        now[0] = t
        slots.congested()
    assert slots.capacity == 1  # never below one
    for _ in range(3):
        slots.succeeded()
    assert 2 <= slots.capacity < 8
    for _ in range(100):
        slots.succeeded()
    assert slots.capacity == 8


@pytest.mark.anyio
async def test_slots_block_at_capacity_and_close_releases_waiters() -> None:
    slots = AdaptiveSlots(2)
    await slots.acquire()
    await slots.acquire()
    got: list[str] = []

    async def waiter() -> None:
        try:
            await slots.acquire()
            got.append("slot")
        except Stopped:
            got.append("stopped")

    async with anyio.create_task_group() as group:
        group.start_soon(waiter)
        group.start_soon(waiter)
        await anyio.sleep(0.01)
        assert got == []
        slots.release()
        await anyio.sleep(0.01)
        assert got == ["slot"]
        slots.close()
    assert got == ["slot", "stopped"]
    assert slots.peak == 2


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, base=1.0, cap=8.0, rng=rng) for n in range(1, 8)]
    assert all(0.5 <= d <= 8.0 for d in delays) and max(delays) > 2
    assert backoff_delay(1, base=0.1, cap=1.0, retry_after=5.0, rng=rng) == 5.0
    assert backoff_delay(1, base=0.1, cap=1.0, floor=1.0, rng=rng) == 1.0


@pytest.mark.anyio
async def test_slots_are_handed_out_in_arrival_order_and_a_cancelled_waiter_passes_its_turn() -> None:
    slots = AdaptiveSlots(1)
    await slots.acquire()
    order: list[int] = []

    async def waiter(n: int) -> None:
        await slots.acquire()
        order.append(n)

    async with anyio.create_task_group() as group:
        for n in range(3):
            group.start_soon(waiter, n)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await slots.acquire()  # cancelled while queued: leaves the queue
        await anyio.sleep(0.01)
        assert slots.waiting == 3
        for _ in range(3):
            slots.release()
            await anyio.sleep(0.01)
    assert order == [0, 1, 2] and slots.in_flight == 1
