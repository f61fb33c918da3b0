"""Attaching a task the user found in their provider's console to a shot: how an ``unconfirmed`` shot is settled.

A create whose outcome is unknown at a provider that cannot confirm it (the CometAPI gateway) leaves its shot
``unconfirmed``: it may have been billed, so the run never sends it again on its own. The user looks in their
console, finds the task (its external id is in the shot's record and error), and attaches it:

    orchestrator adopt specs/demo/project.yaml s03-departure 861309198188019719

The task is queried first. It is refused when the provider does not know it, when the provider echoes an external
id that is not the shot's (naming the shot it belongs to, when it is one of this folder's), and when it is already
attached to a shot here. Once attached, the shot is an ordinary task in flight: the next ``run`` follows it to the
end and downloads its video, and nothing is created.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from orchestrator.errors import ConfigError, ManifestError, TaskNotFoundError
from orchestrator.providers.base import Provider, Task, TaskStatus
from orchestrator.run.options import DEFAULT_RETRY_POLICY
from orchestrator.spec.shot import ResolvedProject
from orchestrator.store.manifest import (
    MANIFEST_NAME,
    PENDING,
    PENDING_REMOTE,
    PROCESSING,
    QUEUED,
    SUBMITTED,
    SUBMITTING,
    UNCONFIRMED,
    Manifest,
    ManifestStore,
    epoch_seconds,
    has_manifest,
    now_iso,
)

if TYPE_CHECKING:
    from orchestrator.providers.local import SimulatorOptions

# States whose record has no task being followed: the ones a found task can settle.
ADOPTABLE = (UNCONFIRMED, SUBMITTING, QUEUED, PENDING, PENDING_REMOTE)


@dataclass(frozen=True)
class Adopted:
    """What ``adopt`` attached: the shot, the task, its status at the provider, and whether the provider echoed
    the shot's external id (``False``: it echoed none, so only the user's word ties the task to the shot)."""

    shot_id: str
    task_id: str
    status: str
    external_id_checked: bool
    manifest_path: Path


async def aadopt(
    spec: str | os.PathLike[str] | ResolvedProject,
    shot_id: str,
    task_id: str,
    *,
    provider: str | Provider | None = None,
    out: str | os.PathLike[str] | None = None,
    simulator_options: SimulatorOptions | None = None,
) -> Adopted:
    """Attach the provider's task ``task_id`` to ``shot_id``; see the module docstring. Raises our errors."""
    from orchestrator.api import DEFAULT_PROVIDER, open_run_provider

    task_id = task_id.strip()
    project, out_dir, store = await anyio.to_thread.run_sync(partial(_open, spec, shot_id, task_id, out=out))
    try:
        expected = store.manifest.shots[shot_id].external_task_id
        name = provider if isinstance(provider, str) else (project.provider or DEFAULT_PROVIDER)
        async with open_run_provider(provider, name=name, simulator_options=simulator_options, out_dir=out_dir) as live:
            task = await _query(live, task_id, sent_at=epoch_seconds(store.manifest.shots[shot_id].submitted_at))
        checked = _check_task(store.manifest, shot_id, task, expected=expected)
        record = store.manifest.shots[shot_id]
    except BaseException:
        store.release()
        raise
    try:
        store.update(
            shot_id,
            status=PROCESSING if task.status is TaskStatus.PROCESSING else SUBMITTED,
            task_id=task.task_id,
            external_task_id=task.external_task_id or expected,
            error=None,
            provider_status=task.raw_status or None,
            submitted_at=record.submitted_at or now_iso(),
        )
    finally:
        store.close(finished=False)
    return Adopted(shot_id, task.task_id, task.status.value, checked, store.path)


def _open(
    spec: str | os.PathLike[str] | ResolvedProject, shot_id: str, task_id: str, *, out: str | os.PathLike[str] | None
) -> tuple[ResolvedProject, Path, ManifestStore]:
    """The project, its output folder and its manifest, locked, with the shot checked as able to take ``task_id``."""
    from orchestrator.api import load_spec

    project = load_spec(spec)
    if not task_id:
        raise ConfigError("the task id is empty: copy it from your provider's console")
    if shot_id not in {shot.id for shot in project.shots}:
        raise ConfigError(f"no shot {shot_id!r} in {project.path.name}")
    out_dir = Path(out).resolve() if out is not None else project.output_dir
    path = out_dir / MANIFEST_NAME
    if not has_manifest(path):
        raise ManifestError(f"{path}: no renders here yet, so there is nothing to attach a task to", path=str(path))
    store = ManifestStore.open(path, project=project.project, stamp_run=False)  # not a run: no run times
    try:
        _check_record(store.manifest, shot_id, task_id)
    except BaseException:
        store.release()  # refused: the manifest is left exactly as it was
        raise
    return project, out_dir, store


def adopt(
    spec: str | os.PathLike[str] | ResolvedProject,
    shot_id: str,
    task_id: str,
    *,
    provider: str | Provider | None = None,
    out: str | os.PathLike[str] | None = None,
    simulator_options: SimulatorOptions | None = None,
) -> Adopted:
    """``aadopt`` for synchronous code."""
    return anyio.run(
        partial(aadopt, spec, shot_id, task_id, provider=provider, out=out, simulator_options=simulator_options)
    )


def _check_record(manifest: Manifest, shot_id: str, task_id: str) -> None:
    """Refuses a shot that has a task already, or a task that is attached to any shot of this folder."""
    for other, record in manifest.shots.items():
        known = {record.task_id, *(render.task_id for render in record.history)}
        if task_id in known:
            where = "this shot" if other == shot_id else f"shot {other}"
            raise ConfigError(f"task {task_id} is already attached to {where}")
    mine = manifest.shots.get(shot_id)
    if mine is None:
        raise ConfigError(f"shot {shot_id} has never been sent, so there is no create to attach a task to")
    if mine.status not in ADOPTABLE or mine.task_id:
        raise ConfigError(
            f"shot {shot_id} is {mine.status} with task {mine.task_id or 'unknown'}: nothing to attach; "
            "a task can be attached to an unconfirmed shot"
        )


async def _query(provider: Provider, task_id: str, *, sent_at: float | None) -> Task:
    try:
        return await provider.get_task(task_id)
    except TaskNotFoundError:
        message = f"{provider.name} knows no task {task_id}: check the id in your provider's console"
        if sent_at is not None and time.time() - sent_at < DEFAULT_RETRY_POLICY.not_visible_grace:
            # A gateway's own table shows a task a while after its create: "unknown" this soon may mean "not yet".
            message += "; the shot's create was sent moments ago, and a gateway may not show its task yet: try again"
        raise ConfigError(message) from None


def _check_task(manifest: Manifest, shot_id: str, task: Task, *, expected: str | None) -> bool:
    """True when the provider echoed the shot's external id; refuses a task that is another render's."""
    echoed = task.external_task_id
    if echoed is None:
        return False
    own = {expected, *(render.external_task_id for render in manifest.shots[shot_id].history)}
    if echoed in own:
        return True
    for other, record in manifest.shots.items():
        if other != shot_id and echoed in {record.external_task_id, *(r.external_task_id for r in record.history)}:
            raise ConfigError(f"task {task.task_id} belongs to shot {other} (its external id is {echoed})")
    raise ConfigError(
        f"task {task.task_id} belongs to another render (its external id is {echoed}, shot {shot_id} expects "
        f"{expected or 'none recorded'})"
    )


__all__ = ["ADOPTABLE", "Adopted", "aadopt", "adopt"]
