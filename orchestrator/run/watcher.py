"""Following many tasks with one request: rounds of the provider's task list instead of a poll per task.

Polling each task on its own costs a request per task per poll, and a task that ends between two of its own polls is
seen late. The list (newest first) answers for every recent task at once, so one request per round tells the run
about all of them: a task is seen done at the first round after it ends, whichever task's poll was due. Each task
keeps its own poll schedule (``orchestrator.run.polling``, with ``batched=True``); a round goes out when the earliest is
due, and every task it reports counts as polled, which pushes the next round out. The page is sized from how many
tasks this run created since the oldest one followed, so it always reaches back that far (other clients of the
account may add a few: there is slack).

A list may lag behind the tasks' own state. A task that a round still shows running well past its expected end is
asked about on its own; if it has ended, the next round decides. Every such judgement is made from when rounds set
out (taken before the rate bucket), never from when the task was expected to end: under ``--rps`` the bucket holds
rounds back, and a task that ended while a round waited is not a list that lags.

It is best effort, like the lookup by external id. A task the list does not show is handed back to be polled on its
own; so is every task, for the rest of the run, when the provider does not list (any answer but a transient error,
or transient errors only until it has listed once), or when the watcher stops for any other reason (the run gave up
reaching the provider, say). Tasks resumed from an earlier run are polled on their own from the start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from orchestrator.errors import OrchestratorError, ProviderError, TransientError
from orchestrator.providers.base import MAX_LIST_PAGE, Task

# A provider that never answered the list but with transient errors is given this many tries before the run gives
# up on listing: a route it does not have often answers 5xx or a gateway page rather than a clean 404.
_TRIES_BEFORE_LISTING_WORKS = 2
# Rounds in a row with room on the page yet none of the tasks followed, before the run stops listing.
_BLIND_ROUNDS = 3
# Full rounds in a row that found every task followed in the first half of the page, before a doubled page is halved.
_ROOMY_ROUNDS = 20


@dataclass(eq=False)
class Watch:
    """One task being followed by the watcher. ``key`` is the caller's own (the scheduler's flight)."""

    task_id: str
    seq: int
    key: Any
    added: float
    last_poll: float | None = None
    due: float = 0.0
    generation: int = -1
    status: str = ""
    task: Task | None = None  # set once a round saw the task end
    seen_at: float = 0.0  # when that round's answer came
    alone: bool = False  # the list cannot tell about this task: poll it on its own
    # When the latest round that showed the task running set out: before the rate bucket, so the round left then
    # or later. A rate cap can hold a round back for seconds; only what a round says from then on is evidence.
    listed_at: float = -math.inf
    overdue_at: float = math.inf  # set while the task waits for a round since it became overdue (rung by it)
    ended: Task | None = None  # asked on its own, the task had ended: the next round says if the list lags
    ended_at: float = 0.0  # when that answer came
    bell: anyio.Event = field(default_factory=anyio.Event)

    @property
    def settled(self) -> bool:
        return self.task is not None or self.alone

    def ring(self) -> None:
        self.bell.set()
        self.bell = anyio.Event()


class TaskWatcher:
    """Runs list rounds for the tasks it is given. ``run()`` is a task of its own, for the length of the run.

    - ``fetch(page_size)`` makes one list call (the caller applies its rate limits and counts it);
    - ``schedule(watch)`` is the time (``time.time()`` clock) of the watch's next poll, from its ``last_poll``;
    - ``on_seen(watch, task)`` is told of a task still running, when its status changed;
    - ``retry_delay(error, tries)`` is the wait after a transient error;
    - ``notify(message)`` is told when the run stops listing because of the provider.
    """

    def __init__(
        self,
        *,
        fetch: Callable[[int], Awaitable[list[Task]]],
        schedule: Callable[[Watch], float],
        on_seen: Callable[[Watch, Task], None],
        retry_delay: Callable[[ProviderError, int], float],
        min_gap: float,
        enabled: bool = True,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._schedule = schedule
        self._on_seen = on_seen
        self._retry_delay = retry_delay
        self._min_gap = min_gap
        self._notify = notify
        self.enabled = enabled
        self.rounds = 0
        self.why_off: str | None = None if enabled else "turned off"
        self._watches: dict[str, Watch] = {}  # task id -> its watch
        self._created = 0
        self._listed = False
        self._last_round = -math.inf
        self._blind_rounds = 0  # rounds in a row that showed none of the tasks followed
        self._stretch = 1  # pages are this many times the size our own tasks need (doubled when one fell short)
        self._roomy_rounds = 0  # full rounds in a row in which half the page would have done
        self._generation = 0
        self._changed: anyio.Event | None = None  # made in the event loop, on first use

    # --- what the scheduler calls -------------------------------------------------------------------------------

    def created(self) -> int:
        """A sequence number for a task this run just created (how far back the list must reach for it)."""
        self._created += 1
        return self._created

    def watch(self, task_id: str, *, seq: int, key: Any) -> Watch:
        watch = Watch(task_id=task_id, seq=seq, key=key, added=time.time(), alone=not self.enabled)
        if self.enabled:
            self._watches[task_id] = watch
            self._poke()
        return watch

    def unwatch(self, watch: Watch) -> None:
        if self._watches.get(watch.task_id) is watch:
            del self._watches[watch.task_id]

    def reschedule(self) -> None:
        """What the schedules depend on changed (a render time observed): recompute every due time."""
        self._generation += 1
        self._poke()

    def ring_all(self) -> None:
        for watch in list(self._watches.values()):
            watch.ring()

    async def wait(
        self,
        watch: Watch,
        *,
        created: float,
        deadline: float,
        overdue_after: float,
        ask: Callable[[str], Awaitable[Task | None]],
        check: Callable[[], None],
    ) -> bool:
        """Wait until ``watch`` settles (True) or ``deadline`` passes first (False); it is unwatched either way.

        ``check()`` raises to stop waiting (the run is stopping). A task that a round set out after ``created +
        overdue_after`` (then twice that, and so on) still shows running is asked about on its own with ``ask``. If it
        has in fact ended, the next round that sets out after that answer decides: still "running" there, the list
        lags behind, so listing stops for the rest of the run; the watch settles with the task either way.

        Every time is taken from when a round set out, never from when the task was expected: under a rate cap the
        bucket holds rounds (and the ask) back, and a task that ended while they waited is not a lagging list.
        """
        try:
            while not watch.settled:
                check()
                now = time.time()
                if now >= deadline:
                    return False
                overdue_at = created + overdue_after
                wake_at = min(deadline, overdue_at)
                if now >= overdue_at:
                    if watch.ended is not None:
                        # No round answered for it since (rounds failing, say): the task's own answer stands.
                        self._settle(watch, watch.ended, watch.ended_at)
                        continue
                    if watch.listed_at >= overdue_at:  # a round that set out since still showed it running
                        task = await ask(watch.task_id)
                        if task is not None and task.status.finished and not watch.settled:
                            self._suspect(watch, task)
                        overdue_after *= 2
                        continue
                    watch.overdue_at = overdue_at  # the next round that shows it running rings the bell
                    wake_at = deadline
                bell = watch.bell
                with anyio.move_on_after(wake_at - now):
                    await bell.wait()
        finally:
            self.unwatch(watch)
        return True

    def _suspect(self, watch: Watch, task: Task) -> None:
        """The task, asked on its own, has ended: a round as soon as may be, to see whether the list knows yet."""
        watch.ended, watch.ended_at = task, time.time()
        watch.due = watch.ended_at
        watch.generation = self._generation
        self._poke()

    @staticmethod
    def _settle(watch: Watch, task: Task, seen_at: float) -> None:
        watch.task, watch.seen_at = task, seen_at
        watch.ring()

    # --- the rounds ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """List rounds while there are tasks to follow, until cancelled or listing proves impossible."""
        tries = 0
        not_before = -math.inf  # after a transient error: the retry delay, whatever else is due
        while self.enabled:
            pending = self._refresh()
            if not pending:
                await self._wait_for_change(math.inf)
                continue
            at = max(min(watch.due for watch in pending), self._last_round + self._min_gap, not_before)
            if at > time.time():
                await self._wait_for_change(at)
                continue
            started = time.time()
            self._last_round = started
            page_size = self._page_size(pending)
            try:
                tasks = await self._fetch(page_size)
            except TransientError as exc:
                tries += 1
                if not self._listed and tries >= _TRIES_BEFORE_LISTING_WORKS:
                    self.give_up(f"listing failed: {exc.message}")
                    return
                not_before = time.time() + self._retry_delay(exc, tries)
                continue
            except ProviderError as exc:
                self.give_up(f"the provider does not list tasks ({exc.message})")
                return
            except OrchestratorError as exc:  # the run gave up reaching the provider, or is stopping: said elsewhere
                self.give_up(str(exc), quiet=True)
                return
            tries = 0
            self._listed = True
            self.rounds += 1
            self._take(tasks, started=started, answered=time.time(), full=len(tasks) >= page_size)

    def _refresh(self) -> list[Watch]:
        """The unsettled watches, with due times computed afresh where the schedule changed."""
        pending = []
        for watch in self._watches.values():
            if watch.settled:
                continue
            if watch.ended is not None:
                watch.due = watch.ended_at  # a round to settle it as soon as the gap allows
            elif watch.generation != self._generation:
                watch.due = self._schedule(watch)
                watch.generation = self._generation
            pending.append(watch)
        return pending

    def _page_size(self, pending: list[Watch]) -> int:
        needed = self._created - min(watch.seq for watch in pending) + 1
        # Slack for creates landing while the round is under way and for other clients of the account.
        return min(MAX_LIST_PAGE, (needed + max(10, needed // 5)) * self._stretch)

    def _take(self, tasks: list[Task], *, started: float, answered: float, full: bool) -> None:
        by_id = {task.task_id: task for task in tasks}
        # Where each task is on the page, only while pages are stretched (to tell when they may shrink again).
        places = {task.task_id: place for place, task in enumerate(tasks)} if self._stretch > 1 else {}
        deepest = -1  # how far down the page the deepest task followed was
        if not full and self._blind(by_id, started=started):
            # Room to spare on the page, yet none of this run's tasks on it: a list that lags behind by a moment,
            # or not a list of this account's tasks at all. Some rounds in a row of that, and listing stops.
            self._blind_rounds += 1
            if self._blind_rounds >= _BLIND_ROUNDS:
                self.give_up("the provider's task list shows none of this run's tasks")
            return
        self._blind_rounds = 0
        short = False  # the full page did not reach back to every task
        missing = False  # a task followed was not on the longest page there is
        for watch in list(self._watches.values()):
            if watch.settled:
                continue
            task = by_id.get(watch.task_id)
            if task is None:
                if watch.ended is not None:
                    self._settle(watch, watch.ended, watch.ended_at)  # off the page now: its own answer stands
                elif watch.added < started:
                    if full and len(tasks) < MAX_LIST_PAGE:
                        short = True
                    else:
                        missing = True
                        watch.alone = True  # the list cannot tell about this task: it is polled on its own
                        watch.ring()
                continue
            watch.last_poll = answered
            deepest = max(deepest, places.get(watch.task_id, -1))
            if task.status.finished:
                self._settle(watch, task, answered)
                continue
            if watch.ended is not None and started > watch.ended_at:
                # Set out after the task itself said it had ended, and still "running": the list lags behind.
                self._settle(watch, watch.ended, watch.ended_at)
                self.give_up(f"the provider's list still showed task {watch.task_id} running after it ended")
                return
            watch.listed_at = max(watch.listed_at, started)
            if started >= watch.overdue_at:
                watch.ring()  # overdue, and still running in a round that set out since: worth asking on its own
            if task.status != watch.status:
                watch.status = task.status
                self._on_seen(watch, task)
            watch.due = self._schedule(watch)
            watch.generation = self._generation
        if full and not missing:
            self._fit_page(short=short, roomy=deepest < len(tasks) // 2)
        elif short:
            self._fit_page(short=True, roomy=False)

    def _blind(self, by_id: dict[str, Task], *, started: float) -> bool:
        """Does a page with room to spare show none of the tasks followed since before its round set out?"""
        judged = [w for w in self._watches.values() if not w.settled and w.added < started]
        return bool(judged) and not any(w.task_id in by_id for w in judged)

    def _fit_page(self, *, short: bool, roomy: bool) -> None:
        """Longer pages after one fell short; half as long again once half of each full page has long been enough.

        Only full pages tell: a shorter one holds the whole list, whatever its size.
        """
        if short:
            # Other clients of the account, or more creates meanwhile than the slack allowed: longer pages from now.
            self._stretch = min(2 * self._stretch, MAX_LIST_PAGE)
            self._roomy_rounds = 0
        elif roomy and self._stretch > 1:
            # Every task followed was in the first half of the page, round after round: the crowd that made a page
            # fall short (a burst of creates at start-up, often) has gone, and each round parses the whole page.
            self._roomy_rounds += 1
            if self._roomy_rounds >= _ROOMY_ROUNDS:
                self._stretch //= 2
                self._roomy_rounds = 0
        else:
            self._roomy_rounds = 0

    def give_up(self, reason: str, *, quiet: bool = False) -> None:
        """Stop listing for the rest of the run: every task followed is handed back to be polled on its own."""
        self._poke()
        self.enabled = False
        self.why_off = reason
        if self._notify is not None and not quiet:
            self._notify(f"{reason}; polling each task on its own")
        for watch in self._watches.values():
            if not watch.settled:
                watch.alone = True
                watch.ring()

    async def _wait_for_change(self, until: float) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        changed = self._changed
        with anyio.move_on_after(max(0.0, until - time.time())):
            await changed.wait()

    def _poke(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
