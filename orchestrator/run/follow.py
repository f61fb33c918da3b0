"""Following tasks in flight to their end: the poll planner and the provider's task list, through the gate.

``Follower.follow(flight)`` returns how the task ended (``Finished`` with the finished task, ``DeadlinePassed``,
``Gone``); it never decides what happens next, which is the scheduler's. While a task runs, what the provider says
of it (processing, its progress figure, its raw status) goes to the recorder: informative, not durable.

Tasks this run created are followed through the provider's task list where it has one (``TaskWatcher``: one list
round for all of them); the rest, and tasks the list cannot tell about, are polled one by one, each at the time the
poll planner gives (``PollPlanner``: a first poll near the render time observed so far, then backoff).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio

from orchestrator.errors import TaskNotFoundError, TransientError
from orchestrator.plan.work import Render
from orchestrator.providers.base import ListsTasks, Task, TaskStatus
from orchestrator.run.gate import Gate
from orchestrator.run.options import RunOptions
from orchestrator.run.polling import PollPlanner
from orchestrator.run.recorder import Recorder
from orchestrator.run.watcher import TaskWatcher, Watch
from orchestrator.store.manifest import PROCESSING, SUBMITTED


class Interrupted(Exception):
    """The run is stopping; leave this render as recorded."""


@dataclass
class Flight:
    """One render's task while the run follows it. ``created`` is wall-clock seconds (time.time)."""

    render: Render
    created: float
    task_id: str = ""
    holds_slot: bool = False
    resumed: bool = False  # picked up from an earlier run: poll at once
    seq: int | None = None  # created by this run, the seq-th (see TaskWatcher.created)
    sent_at: float | None = None  # when its create was sent, if known (this run, or the store's submitted_at)


@dataclass(frozen=True)
class Finished:
    """The task ended (succeeded or failed): here it is. ``seen_at`` is when the run saw it end."""

    task: Task
    seen_at: float


@dataclass(frozen=True)
class DeadlinePassed:
    """Still running when the poll deadline passed: left for the next run."""


@dataclass(frozen=True)
class Gone:
    """The provider does not know the task (any more)."""


Ended = Finished | DeadlinePassed | Gone


