"""Status: a manifest summed up (shots per status, failures with their reasons, units spent)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.manifest import FAILED, MANIFEST_NAME, PENDING_REMOTE, STATUSES, Manifest, ShotRecord, load_manifest
from orchestrator.shot import ResolvedProject

# Where ``report`` and ``status`` look when given no target: the current folder, then the usual output folder.
DEFAULT_LOCATIONS = (Path(MANIFEST_NAME), Path("renders") / MANIFEST_NAME)

# States that need the user's attention, with the reason shown beside them.
ATTENTION = (FAILED, PENDING_REMOTE)


@dataclass(frozen=True)
class ShotProblem:
    shot_id: str
    status: str
    reason: str


@dataclass(frozen=True)
class StatusSummary:
    project: str
    total: int
    counts: dict[str, int]  # every known status (zero included), then any unknown ones found
    problems: tuple[ShotProblem, ...]
    units: float  # spent on the current renders and every earlier one kept in history


def spent_units(record: ShotRecord) -> float:
    """Units a shot has cost so far: its current render plus earlier renders in its history (each counted once)."""
    seen: set[str | None] = set()
    total = 0.0
    if record.cost is not None:
        total += record.cost
        seen.add(record.task_id)
    for render in record.history:
        # A history that also lists the current render must not bill it twice.
        if render.cost is not None and (render.task_id is None or render.task_id not in seen):
            total += render.cost
            seen.add(render.task_id)
    return total


def summarize(manifest: Manifest) -> StatusSummary:
    counts = dict.fromkeys(STATUSES, 0)
    for record in manifest.shots.values():
        counts[record.status] = counts.get(record.status, 0) + 1
    problems = tuple(
        ShotProblem(shot_id, record.status, record.error or "no reason recorded")
        for shot_id, record in manifest.shots.items()
        if record.status in ATTENTION
    )
    units = sum(spent_units(record) for record in manifest.shots.values())
    return StatusSummary(manifest.project, len(manifest.shots), counts, problems, units)


@dataclass(frozen=True)
class LocatedManifest:
    path: Path
    manifest: Manifest
    spec_dir: Path | None  # known when the target was a spec: where its relative image paths start


def looks_like_manifest(path: Path) -> bool:
    """Decided by content, not name: a JSON object with ``manifest_version``."""
    try:
        raw = path.read_bytes()
        if not raw.lstrip().startswith(b"{"):
            return False
        data = json.loads(raw)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "manifest_version" in data


def locate_manifest(
    target: str | None, *, load_spec: Callable[[], Callable[[Path], ResolvedProject]]
) -> LocatedManifest:
    """The manifest a user means: a manifest file, a folder holding one, or a spec (its output folder's manifest).

    With no target, ``./manifest.json`` then ``./renders/manifest.json``. ``load_spec`` gives the spec loader, asked
    for only when the target turns out to be a spec.
    """
    if target is None:
        for candidate in DEFAULT_LOCATIONS:
            if candidate.is_file():
                return LocatedManifest(candidate, load_manifest(candidate), None)
        raise ConfigError("no manifest.json here nor in ./renders: give a manifest, its folder, or the spec")
    path = Path(target)
    if path.is_dir():
        return LocatedManifest(path / MANIFEST_NAME, load_manifest(path / MANIFEST_NAME), None)
    if not path.exists():
        raise ConfigError(f"{target}: no such file or folder")
    if looks_like_manifest(path):
        return LocatedManifest(path, load_manifest(path), None)
    project = load_spec()(path)
    manifest_path = project.output_dir / MANIFEST_NAME
    return LocatedManifest(manifest_path, load_manifest(manifest_path), project.path.parent)
