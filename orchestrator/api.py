"""The Python API: run a spec the way ``orchestrator run`` does, from a script or a notebook.

    result = orchestrator.run_project("specs/demo/project.yaml", provider="local")
    result.ok, result.failures, result.manifest_path

``arun_project`` is the same as a coroutine (use it where an event loop already runs, e.g. ``await`` in Jupyter).
Both load and validate the spec, compare it with the manifest (only new, changed and unfinished shots are rendered;
``force`` rerenders matching shots anyway), then drive the scheduler. Errors that stop a run before it starts
(bad spec, locked or corrupt manifest, missing key, over ``max_cost``) raise ``orchestrator.errors`` types; what
happens to shots during the run is in the returned ``RunResult``.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from orchestrator.budget.config import resolve_budget
from orchestrator.errors import ConfigError
from orchestrator.plan.plan import (
    CHANGED,
    Plan,
    PlanEntry,
    TakeRecords,
    make_plan,
    read_state_for,
    review_wants,
    running_run,
)
from orchestrator.plan.pricing import Pricing
from orchestrator.plan.work import IN_FLIGHT_STATES, Render, Wanted, renders_of, units_to_spend
from orchestrator.providers.base import Capabilities, Provider
from orchestrator.run.events import RUN_FINISHED, RUN_STARTED, Event, EventBus, Listener
from orchestrator.run.options import RetryPolicy, RunOptions
from orchestrator.run.polling import PollPolicy
from orchestrator.run.scheduler import Scheduler, SchedulerStats
from orchestrator.run.writer import StoreWriter
from orchestrator.spec.shot import ResolvedProject, ResolvedShot
from orchestrator.store.database import RenderStore
from orchestrator.store.manifest import (
    MANIFEST_NAME,
    PENDING_REMOTE,
    SUCCEEDED,
    UNCONFIRMED,
)
from orchestrator.store.records import FolderState

if TYPE_CHECKING:
    from orchestrator.budget.shared import SharedBudget
    from orchestrator.providers.local import SimulatorOptions

DEFAULT_PROVIDER = "cometapi"
SIMULATOR_STATE_DIR = ".simulator"  # in the output folder: the local provider's memory of its tasks


@dataclass(frozen=True)
class RunSettings:
    """The effective settings of a run, as printed at its start (never the key)."""

    provider: str
    base_url: str
    concurrency: int
    requests_per_second: float | None
    out_dir: Path
    manifest_path: Path
    to_render: int
    skipped: int
    cost: float

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "base_url": self.base_url,
            "concurrency": self.concurrency,
            "requests_per_second": self.requests_per_second,
            "out": str(self.out_dir),
            "manifest": str(self.manifest_path),
            "to_render": self.to_render,
            "skipped": self.skipped,
            "cost": self.cost,
        }


@dataclass(frozen=True)
class RunResult:
    """What a run did. ``statuses`` covers the renders this run worked on, by render key (``s03``, ``s03/wide#2``:
    a shot's id for take 1 of a shot without variants); ``skipped`` the unchanged ones."""

    manifest_path: Path
    plan: Plan
    settings: RunSettings | None = None
    statuses: dict[str, str] = field(default_factory=dict)
    failures: tuple[tuple[str, str], ...] = ()  # (render key, reason) for every worked-on render not succeeded
    skipped: tuple[str, ...] = ()
    interrupted: bool = False
    aborted: str | None = None  # why submissions stopped early (an account error), if they did
    dry_run: bool = False
    elapsed: float = 0.0
    stats: SchedulerStats | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted and self.aborted is None

    @property
    def unconfirmed(self) -> tuple[str, ...]:
        """Shots whose create may have been billed but could not be confirmed: the user must adopt or resend them."""
        return tuple(shot_id for shot_id, status in self.statuses.items() if status == UNCONFIRMED)

    @property
    def exit_code(self) -> int:
        """0 all succeeded, 1 any failed (or the run stopped on an account error), 130 interrupted."""
        if self.interrupted:
            return 130
        return 0 if self.ok else 1


async def arun_project(
    spec: str | os.PathLike[str] | ResolvedProject,
    *,
    provider: str | Provider | None = None,
    out: str | os.PathLike[str] | None = None,
    concurrency: int | None = None,
    rps: float | None = None,
    only: str | Sequence[str] | None = None,
    force: str | Sequence[str] | None = None,
    max_cost: float | None = None,
    dry_run: bool = False,
    resend_unconfirmed: bool = False,
    listeners: Iterable[Listener] = (),
    simulator_options: SimulatorOptions | None = None,
    poll: PollPolicy | None = None,
    retry: RetryPolicy | None = None,
    handle_signals: bool = False,
    budget_url: str | None = None,
    budget_slots: int | None = None,
) -> RunResult:
    """Render a spec's new, changed and unfinished shots; see the module docstring and ``docs/run.md``.

    ``spec`` is a path (loaded and validated) or an already resolved project. ``provider`` is a name (``local`` or
    ``cometapi``; default: the spec's ``provider:``, else ``cometapi``) or a provider object you have entered
    yourself. ``only``/``force`` are shot id globs. ``handle_signals`` makes Ctrl-C (SIGINT/SIGTERM) stop the run
    gracefully (the first stops submitting and records work in progress, the second stops at once).
    ``resend_unconfirmed`` sends the selected ``unconfirmed`` shots again as new attempts: each may then be billed
    twice (see ``Prepared.unconfirmed``); without it they are only confirmed where the provider can.
    ``budget_url``/``budget_slots`` turn on the studio's shared budget (docs/budget.md), over the spec's ``budget:``
    and ``ORCHESTRATOR_BUDGET_URL``.
    """
    # Loading images and hashing earlier outputs is blocking file work: keep it off the event loop.
    project, out_dir = await anyio.to_thread.run_sync(_load, spec, out)
    choice = _Choice(out=out, only=only, force=force, resend_unconfirmed=resend_unconfirmed, max_cost=max_cost)
    if dry_run:
        prepared = await anyio.to_thread.run_sync(partial(choice.prepare, project))
        return RunResult(
            manifest_path=prepared.manifest_path, plan=prepared.plan, skipped=prepared.skipped, dry_run=True
        )
    options = RunOptions(
        concurrency=max(1, concurrency or project.limits.concurrency),
        requests_per_second=rps if rps is not None else project.limits.requests_per_second,
        poll=poll or PollPolicy(),
        retry=retry or RetryPolicy(),
        budget=resolve_budget(project.budget, url=budget_url, slots=budget_slots),
    )
    name = provider if isinstance(provider, str) else (project.provider or DEFAULT_PROVIDER)
    _selected_ids(project, only=only, force=force)  # a glob matching nothing is refused before anything is opened
    # The folder's lock first, then the one read of its store that the run decides from.
    store, state, prepared = await anyio.to_thread.run_sync(
        partial(_open_and_decide, project, out_dir, choice, provider=getattr(provider, "name", None) or name)
    )
    try:
        opened = open_run_provider(provider, name=name, simulator_options=simulator_options, out_dir=out_dir)
        live = await opened.__aenter__()
    except BaseException:
        store.release()  # nothing was sent: the store stays as it was
        raise
    try:
        return await _run(
            project=project,
            provider=live,
            store=store,
            state=state,
            prepared=prepared,
            resend=resend_unconfirmed,
            options=options,
            listeners=listeners,
            handle_signals=handle_signals,
        )
    finally:
        store.release()  # closed by the run already (a no-op then); released here whatever happened
        await opened.__aexit__(None, None, None)


@dataclass(frozen=True)
class _Choice:
    """What the user asked a run to do, to be decided against the folder's store."""

    out: str | os.PathLike[str] | None
    only: str | Sequence[str] | None
    force: str | Sequence[str] | None
    resend_unconfirmed: bool
    max_cost: float | None

    def prepare(self, project: ResolvedProject, *, state: FolderState | None = None) -> Prepared:
        """The plan and what the run would cost; raises ``ConfigError`` past ``max_cost``, before anything is sent."""
        prepared = prepare(
            project,
            out=self.out,
            only=self.only,
            force=self.force,
            resend_unconfirmed=self.resend_unconfirmed,
            state=state,
        )
        if self.max_cost is not None and prepared.cost > self.max_cost:
            raise ConfigError(
                f"this run would cost {prepared.cost:g} units, more than --max-cost {self.max_cost:g}; nothing was "
                "sent (narrow it with --only, or raise the limit)"
            )
        return prepared


def run_project(
    spec: str | os.PathLike[str] | ResolvedProject,
    *,
    provider: str | Provider | None = None,
    out: str | os.PathLike[str] | None = None,
    concurrency: int | None = None,
    rps: float | None = None,
    only: str | Sequence[str] | None = None,
    force: str | Sequence[str] | None = None,
    max_cost: float | None = None,
    dry_run: bool = False,
    resend_unconfirmed: bool = False,
    listeners: Iterable[Listener] = (),
    simulator_options: SimulatorOptions | None = None,
    poll: PollPolicy | None = None,
    retry: RetryPolicy | None = None,
    handle_signals: bool = False,
    budget_url: str | None = None,
    budget_slots: int | None = None,
) -> RunResult:
    """``arun_project`` for synchronous code (not inside a running event loop: there, ``await arun_project``)."""
    run = partial(
        arun_project,
        spec,
        provider=provider,
        out=out,
        concurrency=concurrency,
        rps=rps,
        only=only,
        force=force,
        max_cost=max_cost,
        dry_run=dry_run,
        resend_unconfirmed=resend_unconfirmed,
        listeners=listeners,
        simulator_options=simulator_options,
        poll=poll,
        retry=retry,
        handle_signals=handle_signals,
        budget_url=budget_url,
        budget_slots=budget_slots,
    )
    return anyio.run(run)


@dataclass(frozen=True)
class Prepared:
    """A run decided but not started: the project, its plan against the manifest, and what to render.

    ``plan`` covers every render the spec wants (each take of each variant) and the manifest's removed shots;
    ``selection`` only those ``only`` selects (all, without it), with shots that ``force`` makes render again shown
    as changed: it is what a dry run shows. ``entries`` are the plan's renders to make, ``shots`` their requests (a
    request once per take) and ``skipped`` the render keys left as they are.
    """

    project: ResolvedProject
    out_dir: Path
    manifest_path: Path
    plan: Plan
    shots: list[ResolvedShot]
    skipped: tuple[str, ...]
    fresh: frozenset[str]
    pricing: Pricing
    cost: float
    selection: Plan = field(default_factory=Plan)
    # The selected shots left ``unconfirmed``, with the units each may cost a second time if it is sent again.
    unconfirmed: tuple[tuple[ResolvedShot, float], ...] = ()
    entries: tuple[PlanEntry, ...] = ()

    @property
    def not_selected(self) -> int:
        """Shots of the spec that ``only`` leaves out."""
        return sum(1 for entry in self.plan.entries if entry.shot is not None) - len(self.shots) - len(self.skipped)


def prepare(
    spec: str | os.PathLike[str] | ResolvedProject,
    *,
    out: str | os.PathLike[str] | None = None,
    only: str | Sequence[str] | None = None,
    force: str | Sequence[str] | None = None,
    resend_unconfirmed: bool = False,
    state: FolderState | None = None,
) -> Prepared:
    """Load the spec, read the store (without locking it) and decide what a run would render and cost.

    A run passes the ``state`` it read from the store under the folder's lock: the one read it decides from.

    Raises ``ConfigError`` when an ``only`` or ``force`` pattern matches no shot: before anything is started or written.
    Unconfirmed shots count in the cost only with ``resend_unconfirmed``: otherwise nothing is sent for them.
    """
    project = load_spec(spec)
    out_dir = Path(out).resolve() if out is not None else project.output_dir
    manifest_path = out_dir / MANIFEST_NAME
    pricing = Pricing.from_overrides(project.pricing)
    if state is not None:
        running_in = None  # the caller holds the lock
    else:
        state = read_state_for(project, manifest_path)
        running_in = running_run(out_dir) if state is not None else None  # a dry run beside a live run says so
    wants = review_wants(project, state)  # retakes asked for, approvals gone stale
    plan = make_plan(project.shots, None, manifest_dir=out_dir, running_in=running_in, state=state, wants=wants)
    entries, skipped, fresh = select_entries(plan, only=only, force=force)
    shots = [entry.shot for entry in entries if entry.shot is not None]
    unconfirmed = _unconfirmed(entries, pricing=pricing)
    cost = sum(
        units_to_spend(
            entry.shot, entry.record, pricing=pricing, fresh=entry.shot_id in fresh, resend=resend_unconfirmed
        )
        for entry in entries
        if entry.shot is not None
    )
    selection = selection_plan(plan, only=only, force=force)
    return Prepared(
        project, out_dir, manifest_path, plan, shots, skipped, fresh, pricing, cost, selection, unconfirmed, entries
    )


def _unconfirmed(entries: Sequence[PlanEntry], *, pricing: Pricing) -> tuple[tuple[ResolvedShot, float], ...]:
    return tuple(
        (entry.shot, pricing.shot_units(entry.shot))
        for entry in entries
        if entry.shot is not None
        and (record := entry.record) is not None
        and record.status == UNCONFIRMED
        and record.fingerprint == entry.shot.fingerprint
    )


def select(
    plan: Plan, *, only: str | Sequence[str] | None, force: str | Sequence[str] | None
) -> tuple[list[ResolvedShot], tuple[str, ...], frozenset[str]]:
    """(requests to render, one per take; unchanged render keys skipped; shot ids forced to render anew) for
    ``only``/``force`` globs (see ``select_entries``)."""
    entries, skipped, fresh = select_entries(plan, only=only, force=force)
    return [entry.shot for entry in entries if entry.shot is not None], skipped, fresh


def select_entries(
    plan: Plan, *, only: str | Sequence[str] | None, force: str | Sequence[str] | None
) -> tuple[tuple[PlanEntry, ...], tuple[str, ...], frozenset[str]]:
    """(the plan's renders to make, unchanged render keys skipped, shot ids forced to render anew) for
    ``only``/``force`` globs, which match shot ids (every take and variant of a shot goes with it).

    Raises ``ConfigError`` naming each pattern that matches no shot (``force``: no shot that ``only`` selects).
    """
    entries: list[PlanEntry] = []
    skipped: list[str] = []
    fresh: set[str] = set()
    for entry, _, forced in _selected(plan, only=only, force=force):
        if entry.needs_render or forced:
            entries.append(entry)
            if forced:
                fresh.add(entry.shot_id)
        else:
            skipped.append(entry.key)
    return tuple(entries), tuple(skipped), frozenset(fresh)


def selection_plan(plan: Plan, *, only: str | Sequence[str] | None, force: str | Sequence[str] | None) -> Plan:
    """The part of ``plan`` a run with these globs works on; a forced shot that needed nothing shows as changed."""
    entries = [_forced(entry) if forced else entry for entry, _, forced in _selected(plan, only=only, force=force)]
    if not _patterns(only):  # nothing left out: the shots removed from the spec are still worth a line
        entries += [entry for entry in plan.entries if entry.shot is None]
    return Plan(tuple(entries))


def _forced(entry: PlanEntry) -> PlanEntry:
    """The entry of a shot ``--force`` renders anew: shown as changed when it needed nothing."""
    if entry.needs_render:
        return replace(entry, forced=True)
    return replace(entry, category=CHANGED, reason="forced with --force", forced=True)


def _selected_ids(
    project: ResolvedProject, *, only: str | Sequence[str] | None, force: str | Sequence[str] | None
) -> list[str]:
    """The ids of the shots ``only`` selects; ``ConfigError`` for a glob that matches no shot (the spec alone says)."""
    all_ids = list(project.shot_ids)
    chosen = [shot_id for shot_id in all_ids if _matches(shot_id, only, default=True)]
    _refuse_unmatched(all_ids, chosen, only=only, force=force)
    return chosen


def _selected(
    plan: Plan, *, only: str | Sequence[str] | None, force: str | Sequence[str] | None
) -> list[tuple[PlanEntry, ResolvedShot, bool]]:
    """(entry, its shot, forced) for each shot of the spec that ``only`` selects, once every pattern matched one."""
    in_spec = [(entry, entry.shot) for entry in plan.entries if entry.shot is not None]  # not the removed ones
    chosen = [(entry, shot) for entry, shot in in_spec if _matches(shot.id, only, default=True)]
    _refuse_unmatched([shot.id for _, shot in in_spec], [shot.id for _, shot in chosen], only=only, force=force)
    return [(entry, shot, _matches(shot.id, force, default=False)) for entry, shot in chosen]


def _refuse_unmatched(
    all_ids: list[str], chosen_ids: list[str], *, only: str | Sequence[str] | None, force: str | Sequence[str] | None
) -> None:
    # A typo in a glob would otherwise render nothing (or everything but the shot meant) and exit 0.
    where = f"in the spec ({_shots(all_ids)}: {_examples(all_ids)})"
    problems = [f"--only {p!r} matches no shot {where}" for p in _patterns(only) if not _any_match(all_ids, p)]
    if _patterns(only):
        where = f"that --only selects ({_shots(chosen_ids)}: {_examples(chosen_ids)})"
    problems += [f"--force {p!r} matches no shot {where}" for p in _patterns(force) if not _any_match(chosen_ids, p)]
    if problems:
        raise ConfigError("; ".join(problems) + "; nothing was sent")


def _shots(shot_ids: list[str]) -> str:
    return f"{len(shot_ids)} shot{'' if len(shot_ids) == 1 else 's'}"


def _examples(shot_ids: list[str], *, limit: int = 3) -> str:
    return ", ".join(shot_ids[:limit]) + (", ..." if len(shot_ids) > limit else "")


def _patterns(patterns: str | Sequence[str] | None) -> list[str]:
    if not patterns:
        return []
    return [patterns] if isinstance(patterns, str) else list(patterns)


def _any_match(shot_ids: Iterable[str], pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(shot_id, pattern) for shot_id in shot_ids)


def _open_and_decide(
    project: ResolvedProject, out_dir: Path, choice: _Choice, *, provider: str
) -> tuple[RenderStore, FolderState, Prepared]:
    """Take the folder's lock, read its store once and decide the run from that read (``ConfigError`` past
    ``max_cost``: then the lock is released and nothing was written)."""
    from orchestrator import __version__

    store = RenderStore.open(
        out_dir,
        project=project.project,
        spec_path=str(project.path),
        spec_sha256=project.sha256,
        spec_version=project.version,
        provider=provider,
        tool_version=__version__,
    )
    try:
        state = store.state()
        return store, state, choice.prepare(project, state=state)
    except BaseException:
        store.release()
        raise


async def _run(
    *,
    project: ResolvedProject,
    provider: Provider,
    store: RenderStore,
    state: FolderState,
    prepared: Prepared,
    resend: bool,
    options: RunOptions,
    listeners: Iterable[Listener],
    handle_signals: bool,
) -> RunResult:
    out_dir = prepared.out_dir
    finished = False
    try:
        renders = _renders(prepared, state, provider=provider, resend=resend)
        settings = RunSettings(
            provider=getattr(provider, "name", ""),
            base_url=getattr(provider, "base_url", ""),
            concurrency=options.concurrency,
            requests_per_second=options.requests_per_second,
            out_dir=out_dir,
            manifest_path=prepared.manifest_path,
            to_render=len(renders),
            skipped=len(prepared.skipped),
            cost=prepared.cost,
        )
        bus = EventBus(listeners, journal=StoreWriter(store))
        scheduler = Scheduler(
            provider=provider,
            bus=bus,
            options=options,
            out_dir=out_dir,
            pricing=prepared.pricing,
            budget=_shared_budget(options, project=project.project),
        )
        started = time.monotonic()
        store.commit_now()
        bus.emit(Event(RUN_STARTED, data={**settings.to_json(), "shots": [render.key for render in renders]}))
        await _drive(scheduler, renders, handle_signals=handle_signals)
        finished = not scheduler.interrupted
        after = store.state()
    finally:
        try:
            store.place_shots([shot_id for shot_id in project.shot_ids if store.shot(shot_id) is not None])
        finally:
            store.close(finished=finished)
    result = _result(
        after,
        plan=prepared.plan,
        settings=settings,
        entries=prepared.entries,
        skipped=prepared.skipped,
        scheduler=scheduler,
        started=started,
    )
    bus.emit(
        Event(
            RUN_FINISHED,
            detail=result.aborted or ("interrupted" if result.interrupted else ""),
            data={
                "elapsed": round(result.elapsed, 3),
                "succeeded": sum(1 for s in result.statuses.values() if s == SUCCEEDED),
                "failed": len(result.failures),
                "unconfirmed": list(result.unconfirmed),
                "skipped": len(result.skipped),
                "requests": scheduler.stats.requests,
                "exit_code": result.exit_code,
            },
        )
    )
    return result


def _shared_budget(options: RunOptions, *, project: str) -> SharedBudget | None:
    """The studio's shared budget, when the run has one (redis-py is imported only then)."""
    if options.budget is None:
        return None
    from orchestrator.budget.shared import SharedBudget

    return SharedBudget.connect(options.budget, project=project)


def _renders(prepared: Prepared, state: FolderState, *, provider: Provider, resend: bool) -> tuple[Render, ...]:
    """The plan's work as renders, each knowing how it starts (``orchestrator.plan.work``): each take continues the
    store's row the plan matched it to (``PlanEntry.render_id``, from this ``state``) or starts a new one."""
    caps: Capabilities = getattr(provider, "capabilities", None) or Capabilities()
    unconfirmed = frozenset(shot.id for shot, _ in prepared.unconfirmed)
    wanted = [
        Wanted(entry.shot, entry.take, entry.record, entry.render_id)
        for entry in prepared.entries
        if entry.shot is not None
    ]
    return renders_of(
        wanted,
        # Every external id sent from this folder carries its salt: two projects of one name never share an id.
        salt=state.facts.salt,
        absence_is_proof=caps.absence_is_proof,
        pricing=prepared.pricing,
        fresh=prepared.fresh,
        resend=unconfirmed if resend else frozenset(),
    )


async def _drive(scheduler: Scheduler, renders: Sequence[Render], *, handle_signals: bool) -> None:
    if not handle_signals:
        await scheduler.run(renders)
        return
    async with anyio.create_task_group() as group:
        group.start_soon(_interrupt_on_signals, scheduler)
        await scheduler.run(renders)
        group.cancel_scope.cancel()


async def _interrupt_on_signals(scheduler: Scheduler) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scheduler.interrupt()


def _result(
    state: FolderState,
    *,
    plan: Plan,
    settings: RunSettings,
    entries: Sequence[PlanEntry],
    skipped: tuple[str, ...],
    scheduler: Scheduler,
    started: float,
) -> RunResult:
    statuses: dict[str, str] = {}
    failures: list[tuple[str, str]] = []
    takes = TakeRecords.of_state(state)
    for entry in entries:
        if entry.shot is None:
            continue
        record = takes.find(entry.shot, entry.take)
        status = record.status if record else "pending"
        statuses[entry.key] = status
        if status != SUCCEEDED:
            reason = (record.error if record else None) or _default_reason(status)
            failures.append((entry.key, reason))
    return RunResult(
        manifest_path=settings.manifest_path,
        plan=plan,
        settings=settings,
        statuses=statuses,
        failures=tuple(failures),
        skipped=skipped,
        interrupted=scheduler.interrupted,
        aborted=scheduler.abort_reason,
        elapsed=time.monotonic() - started,
        stats=scheduler.stats,
    )


def _default_reason(status: str) -> str:
    if status == PENDING_REMOTE:
        return "still at the provider; run again to pick it up"
    if status in IN_FLIGHT_STATES:
        return f"left {status}; run again to resume"
    return f"left {status}; run again"


def _load(
    spec: str | os.PathLike[str] | ResolvedProject, out: str | os.PathLike[str] | None
) -> tuple[ResolvedProject, Path]:
    project = load_spec(spec)
    return project, Path(out).resolve() if out is not None else project.output_dir


def load_spec(spec: str | os.PathLike[str] | ResolvedProject) -> ResolvedProject:
    """A resolved project, from a path (loaded and validated: ``SpecError``) or as given."""
    if isinstance(spec, ResolvedProject):
        return spec
    from orchestrator.spec.load import load_project

    return load_project(spec)


def open_run_provider(
    provider: str | Provider | None, *, name: str, simulator_options: SimulatorOptions | None, out_dir: Path
) -> AbstractAsyncContextManager[Provider]:
    """The provider a run in ``out_dir`` talks to: a name opened here, or an object the caller entered (and closes)."""
    if provider is not None and not isinstance(provider, str):
        return nullcontext(provider)  # the caller entered it and will close it
    from orchestrator.providers import open_provider

    # The local simulator keeps its tasks beside the manifest, so an interrupted local run resumes like a real one.
    return open_provider(name, simulator_options=simulator_options, state_dir=out_dir / SIMULATOR_STATE_DIR)


def _matches(shot_id: str, patterns: str | Sequence[str] | None, *, default: bool) -> bool:
    if not patterns:
        return default
    return any(fnmatch.fnmatchcase(shot_id, pattern) for pattern in _patterns(patterns))


__all__ = [
    "Prepared",
    "RunResult",
    "RunSettings",
    "arun_project",
    "prepare",
    "run_project",
    "select",
    "select_entries",
    "selection_plan",
]
