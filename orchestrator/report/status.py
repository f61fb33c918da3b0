"""Status: a manifest summed up (shots per status, shots needing attention with their reasons, units).

Units come two ways: the estimate (``cost``, from the rate card, recorded when a render succeeded) and the charge
(``charged``, what the provider said it took: ``final_unit_deduction``, 0 for a failed task). A shot whose render
was sent but has no charged figure yet (still running, an older manifest, a provider that does not say, or an
unconfirmed create) is listed, so that the charged sum is never mistaken for the whole bill.

A shot with takes or variants has one current render (its newest finished one) and more: ``takes_of`` lists the
newest render of each of its takes (``s03 wide#2``), and a take that needs attention is listed with the shots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.plan.work import render_key, render_label
from orchestrator.spec.shot import ResolvedProject
from orchestrator.store.database import load_state
from orchestrator.store.manifest import (
    FAILED,
    MANIFEST_NAME,
    PENDING_REMOTE,
    STATUSES,
    UNCONFIRMED,
    Manifest,
    Render,
    ShotRecord,
    has_manifest,
    load_manifest,
    looks_like_manifest,
    manifest_from_state,
    store_source,
)
from orchestrator.store.records import FolderState, RenderRecord

# Where ``report`` and ``status`` look when given no target: the current folder, then the usual output folder.
DEFAULT_LOCATIONS = (Path(MANIFEST_NAME), Path("renders") / MANIFEST_NAME)

# States that need the user's attention, with the reason shown beside them.
ATTENTION = (FAILED, PENDING_REMOTE, UNCONFIRMED)

# Shown for an unconfirmed shot whose record carries no error text (the scheduler normally writes one).
UNCONFIRMED_REASON = (
    "the create's outcome is unknown and it may have been billed, so it is not sent again on its own: find the task "
    "in the provider's console and attach its id, or ask for a resend explicitly (see docs/run.md)"
)


@dataclass(frozen=True)
class ShotProblem:
    shot_id: str
    status: str
    reason: str


@dataclass(frozen=True)
class TakeStatus:
    """One take of a shot as the store has it now: the newest render of that shot, variant and take."""

    render: RenderRecord

    @property
    def shot_id(self) -> str:
        return self.render.shot_id

    @property
    def key(self) -> str:
        return render_key(self.render.shot_id, variant=self.render.variant, take=self.render.take)

    @property
    def label(self) -> str:
        """``s03 wide#2``."""
        return render_label(self.render.shot_id, variant=self.render.variant, take=self.render.take)

    @property
    def name(self) -> str:
        """The take within its shot: ``wide#2``, ``wide``, ``#2``, ``#1``."""
        return render_label("", variant=self.render.variant, take=self.render.take).strip() or "#1"

    @property
    def status(self) -> str:
        return self.render.status


def takes_of(state: FolderState, shot_id: str) -> tuple[TakeStatus, ...]:
    """The shot's takes, by variant (none first) then take number: each its newest render."""
    newest: dict[tuple[str, int], RenderRecord] = {}
    for render in state.renders_of(shot_id):  # oldest first: the last one of a take wins
        newest[(render.variant or "", render.take)] = render
    return tuple(TakeStatus(newest[key]) for key in sorted(newest))


@dataclass(frozen=True)
class StatusSummary:
    project: str
    total: int
    counts: dict[str, int]  # every known status (zero included), then any unknown ones found
    problems: tuple[ShotProblem, ...]
    units: float  # estimated: the current renders and every earlier one kept in history
    charged: float = 0.0  # what the provider says it charged, over the same renders
    uncharged: tuple[str, ...] = ()  # shots whose current render was sent but has no charged figure yet
    takes: tuple[TakeStatus, ...] = ()  # every take of the shots that have more than one (takes, variants)

    @property
    def estimated(self) -> float:
        return self.units


def spent_units(record: ShotRecord) -> float:
    """Estimated units a shot has cost so far: its current render plus earlier renders in its history."""
    return _per_render(record, current=record.cost, of=lambda render: render.cost)


def charged_units(record: ShotRecord) -> float:
    """Units the provider says a shot has been charged: its current render plus earlier ones in its history."""
    return _per_render(record, current=record.charged, of=lambda render: render.charged)


