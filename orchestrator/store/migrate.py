"""From a version-1 ``manifest.json`` (one record per shot, older renders in its ``history``) to the render store.

Each shot record becomes the shot's current render and each entry of its history an older render, oldest first,
so nothing is lost: ids, attempts, outputs, estimated and charged units, errors, times and the folder's salt. The
old file is kept beside as ``manifest.v1.json`` (a hard link, so it costs nothing and is the very same bytes).
See docs/store.md, "Migration".
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from orchestrator.errors import StoreError
from orchestrator.store.manifest import (
    PENDING_REMOTE,
    SUCCEEDED,
    UNCONFIRMED,
    Manifest,
    Output,
    Render,
    ShotRecord,
)
from orchestrator.store.records import (
    FolderFacts,
    FolderState,
    OutputFile,
    RenderRecord,
    ShotRow,
    canonical_json,
)

V1_KEPT_NAME = "manifest.v1.json"

_ATTEMPT_SUFFIX = re.compile(r"-r(\d+)$")


def state_from_v1(manifest: Manifest) -> FolderState:
    """The store's value for a version-1 manifest: every record and every render of its history kept."""
    shots: list[ShotRow] = []
    renders: list[RenderRecord] = []
    for position, (shot_id, record) in enumerate(manifest.shots.items()):
        for old in record.history:
            renders.append(_history_render(len(renders) + 1, shot_id, old))
        renders.append(_current_render(len(renders) + 1, shot_id, record))
        shots.append(ShotRow(shot_id=shot_id, position=position, current_render_id=len(renders)))
    return FolderState(facts=_facts(manifest), shots=tuple(shots), renders=tuple(renders))


def keep_v1(manifest_path: Path) -> Path:
    """Keep the version-1 file as ``manifest.v1.json`` beside it before anything replaces it.

    An earlier migration that stopped halfway may have kept it already: the same bytes there are fine; other bytes
    under that name are someone's file, which is never overwritten.
    """
    kept = manifest_path.with_name(V1_KEPT_NAME)
    if kept.exists():
        if kept.read_bytes() == manifest_path.read_bytes():
            return kept
        raise StoreError(
            f"{kept}: already exists and differs from {manifest_path.name}; move it away so that the version-1 "
            "manifest can be kept there, then run again",
            path=str(kept),
        )
    try:
        os.link(manifest_path, kept)
    except OSError:
        shutil.copy2(manifest_path, kept)  # a filesystem without hard links
    return kept


def _facts(manifest: Manifest) -> FolderFacts:
    return FolderFacts(
        project=manifest.project,
        salt=manifest.salt,
        spec_path=manifest.spec_path,
        spec_sha256=manifest.spec_sha256,
        spec_version=manifest.spec_version,
        provider=manifest.provider,
        tool_version=manifest.tool_version,
        started_at=manifest.started_at,
        finished_at=manifest.finished_at,
    )


def _current_render(render_id: int, shot_id: str, record: ShotRecord) -> RenderRecord:
    return RenderRecord(
        render_id=render_id,
        shot_id=shot_id,
        fingerprint=record.fingerprint,
        request_json=canonical_json(record.request),
        attempt=record.attempts,
        status=record.status,
        external_task_id=record.external_task_id,
        task_id=record.task_id,
        provider_status=record.provider_status,
        outputs=_outputs(record.outputs),
        cost=_units(record.cost),
        charged=_units(record.charged),
        created_at=record.created_at,
        updated_at=record.updated_at,
        submitted_at=record.submitted_at,
        finished_at=record.finished_at,
        error=record.error,
    )


def _history_render(render_id: int, shot_id: str, old: Render) -> RenderRecord:
    # Version 1 kept less of an older render: no status, attempts, times but the end, or error. What it kept is
    # carried over; the rest is derived from what a history entry meant (docs/store.md, "Migration").
    return RenderRecord(
        render_id=render_id,
        shot_id=shot_id,
        fingerprint=old.fingerprint,
        request_json=canonical_json(old.request),
        attempt=_attempt_of(old.external_task_id),
        status=_history_status(old),
        external_task_id=old.external_task_id,
        task_id=old.task_id,
        outputs=_outputs(old.outputs),
        cost=_units(old.cost),
        charged=_units(old.charged),
        updated_at=old.finished_at,
        finished_at=old.finished_at,
    )


def _history_status(old: Render) -> str:
    """Version 1 kept a render in history when it had files, a task not seen to its end, or a create whose answer
    was never seen (see ``manifest.start_render``): succeeded, pending-remote and unconfirmed say just that."""
    if old.outputs:
        return SUCCEEDED
    if old.task_id:
        return PENDING_REMOTE
    return UNCONFIRMED


def _attempt_of(external_task_id: str | None) -> int:
    """The attempt an external id was sent for: ``-r<n>`` at its end, else the first."""
    if not external_task_id:
        return 0
    match = _ATTEMPT_SUFFIX.search(external_task_id)
    return int(match.group(1)) if match else 1


def _outputs(outputs: list[Output]) -> tuple[OutputFile, ...]:
    return tuple(OutputFile(path=o.path, sha256=o.sha256, bytes=o.bytes) for o in outputs)


def _units(value: float | None) -> float | None:
    return None if value is None else float(value)
