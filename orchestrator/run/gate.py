"""The gate: every request a run sends to its provider passes here, and only here.

One rate bucket (tokens per request), the slots (tasks in flight at the provider, ``AdaptiveSlots``), the limiters
(API calls at once, creates at once, downloads at once), reachability (a provider that refuses every connection ends
the run), the counters, and the one retry policy (``RetryPolicy``: its backoff, its floors, among them the wait after
a 1303, and its one switch that makes backoff instant in tests), and, where the account is shared by several runs,
the studio's budget (``orchestrator.budget``: a shared slot as a lease before each create, re-keyed to the task,
refreshed while it runs, given back when it ends; a shared cooldown; the spend cap). The scheduler decides what to
send; the gate decides when it may go and how long to wait before trying again.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import anyio

from orchestrator.errors import (
    ConcurrencyLimitError,
    DownloadError,
    ProviderError,
    RateLimitedError,
    TaskNotFoundError,
    TransientError,
)
from orchestrator.providers.base import MAX_LIST_PAGE, Capabilities, Download, ListsTasks, Provider, Task
from orchestrator.run.limits import AdaptiveSlots, RateBucket, backoff_delay
from orchestrator.run.options import RunOptions
from orchestrator.run.reachability import Reachability, Unresolved

if TYPE_CHECKING:
    from orchestrator.budget.session import BudgetSession
    from orchestrator.plan.work import Render

_T = TypeVar("_T")


@dataclass
class SchedulerStats:
    """Counters a run reports at the end (requests by kind, congestion, peak in flight)."""

    creates: int = 0
    polls: int = 0
    lists: int = 0
    lookups: int = 0
    downloads: int = 0
    congestion: int = 0
    transient_errors: int = 0
    peak_in_flight: int = 0
    manifest_writes: int = 0
    manifest_write_seconds: float = 0.0
    render_seconds: list[float] = field(default_factory=list)
    # Per render, when each step happened (wall clock): slot, sent, answered, detected, released, downloaded, and the
    # provider's own created/ended times. Cheap to keep, and what the benchmark's breakdown of a run is made of.
    timeline: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.creates + self.polls + self.lists + self.lookups + self.downloads


class Gate:
    """The one way out to ``provider``: ``create``, ``query`` (polls, list rounds, lookups), ``lookup`` and
    ``download``, each within the run's limits; ``delay`` and ``pause`` are the retry policy's waits."""

    def __init__(
        self,
        *,
        provider: Provider,
        options: RunOptions,
        reach: Reachability,
        stats: SchedulerStats,
        rng: random.Random,
        budget: BudgetSession | None = None,
    ) -> None:
        self.provider = provider
        self.budget = budget
        self.caps: Capabilities = getattr(provider, "capabilities", None) or Capabilities()
        self.options = options
        self.reach = reach
        self.stats = stats
        self._rng = rng
        self.slots = AdaptiveSlots(options.concurrency, cooldown=options.congestion_cooldown)
        self.bucket = RateBucket(options.requests_per_second)
        self.api_calls = anyio.CapacityLimiter(max(1, options.max_api_calls))
        self._downloads = anyio.CapacityLimiter(max(1, options.max_downloads))
        self._create_calls = anyio.CapacityLimiter(max(1, options.max_creates))
        self._creating = 0  # creates under way (from the rate bucket to the answer)
        self._creates_done = anyio.Event()  # set whenever no create is under way
        self._creates_done.set()

    # --- sending ------------------------------------------------------------------------------------------------

    async def create(self, request: Callable[[], Awaitable[Task]], *, on_sent: Callable[[], None]) -> Task:
        """Send one create (``request`` makes the call once it may go; ``on_sent`` is told the moment it does)."""
        with self._create_under_way():
            await self.bucket.acquire()
            self.stats.creates += 1
            async with self._create_calls:
                on_sent()
                return await self.reach.call(request())

    async def query(self, kind: Literal["polls", "lists", "lookups"], request: Callable[[], Awaitable[_T]]) -> _T:
        """A poll, list round or lookup: a token from the rate bucket, counted, then one of the ``max_api_calls``
        places, watched for reachability. ``request`` makes the call only once it may go."""
        await self.bucket.acquire()
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        async with self.api_calls:
            return await self.reach.call(request())

    async def poll(self, task_id: str) -> Task:
        return await self.query("polls", partial(self.provider.get_task, task_id))

    async def list_round(self, page_size: int) -> list[Task]:
        assert isinstance(self.provider, ListsTasks)
        return await self.query("lists", partial(self.provider.list_tasks, page_size=page_size))

    async def lookup(self, external_task_id: str) -> Task | None:
        """Find the task created under ``external_task_id``: by the provider's lookup, else in its task list.

        ``None`` when neither finds it, or the provider has neither (``Capabilities``): whether that proves anything
        is ``absence_is_proof``'s to say. Raises ``Unresolved`` when the provider keeps failing to answer.
        """
        if not self.caps.can_confirm:
            return None
        failures = 0
        for tries in itertools.count(1):
            try:
                return await self.query("lookups", partial(self._find, external_task_id))
            except TaskNotFoundError:
                return None
            except TransientError as exc:
                self.stats.transient_errors += 1
                # Rate limiting never gives up a render: only failures of the provider itself count towards the cap.
                if not isinstance(exc, RateLimitedError | ConcurrencyLimitError):
                    failures += 1
                if failures >= self.options.retry.lookup_attempts:
                    raise Unresolved(
                        f"could not look up task {external_task_id} ({exc.message}); run again to resume"
                    ) from None
                await self.pause(exc, tries)
        return None

    async def download(self, url: str, dest: Path) -> Download:
        """Fetch a finished task's video to ``dest``, retried under the policy; raises the last failure.

        Downloads wait (up to ``download_defer`` seconds) while creates are under way: a slot's worth of new work
        is worth more than a video that is safe at the provider.
        """
        policy = self.options.retry
        with anyio.move_on_after(self.options.download_defer):
            await self._creates_done.wait()
        for tries in itertools.count(1):
            try:
                await self.bucket.acquire()
                self.stats.downloads += 1
                async with self._downloads:
                    return await self.provider.download(url, dest)
            except (DownloadError, TransientError) as exc:
                retryable = not isinstance(exc, DownloadError) or exc.retryable
                if tries >= policy.download_attempts or not retryable:
                    raise
                await anyio.sleep(backoff_delay(tries, base=policy.base, cap=policy.cap, rng=self._rng))
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the retry policy ---------------------------------------------------------------------------------------

    def delay(self, exc: ProviderError, tries: int, *, floor: float = 0.0) -> float:
        """How long to wait before try ``tries + 1`` after ``exc``: the policy's backoff, the provider's own
        ``Retry-After``, and the policy's floor for the error (1303, a saturated gateway)."""
        policy = self.options.retry
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        floor = max(floor, policy.floor_for(exc))
        delay = backoff_delay(
            tries, base=policy.base, cap=policy.cap, retry_after=retry_after, floor=floor, rng=self._rng
        )
        return self.reach.retry_delay(exc, delay)

    async def pause(self, exc: ProviderError, tries: int, *, floor: float = 0.0) -> None:
        """Wait before a retry. Raises ``Unreachable`` when the run gives up reaching the provider meanwhile."""
        await self.sleep(self.delay(exc, tries, floor=floor))

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or until the run gives up reaching the provider (then raises ``Unreachable``)."""
        self.reach.check()
        with anyio.move_on_after(seconds):
            await self.reach.gave_up.wait()
        self.reach.check()

    # --- the studio's shared budget (a no-op without one) -------------------------------------------------------

    async def admit(self, render: Render) -> None:
        """A shared slot for the render's create (after this run's own): waits while the budget is full, cooling
        down or away. Raises ``BudgetExhaustedError`` when the create would pass the studio's spend cap."""
        if self.budget is None:
            return
        admission = await self.budget.admit(render.external_task_id, units=render.units)
        if not admission.admitted:
            raise admission.exhausted(render.units)

    async def adopt(self, keys: list[str]) -> None:
        """Tasks (or creates of unknown outcome) of earlier runs this run follows: their leases are its own."""
        if self.budget is not None and keys:
            await self.budget.adopt(keys)

    async def bind(self, render: Render, task_id: str) -> None:
        """The render's create answered: its lease follows the task."""
        if self.budget is not None:
            await self.budget.bind(render.external_task_id, task_id)

    def unknown(self, render: Render) -> None:
        """The render's create may have made a task: its lease is left to expire, holding the slot meanwhile."""
        if self.budget is not None:
            self.budget.unknown(render.external_task_id)

    async def release(self, key: str, *, charged: float) -> None:
        """The task (or the create, refused for certain) of ``key`` ended: its shared slot is free again."""
        if self.budget is not None:
            await self.budget.release(key, charged=charged)

    async def cool_down(self, seconds: float) -> None:
        """The provider said "too many": every run sharing the budget waits ``seconds`` before its next create."""
        if self.budget is not None:
            await self.budget.cool_down(seconds)

    async def refresh_leases(self) -> None:
        """Keep this run's leases alive while their tasks run, every third of their lifetime."""
        if self.budget is None:
            return
        interval = max(0.05, self.budget.budget.config.lease_ttl / 3)
        while True:
            await anyio.sleep(interval)
            await self.budget.refresh()

    async def close_budget(self) -> None:
        """The run ends: tell the budget what it could not tell while away, then let go of the connection."""
        if self.budget is None:
            return
        with anyio.move_on_after(5), anyio.CancelScope(shield=True):
            await self.budget.catch_up()
        with anyio.CancelScope(shield=True):
            await self.budget.budget.aclose()

    # --- internals ----------------------------------------------------------------------------------------------

    async def _find(self, external_task_id: str) -> Task | None:
        if self.caps.find_by_external_id:
            return await self.provider.find_task(external_task_id)
        assert isinstance(self.provider, ListsTasks)
        tasks = await self.provider.list_tasks(page_size=MAX_LIST_PAGE)
        return next((task for task in tasks if task.external_task_id == external_task_id), None)

    @contextmanager
    def _create_under_way(self) -> Iterator[None]:
        if self._creating == 0:
            self._creates_done = anyio.Event()
        self._creating += 1
        try:
            yield
        finally:
            self._creating -= 1
            if self._creating == 0:
                self._creates_done.set()
