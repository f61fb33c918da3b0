"""The scheduler: takes a run's renders through create -> poll -> download, within the account's limits.

It acts on ``Render`` values the plan decided (``orchestrator.plan.work``: follow a task, confirm an unknown create,
or create), never on records: it does not decide again what the plan decided. Three collaborators carry its
concerns: the ``Gate`` sends every request (rate, slots, limiters, reachability, counters, the one retry policy),
the ``Follower`` follows tasks to their end and returns the finished task, and the ``Recorder`` turns each change
into an event, which the store writer, a listener, makes durable before anyone else hears of it.

Each render is one task in an anyio task group, so one render failing never touches the others. The order of every
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
4. download to ``<out>/<shot id>/<fp12>[-t<take>][-<variant>][-r<attempt>].mp4`` (plain ``<fp12>.mp4`` for the
   first attempt of a plain shot's first take), retried on its own: a
   download failure never fails the shot's task, it leaves the shot ``downloading`` for the next run.

A resumed render continues from what the plan says (``Start``): with a task id it is followed, never recreated;
``submitting`` without a task id is confirmed first (or left ``unconfirmed``), and ``queued`` was never sent where
``submitting`` is durable. Retries after a failed task are new attempts, so new external ids ("-r2").

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

import os
import random
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from orchestrator.errors import (
    AccountError,
    BudgetExhaustedError,
    ConcurrencyLimitError,
    DownloadError,
    DuplicateExternalIdError,
    ManifestError,
    OrchestratorError,
    RateLimitedError,
    ShotRejectedError,
    TransientError,
)
from orchestrator.plan.pricing import Pricing
from orchestrator.plan.work import IN_FLIGHT_STATES as IN_FLIGHT_STATES  # re-exported: where a task is in flight
from orchestrator.plan.work import Render, Start
from orchestrator.providers.base import Capabilities, Provider, Task, TaskStatus
from orchestrator.run.events import EventBus
from orchestrator.run.follow import DeadlinePassed, Ended, Flight, Follower, Gone, Interrupted
from orchestrator.run.gate import Gate
from orchestrator.run.gate import SchedulerStats as SchedulerStats  # re-exported: what a run counts
from orchestrator.run.limits import AdaptiveSlots, Stopped
from orchestrator.run.options import DEFAULT_RETRY_POLICY as DEFAULT_RETRY_POLICY  # re-exported: the run's config
from orchestrator.run.options import RetryPolicy as RetryPolicy
from orchestrator.run.options import RunOptions as RunOptions
from orchestrator.run.polling import PollPlanner
from orchestrator.run.reachability import Reachability, Unreachable, Unresolved
from orchestrator.run.recorder import Recorder
from orchestrator.run.watcher import TaskWatcher
from orchestrator.store.manifest import (
    DOWNLOADING,
    FAILED,
    PENDING,
    PENDING_REMOTE,
    QUEUED,
    SUBMITTED,
    SUBMITTING,
    SUCCEEDED,
    UNCONFIRMED,
)
from orchestrator.store.records import OutputFile, output_stem
from orchestrator.store.timestamps import now_iso

if TYPE_CHECKING:
    from orchestrator.budget.session import BudgetSession
    from orchestrator.budget.shared import SharedBudget

TASK_ID_UNKNOWN = "submitted, task id unknown"


class Scheduler:
    """Runs renders against one provider, publishing every step on ``bus``. Use ``await scheduler.run(renders)``.

    The store is written by the bus's journal (``orchestrator.run.writer.StoreWriter``), never by the scheduler.
    ``budget`` is the studio's shared budget (``orchestrator.budget``), when several runs share one account.
    """

    def __init__(
        self,
        *,
        provider: Provider,
        bus: EventBus,
        out_dir: Path,
        options: RunOptions | None = None,
        pricing: Pricing | None = None,
        budget: SharedBudget | None = None,
    ) -> None:
        self.provider = provider
        self.options = options or RunOptions()
        self.bus = bus
        self.out_dir = out_dir.resolve()  # resolved once, not once per video (a syscall per part)
        self.pricing = pricing
        self.stats = SchedulerStats()
        self.recorder = Recorder(bus=self.bus, timeline=self.stats.timeline)
        self.abort_reason: str | None = None
        self.interrupted = False
        rng = random.Random(self.options.seed)
        self.reach = Reachability(
            endpoint=getattr(self.provider, "base_url", "") or self.provider.name,
            at_start=self.options.unreachable_at_start,
            after=self.options.unreachable_after,
            notify=self.recorder.notice,
            on_give_up=self._give_up,
        )
        self.gate = Gate(
            provider=provider,
            options=self.options,
            reach=self.reach,
            stats=self.stats,
            rng=rng,
            budget=_session(budget, notice=self.recorder.notice),
        )
        planner = PollPlanner(self.options.poll, requests_per_second=self.options.requests_per_second, rng=rng)
        self.follower = Follower(gate=self.gate, recorder=self.recorder, options=self.options, planner=planner)
        self._deck = anyio.CapacityLimiter(max(1, min(self.options.on_deck, self.options.concurrency)))
        self._scope: anyio.CancelScope | None = None
        self._interrupts = 0
        self._flights: dict[str, Flight] = {}  # render key -> its flight while it may hold a slot
        self._rounds: anyio.CancelScope | None = None  # the watcher's rounds, while they run
        self._refresher: anyio.CancelScope | None = None  # the shared budget's lease refreshes, while they run
        self._left = 0

    @property
    def caps(self) -> Capabilities:
        return self.gate.caps

    @property
    def slots(self) -> AdaptiveSlots:
        return self.gate.slots

    @property
    def watcher(self) -> TaskWatcher:
        return self.follower.watcher

    # --- control ------------------------------------------------------------------------------------------------

    async def run(self, renders: Sequence[Render]) -> SchedulerStats:
        """Take each render from where the plan says it starts to a resting state; returns when all have."""
        for render in renders:
            self.recorder.track(render)
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                # Tasks earlier runs left at the provider hold the account's slots: their leases are this run's.
                await self.gate.adopt([_lease_key(render) for render in renders if _holds_a_slot(render)])
                async with anyio.create_task_group() as group:
                    self._left = len(renders)
                    for render in renders:
                        group.start_soon(self._run_render, render)
                    if renders and self.watcher.enabled:
                        group.start_soon(self._watch_rounds)
                    if renders and self.gate.budget is not None:
                        group.start_soon(self._refresh_leases)
        except* ManifestError as failures:
            # The store cannot be written (disk full, permissions): nothing is safe any more, stop the run.
            raise failures.exceptions[0] from None
        finally:
            await self.gate.close_budget()
        self.stats.peak_in_flight = self.slots.peak
        journal = self.bus.journal
        self.stats.manifest_writes = getattr(journal, "commits", 0)
        self.stats.manifest_write_seconds = getattr(journal, "commit_seconds", 0.0)
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
            self.follower.stop()
            if self._scope is not None:
                self._scope.deadline = min(self._scope.deadline, anyio.current_time() + self.options.interrupt_grace)
        elif self._scope is not None:
            self._scope.cancel()

    @property
    def unreachable(self) -> str | None:
        """Why the run gave up reaching the provider, once it has."""
        return self.reach.unreachable

    # --- one render ---------------------------------------------------------------------------------------------

    async def _run_render(self, render: Render) -> None:
        try:
            flight = await self._start(render)
            if flight is None:
                return
            task = await self._ended(flight, await self.follower.follow(flight))
            if task is not None:
                await self._download(flight, task)
        except Interrupted:
            return
        except Unresolved as exc:
            await self.recorder.note_error(render, str(exc))
        except AccountError as exc:
            self._account_error(exc)
            await self.recorder.note_error(render, f"stopped: {exc.message}")
        except ManifestError:
            raise
        except OrchestratorError as exc:
            # Anything else this render ran into stays with it; the store keeps its resumable state.
            await self.recorder.note_error(render, exc.message)
        finally:
            # Whatever happened, a slot this render took is given back (a leaked slot would stall the whole run).
            held = self._flights.pop(render.key, None)
            if held is not None:
                self._end_flight(held)
            self._left -= 1
            if self._left == 0:
                for scope in (self._rounds, self._refresher):
                    if scope is not None:
                        scope.cancel()

    async def _watch_rounds(self) -> None:
        with anyio.CancelScope() as self._rounds:
            if self._left:
                await self.watcher.run()

    async def _refresh_leases(self) -> None:
        with anyio.CancelScope() as self._refresher:
            if self._left:
                await self.gate.refresh_leases()

    async def _start(self, render: Render) -> Flight | None:
        """Get the render's task in flight as the plan said: followed, confirmed, or created."""
        if render.start is Start.FOLLOW:
            return self._resumed(render)
        if render.start is Start.CONFIRM:
            return await self._confirm(render)
        return await self._submit_new(render)

    def _resumed(self, render: Render) -> Flight:
        # Its task is in flight at the provider already: it holds an account slot whatever our target says.
        sent_at = render.submitted_at
        flight = self._track(
            Flight(
                render=render,
                created=sent_at or time.time(),
                task_id=render.task_id or "",
                resumed=True,
                sent_at=sent_at,
            )
        )
        self.slots.take()
        flight.holds_slot = True
        self.recorder.mark(render.key, "slot")
        return flight

    async def _confirm(self, render: Render) -> Flight | None:
        """A create may or may not have reached the provider (crash, or an unknown outcome): confirm it first.

        Found: adopt it. Proven absent (a provider whose answer covers the whole account): create it. Otherwise the
        render stays (or becomes) ``unconfirmed`` and nothing is sent.
        """
        flight = self._resumed(render)
        task = await self.gate.lookup(render.external_task_id)
        if task is not None:
            await self._record_task(flight, task, detail="found by external id")
            return flight
        if render.unconfirmed_before:
            # Left unconfirmed earlier (or refused as a duplicate yet not found): only the user may resend it.
            await self._unconfirmed(render, render.error or TASK_ID_UNKNOWN, again=True)
            return None
        if not self.caps.absence_is_proof:
            await self._unconfirmed(render, "the run stopped before the provider's answer to its create was recorded")
            return None
        return await self._create(flight)

    async def _submit_new(self, render: Render) -> Flight | None:
        if self.slots.closed:
            return None
        if self.slots.try_take():
            flight = self._track(Flight(render=render, created=time.time(), holds_slot=True))
            self.recorder.mark(render.key, "slot")
            if not await self._admitted(flight):
                return None
            return await self._create(flight)
        # No slot free: wait "on deck". The next few renders in line record ``queued`` while they wait, so that
        # when a slot frees the create leaves at once instead of after a store write.
        async with self._deck:
            if self.slots.closed:
                return None
            flight = self._track(Flight(render=render, created=time.time()))
            await self._mark(render, QUEUED, submitted_at=None)
            try:
                await self.slots.acquire()
            except Stopped:
                await self.recorder.set(render, PENDING, detail="not submitted", error=self._not_submitted())
                return None
            flight.holds_slot = True
            self.recorder.mark(render.key, "slot")
            if not await self._admitted(flight):
                await self.recorder.set(render, PENDING, detail="not submitted", error=self._not_submitted())
                return None
        # The create leaves now. Where a lookup can settle a crash in between, this need not wait for the disk.
        await self.recorder.set(render, SUBMITTING, submitted_at=now_iso(), durable=not self.caps.absence_is_proof)
        flight.created = time.time()
        return await self._send(flight)

    async def _admitted(self, flight: Flight) -> bool:
        """The studio's shared slot, after this run's own (a no-op without a shared budget). Past the studio's spend
        cap, the run stops submitting: the render gives its slot back and is left for a run after the cap is raised."""
        try:
            await self.gate.admit(flight.render)
        except BudgetExhaustedError as exc:
            self._give_back_slot(flight)
            if self.abort_reason is None:
                self.abort_reason = exc.message
            self.stop_submitting(exc.message)
            return False
        return True

    def _not_submitted(self) -> str:
        return f"not submitted: {self.unreachable or self.abort_reason or 'run stopped'}"

    # --- create -------------------------------------------------------------------------------------------------

    async def _mark(self, render: Render, status: str, *, submitted_at: str | None) -> None:
        """Durably record the external id the create will carry, before it can be sent."""
        await self.recorder.set(
            render,
            status,
            external_task_id=render.external_task_id,
            task_id=None,
            error=None,
            submitted_at=submitted_at,
            attempt=render.attempt,
        )

    async def _create(self, flight: Flight) -> Flight | None:
        await self._mark(flight.render, SUBMITTING, submitted_at=now_iso())
        return await self._send(flight)

    async def _send(self, flight: Flight) -> Flight | None:
        """Send the create (already recorded as submitting) until the provider answers for good."""
        render = flight.render
        request = partial(self.provider.create_task, render.shot, external_task_id=render.external_task_id)
        tries = 0
        maybe_sent = False  # a create of this call may have reached the provider
        while True:
            tries += 1
            if tries > 1 and self.slots.closed:
                if not maybe_sent:
                    # Every try so far was refused for sure (rate limits): nothing was created under this id.
                    await self._not_created(render, self._not_submitted())
                else:
                    # Left "submitting": the next run confirms the external id before sending anything.
                    self.gate.unknown(render)
                raise Interrupted
            try:
                task = await self.gate.create(request, on_sent=partial(self._sent, flight))
                self.recorder.mark(render.key, "answered")
            except DuplicateExternalIdError:
                found = await self.gate.lookup(render.external_task_id)
                if found is None:
                    await self._unconfirmed(render, _duplicate_reason(render))
                    return None
                task = found
            except ShotRejectedError as exc:
                await self.gate.release(render.external_task_id, charged=0.0)
                await self.recorder.set(render, FAILED, detail=exc.message, error=exc.message, finished_at=now_iso())
                return None
            except AccountError as exc:
                # A definite refusal: nothing was created, so the next run may reuse this attempt's id.
                await self._not_created(render, f"not submitted: {exc.message}")
                raise
            except (RateLimitedError, ConcurrencyLimitError) as exc:
                await self._congested(flight, exc, tries)
                continue
            except TransientError as exc:
                self.stats.transient_errors += 1
                if exc.may_have_reached_provider:
                    maybe_sent = True
                    found = await self.gate.lookup(render.external_task_id)
                    if found is not None:
                        self._answered(flight, found)
                        await self._record_task(flight, found, detail="found by external id after " + exc.message)
                        return flight
                    if not self.caps.absence_is_proof:
                        # It may exist, billed, on an upstream account no lookup reaches: never resend on our own.
                        await self._unconfirmed(render, exc.message)
                        return None
                try:
                    await self.gate.pause(exc, tries)
                except Unreachable as stop:
                    if maybe_sent:
                        self.gate.unknown(render)
                        raise  # left "submitting": the next run looks it up before sending anything
                    # Every try was refused before it was sent: nothing was created, so the next run may reuse
                    # this attempt's id (the provider would refuse it as a duplicate anyway).
                    await self._not_created(render, f"not submitted: {stop}")
                    raise Interrupted from None
                continue
            self._answered(flight, task)
            await self._record_task(flight, task)
            return flight

    async def _not_created(self, render: Render, reason: str) -> None:
        """Nothing was created under the render's id, for certain: its shared slot is free, the render pending."""
        await self.gate.release(render.external_task_id, charged=0.0)
        await self.recorder.set(render, PENDING, detail="not submitted", error=reason)

    def _sent(self, flight: Flight) -> None:
        flight.sent_at = time.time()
        self.recorder.mark(flight.render.key, "sent")

    def _answered(self, flight: Flight, task: Task) -> None:
        sent = flight.sent_at or time.time()
        flight.created = task.started_on(sent=sent, received=time.time())
        flight.seq = self.follower.created()

    async def _congested(self, flight: Flight, exc: TransientError, tries: int) -> None:
        """1302/1303/429 on a create: lower the target, give the slot back, wait, and queue for a slot again."""
        self.stats.congestion += 1
        if self.slots.congested():
            self.recorder.notice(f"provider says too many ({exc.message}); in-flight target now {self.slots.capacity}")
        self._give_back_slot(flight)
        # The 429 was a definite answer: nothing was created under this id. Every run sharing the account waits.
        delay = self.gate.delay(exc, tries)
        await self.gate.release(flight.render.external_task_id, charged=0.0)
        await self.gate.cool_down(delay)
        await self.gate.sleep(delay)
        try:
            await self.slots.acquire()
        except Stopped:
            await self.recorder.set(flight.render, PENDING, detail="not submitted", error=self._not_submitted())
            raise Interrupted from None
        flight.holds_slot = True
        self.recorder.mark(flight.render.key, "slot")
        if not await self._admitted(flight):
            await self.recorder.set(flight.render, PENDING, detail="not submitted", error=self._not_submitted())
            raise Interrupted

    async def _record_task(self, flight: Flight, task: Task, *, detail: str = "") -> None:
        flight.task_id = task.task_id
        await self.gate.bind(flight.render, task.task_id)
        await self.recorder.set(
            flight.render,
            SUBMITTED,
            detail=detail or f"task {task.task_id}",
            task_id=task.task_id,
            error=None,
            task=task,
        )
        if self.interrupted:
            raise Interrupted

    async def _unconfirmed(self, render: Render, reason: str, *, again: bool = False) -> None:
        """Leave the render ``unconfirmed``: its create may have been billed, and nothing is sent without the user."""
        message = reason if again else _unconfirmed_message(render, reason, provider=self.provider.name)
        self.gate.unknown(render)
        await self.recorder.set(render, UNCONFIRMED, detail="create not confirmed", error=message)

    # --- how the task ended -------------------------------------------------------------------------------------

    async def _ended(self, flight: Flight, ended: Ended) -> Task | None:
        """Record how the task ended; the finished task when a video is to be downloaded."""
        render = flight.render
        if isinstance(ended, DeadlinePassed):
            await self.recorder.set(
                render,
                PENDING_REMOTE,
                detail="deadline passed",
                error=f"still rendering after {self.options.poll.deadline:g} s; run again to pick it up",
            )
            return None
        if isinstance(ended, Gone):
            await self.gate.release(flight.task_id, charged=0.0)
            await self._forgotten(render, flight.task_id)
            return None
        self.recorder.mark(render.key, "detected", ended.seen_at)
        return await self._finished(flight, ended.task)

    async def _forgotten(self, render: Render, task_id: str) -> None:
        """The provider does not know the render's task (any more): fail it, so the next run renders it anew."""
        if render.start is Start.FOLLOW and render.status == SUCCEEDED:
            # Its video went missing on disk and the paid task is gone (providers expire them, Kling after 30 days).
            message = (
                f"the provider no longer has task {task_id} (tasks expire), so its video cannot be downloaded again; "
                "run again to render the shot anew (a new, billed render)"
            )
        else:
            message = f"task {task_id} not found at the provider; run again to submit the shot as a new attempt"
        await self.recorder.set(render, FAILED, detail=message, error=message, finished_at=now_iso())

    async def _finished(self, flight: Flight, task: Task) -> Task | None:
        render = flight.render
        self._end_flight(flight)
        failed = task.status is TaskStatus.FAILED
        charged = 0.0 if failed else (task.units_charged if task.units_charged is not None else render.units)
        await self.gate.release(task.task_id, charged=charged)
        if failed:
            reason = task.status_message or "the provider reported the task failed"
            await self.recorder.set(
                render,
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
            await self.recorder.set(render, FAILED, detail=message, error=message, finished_at=now_iso(), task=task)
            return None
        # Not awaited on disk: a crash before the next write leaves the render "processing" with its task id, and
        # the next run polls it and downloads just the same. The success after the download is durable.
        await self.recorder.set(render, DOWNLOADING, task=task, durable=False)
        return task

    def _observe(self, flight: Flight, task: Task) -> None:
        key = flight.render.key
        if task.created_at and task.updated_at:
            self.recorder.mark(key, "provider_created", task.created_at / 1000)
            self.recorder.mark(key, "provider_ended", task.updated_at / 1000)
        if task.created_at and task.updated_at and task.updated_at > task.created_at:
            seconds = (task.updated_at - task.created_at) / 1000
        elif flight.resumed:
            return  # our own clock says nothing about a task that may have finished long before this run
        else:
            seconds = time.time() - flight.created
        self.stats.render_seconds.append(seconds)
        self.follower.observe(seconds)

    # --- download -----------------------------------------------------------------------------------------------

    async def _download(self, flight: Flight, task: Task) -> None:
        render = flight.render
        try:
            dest = self._output_path(render)
        except ShotRejectedError as exc:
            await self.recorder.set(render, FAILED, detail=exc.message, error=exc.message, finished_at=now_iso())
            return
        try:
            done = await self.gate.download(task.videos[0].url, dest)
        except (DownloadError, TransientError) as exc:
            message = f"download failed ({exc.message}); the render is safe at the provider, run again"
            await self.recorder.set(render, DOWNLOADING, detail=message, error=message)
            return
        self.recorder.mark(render.key, "downloaded")
        output = OutputFile(path=_relative_path(render), sha256=done.sha256, bytes=done.bytes)
        await self.recorder.set(
            render,
            SUCCEEDED,
            outputs=(output,),
            error=None,
            finished_at=now_iso(),
            cost=self.pricing.shot_units(render.shot) if self.pricing else None,
            charged=task.units_charged,
            provider_status=task.raw_status or None,
            task=task,
        )

    def _output_path(self, render: Render) -> Path:
        # The shot's folder is resolved (symlinks and all) and must be in the output folder: a shot id, or a link
        # someone left in the folder, never makes a video land elsewhere. One resolve per render, not per component.
        folder = Path(os.path.realpath(self.out_dir / render.shot.id))
        if folder.parent != self.out_dir:
            raise ShotRejectedError(f"shot id {render.shot.id!r} would write outside the output folder")
        return folder / Path(_relative_path(render)).name

    # --- shared helpers -----------------------------------------------------------------------------------------

    def _account_error(self, exc: AccountError) -> None:
        if self.abort_reason is None:
            self.abort_reason = exc.message
        self.stop_submitting(exc.message)

    def _give_up(self, reason: str) -> None:
        """Stop the run: no new creates, and every render waiting on the provider stops and keeps its record."""
        if self.abort_reason is None:
            self.abort_reason = reason
        self.stop_submitting(reason)
        self.follower.ring()

    def _track(self, flight: Flight) -> Flight:
        self._flights[flight.render.key] = flight
        return flight

    def _give_back_slot(self, flight: Flight) -> None:
        if flight.holds_slot:
            flight.holds_slot = False
            self.slots.release()
            self.recorder.mark(flight.render.key, "released")

    def _end_flight(self, flight: Flight) -> None:
        self._give_back_slot(flight)
        self.follower.ended(flight.render.key)


def _session(budget: SharedBudget | None, *, notice: Callable[[str], None]) -> BudgetSession | None:
    if budget is None:
        return None
    from orchestrator.budget.session import BudgetSession

    return BudgetSession(budget, notice=notice)


def _relative_path(render: Render) -> str:
    """Where the render's video goes, relative to the output folder (as the store keeps it)."""
    stem = output_stem(render.shot.fingerprint, take=render.take, variant=render.variant, attempt=render.attempt)
    return f"{render.shot.id}/{stem}.mp4"


def _holds_a_slot(render: Render) -> bool:
    """Does an earlier run's task (or create of unknown outcome) of this render take an account slot now?"""
    return render.resumed and render.status != SUCCEEDED


def _lease_key(render: Render) -> str:
    """What a render's shared slot is keyed by: its task once known, else the external id its create carried."""
    return render.task_id or render.external_task_id


def _duplicate_reason(render: Render) -> str:
    return f"{TASK_ID_UNKNOWN}: the provider refused external id {render.external_task_id} as already used"


def _unconfirmed_message(render: Render, reason: str, *, provider: str) -> str:
    return (
        f"unconfirmed: the create may have reached {provider} and been billed ({reason}), and {provider} cannot "
        f"confirm it, so it is not sent again on its own. Find the task with external id {render.external_task_id} "
        f"in your provider's console and attach it (orchestrator adopt SPEC {render.key} TASK_ID), or resend it "
        "knowingly (orchestrator run SPEC --resend-unconfirmed)"
    )
