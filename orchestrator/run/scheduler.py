"""The scheduler: takes the shots a run must render through create -> poll -> download, within the account's limits.

Each shot is one task in an anyio task group, so one shot failing never touches the others. The order of every
step is what makes a run safe to kill at any moment (see docs/architecture.md and docs/wire.md, "Never bill twice"):

1. record the ``external_task_id`` durably (``queued`` while the shot waits for a slot), take a slot (tasks in
   flight), then mark it ``submitting`` as the create leaves: durably first where the provider cannot prove that a
   task does not exist (a gateway), so that a crash before the answer is never mistaken for "never sent";
2. send the create; record the ``task_id`` durably the moment the answer arrives. A create whose outcome is unknown
   (no answer after sending, a 5xx, a gateway's HTML page) is confirmed where the provider can (its lookup by
   external id or its task list, ``Capabilities``): a task found is adopted, and one proven absent (Kling direct) is
   created. Where the provider cannot confirm, the shot becomes ``unconfirmed`` and is never sent again on our own:
   the user attaches the task (``adopt``) or asks for a resend (``resend``). A duplicate refusal (1201) means the
   task exists: look it up; if it cannot be found the shot is ``unconfirmed`` too, never sent again under a new id;
3. poll (see ``orchestrator.run.polling``; all tasks in flight at once through the provider's task list when it has one,
   see ``orchestrator.run.watcher``) until the task ends, which gives its slot back; a task still running after the
   deadline is left ``pending-remote``;
4. download to ``<out>/<shot id>/<fp12>.mp4`` (``<fp12>-r<n>.mp4`` for attempt n > 1), retried on its own: a
   download failure never fails the shot's task, it leaves the shot ``downloading`` for the next run.

A resumed shot continues from its record: with a task id it is polled, never recreated; ``submitting`` without a
task id is confirmed first (or left ``unconfirmed``), and ``queued`` was never sent where ``submitting`` is durable.
Retries after a failed task use a new attempt number, so a new external id ("-r2").

Rate limiting never fails a shot: 1302/1303/429 lower the in-flight target (``AdaptiveSlots``) and the call is
retried after a backoff. An account error (auth, arrears, quota) stops new submissions at once; tasks in flight are
still followed to the end and recorded. A provider that refuses every connection (wrong base URL, closed port) for
``unreachable_at_start`` seconds before it has answered once, or ``unreachable_after`` seconds later on, ends the run
the same way, and polling stops too; no shot is failed for it, each stays resumable. ``interrupt()`` (Ctrl-C) stops
submissions and polling, lets creates in progress get their task ids recorded (for at most ``interrupt_grace``
seconds), and a second call stops at once.
The scheduler never prints: it reports through events (``orchestrator.run.events``).
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

import anyio

from orchestrator.errors import (
    AccountError,
    ConcurrencyLimitError,
    DownloadError,
    DuplicateExternalIdError,
    ManifestError,
    OrchestratorError,
    ProviderError,
    RateLimitedError,
    ShotRejectedError,
    TaskNotFoundError,
    TransientError,
)
from orchestrator.plan.pricing import Pricing
from orchestrator.providers.base import MAX_LIST_PAGE, Capabilities, ListsTasks, Provider, Task, TaskStatus
from orchestrator.run.events import EventBus
from orchestrator.run.limits import AdaptiveSlots, RateBucket, Stopped, backoff_delay
from orchestrator.run.options import DEFAULT_RETRY_POLICY as DEFAULT_RETRY_POLICY  # re-exported: the scheduler's config
from orchestrator.run.options import RetryPolicy as RetryPolicy
from orchestrator.run.options import RunOptions as RunOptions
from orchestrator.run.polling import PollPlanner
from orchestrator.run.reachability import Reachability, Unreachable, Unresolved
from orchestrator.run.recorder import Recorder
from orchestrator.run.watcher import TaskWatcher, Watch
from orchestrator.spec.fingerprint import request_record
from orchestrator.spec.shot import ResolvedShot
from orchestrator.store.manifest import (
    DOWNLOADING,
    FAILED,
    PENDING,
    PENDING_REMOTE,
    PROCESSING,
    QUEUED,
    SUBMITTED,
    SUBMITTING,
    SUCCEEDED,
    UNCONFIRMED,
    ManifestStore,
    Output,
    ShotRecord,
    epoch_seconds,
    now_iso,
    start_render,
)

_T = TypeVar("_T")
IN_FLIGHT_STATES = (SUBMITTED, PROCESSING, DOWNLOADING, PENDING_REMOTE)
TASK_ID_UNKNOWN = "submitted, task id unknown"


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
    # Per shot, when each step happened (wall clock): slot, sent, answered, detected, released, downloaded, and the
    # provider's own created/ended times. Cheap to keep, and what the benchmark's breakdown of a run is made of.
    timeline: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.creates + self.polls + self.lists + self.lookups + self.downloads


class _Interrupted(Exception):
    """The run is stopping; leave this shot as recorded."""


@dataclass
class _Flight:
    """One shot's task while we follow it. ``created`` is wall-clock seconds (time.time)."""

    shot: ResolvedShot
    created: float
    holds_slot: bool = False
    resumed: bool = False  # picked up from an earlier run: poll at once
    seq: int | None = None  # created by this run, the seq-th (see TaskWatcher.created)
    sent_at: float | None = None  # when its create was sent, if known (this run, or the record's submitted_at)


