"""Attaching a task the user found in their provider's console to a render: how an ``unconfirmed`` one is settled.

A create whose outcome is unknown at a provider that cannot confirm it (the CometAPI gateway) leaves its render
``unconfirmed``: it may have been billed, so the run never sends it again on its own. The user looks in their
console, finds the task (its external id is in the render's record and error), and attaches it by the render's key
(``s03`` for a shot's first take, ``s03#2``, ``s03/wide``, ``s03/wide#2``; see docs/run.md):

    orchestrator adopt specs/demo/project.yaml s03-departure#2 861309198188019719

The task is queried first. It is refused when the provider does not know it, when the provider echoes an external
id that is not the render's (naming the render it belongs to, when it is one of this folder's), and when it is
already attached to a render here. Once attached, the render is an ordinary task in flight: the next ``run``
follows it to the end and downloads its video, and nothing is created.
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
    epoch_seconds,
    has_manifest,
    now_iso,
)
from orchestrator.store.records import DEFAULT_TAKE, FolderState, RenderRecord

if TYPE_CHECKING:
    from orchestrator.providers.local import SimulatorOptions
    from orchestrator.store.database import RenderStore

# States whose record has no task being followed: the ones a found task can settle.
ADOPTABLE = (UNCONFIRMED, SUBMITTING, QUEUED, PENDING, PENDING_REMOTE)


@dataclass(frozen=True)
class RenderKey:
    """A render's key taken apart: ``s03/wide#2`` is shot ``s03``, variant ``wide``, take 2."""

    shot_id: str
    variant: str | None = None
    take: int = DEFAULT_TAKE

    @classmethod
    def parse(cls, key: str) -> RenderKey:
        """Read ``SHOT[/VARIANT][#TAKE]`` (a shot id never holds ``/`` or ``#``); ``ConfigError`` when malformed."""
        text = key.strip()
        name, hash_sign, take_text = text.partition("#")
        shot_id, slash, variant = name.partition("/")
        take = DEFAULT_TAKE
        if hash_sign:
            take = int(take_text) if take_text.isdigit() else 0
        if not shot_id or (slash and not variant) or "/" in variant or take < 1:
            raise ConfigError(
                f"{key!r} is not a render key: write SHOT, SHOT#TAKE, SHOT/VARIANT or SHOT/VARIANT#TAKE "
                "(as `orchestrator run` and `orchestrator status` name renders)"
            )
        return cls(shot_id, variant if slash else None, take)

    def __str__(self) -> str:
        name = self.shot_id if self.variant is None else f"{self.shot_id}/{self.variant}"
        return name if self.take == DEFAULT_TAKE else f"{name}#{self.take}"

    @property
    def plain(self) -> bool:
        """Take 1 of a shot without variants: named as a shot, as it always was."""
        return self.variant is None and self.take == DEFAULT_TAKE

    @property
    def kind(self) -> str:
        return "shot" if self.plain else "render"

    @property
    def named(self) -> str:
        """How messages name it: ``shot s03`` for a plain key, else ``render s03/wide#2``."""
        return f"{self.kind} {self}"

    @classmethod
    def of(cls, render: RenderRecord) -> RenderKey:
        return cls(render.shot_id, render.variant, render.take)


@dataclass(frozen=True)
class Adopted:
    """What ``adopt`` attached: the render (``key``, its shot), the task, its status at the provider, and whether
    the provider echoed the render's external id (``False``: it echoed none, so only the user's word ties the task
    to the render)."""

    shot_id: str
    task_id: str
    status: str
    external_id_checked: bool
    manifest_path: Path
    key: str

    @property
    def named(self) -> str:
        """``shot s03`` or ``render s03/wide#2``, as messages say it."""
        return RenderKey.parse(self.key).named


async def aadopt(
    spec: str | os.PathLike[str] | ResolvedProject,
    key: str,
    task_id: str,
    *,
    provider: str | Provider | None = None,
    out: str | os.PathLike[str] | None = None,
    simulator_options: SimulatorOptions | None = None,
) -> Adopted:
    """Attach the provider's task ``task_id`` to the render ``key`` (a plain shot id: the shot's first take); see
    the module docstring. Raises our errors."""
    from orchestrator.api import DEFAULT_PROVIDER, open_run_provider

    task_id = task_id.strip()
    project, out_dir, store, render = await anyio.to_thread.run_sync(partial(_open, spec, key, task_id, out=out))
    try:
        name = provider if isinstance(provider, str) else (project.provider or DEFAULT_PROVIDER)
        async with open_run_provider(provider, name=name, simulator_options=simulator_options, out_dir=out_dir) as live:
            task = await _query(live, task_id, sent_at=epoch_seconds(render.submitted_at))
        checked = _check_task(store.state(), render, task)
    except BaseException:
        store.release()  # refused: the store is left exactly as it was
        raise
    try:
        store.update_render(
            render.render_id,
            status=PROCESSING if task.status is TaskStatus.PROCESSING else SUBMITTED,
            task_id=task.task_id,
            external_task_id=task.external_task_id or render.external_task_id,
            error=None,
            provider_status=task.raw_status or None,
            submitted_at=render.submitted_at or now_iso(),
        )
    finally:
        store.close(finished=False)
    return Adopted(
        render.shot_id, task.task_id, task.status.value, checked, out_dir / MANIFEST_NAME, str(RenderKey.of(render))
    )


