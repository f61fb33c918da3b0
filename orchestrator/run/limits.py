"""How hard a run pushes the provider: a token bucket for requests, adaptive slots for tasks in flight, backoff.

- ``RateBucket``: every HTTP call takes one token; tokens come at ``rate`` per second with a small burst.
- ``AdaptiveSlots``: the account counts tasks in flight (created, not finished). A slot is taken before a create and
  given back when the task ends. On a congestion answer (1303, 1302, 429) the target is halved (never below one,
  at most once per cool-down so that one burst of refusals counts once); each task that ends well adds back
  ``1 / target`` of a slot, so the target climbs back by about one slot per round of tasks (AIMD, as TCP does).
- ``backoff_delay``: exponential backoff with full jitter, never shorter than the provider's own ``retry_after``.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable

import anyio

Clock = Callable[[], float]


class Stopped(Exception):
    """Raised by ``AdaptiveSlots.acquire`` once the slots are closed: no new task may start."""


class RateBucket:
    """A token bucket over all HTTP calls. ``rate`` of ``None`` or ``<= 0`` means unlimited."""

    def __init__(self, rate: float | None, *, burst: float | None = None, clock: Clock = time.monotonic) -> None:
        self.rate = rate if rate and rate > 0 else None
        self.burst = max(1.0, burst if burst is not None else (self.rate or 1.0))
        self._clock = clock
        self._next = clock()
        self.acquired = 0

    async def acquire(self) -> None:
        """Wait for a token. Waiters are served in arrival order: each one books the next free instant."""
        self.acquired += 1
        if self.rate is None:
            return
        now = self._clock()
        interval = 1.0 / self.rate
        # Unused capacity accrues up to ``burst`` tokens, no more.
        start = max(self._next, now - (self.burst - 1.0) * interval)
        self._next = start + interval
        delay = start - now
        if delay > 0:
            await anyio.sleep(delay)


class _Waiter:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


class AdaptiveSlots:
    """Tasks in flight at the provider, with an AIMD target between 1 and ``limit``.

    Waiters are served first come, first served, and a freed slot is handed to exactly one of them (waking all
    of them on every release would cost a run of 200 shots tens of thousands of useless wake-ups).
    """

    def __init__(self, limit: int, *, cooldown: float = 1.0, clock: Clock = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.target = float(limit)
        self.in_flight = 0
        self.peak = 0
        self.cooldown = cooldown
        self.decreases = 0
        self._clock = clock
        self._last_decrease = -math.inf
        self._closed = False
        self._waiters: deque[_Waiter] = deque()

    @property
    def capacity(self) -> int:
        return max(1, math.floor(self.target))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        """Take a slot, waiting while the target is reached. Raises ``Stopped`` once ``close()`` was called."""
        if self._closed:
            raise Stopped
        if not self._waiters and self.in_flight < self.capacity:
            self.take()
            return
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self.release()  # granted just as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise
        if not waiter.granted:
            raise Stopped

    def try_take(self) -> bool:
        """Take a slot if one is free right now and nobody is queued for one."""
        if self._closed or self._waiters or self.in_flight >= self.capacity:
            return False
        self.take()
        return True

    def take(self) -> None:
        """Count a task that is already in flight (resumed from an earlier run), even beyond the target."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self._wake()

    def congested(self) -> bool:
        """The provider said "too many" (1303/1302/429): halve the target. True when the target was lowered."""
        now = self._clock()
        if now - self._last_decrease < self.cooldown:
            return False
        self._last_decrease = now
        self.target = max(1.0, self.target / 2)
        self.decreases += 1
        return True

    def succeeded(self) -> None:
        """A task ended without congestion: grow the target by a fraction of a slot."""
        if self.target < self.limit:
            self.target = min(float(self.limit), self.target + 1.0 / self.target)
            self._wake()

    def close(self) -> None:
        """No more new tasks: waiters get ``Stopped``; tasks in flight finish normally."""
        self._closed = True
        while self._waiters:
            self._waiters.popleft().event.set()

    def _wake(self) -> None:
        while self._waiters and not self._closed and self.in_flight < self.capacity:
            waiter = self._waiters.popleft()
            waiter.granted = True
            self.take()
            waiter.event.set()


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    floor: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry number ``attempt`` (1-based): full jitter on ``base * 2**(attempt-1)``, capped at ``cap``.

    Never less than the provider's ``retry_after`` nor than ``floor`` (1303 asks for at least a second).
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    jittered = (rng or random).uniform(ceiling / 2, ceiling)
    return max(jittered, retry_after or 0.0, floor)