class Scheduler:
    """Runs shots against one provider, recording every step in ``store``. Use ``await scheduler.run(shots)``."""

    def __init__(
        self,
        *,
        provider: Provider,
        store: ManifestStore,
        options: RunOptions | None = None,
        bus: EventBus | None = None,
        out_dir: Path | None = None,
        pricing: Pricing | None = None,
    ) -> None:
        self.provider = provider
        self.caps: Capabilities = getattr(provider, "capabilities", None) or Capabilities()
        self.store = store
        self.options = options or RunOptions()
        self.bus = bus or EventBus()
        self.out_dir = (out_dir or store.directory).resolve()
        self._store_dir = store.directory.resolve()  # resolved once, not once per video (a syscall per part)
        self.pricing = pricing
        self.slots = AdaptiveSlots(self.options.concurrency, cooldown=self.options.congestion_cooldown)
        self.bucket = RateBucket(self.options.requests_per_second)
        self._api_calls = anyio.CapacityLimiter(max(1, self.options.max_api_calls))
        self._deck = anyio.CapacityLimiter(max(1, min(self.options.on_deck, self.options.concurrency)))
        self._downloads = anyio.CapacityLimiter(max(1, self.options.max_downloads))
        self._create_calls = anyio.CapacityLimiter(max(1, self.options.max_creates))
        self.stats = SchedulerStats()
        self.recorder = Recorder(store=store, bus=self.bus, timeline=self.stats.timeline)
        self.abort_reason: str | None = None
        self.interrupted = False
        self._rng = random.Random(self.options.seed)
        self.planner = PollPlanner(
            self.options.poll, requests_per_second=self.options.requests_per_second, rng=self._rng
        )
        self._board = anyio.Event()  # set (and replaced) when what polls depend on changes
        self._scope: anyio.CancelScope | None = None
        self._interrupts = 0
        self._fresh: frozenset[str] = frozenset()
        self._resend: frozenset[str] = frozenset()
        self._progress: dict[str, str] = {}  # shot id -> the progress last reported
        self._flights: dict[str, _Flight] = {}  # shot id -> its flight while it may hold a slot
        self._creating = 0  # creates under way (from the rate bucket to the answer)
        self._creates_done = anyio.Event()  # set whenever no create is under way
        self._creates_done.set()
        self.watcher = TaskWatcher(
            fetch=self._list_round,
            schedule=self._watch_due,
            on_seen=self._seen_running,
            retry_delay=self._delay,
            min_gap=self.options.poll.batch_min_interval,
            enabled=self.options.poll.batch and self.caps.list_tasks and isinstance(provider, ListsTasks),
            notify=self.recorder.notice,
        )
        self._rounds: anyio.CancelScope | None = None  # the watcher's rounds, while they run
        self._shots_left = 0
        self.reach = Reachability(
            endpoint=getattr(self.provider, "base_url", "") or self.provider.name,
            at_start=self.options.unreachable_at_start,
            after=self.options.unreachable_after,
            notify=self.recorder.notice,
            on_give_up=self._give_up,
        )

    # --- control ------------------------------------------------------------------------------------------------

    async def run(
        self, shots: Sequence[ResolvedShot], *, fresh: Collection[str] = (), resend: Collection[str] = ()
    ) -> SchedulerStats:
        """Render ``shots`` (resuming what their records say). Returns when each shot has reached a resting state.

        Shots in ``fresh`` (forced) are rendered anew even when their record holds a task that could be reused.
        Unconfirmed shots are sent again only when in ``resend``: the user's word that a second bill is acceptable.
        """
        self._fresh = frozenset(fresh)
        self._resend = frozenset(resend)
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                async with anyio.create_task_group() as group:
                    self._shots_left = len(shots)
                    for shot in shots:
                        group.start_soon(self._run_shot, shot)
                    if shots and self.watcher.enabled:
                        group.start_soon(self._watch_rounds)
        except* ManifestError as failures:
            # The manifest cannot be written (disk full, permissions): nothing is safe any more, stop the run.
            raise failures.exceptions[0] from None
        self.stats.peak_in_flight = self.slots.peak
        self.stats.manifest_writes = self.store.writes
        self.stats.manifest_write_seconds = self.store.write_seconds
        return self.stats

    def stop_submitting(self, reason: str) -> None:
        """No new creates from now on; tasks in flight are followed to the end."""
        if not self.slots.closed:
            self.slots.close()
            self.recorder.notice(f"stopped submitting: {reason}")

    def interrupt(self) -> None:
        """First call: stop submitting and polling, record creates in progress (bounded wait). Second: stop now."""
        self._interrupts += 1
        self.interrupted = True
        if self._interrupts == 1:
            self.stop_submitting("interrupted; recording work in progress (interrupt again to stop at once)")
            self._wake()
            self.watcher.ring_all()
            if self._scope is not None:
                self._scope.deadline = min(self._scope.deadline, anyio.current_time() + self.options.interrupt_grace)
        elif self._scope is not None:
            self._scope.cancel()

    # --- one shot -----------------------------------------------------------------------------------------------

    async def _run_shot(self, shot: ResolvedShot) -> None:
        try:
            flight = await self._start(shot)
            if flight is None:
                return
            task = await self._follow(flight)
            if task is not None:
                await self._download(flight, task)
        except _Interrupted:
            return
        except Unresolved as exc:
            await self.recorder.note_error(shot.id, str(exc))
        except AccountError as exc:
            self._account_error(exc)
            await self.recorder.note_error(shot.id, f"stopped: {exc.message}")
        except ManifestError:
            raise
        except OrchestratorError as exc:
            # Anything else this shot ran into stays with this shot; the record keeps its resumable state.
            await self.recorder.note_error(shot.id, exc.message)
        finally:
            # Whatever happened, a slot this shot took is given back (a leaked slot would stall the whole run).
            held = self._flights.pop(shot.id, None)
            if held is not None:
                self._end_flight(held)
            self._shots_left -= 1
            if self._shots_left == 0 and self._rounds is not None:
                self._rounds.cancel()

    async def _watch_rounds(self) -> None:
        with anyio.CancelScope() as self._rounds:
            if self._shots_left:
                await self.watcher.run()

    async def _start(self, shot: ResolvedShot) -> _Flight | None:
        """Get the shot's task in flight: resumed from its record, found by external id, or created."""
        record = self.store.record(shot.id)
        if record is not None and record.fingerprint == shot.fingerprint:
            attempt_shot = replace(shot, attempt=max(1, record.attempts))
            if record.task_id and record.status in IN_FLIGHT_STATES:
                return self._resumed(attempt_shot, record)
            if record.task_id and record.status == SUCCEEDED and shot.id not in self._fresh:
                # Its video went missing or changed on disk: fetch it again from the paid task, do not rerender.
                return self._resumed(attempt_shot, record)
            if record.status == UNCONFIRMED and shot.id in self._resend:
                return await self._submit_new(shot, record)  # a new attempt, so a new external id
            if record.external_task_id and self._outcome_unknown(record):
                return await self._recover_unknown(attempt_shot, record)
        return await self._submit_new(shot, record)

    def _outcome_unknown(self, record: ShotRecord) -> bool:
        """May the record's create have reached the provider without our seeing its answer?"""
        if record.status in (SUBMITTING, UNCONFIRMED):
            return True
        if record.status == PENDING_REMOTE:
            return not record.task_id
        # ``queued`` is only ever left behind with the create unsent where ``submitting`` is durable; elsewhere the
        # create may have left before its (deferred) ``submitting`` reached the disk.
        return record.status == QUEUED and self.caps.absence_is_proof

    def _resumed(self, shot: ResolvedShot, record: ShotRecord) -> _Flight:
        # Its task is in flight at the provider already: it holds an account slot whatever our target says.
        sent_at = epoch_seconds(record.submitted_at)
        flight = self._track(_Flight(shot=shot, created=sent_at or time.time(), resumed=True, sent_at=sent_at))
        self._take_resumed_slot(flight)
        return flight

    async def _recover_unknown(self, shot: ResolvedShot, record: ShotRecord) -> _Flight | None:
        """A create may or may not have reached the provider (crash, or an unknown outcome): confirm it first.

        Found: adopt it. Proven absent (a provider whose answer covers the whole account): create it. Otherwise the
        shot stays (or becomes) ``unconfirmed`` and nothing is sent.
        """
        flight = self._resumed(shot, record)
        external = record.external_task_id or shot.external_task_id
        task = await self._lookup(external)
        if task is not None:
            await self._record_task(flight, task, detail="found by external id")
            return flight
        if record.status in (UNCONFIRMED, PENDING_REMOTE):
            # Left unconfirmed earlier (or refused as a duplicate yet not found): only the user may resend it.
            await self._unconfirmed(shot, record.error or TASK_ID_UNKNOWN, again=True)
            return None
        if not self.caps.absence_is_proof:
            await self._unconfirmed(shot, "the run stopped before the provider's answer to its create was recorded")
            return None
        return await self._create(flight)

    async def _submit_new(self, shot: ResolvedShot, previous: ShotRecord | None) -> _Flight | None:
        if self.slots.closed:
            return None
        if self.slots.try_take():
            flight = self._track(_Flight(shot=self._new_attempt(shot, previous), created=time.time(), holds_slot=True))
            self.recorder.mark(shot.id, "slot")
            return await self._create(flight)
        # No slot free: wait "on deck". The next few shots in line record ``submitting`` while they wait, so that
        # when a slot frees the create leaves at once instead of after a manifest write.
        async with self._deck:
            if self.slots.closed:
                return None
            flight = self._track(_Flight(shot=self._new_attempt(shot, previous), created=time.time()))
            await self._mark_queued(flight.shot)
            try:
                await self.slots.acquire()
            except Stopped:
                await self.recorder.set(shot.id, PENDING, detail="not submitted", error=self._not_submitted())
                return None
            flight.holds_slot = True
            self.recorder.mark(shot.id, "slot")
        # The create leaves now. Where a lookup can settle a crash in between, this need not wait for the disk.
        await self.recorder.set(shot.id, SUBMITTING, submitted_at=now_iso(), durable=not self.caps.absence_is_proof)
        flight.created = time.time()
        return await self._send(flight)

    def _not_submitted(self) -> str:
        return f"not submitted: {self.unreachable or self.abort_reason or 'run stopped'}"

    def _new_attempt(self, shot: ResolvedShot, previous: ShotRecord | None) -> ResolvedShot:
        """Start a fresh record for the shot's next attempt; the shot as it will be sent (with its attempt)."""
        record = start_render(previous, fingerprint=shot.fingerprint, request=request_record(shot))
        # A record left "pending" (or "queued", see _outcome_unknown) never reached the provider under its current
        # attempt number: reuse it.
        unused = (
            previous is not None and previous.status in (PENDING, QUEUED) and previous.fingerprint == shot.fingerprint
        )
        record.attempts = max(1, record.attempts if unused else record.attempts + 1)
        self.store.put(shot.id, record)
        return replace(shot, attempt=record.attempts)

    # --- create -------------------------------------------------------------------------------------------------

    async def _mark_queued(self, shot: ResolvedShot) -> None:
        """Durably record the external id the create will carry while the shot waits for a slot."""
        await self.recorder.set(
            shot.id,
            QUEUED,
            external_task_id=shot.external_task_id,
            task_id=None,
            error=None,
            submitted_at=None,
            attempts=shot.attempt,
        )

    async def _mark_submitting(self, shot: ResolvedShot) -> None:
        """Durably record the external id the create will carry, before it can be sent."""
        await self.recorder.set(
            shot.id,
            SUBMITTING,
            external_task_id=shot.external_task_id,
            task_id=None,
            error=None,
            submitted_at=now_iso(),
            attempts=shot.attempt,
        )

    async def _create(self, flight: _Flight) -> _Flight | None:
        await self._mark_submitting(flight.shot)
        return await self._send(flight)

    async def _send(self, flight: _Flight) -> _Flight | None:
        """Send the create (already recorded as submitting) until the provider answers for good."""
        shot = flight.shot
        tries = 0
        maybe_sent = False  # a create of this call may have reached the provider
        while True:
            tries += 1
            if tries > 1 and self.slots.closed:
                if not maybe_sent:
                    # Every try so far was refused for sure (rate limits): nothing was created under this id.
                    await self.recorder.set(shot.id, PENDING, detail="not submitted", error=self._not_submitted())
                # Otherwise left "submitting": the next run confirms the external id before sending anything.
                raise _Interrupted
            try:
                with self._create_under_way():
                    await self.bucket.acquire()
                    self.stats.creates += 1
                    sent = flight.sent_at = time.time()
                    async with self._create_calls:
                        self.recorder.mark(shot.id, "sent")
                        task = await self.reach.call(self.provider.create_task(shot))
                self.recorder.mark(shot.id, "answered")
            except DuplicateExternalIdError:
                found = await self._lookup(shot.external_task_id)
                if found is None:
                    await self._unconfirmed(shot, _duplicate_reason(shot))
                    return None
                task = found
            except ShotRejectedError as exc:
                await self.recorder.set(shot.id, FAILED, detail=exc.message, error=exc.message, finished_at=now_iso())
                return None
            except AccountError as exc:
                # A definite refusal: nothing was created, so the next run may reuse this attempt's id.
                await self.recorder.set(shot.id, PENDING, detail="not submitted", error=f"not submitted: {exc.message}")
                raise
            except (RateLimitedError, ConcurrencyLimitError) as exc:
                await self._congested(flight, exc, tries)
                continue
            except TransientError as exc:
                self.stats.transient_errors += 1
                if exc.may_have_reached_provider:
                    maybe_sent = True
                    found = await self._lookup(shot.external_task_id)
                    if found is not None:
                        flight.created = found.started_on(sent=sent, received=time.time())
                        flight.seq = self.watcher.created()
                        await self._record_task(flight, found, detail="found by external id after " + exc.message)
                        return flight
                    if not self.caps.absence_is_proof:
                        # It may exist, billed, on an upstream account no lookup reaches: never resend on our own.
                        await self._unconfirmed(shot, exc.message)
                        return None
                try:
                    await self._pause(exc, tries)
                except Unreachable as stop:
                    if maybe_sent:
                        raise  # left "submitting": the next run looks it up before sending anything
                    # Every try was refused before it was sent: nothing was created, so the next run may reuse
                    # this attempt's id (the provider would refuse it as a duplicate anyway).
                    await self.recorder.set(shot.id, PENDING, detail="not submitted", error=f"not submitted: {stop}")
                    raise _Interrupted from None
                continue
            flight.created = task.started_on(sent=sent, received=time.time())
            flight.seq = self.watcher.created()
            await self._record_task(flight, task)
            return flight

    async def _congested(self, flight: _Flight, exc: TransientError, tries: int) -> None:
        """1302/1303/429 on a create: lower the target, give the slot back, wait, and queue for a slot again."""
        self.stats.congestion += 1
        if self.slots.congested():
            self.recorder.notice(f"provider says too many ({exc.message}); in-flight target now {self.slots.capacity}")
        self._give_back_slot(flight)
        await self._pause(exc, tries)
        try:
            await self.slots.acquire()
        except Stopped:
            # The 429 was a definite answer: nothing was created under this id yet.
            await self.recorder.set(flight.shot.id, PENDING, detail="not submitted", error=self._not_submitted())
            raise _Interrupted from None
        flight.holds_slot = True
        self.recorder.mark(flight.shot.id, "slot")

    async def _record_task(self, flight: _Flight, task: Task, *, detail: str = "") -> None:
        await self.recorder.set(
            flight.shot.id,
            SUBMITTED,
            detail=detail or f"task {task.task_id}",
            task_id=task.task_id,
            error=None,
            task=task,
        )
        if self.interrupted:
            raise _Interrupted

    async def _lookup(self, external_task_id: str) -> Task | None:
        """Find the task created under ``external_task_id``: by the provider's lookup, else in its task list.

        ``None`` when neither finds it, or the provider has neither (``Capabilities``): whether that proves anything
        is ``absence_is_proof``'s to say.
        """
        if not self.caps.can_confirm:
            return None
        policy = self.options.retry
        failures = 0
        for tries in itertools.count(1):
            try:
                return await self._query("lookups", partial(self._find, external_task_id))
            except TaskNotFoundError:
                return None
            except TransientError as exc:
                self.stats.transient_errors += 1
                # Rate limiting never gives up a shot: only failures of the provider itself count towards the cap.
                if not isinstance(exc, RateLimitedError | ConcurrencyLimitError):
                    failures += 1
                if failures >= policy.lookup_attempts:
                    raise Unresolved(
                        f"could not look up task {external_task_id} ({exc.message}); run again to resume"
                    ) from None
                await self._pause(exc, tries)
        return None

    async def _find(self, external_task_id: str) -> Task | None:
        if self.caps.find_by_external_id:
            return await self.provider.find_task(external_task_id)
        assert isinstance(self.provider, ListsTasks)
        tasks = await self.provider.list_tasks(page_size=MAX_LIST_PAGE)
        return next((task for task in tasks if task.external_task_id == external_task_id), None)

    async def _unconfirmed(self, shot: ResolvedShot, reason: str, *, again: bool = False) -> None:
        """Leave the shot ``unconfirmed``: its create may have been billed, and nothing is sent without the user."""
        message = reason if again else _unconfirmed_message(shot, reason, provider=self.provider.name)
        await self.recorder.set(shot.id, UNCONFIRMED, detail="create not confirmed", error=message)

    # --- poll ---------------------------------------------------------------------------------------------------

    async def _follow(self, flight: _Flight) -> Task | None:
        """Poll until the task ends. Returns the finished task when a video is to be downloaded."""
        shot = flight.shot
        record = self.recorder.record(shot.id)
        task_id = record.task_id or ""
        policy = self.options.poll
        last_poll: float | None = None
        not_before = 0.0
        retry_at: float | None = None  # set while retrying a "not found": the retry delay alone decides
        missing = 0
        errors = 0  # transient failures in a row: the backoff grows with them
        if self.planner.started(shot.id):
            self._wake()  # one more scout: a task that was waiting becomes it
        # A task picked up from an earlier run gets a full deadline from now, not from when it was created.
        deadline = (time.time() if flight.resumed else flight.created) + policy.deadline
        if flight.seq is not None and self.watcher.enabled:
            watch = await self._watch(flight, task_id, deadline)
            if watch is None:
                return None
            if watch.task is not None:
                self.recorder.mark(shot.id, "detected", watch.seen_at)
                return await self._finished(flight, watch.task)
            last_poll = watch.last_poll  # the list cannot tell about it: go on polling it on its own
        while True:
            at = retry_at if retry_at is not None else max(self._next_poll(flight, last_poll), not_before)
            if not await self._sleep_until(min(at, deadline)):
                continue  # woken early: what polls depend on changed, recompute
            if time.time() >= deadline and at > deadline:
                await self._deadline_passed(shot)
                return None
            try:
                task = await self._query("polls", partial(self.provider.get_task, task_id))
            except TaskNotFoundError as exc:
                if flight.sent_at is not None and time.time() - flight.sent_at < self.options.retry.not_visible_grace:
                    # A gateway's table lags behind its creates: "no such task" this soon means "not visible yet".
                    errors += 1
                    retry_at = time.time() + self._delay(exc, errors)
                    last_poll = time.time()
                    continue
                missing += 1
                if missing >= self.options.retry.not_found_attempts:
                    await self._forgotten(shot, task_id, succeeded_before=record.status == SUCCEEDED)
                    return None
                # A task just created may take a moment to show up: ask again after the retry delay only. The poll
                # schedule is anchored at the task's creation, and for a task created long ago (a resumed one) it
                # would space these retries up to ``max_interval`` apart.
                retry_at = time.time() + self._delay(exc, missing)
                last_poll = time.time()
                continue
            except TransientError as exc:
                self.stats.transient_errors += 1
                errors += 1
                if retry_at is not None:
                    retry_at = time.time() + self._delay(exc, errors)
                else:
                    not_before = time.time() + self._delay(exc, errors)
                continue
            errors = 0
            retry_at = None
            last_poll = time.time()
            if task.status.finished:
                self.recorder.mark(shot.id, "detected", last_poll)
                return await self._finished(flight, task)
            self._seen(shot.id, task)

    async def _watch(self, flight: _Flight, task_id: str, deadline: float) -> Watch | None:
        """Follow the task through the watcher's list rounds: the watch once settled (its finished task, or
        ``alone``: poll it on its own), or ``None`` when the deadline passed first (recorded)."""
        assert flight.seq is not None
        watch = self.watcher.watch(task_id, seq=flight.seq, key=flight)
        # A task still "running" in the list long after it should have ended is asked about on its own, in case the
        # provider's list lags behind.
        overdue = self.planner.overdue_after()
        settled = await self.watcher.wait(
            watch, created=flight.created, deadline=deadline, overdue_after=overdue, ask=self._ask, check=self._check
        )
        if not settled:
            await self._deadline_passed(flight.shot)
            return None
        return watch

    async def _ask(self, task_id: str) -> Task | None:
        """One poll of an overdue task; ``None`` if it could not be asked (asked again later, the deadline stands)."""
        try:
            return await self._query("polls", partial(self.provider.get_task, task_id))
        except (TransientError, TaskNotFoundError):
            return None

    async def _list_round(self, page_size: int) -> list[Task]:
        assert isinstance(self.provider, ListsTasks)
        return await self._query("lists", partial(self.provider.list_tasks, page_size=page_size))

    async def _query(self, kind: Literal["polls", "lists", "lookups"], request: Callable[[], Awaitable[_T]]) -> _T:
        """A poll, list round or lookup: a token from the rate bucket, counted, then one of the ``max_api_calls``
        places, watched for reachability. ``request`` makes the call only once it may go."""
        await self.bucket.acquire()
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        async with self._api_calls:
            return await self.reach.call(request())

    def _watch_due(self, watch: Watch) -> float:
        flight: _Flight = watch.key
        return self._next_poll(flight, watch.last_poll, batched=True)

    def _seen_running(self, watch: Watch, task: Task) -> None:
        flight: _Flight = watch.key
        self._seen(flight.shot.id, task)

    def _seen(self, shot_id: str, task: Task) -> None:
        """A poll or list round found the task still running: note what it tells (informative, not durable)."""
        record = self.recorder.record(shot_id)
        if task.raw_status and record.provider_status != task.raw_status:
            self.store.update(shot_id, provider_status=task.raw_status)
        if task.status is TaskStatus.PROCESSING and record.status == SUBMITTED:
            self.recorder.set_now(shot_id, PROCESSING, task=task)
        if task.progress and self._progress.get(shot_id) != task.progress:
            self._progress[shot_id] = task.progress
            self.recorder.progress(shot_id, task.progress)

    async def _deadline_passed(self, shot: ResolvedShot) -> None:
        await self.recorder.set(
            shot.id,
            PENDING_REMOTE,
            detail="deadline passed",
            error=f"still rendering after {self.options.poll.deadline:g} s; run again to pick it up",
        )

    async def _forgotten(self, shot: ResolvedShot, task_id: str, *, succeeded_before: bool) -> None:
        """The provider does not know the shot's task (any more): fail the shot, so the next run renders it anew."""
        if succeeded_before:
            # Its video went missing on disk and the paid task is gone (providers expire them, Kling after 30 days).
            message = (
                f"the provider no longer has task {task_id} (tasks expire), so its video cannot be downloaded again; "
                "run again to render the shot anew (a new, billed render)"
            )
        else:
            message = f"task {task_id} not found at the provider; run again to submit the shot as a new attempt"
        await self.recorder.set(shot.id, FAILED, detail=message, error=message, finished_at=now_iso())

    def _next_poll(self, flight: _Flight, last_poll: float | None, *, batched: bool = False) -> float:
        if flight.resumed and last_poll is None:
            return time.time()
        return self.planner.next_poll(flight.shot.id, created=flight.created, last_poll=last_poll, batched=batched)

    async def _sleep_until(self, when: float) -> bool:
        """Sleep until ``when``; False if woken earlier by a change. Raises like ``_check``."""
        self._check()
        delay = when - time.time()
        if delay > 0:
            board = self._board
            with anyio.move_on_after(delay):
                await board.wait()
                self._check()
                return False
        return True

    def _check(self) -> None:
        """Raises ``_Interrupted`` once interrupted, and ``Unreachable`` once the run gave up reaching the provider."""
        if self.interrupted:
            raise _Interrupted
        self.reach.check()

    async def _finished(self, flight: _Flight, task: Task) -> Task | None:
        shot = flight.shot
        self._end_flight(flight)
        if task.status is TaskStatus.FAILED:
            reason = task.status_message or "the provider reported the task failed"
            await self.recorder.set(
                shot.id,
                FAILED,
                detail=reason,
                error=reason,
                finished_at=now_iso(),
                task=task,
                charged=0.0,  # failed tasks are not charged
                provider_status=task.raw_status or None,
            )
            return None
        self.slots.succeeded()
        self._observe(flight, task)
        if not task.videos:
            message = "the provider reported success but returned no video"
            await self.recorder.set(shot.id, FAILED, detail=message, error=message, finished_at=now_iso(), task=task)
            return None
        # Not awaited on disk: a crash before the next write leaves the shot "processing" with its task id, and
        # the next run polls it and downloads just the same. The success after the download is durable.
        await self.recorder.set(shot.id, DOWNLOADING, task=task, durable=False)
        return task

    def _observe(self, flight: _Flight, task: Task) -> None:
        if task.created_at and task.updated_at:
            self.recorder.mark(flight.shot.id, "provider_created", task.created_at / 1000)
            self.recorder.mark(flight.shot.id, "provider_ended", task.updated_at / 1000)
        if task.created_at and task.updated_at and task.updated_at > task.created_at:
            seconds = (task.updated_at - task.created_at) / 1000
        elif flight.resumed:
            return  # our own clock says nothing about a task that may have finished long before this run
        else:
            seconds = time.time() - flight.created
        self.stats.render_seconds.append(seconds)
        if self.planner.observe(seconds):
            self._wake()  # sleeping tasks recompute their polls from the new estimate

    # --- download -----------------------------------------------------------------------------------------------

    async def _download(self, flight: _Flight, task: Task) -> None:
        shot = flight.shot
        try:
            dest = self._output_path(shot)
        except ShotRejectedError as exc:
            await self.recorder.set(shot.id, FAILED, detail=exc.message, error=exc.message, finished_at=now_iso())
            return
        policy = self.options.retry
        video = task.videos[0]
        with anyio.move_on_after(self.options.download_defer):
            await self._creates_done.wait()
        for tries in range(1, policy.download_attempts + 1):
            try:
                await self.bucket.acquire()
                self.stats.downloads += 1
                async with self._downloads:
                    done = await self.provider.download(video.url, dest)
            except (DownloadError, TransientError) as exc:
                retryable = not isinstance(exc, DownloadError) or exc.retryable
                if tries == policy.download_attempts or not retryable:
                    message = f"download failed ({exc.message}); the render is safe at the provider, run again"
                    await self.recorder.set(shot.id, DOWNLOADING, detail=message, error=message)
                    return
                await anyio.sleep(backoff_delay(tries, base=policy.base, cap=policy.cap, rng=self._rng))
                continue
            self.recorder.mark(shot.id, "downloaded")
            output = Output(path=self._relative(done.path), sha256=done.sha256, bytes=done.bytes)
            cost = self.pricing.shot_units(shot) if self.pricing else None
            await self.recorder.set(
                shot.id,
                SUCCEEDED,
                outputs=[output],
                error=None,
                finished_at=now_iso(),
                cost=cost,
                charged=task.units_charged,
                provider_status=task.raw_status or None,
                task=task,
            )
            return

    def _output_path(self, shot: ResolvedShot) -> Path:
        name = shot.fingerprint[:12] + (f"-r{shot.attempt}" if shot.attempt > 1 else "")
        dest = (self.out_dir / shot.id / f"{name}.mp4").resolve()
        if not dest.is_relative_to(self.out_dir):
            raise ShotRejectedError(f"shot id {shot.id!r} would write outside the output folder")
        return dest

    def _relative(self, path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), self._store_dir)).as_posix()

    # --- shared helpers -----------------------------------------------------------------------------------------

    def _account_error(self, exc: AccountError) -> None:
        if self.abort_reason is None:
            self.abort_reason = exc.message
        self.stop_submitting(exc.message)

    async def _pause(self, exc: ProviderError, tries: int, *, floor: float = 0.0) -> None:
        """Wait before a retry. Raises ``Unreachable`` when the run gives up reaching the provider meanwhile."""
        self.reach.check()
        with anyio.move_on_after(self._delay(exc, tries, floor=floor)):
            await self.reach.gave_up.wait()
        self.reach.check()

    def _delay(self, exc: ProviderError, tries: int, *, floor: float = 0.0) -> float:
        policy = self.options.retry
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        floor = max(floor, policy.floor_for(exc))
        delay = backoff_delay(
            tries, base=policy.base, cap=policy.cap, retry_after=retry_after, floor=floor, rng=self._rng
        )
        return self.reach.retry_delay(exc, delay)

    # --- can the provider be reached? (see orchestrator.run.reachability) ---------------------------------------------

    @property
    def unreachable(self) -> str | None:
        """Why the run gave up reaching the provider, once it has."""
        return self.reach.unreachable

    def _give_up(self, reason: str) -> None:
        """Stop the run: no new creates, and every shot waiting on the provider stops and keeps its record."""
        if self.abort_reason is None:
            self.abort_reason = reason
        self.stop_submitting(reason)
        self._wake()
        self.watcher.ring_all()

    def _track(self, flight: _Flight) -> _Flight:
        self._flights[flight.shot.id] = flight
        return flight

    def _take_resumed_slot(self, flight: _Flight) -> None:
        self.slots.take()
        flight.holds_slot = True
        self.recorder.mark(flight.shot.id, "slot")

    def _give_back_slot(self, flight: _Flight) -> None:
        if flight.holds_slot:
            flight.holds_slot = False
            self.slots.release()
            self.recorder.mark(flight.shot.id, "released")

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

    def _end_flight(self, flight: _Flight) -> None:
        self._give_back_slot(flight)
        if self.planner.ended(flight.shot.id):
            self._wake()  # a scout left: the next oldest task takes its place

    def _wake(self) -> None:
        self._board.set()
        self._board = anyio.Event()
        self.watcher.reschedule()


def _duplicate_reason(shot: ResolvedShot) -> str:
    return f"{TASK_ID_UNKNOWN}: the provider refused external id {shot.external_task_id} as already used"


def _unconfirmed_message(shot: ResolvedShot, reason: str, *, provider: str) -> str:
    return (
        f"unconfirmed: the create may have reached {provider} and been billed ({reason}), and {provider} cannot "
        f"confirm it, so it is not sent again on its own. Find the task with external id {shot.external_task_id} "
        f"in your provider's console and attach it (orchestrator adopt SPEC {shot.id} TASK_ID), or resend it "
        "knowingly (orchestrator run SPEC --resend-unconfirmed)"
    )
