"""``manifest.json`` as the snapshot of the store: the folder's facts, then per shot its renders, for people and diffs.

Version 2 of the file. Keys come in a fixed order, shots in spec order, renders oldest first, each render's
``request`` with its keys sorted, and the current render of a shot carries ``"current": true``: the same store
always gives the same bytes. A snapshot reads back into the very ``FolderState`` the database gives, so a manifest
copied elsewhere or checked into git can stand in for its folder. A version-1 file reads back as its migration
would make it (``orchestrator.store.migrate``). See docs/store.md, "The snapshot".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.errors import ManifestError, NewerStoreError, StoreCorruptError
from orchestrator.store.manifest import MANIFEST_VERSION, STATUSES, Manifest, write_atomic
from orchestrator.store.migrate import state_from_v1
from orchestrator.store.records import (
    STORE_VERSION,
    FolderFacts,
    FolderState,
    OutputFile,
    RenderRecord,
    ShotRow,
    canonical_json,
)
from orchestrator.store.shape import shape_problem

SNAPSHOT_VERSION = 2


def snapshot_json(state: FolderState) -> dict[str, Any]:
    """The snapshot as plain JSON values, keys in their fixed order."""
    facts = state.facts
    return {
        "manifest_version": SNAPSHOT_VERSION,
        "store_version": facts.store_version,
        "tool_version": facts.tool_version,
        "project": facts.project,
        "salt": facts.salt,
        "spec": {"path": facts.spec_path, "sha256": facts.spec_sha256, "version": facts.spec_version},
        "provider": facts.provider,
        "started_at": facts.started_at,
        "finished_at": facts.finished_at,
        "shots": {row.shot_id: _shot_json(state, row) for row in state.shots},
    }


def snapshot_text(state: FolderState) -> str:
    return "".join(snapshot_chunks(state))


def snapshot_chunks(state: FolderState) -> Iterator[str]:
    """The snapshot's text, one shot at a time: the bytes of ``json.dumps(snapshot_json(state), indent=2)``.

    Written this way so that the snapshot of a 10,000-shot store never exists whole in memory (its JSON values and
    its text were most of a big run's peak RSS); each shot is indented as it would be at its depth in the file.
    """
    head = json.dumps({**snapshot_json(FolderState(facts=state.facts)), "shots": {}}, indent=2, ensure_ascii=False)
    if not state.shots:
        yield head + "\n"
        return
    yield head.removesuffix("{}\n}") + "{"
    for index, row in enumerate(state.shots):
        shot = json.dumps(_shot_json(state, row), indent=2, ensure_ascii=False).replace("\n", "\n    ")
        yield f"{',' if index else ''}\n    {json.dumps(row.shot_id, ensure_ascii=False)}: {shot}"
    yield "\n  }\n}\n"


def write_snapshot(state: FolderState, path: Path) -> None:
    """Write the snapshot atomically: a crash leaves the old file or the new one, never a mix."""
    write_atomic(path, snapshot_chunks(state))


def read_snapshot(path: Path) -> FolderState:
    """The ``FolderState`` a snapshot holds (version 2, or a version-1 manifest as its migration gives it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest here", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreCorruptError(f"{path}: cannot read the manifest ({exc})", path=str(path)) from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise StoreCorruptError(
            f"{path}: manifest is corrupt (not JSON); it was left untouched", path=str(path)
        ) from None
    return state_from_json(data, path=str(path))


def state_from_json(data: Any, *, path: str) -> FolderState:
    version = data.get("manifest_version") if isinstance(data, dict) else None
    if version == MANIFEST_VERSION:
        return state_from_v1(Manifest.from_json(data, path=path))
    if isinstance(version, int) and version > SNAPSHOT_VERSION:
        raise NewerStoreError(
            f"{path}: manifest version {version} was written by a newer orchestrator (this one reads up to "
            f"{SNAPSHOT_VERSION}); it was left untouched",
            path=path,
        )
    problem = _shape_problem(data)
    if problem is not None:
        raise StoreCorruptError(f"{path}: manifest is corrupt ({problem}); it was left untouched", path=path)
    if data["store_version"] > STORE_VERSION:
        raise NewerStoreError(
            f"{path}: store version {data['store_version']} was written by a newer orchestrator (this one knows "
            f"up to {STORE_VERSION}); it was left untouched",
            path=path,
        )
    return _state(data, path=path)


def _shot_json(state: FolderState, row: ShotRow) -> dict[str, Any]:
    return {
        "position": row.position,
        "renders": [
            _render_json(r, current=r.render_id == row.current_render_id) for r in state.renders_of(row.shot_id)
        ],
    }


def _render_json(render: RenderRecord, *, current: bool) -> dict[str, Any]:
    return {
        "render_id": render.render_id,
        "current": current,
        "take": render.take,
        "variant": render.variant,
        "attempt": render.attempt,
        "status": render.status,
        "fingerprint": render.fingerprint,
        "external_task_id": render.external_task_id,
        "task_id": render.task_id,
        "provider_status": render.provider_status,
        "outputs": [{"path": o.path, "sha256": o.sha256, "bytes": o.bytes} for o in render.outputs],
        "cost": render.cost,
        "charged": render.charged,
        "created_at": render.created_at,
        "updated_at": render.updated_at,
        "submitted_at": render.submitted_at,
        "finished_at": render.finished_at,
        "error": render.error,
        "request": render.request,
    }


def _state(data: dict[str, Any], *, path: str) -> FolderState:
    spec = data["spec"]
    facts = FolderFacts(
        project=data["project"],
        salt=data["salt"],
        spec_path=spec["path"],
        spec_sha256=spec["sha256"],
        spec_version=spec["version"],
        provider=data["provider"],
        tool_version=data["tool_version"],
        started_at=data["started_at"],
        finished_at=data["finished_at"],
        store_version=data["store_version"],
    )
    shots: list[ShotRow] = []
    renders: list[RenderRecord] = []
    for shot_id, shot in data["shots"].items():
        current = [r["render_id"] for r in shot["renders"] if r["current"]]
        if len(current) > 1:
            raise StoreCorruptError(f"{path}: shot {shot_id!r} has {len(current)} current renders", path=path)
        shots.append(ShotRow(shot_id=shot_id, position=shot["position"], current_render_id=next(iter(current), None)))
        renders.extend(_render(shot_id, r) for r in shot["renders"])
    renders.sort(key=lambda r: r.render_id)
    shots.sort(key=lambda row: row.position)
    if len({r.render_id for r in renders}) != len(renders):
        raise StoreCorruptError(f"{path}: two renders share an id", path=path)
    return FolderState(facts=facts, shots=tuple(shots), renders=tuple(renders))


def _render(shot_id: str, data: dict[str, Any]) -> RenderRecord:
    return RenderRecord(
        render_id=data["render_id"],
        shot_id=shot_id,
        fingerprint=data["fingerprint"],
        request_json=canonical_json(data["request"]),
        take=data["take"],
        variant=data["variant"],
        attempt=data["attempt"],
        status=data["status"],
        external_task_id=data["external_task_id"],
        task_id=data["task_id"],
        provider_status=data["provider_status"],
        outputs=tuple(OutputFile(path=o["path"], sha256=o["sha256"], bytes=o["bytes"]) for o in data["outputs"]),
        cost=_units(data["cost"]),
        charged=_units(data["charged"]),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        submitted_at=data["submitted_at"],
        finished_at=data["finished_at"],
        error=data["error"],
    )


def _units(value: float | None) -> float | None:
    return None if value is None else float(value)


_TEXT = {"type": "string"}
_NULLABLE_TEXT = {"type": ["string", "null"]}
_UNITS = {"type": ["number", "null"]}
_RENDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "render_id": {"type": "integer", "minimum": 1},
        "current": {"type": "boolean"},
        "take": {"type": "integer", "minimum": 1},
        "variant": _NULLABLE_TEXT,
        "attempt": {"type": "integer", "minimum": 0},
        "status": {"enum": list(STATUSES)},
        "fingerprint": _TEXT,
        "external_task_id": _NULLABLE_TEXT,
        "task_id": _NULLABLE_TEXT,
        "provider_status": _NULLABLE_TEXT,
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path", "sha256", "bytes"],
                "properties": {"path": _TEXT, "sha256": _TEXT, "bytes": {"type": "integer", "minimum": 0}},
            },
        },
        "cost": _UNITS,
        "charged": _UNITS,
        "created_at": _NULLABLE_TEXT,
        "updated_at": _NULLABLE_TEXT,
        "submitted_at": _NULLABLE_TEXT,
        "finished_at": _NULLABLE_TEXT,
        "error": _NULLABLE_TEXT,
        "request": {"type": "object"},
    },
}
_RENDER_SCHEMA["required"] = list(_RENDER_SCHEMA["properties"])  # every key, always: the writer puts them all
# The shape of a version-2 ``manifest.json``, checked on every read: a hand-edited snapshot with wrong types is a
# clear error naming the place, not a crash later in ``report`` or ``diff``.
SNAPSHOT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "manifest_version": {"const": SNAPSHOT_VERSION},
        "store_version": {"type": "integer", "minimum": 1},
        "tool_version": _TEXT,
        "project": _TEXT,
        "salt": {"type": "string", "pattern": "^[a-z0-9]{0,16}$"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["path", "sha256", "version"],
            "properties": {"path": _TEXT, "sha256": _TEXT, "version": {"type": "integer"}},
        },
        "provider": _TEXT,
        "started_at": _NULLABLE_TEXT,
        "finished_at": _NULLABLE_TEXT,
        "shots": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["position", "renders"],
                "properties": {
                    "position": {"type": "integer", "minimum": 0},
                    "renders": {"type": "array", "items": _RENDER_SCHEMA},
                },
            },
        },
    },
}
SNAPSHOT_SCHEMA["required"] = list(SNAPSHOT_SCHEMA["properties"])


def _shape_problem(data: Any) -> str | None:
    return shape_problem(data, SNAPSHOT_SCHEMA)