def _per_render(record: ShotRecord, *, current: float | None, of: Callable[[Render], float | None]) -> float:
    # Each render counted once: a history that also lists the current render must not bill it twice.
    seen: set[str | None] = set()
    total = 0.0
    if current is not None:
        total += current
        seen.add(record.task_id)
    for render in record.history:
        value = of(render)
        if value is not None and (render.task_id is None or render.task_id not in seen):
            total += value
            seen.add(render.task_id)
    return total


def awaits_charge(record: ShotRecord) -> bool:
    """True when the current render reached the provider (or may have) but no charged figure is recorded."""
    sent = record.task_id is not None or record.cost is not None or record.status == UNCONFIRMED
    return sent and record.charged is None


def attention_reason(record: ShotRecord) -> str:
    if record.error:
        return record.error
    return UNCONFIRMED_REASON if record.status == UNCONFIRMED else "no reason recorded"


def summarize(manifest: Manifest, *, state: FolderState | None = None) -> StatusSummary:
    """Shots per status (their current render's), what needs attention, units; with the store's ``state``, the takes
    of shots that have more than one, and each take needing attention besides the shot's current render."""
    counts = dict.fromkeys(STATUSES, 0)
    for record in manifest.shots.values():
        counts[record.status] = counts.get(record.status, 0) + 1
    problems = [
        ShotProblem(shot_id, record.status, attention_reason(record))
        for shot_id, record in manifest.shots.items()
        if record.status in ATTENTION
    ]
    takes: list[TakeStatus] = []
    if state is not None:
        for row in state.shots:
            of_shot = takes_of(state, row.shot_id)
            if len(of_shot) < 2:
                continue
            takes.extend(of_shot)
            problems += [
                ShotProblem(take.label, take.status, take.render.error or "no reason recorded")
                for take in of_shot
                if take.status in ATTENTION and take.render.render_id != row.current_render_id
            ]
    records = manifest.shots.values()
    return StatusSummary(
        project=manifest.project,
        total=len(manifest.shots),
        counts=counts,
        problems=tuple(problems),
        units=sum(spent_units(record) for record in records),
        charged=sum(charged_units(record) for record in records),
        uncharged=tuple(shot_id for shot_id, record in manifest.shots.items() if awaits_charge(record)),
        takes=tuple(takes),
    )


@dataclass(frozen=True)
class LocatedManifest:
    path: Path
    manifest: Manifest
    spec_dir: Path | None  # known when the target was a spec: where its relative image paths start
    state: FolderState | None = None  # the store the manifest was read from: every render of every take
    spec: Path | None = None  # the spec, when the target was one


def locate_manifest(
    target: str | None, *, load_spec: Callable[[], Callable[[Path], ResolvedProject]]
) -> LocatedManifest:
    """The records a user means: of a folder (its store, else its manifest), a snapshot or store file, or a spec
    (its output folder's). Read only: a version-1 folder is not migrated.

    With no target, ``./manifest.json`` then ``./renders/manifest.json``. ``load_spec`` gives the spec loader, asked
    for only when the target turns out to be a spec.
    """
    if target is None:
        for candidate in DEFAULT_LOCATIONS:
            if has_manifest(candidate):
                return _located(candidate, None)
        raise ConfigError("no renders.db or manifest.json here nor in ./renders: give a folder, a manifest or the spec")
    path = Path(target)
    if path.is_dir():
        return _located(path / MANIFEST_NAME, None)
    if not path.exists():
        raise ConfigError(f"{target}: no such file or folder")
    if looks_like_manifest(path):
        return _located(path, None)
    project = load_spec()(path)
    return _located(project.output_dir / MANIFEST_NAME, project.path.parent, spec=project.path)


def _located(path: Path, spec_dir: Path | None, *, spec: Path | None = None) -> LocatedManifest:
    """The records at ``path`` (see ``load_manifest``), read once: the store, and the manifest it reads as."""
    if not has_manifest(path):
        return LocatedManifest(path, load_manifest(path), spec_dir, spec=spec)  # the usual "no manifest" error
    state = load_state(store_source(path))
    return LocatedManifest(path, manifest_from_state(state), spec_dir, state, spec)