def _open(
    spec: str | os.PathLike[str] | ResolvedProject, key: str, task_id: str, *, out: str | os.PathLike[str] | None
) -> tuple[ResolvedProject, Path, RenderStore, RenderRecord]:
    """The project, its output folder, its store (locked) and the render ``key`` names, checked as able to take
    ``task_id``."""
    from orchestrator.api import load_spec
    from orchestrator.store.database import RenderStore

    project = load_spec(spec)
    if not task_id:
        raise ConfigError("the task id is empty: copy it from your provider's console")
    wanted = _check_key(project, RenderKey.parse(key))
    out_dir = Path(out).resolve() if out is not None else project.output_dir
    path = out_dir / MANIFEST_NAME
    if not has_manifest(path):
        raise ManifestError(f"{path}: no renders here yet, so there is nothing to attach a task to", path=str(path))
    store = RenderStore.open(out_dir, project=project.project, stamp_run=False)  # not a run: no run times
    try:
        render = _check_record(store.state(), wanted, task_id)
    except BaseException:
        store.release()  # refused: the store is left exactly as it was
        raise
    return project, out_dir, store, render


def adopt(
    spec: str | os.PathLike[str] | ResolvedProject,
    key: str,
    task_id: str,
    *,
    provider: str | Provider | None = None,
    out: str | os.PathLike[str] | None = None,
    simulator_options: SimulatorOptions | None = None,
) -> Adopted:
    """``aadopt`` for synchronous code."""
    return anyio.run(
        partial(aadopt, spec, key, task_id, provider=provider, out=out, simulator_options=simulator_options)
    )


def _check_key(project: ResolvedProject, key: RenderKey) -> RenderKey:
    """Refuses a key whose shot or variant the spec does not have; a plain id of a shot with variants asks for one."""
    requests = project.requests_of(key.shot_id)
    if not requests:
        raise ConfigError(f"no shot {key.shot_id!r} in {project.path.name}")
    variants = [shot.variant for shot in requests if shot.variant is not None]
    if key.variant is None and variants:
        raise ConfigError(
            f"shot {key.shot_id} has variants ({', '.join(variants)}): name the render, e.g. "
            f"{RenderKey(key.shot_id, variants[0], key.take)}"
        )
    if key.variant is not None and key.variant not in variants:
        has = f"its variants are {', '.join(variants)}" if variants else "it has no variants"
        raise ConfigError(f"shot {key.shot_id} has no variant {key.variant!r} in {project.path.name}: {has}")
    return key


def _renders_of(state: FolderState, key: RenderKey) -> list[RenderRecord]:
    """Every render of the key's shot, variant and take, oldest first (retries and older requests included)."""
    return [render for render in state.renders_of(key.shot_id) if RenderKey.of(render) == key]


def _check_record(state: FolderState, key: RenderKey, task_id: str) -> RenderRecord:
    """The key's newest render; refuses one that has a task already, or a task attached to any render here."""
    mine = _renders_of(state, key)
    for render in state.renders:
        if render.task_id == task_id:
            other = RenderKey.of(render)
            where = f"this {key.kind}" if other == key else other.named
            raise ConfigError(f"task {task_id} is already attached to {where}")
    if not mine:
        raise ConfigError(f"{key.named} has never been sent, so there is no create to attach a task to")
    newest = mine[-1]
    if newest.status not in ADOPTABLE or newest.task_id:
        raise ConfigError(
            f"{key.named} is {newest.status} with task {newest.task_id or 'unknown'}: nothing to attach; "
            f"a task can be attached to an unconfirmed {key.kind}"
        )
    return newest


async def _query(provider: Provider, task_id: str, *, sent_at: float | None) -> Task:
    try:
        return await provider.get_task(task_id)
    except TaskNotFoundError:
        message = f"{provider.name} knows no task {task_id}: check the id in your provider's console"
        if sent_at is not None and time.time() - sent_at < DEFAULT_RETRY_POLICY.not_visible_grace:
            # A gateway's own table shows a task a while after its create: "unknown" this soon may mean "not yet".
            message += "; the create was sent moments ago, and a gateway may not show its task yet: try again"
        raise ConfigError(message) from None


def _check_task(state: FolderState, render: RenderRecord, task: Task) -> bool:
    """True when the provider echoed the render's external id (or an earlier attempt's at the same take); refuses a
    task that is another render's."""
    echoed = task.external_task_id
    if echoed is None:
        return False
    key = RenderKey.of(render)
    if echoed in {render.external_task_id, *(r.external_task_id for r in _renders_of(state, key))}:
        return True
    owner = next((r for r in state.renders if r.external_task_id == echoed), None)
    if owner is not None:
        raise ConfigError(f"task {task.task_id} belongs to {RenderKey.of(owner).named} (its external id is {echoed})")
    raise ConfigError(
        f"task {task.task_id} belongs to another render (its external id is {echoed}, {key.named} expects "
        f"{render.external_task_id or 'none recorded'})"
    )


__all__ = ["ADOPTABLE", "Adopted", "RenderKey", "aadopt", "adopt"]