class Follower:
    """Follows flights to their end within ``options.poll``; ``stop()`` makes every follow raise ``Interrupted``."""

    def __init__(self, *, gate: Gate, recorder: Recorder, options: RunOptions, planner: PollPlanner) -> None:
        self.gate = gate
        self.recorder = recorder
        self.options = options
        self.planner = planner
        self.stopped = False
        self._board = anyio.Event()  # set (and replaced) when what polls depend on changes
        self._progress: dict[str, str] = {}  # render key -> the progress last reported
        self._raw: dict[str, str] = {}  # render key -> the provider's raw status last kept
        self.watcher = TaskWatcher(
            fetch=gate.list_round,
            schedule=self._watch_due,
            on_seen=self._seen_running,
            retry_delay=gate.delay,
            min_gap=options.poll.batch_min_interval,
            enabled=options.poll.batch and gate.caps.list_tasks and isinstance(gate.provider, ListsTasks),
            notify=recorder.notice,
        )

    def created(self) -> int:
        """A create of this run was answered: its place in the order of creates (see ``TaskWatcher.created``)."""
        return self.watcher.created()

    async def follow(self, flight: Flight) -> Ended:
        """Until the task ends, the deadline passes, or the provider forgets it."""
        render = flight.render
        task_id = flight.task_id
        policy = self.options.poll
        last_poll: float | None = None
        not_before = 0.0
        retry_at: float | None = None  # set while retrying a "not found": the retry delay alone decides
        missing = 0
        errors = 0  # transient failures in a row: the backoff grows with them
        if self.planner.started(render.key):
            self.wake()  # one more scout: a task that was waiting becomes it
        # A task picked up from an earlier run gets a full deadline from now, not from when it was created.
        deadline = (time.time() if flight.resumed else flight.created) + policy.deadline
        if flight.seq is not None and self.watcher.enabled:
            watch = await self._watch(flight, deadline)
            if watch is None:
                return DeadlinePassed()
            if watch.task is not None:
                return Finished(watch.task, watch.seen_at or time.time())
            last_poll = watch.last_poll  # the list cannot tell about it: go on polling it on its own
        while True:
            at = retry_at if retry_at is not None else max(self._next_poll(flight, last_poll), not_before)
            if not await self._sleep_until(min(at, deadline)):
                continue  # woken early: what polls depend on changed, recompute
            if time.time() >= deadline and at > deadline:
                return DeadlinePassed()
            try:
                task = await self.gate.poll(task_id)
            except TaskNotFoundError as exc:
                if flight.sent_at is not None and time.time() - flight.sent_at < self.options.retry.not_visible_grace:
                    # A gateway's table lags behind its creates: "no such task" this soon means "not visible yet".
                    errors += 1
                    retry_at = time.time() + self.gate.delay(exc, errors)
                    last_poll = time.time()
                    continue
                missing += 1
                if missing >= self.options.retry.not_found_attempts:
                    return Gone()
                # A task just created may take a moment to show up: ask again after the retry delay only. The poll
                # schedule is anchored at the task's creation, and for a task created long ago (a resumed one) it
                # would space these retries up to ``max_interval`` apart.
                retry_at = time.time() + self.gate.delay(exc, missing)
                last_poll = time.time()
                continue
            except TransientError as exc:
                self.gate.stats.transient_errors += 1
                errors += 1
                if retry_at is not None:
                    retry_at = time.time() + self.gate.delay(exc, errors)
                else:
                    not_before = time.time() + self.gate.delay(exc, errors)
                continue
            errors = 0
            retry_at = None
            last_poll = time.time()
            if task.status.finished:
                return Finished(task, last_poll)
            self.seen(render, task)

    def seen(self, render: Render, task: Task) -> None:
        """A poll or list round found the task still running: note what it tells (informative, not durable)."""
        if task.raw_status and self._raw.get(render.key) != task.raw_status:
            self._raw[render.key] = task.raw_status  # kept once per change, not once per poll
            self.recorder.provider_status(render, task.raw_status)
        if task.status is TaskStatus.PROCESSING and self.recorder.status(render) == SUBMITTED:
            self.recorder.set_now(render, PROCESSING, task=task)
        if task.progress and self._progress.get(render.key) != task.progress:
            self._progress[render.key] = task.progress
            self.recorder.progress(render, task.progress)

    def ended(self, key: str) -> None:
        """A render no longer needs polls (its task ended, or the run let go of it)."""
        if self.planner.ended(key):
            self.wake()  # a scout left: the next oldest task takes its place

    def observe(self, seconds: float) -> None:
        """A task took ``seconds`` to render: the poll planner's estimate learns from it."""
        if self.planner.observe(seconds):
            self.wake()  # sleeping follows recompute their polls from the new estimate

    def stop(self) -> None:
        """Every follow raises ``Interrupted`` at its next step (the run is stopping)."""
        self.stopped = True
        self.ring()

    def ring(self) -> None:
        """Every follow looks up at once (the run stops, or gave up reaching the provider)."""
        self.wake()
        self.watcher.ring_all()

    def wake(self) -> None:
        self._board.set()
        self._board = anyio.Event()
        self.watcher.reschedule()

    def check(self) -> None:
        """Raises ``Interrupted`` once stopped, and ``Unreachable`` once the run gave up reaching the provider."""
        if self.stopped:
            raise Interrupted
        self.gate.reach.check()

    async def _watch(self, flight: Flight, deadline: float) -> Watch | None:
        """Follow the task through the watcher's list rounds: the watch once settled (its finished task, or
        ``alone``: poll it on its own), or ``None`` when the deadline passed first."""
        assert flight.seq is not None
        watch = self.watcher.watch(flight.task_id, seq=flight.seq, key=flight)
        # A task still "running" in the list long after it should have ended is asked about on its own, in case the
        # provider's list lags behind.
        overdue = self.planner.overdue_after()
        settled = await self.watcher.wait(
            watch, created=flight.created, deadline=deadline, overdue_after=overdue, ask=self._ask, check=self.check
        )
        return watch if settled else None

    async def _ask(self, task_id: str) -> Task | None:
        """One poll of an overdue task; ``None`` if it could not be asked (asked again later, the deadline stands)."""
        try:
            return await self.gate.poll(task_id)
        except (TransientError, TaskNotFoundError):
            return None

    def _watch_due(self, watch: Watch) -> float:
        flight: Flight = watch.key
        return self._next_poll(flight, watch.last_poll, batched=True)

    def _seen_running(self, watch: Watch, task: Task) -> None:
        flight: Flight = watch.key
        self.seen(flight.render, task)

    def _next_poll(self, flight: Flight, last_poll: float | None, *, batched: bool = False) -> float:
        if flight.resumed and last_poll is None:
            return time.time()
        return self.planner.next_poll(flight.render.key, created=flight.created, last_poll=last_poll, batched=batched)

    async def _sleep_until(self, when: float) -> bool:
        """Sleep until ``when``; False if woken earlier by a change. Raises like ``check``."""
        self.check()
        delay = when - time.time()
        if delay > 0:
            board = self._board
            with anyio.move_on_after(delay):
                await board.wait()
                self.check()
                return False
        return True
