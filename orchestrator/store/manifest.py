"""Shot records: what a run, ``plan``, ``status``, ``report`` and ``diff`` see of an output folder.

The truth of a folder is its render store, ``<out>/renders.db`` (``orchestrator.store``, docs/store.md), which
keeps every render of every shot. This module is the view the rest of the code works with: a ``Manifest`` maps each
shot id to a ``ShotRecord``, where its current render stands (status, fingerprint, the ids the provider knows it
by, attempts, the last error, the request as sent with images by sha256, its output files with their hashes), with
its older renders in ``history``. ``ManifestStore`` is the run's window onto the store; ``load_manifest`` reads a
folder or a snapshot (``manifest.json``, version 1 or 2) without writing. Here too: the shot states, the folder's
lock, and the version-1 file format that folders made before the store hold.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ManifestError
from orchestrator.store.lock import LOCK_NAME as LOCK_NAME  # re-exported: the folder's lock, where it used to live
from orchestrator.store.lock import LockInfo as LockInfo
from orchestrator.store.lock import ManifestLock as ManifestLock
from orchestrator.store.shape import shape_problem
from orchestrator.store.timestamps import epoch_seconds as epoch_seconds  # re-exported: used with the records
from orchestrator.store.timestamps import now_iso as now_iso

if TYPE_CHECKING:
    from orchestrator.store.database import RenderStore
    from orchestrator.store.records import FolderState, OutputFile, RenderRecord

MANIFEST_VERSION = 1  # the format of a version-1 file (one record per shot); snapshots of the store are version 2
MANIFEST_NAME = "manifest.json"

# A shot's states, in the order a render moves through them (see docs/architecture.md).
PENDING = "pending"
QUEUED = "queued"  # its external id is recorded; it waits for a slot (the create has not left)
SUBMITTING = "submitting"
SUBMITTED = "submitted"
PROCESSING = "processing"
DOWNLOADING = "downloading"
SUCCEEDED = "succeeded"
FAILED = "failed"
PENDING_REMOTE = "pending-remote"
# A create whose outcome is unknown (no answer, a 5xx, a gateway's HTML page) at a provider that cannot confirm it:
# it may have been billed, so it is never sent again without the user's word (``adopt`` or ``--resend-unconfirmed``).
UNCONFIRMED = "unconfirmed"
STATUSES: tuple[str, ...] = (
    PENDING,
    QUEUED,
    SUBMITTING,
    SUBMITTED,
    PROCESSING,
    DOWNLOADING,
    SUCCEEDED,
    FAILED,
    PENDING_REMOTE,
    UNCONFIRMED,
)


def new_salt() -> str:
    """A random salt for a new output folder: 6 characters of ``[a-z0-9]`` (31 bits)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(6))


@dataclass
class Output:
    """One file a render produced. ``path`` is relative to the manifest's folder."""

    path: str
    sha256: str
    bytes: int


@dataclass
class Render:
    """A finished render kept in a shot's history: what was asked, which task made it, what came out."""

    fingerprint: str
    task_id: str | None
    external_task_id: str | None
    outputs: list[Output]
    request: dict[str, Any]
    finished_at: str | None = None
    cost: float | None = None
    charged: float | None = None


@dataclass
class ShotRecord:
    """Where one shot's current render stands. The previous renders are in ``history``, newest last."""

    status: str = PENDING
    fingerprint: str = ""
    external_task_id: str | None = None
    task_id: str | None = None
    attempts: int = 0
    error: str | None = None
    request: dict[str, Any] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    cost: float | None = None  # estimated units (the rate card's), recorded when the render succeeded
    charged: float | None = None  # units the provider says it charged (final_unit_deduction); 0 for a failed task
    provider_status: str | None = None  # the task's status word as the provider last sent it
    created_at: str | None = None
    updated_at: str | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    history: list[Render] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShotRecord:
        record = cls(**{k: v for k, v in data.items() if k not in ("outputs", "history")})
        record.outputs = [Output(**o) for o in data.get("outputs", [])]
        record.history = [
            Render(**{**h, "outputs": [Output(**o) for o in h.get("outputs", [])]}) for h in data.get("history", [])
        ]
        return record

    def to_json(self) -> dict[str, Any]:
        # The record as a version-1 file holds it (``save_manifest``): the same keys, in the same order, as
        # ``dataclasses.asdict``, without its deep copy of every request.
        return {
            "status": self.status,
            "fingerprint": self.fingerprint,
            "external_task_id": self.external_task_id,
            "task_id": self.task_id,
            "attempts": self.attempts,
            "error": self.error,
            "request": self.request,
            "outputs": [_output_json(o) for o in self.outputs],
            "cost": self.cost,
            "charged": self.charged,
            "provider_status": self.provider_status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "submitted_at": self.submitted_at,
            "finished_at": self.finished_at,
            "history": [_render_json(h) for h in self.history],
        }


def _output_json(output: Output) -> dict[str, Any]:
    return {"path": output.path, "sha256": output.sha256, "bytes": output.bytes}


def _render_json(render: Render) -> dict[str, Any]:
    return {
        "fingerprint": render.fingerprint,
        "task_id": render.task_id,
        "external_task_id": render.external_task_id,
        "outputs": [_output_json(o) for o in render.outputs],
        "request": render.request,
        "finished_at": render.finished_at,
        "cost": render.cost,
        "charged": render.charged,
    }


_NULLABLE_STR = {"type": ["string", "null"]}
_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["path", "sha256", "bytes"],
    "additionalProperties": False,
    "properties": {
        "path": {"type": "string"},
        "sha256": {"type": "string"},
        "bytes": {"type": "integer", "minimum": 0},
    },
}
_OUTPUTS_SCHEMA: dict[str, Any] = {"type": "array", "items": _OUTPUT_SCHEMA}
_COST_SCHEMA: dict[str, Any] = {"type": ["number", "null"]}
MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["manifest_version", "project", "shots"],
    "properties": {
        "manifest_version": {"type": "integer"},
        "tool_version": {"type": "string"},
        "project": {"type": "string"},
        "salt": {"type": "string", "pattern": "^[a-z0-9]{0,16}$"},
        "spec": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "sha256": {"type": "string"}, "version": {"type": "integer"}},
        },
        "provider": {"type": "string"},
        "started_at": _NULLABLE_STR,
        "finished_at": _NULLABLE_STR,
        "shots": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "status": {"enum": list(STATUSES)},
                    "fingerprint": {"type": "string"},
                    "external_task_id": _NULLABLE_STR,
                    "task_id": _NULLABLE_STR,
                    "attempts": {"type": "integer", "minimum": 0},
                    "error": _NULLABLE_STR,
                    "request": {"type": "object"},
                    "outputs": _OUTPUTS_SCHEMA,
                    "cost": _COST_SCHEMA,
                    "charged": _COST_SCHEMA,
                    "provider_status": _NULLABLE_STR,
                    "created_at": _NULLABLE_STR,
                    "updated_at": _NULLABLE_STR,
                    "submitted_at": _NULLABLE_STR,
                    "finished_at": _NULLABLE_STR,
                    "history": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["fingerprint", "outputs", "request"],
                            "additionalProperties": False,
                            "properties": {
                                "fingerprint": {"type": "string"},
                                "task_id": _NULLABLE_STR,
                                "external_task_id": _NULLABLE_STR,
                                "outputs": _OUTPUTS_SCHEMA,
                                "request": {"type": "object"},
                                "finished_at": _NULLABLE_STR,
                                "cost": _COST_SCHEMA,
                                "charged": _COST_SCHEMA,
                            },
                        },
                    },
                },
            },
        },
    },
}
"""The shape of ``manifest.json``: checked on every load, so a hand-edited file with wrong types is a clear
``ManifestError`` here rather than a crash later in ``status``, ``report`` or ``run``."""


def _shape_problem(data: Any) -> str | None:
    """The first place where ``data`` does not have the manifest's shape, or ``None``."""
    return shape_problem(data, MANIFEST_SCHEMA)


@dataclass
class Manifest:
    """A folder's facts and its shots' records, in the store's order (the spec's, as of the last run)."""

    project: str
    spec_path: str = ""
    spec_sha256: str = ""
    spec_version: int = 1
    provider: str = ""
    # Made once per output folder (see ``new_salt``), part of every external id sent from it; "" in a folder made
    # before salts existed, until its next run gives it one.
    salt: str = ""
    tool_version: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    shots: dict[str, ShotRecord] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    def to_json(self) -> dict[str, Any]:
        return {**self.head_json(), "shots": {shot_id: record.to_json() for shot_id, record in self.shots.items()}}

    def head_json(self) -> dict[str, Any]:
        """Everything but the shots (which ``to_json`` puts last)."""
        return {
            "manifest_version": self.manifest_version,
            "tool_version": self.tool_version,
            "project": self.project,
            "salt": self.salt,
            "spec": {"path": self.spec_path, "sha256": self.spec_sha256, "version": self.spec_version},
            "provider": self.provider,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_json(cls, data: Any, *, path: str = "manifest") -> Manifest:
        if not isinstance(data, dict) or "manifest_version" not in data or "shots" not in data:
            raise ManifestError(f"{path}: not an orchestrator manifest", path=path)
        if data["manifest_version"] != MANIFEST_VERSION:
            raise ManifestError(
                f"{path}: manifest version {data['manifest_version']!r} is not supported "
                f"(this tool knows version {MANIFEST_VERSION})",
                path=path,
            )
        problem = _shape_problem(data)
        if problem is not None:
            raise ManifestError(f"{path}: manifest is corrupt ({problem}); it was left untouched", path=path)
        try:
            spec = data.get("spec") or {}
            return cls(
                manifest_version=data["manifest_version"],
                tool_version=data.get("tool_version", ""),
                project=data["project"],
                salt=data.get("salt", ""),
                spec_path=spec.get("path", ""),
                spec_sha256=spec.get("sha256", ""),
                spec_version=spec.get("version", 1),
                provider=data.get("provider", ""),
                started_at=data.get("started_at"),
                finished_at=data.get("finished_at"),
                shots={k: ShotRecord.from_json(v) for k, v in data["shots"].items()},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{path}: manifest is corrupt ({exc})", path=path) from None


def load_manifest(path: Path) -> Manifest:
    """What a folder holds, as the in-memory read model: read from its store, never migrated, never written.

    ``path`` is a folder, its ``manifest.json``, its ``renders.db``, or a snapshot anywhere (version 1 or 2). When
    a ``renders.db`` sits beside ``manifest.json``, the database is the truth and the file is only its snapshot.
    A missing manifest is a ``ManifestError`` too: callers decide whether that is fine.
    """
    from orchestrator.store.database import load_state  # the store is built on this module's names: import late

    return manifest_from_state(load_state(store_source(path)))


def looks_like_manifest(path: Path) -> bool:
    """Decided by content, not name: a JSON object with ``manifest_version``, or an SQLite file (a store)."""
    from orchestrator.store.database import SQLITE_MAGIC  # the store is built on this module's names

    try:
        with path.open("rb") as handle:
            if handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
                return True  # whether it is ours, and whole, reading it says in one line
        raw = path.read_bytes()
        if not raw.lstrip().startswith(b"{"):
            return False
        data = json.loads(raw)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "manifest_version" in data


def store_source(path: Path) -> Path:
    """What to read for ``path``: the database beside ``<folder>/manifest.json`` when there is one, else ``path``."""
    from orchestrator.store.database import DATABASE_NAME

    if path.name == MANIFEST_NAME and (path.parent / DATABASE_NAME).is_file():
        return path.parent / DATABASE_NAME
    return path


def has_manifest(path: Path) -> bool:
    """Whether ``<folder>/manifest.json`` (or the folder's store beside it) holds anything to read."""
    return path.exists() or store_source(path) != path


def manifest_from_state(state: FolderState) -> Manifest:
    """The read model of a store's state: per shot its current render as a ``ShotRecord``, older ones in ``history``.

    A shot with no current render yet has no record. ``history`` lists the older renders a version-1 manifest
    would have kept (see ``start_render``): the store keeps every render, the read model what matters to a reader.
    """
    facts = state.facts
    shots: dict[str, ShotRecord] = {}
    for row in state.shots:
        current = state.current(row.shot_id)
        if current is not None:
            shots[row.shot_id] = record_of(current, state.renders_of(row.shot_id))
    return Manifest(
        project=facts.project,
        spec_path=facts.spec_path,
        spec_sha256=facts.spec_sha256,
        spec_version=facts.spec_version,
        provider=facts.provider,
        salt=facts.salt,
        tool_version=facts.tool_version,
        started_at=facts.started_at,
        finished_at=facts.finished_at,
        shots=shots,
    )


def record_of(render: RenderRecord, renders: tuple[RenderRecord, ...] = ()) -> ShotRecord:
    """A render as the record readers, the plan and the run decide from; with the shot's ``renders``, the others
    that matter go in its ``history`` and its ``created_at`` is when the shot was first rendered."""
    return ShotRecord(
        status=render.status,
        fingerprint=render.fingerprint,
        external_task_id=render.external_task_id,
        task_id=render.task_id,
        attempts=render.attempt,
        error=render.error,
        request=render.request,
        outputs=[Output(o.path, o.sha256, o.bytes) for o in render.outputs],
        cost=render.cost,
        charged=render.charged,
        provider_status=render.provider_status,
        created_at=renders[0].created_at if renders else render.created_at,
        updated_at=render.updated_at,
        submitted_at=render.submitted_at,
        finished_at=render.finished_at,
        history=[_history_entry(r) for r in renders if r.render_id != render.render_id and _kept(r)],
    )


def _kept(render: RenderRecord) -> bool:
    return worth_keeping(status=render.status, task_id=render.task_id, has_outputs=bool(render.outputs))


def worth_keeping(*, status: str, task_id: str | None, has_outputs: bool) -> bool:
    """Whether an older render belongs in a shot's ``history``: it has files, a task that may have been paid for
    without being seen through, or a create that may have reached the provider (so that its ids are not lost)."""
    return has_outputs or (bool(task_id) and status != FAILED) or status in (SUBMITTING, UNCONFIRMED)


def _history_entry(render: RenderRecord) -> Render:
    return Render(
        fingerprint=render.fingerprint,
        task_id=render.task_id,
        external_task_id=render.external_task_id,
        outputs=[Output(o.path, o.sha256, o.bytes) for o in render.outputs],
        request=render.request,
        finished_at=render.finished_at,
        cost=render.cost,
        charged=render.charged,
    )


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _new_file_mode()


def write_atomic(path: Path, text: str | Iterable[str]) -> None:
    """Replace ``path`` with ``text`` (or the pieces of it, written in turn) so that a crash leaves the old or the
    new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode any other file the user creates would get.
        os.fchmod(fd, _NEW_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines([text] if isinstance(text, str) else text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (best effort where the filesystem cannot)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_manifest(manifest: Manifest, path: Path) -> None:
    """Write ``manifest`` as a version-1 file, atomically: what folders made before the store hold.

    Runs never write this format any more (their truth is ``renders.db``, their snapshot version 2); it is kept to
    make version-1 folders and files, which every reader and the migration still accept.
    """
    write_atomic(path, json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n")


def start_render(previous: ShotRecord | None, *, fingerprint: str, request: dict[str, Any]) -> ShotRecord:
    """A record for a new render of a shot; the previous render, if it produced files, moves into ``history``.

    ``attempts`` carries over when the fingerprint is unchanged (a retry or a forced rerender of the same request), so
    each new attempt gets a fresh, still deterministic external id; it starts again at 0 for a changed request.
    """
    history = list(previous.history) if previous else []
    if previous is not None and worth_keeping(
        status=previous.status, task_id=previous.task_id, has_outputs=bool(previous.outputs)
    ):
        history.append(
            Render(
                fingerprint=previous.fingerprint,
                task_id=previous.task_id,
                external_task_id=previous.external_task_id,
                outputs=list(previous.outputs),
                request=previous.request,
                finished_at=previous.finished_at,
                cost=previous.cost,
                charged=previous.charged,
            )
        )
    same = previous is not None and previous.fingerprint == fingerprint
    return ShotRecord(
        status=PENDING,
        fingerprint=fingerprint,
        attempts=previous.attempts if (same and previous is not None) else 0,
        request=request,
        created_at=(previous.created_at if previous else None) or now_iso(),
        updated_at=now_iso(),
        history=history,
    )


# --- the run's view of the store ------------------------------------------------------------------------------------


class ManifestStore:
    """The records a run works on, kept in the folder's render store (``renders.db``, see docs/store.md).

    The scheduler reads and changes shot records (``record``, ``put``, ``update``); each change goes to the store at
    once: ``put`` of a new record (``start_render``) is a new render of the shot that becomes its current one, the
    previous render staying as a row; ``update`` changes the current render's row. ``commit()`` is the store's
    group commit: it returns once a transaction holding every change made before the call is on disk, and writes
    only the rows that changed, so its cost does not grow with the number of shots. ``manifest.json``, the
    snapshot, is written when the run closes the store.
    """

    def __init__(self, path: Path, store: RenderStore) -> None:
        self.path = path
        self.manifest = manifest_from_state(store.state())
        self._store = store
        self._spec_order: tuple[str, ...] = ()

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def renders(self) -> RenderStore:
        """The render store these records live in (what a run's store writer writes)."""
        return self._store

    @property
    def writes(self) -> int:
        """Transactions committed so far (each a few pages of the log, whatever the number of shots)."""
        return self._store.commits

    @property
    def write_seconds(self) -> float:
        return self._store.commit_seconds

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        project: str,
        spec_path: str = "",
        spec_sha256: str = "",
        spec_version: int = 1,
        provider: str = "",
        tool_version: str = "",
        stamp_run: bool = True,
    ) -> ManifestStore:
        """Take the folder's lock, then open its store (``path`` is ``<folder>/manifest.json``).

        ``stamp_run=False`` for a command that is not a run (``adopt``): the folder's facts are left as they are.

        A new folder gets a store; one with only a version-1 ``manifest.json`` is migrated, once. Raises
        ``ManifestLockedError`` while another run holds the folder and ``ManifestError`` (a ``StoreError`` naming
        the file) for a store or manifest that cannot be used, which is left untouched.
        """
        from orchestrator.store.database import RenderStore  # the store is built on this module's names

        store = RenderStore.open(
            path.parent,
            project=project,
            spec_path=spec_path,
            spec_sha256=spec_sha256,
            spec_version=spec_version,
            provider=provider,
            tool_version=tool_version,
            stamp_run=stamp_run,
        )
        try:
            return cls(path, store)
        except BaseException:
            store.release()
            raise

    def record(self, shot_id: str) -> ShotRecord | None:
        return self.manifest.shots.get(shot_id)

    def put(self, shot_id: str, record: ShotRecord) -> None:
        """Start a new render of the shot from ``record`` (a ``start_render`` result): it becomes the current one."""
        self.manifest.shots[shot_id] = record
        self._new_render(shot_id, record)

    def update(self, shot_id: str, **changes: Any) -> ShotRecord:
        """Change fields of a shot's record (``updated_at`` too) and of its current render; ``commit()`` makes it
        durable. A shot with no record yet gets one; a changed fingerprint or request starts a new render."""
        unknown = [name for name in changes if name not in _RECORD_FIELDS]
        if unknown:
            raise AttributeError(f"ShotRecord has no field {unknown[0]!r}")
        record = self.manifest.shots.get(shot_id)
        new = record is None
        if record is None:
            record = self.manifest.shots[shot_id] = ShotRecord(created_at=now_iso())
        for name, value in changes.items():
            setattr(record, name, value)
        record.updated_at = now_iso()
        current = self._store.current(shot_id)
        if new or current is None or self._identity_changed(current, record, changes):
            self._new_render(shot_id, record)
        elif fields := _render_changes(changes):
            self._store.update_render(current.render_id, **fields)
        return record

    def follow_spec_order(self, shot_ids: Sequence[str]) -> None:
        """Shots are listed in this order (the spec's) in the snapshot this run writes; others after them."""
        self._spec_order = tuple(shot_ids)

    async def commit(self) -> None:
        """Return once every change made so far is on disk (a group commit, shared with other shots)."""
        await self._store.commit()

    def save(self) -> None:
        """Commit now, synchronously, on the calling thread."""
        self._store.commit_now()

    def close(self, *, finished: bool = True) -> None:
        """Commit (with ``finished_at`` when ``finished``), write the snapshot ``manifest.json``, release the lock."""
        try:
            self._store.place_shots([shot_id for shot_id in self._spec_order if self._store.shot(shot_id)])
        except BaseException:
            self._store.release()
            raise
        self._store.close(finished=finished)

    def release(self) -> None:
        """Release the lock without writing: for a command that changed nothing (a refused ``adopt``)."""
        self._store.release()

    def _new_render(self, shot_id: str, record: ShotRecord) -> None:
        render = self._store.new_render(
            shot_id, fingerprint=record.fingerprint, request=record.request, attempt=record.attempts
        )
        state = {name: getattr(record, name) for name in _RENDER_COLUMNS}
        self._store.update_render(render.render_id, **_render_changes(state))

    @staticmethod
    def _identity_changed(current: RenderRecord, record: ShotRecord, changes: dict[str, Any]) -> bool:
        # A render is one request: another fingerprint or request is another render, never an edit of this one.
        from orchestrator.store.records import canonical_request

        if "fingerprint" in changes and record.fingerprint != current.fingerprint:
            return True
        return "request" in changes and canonical_request(record.request) != current.request_json


# ShotRecord fields that are the current render's row, by the render's name for them; the rest (fingerprint and
# request make the render, history and the times are the store's own) have no column to change.
_RENDER_COLUMNS: dict[str, str] = {
    "status": "status",
    "external_task_id": "external_task_id",
    "task_id": "task_id",
    "attempts": "attempt",
    "error": "error",
    "outputs": "outputs",
    "cost": "cost",
    "charged": "charged",
    "provider_status": "provider_status",
    "submitted_at": "submitted_at",
    "finished_at": "finished_at",
}
_RECORD_FIELDS = frozenset(ShotRecord.__dataclass_fields__)


def _render_changes(values: dict[str, Any]) -> dict[str, Any]:
    """The render columns (and values) for changed record fields; fields without a column are left out."""
    fields: dict[str, Any] = {}
    for name, value in values.items():
        column = _RENDER_COLUMNS.get(name)
        if column is None:
            continue
        fields[column] = _output_files(value) if name == "outputs" else value
    return fields


def _output_files(outputs: Iterable[Output]) -> tuple[OutputFile, ...]:
    from orchestrator.store.records import OutputFile

    return tuple(OutputFile(path=o.path, sha256=o.sha256, bytes=o.bytes) for o in outputs)


def read_or_new(path: Path, *, project: str) -> Manifest:
    """What the folder of ``path`` holds (it must belong to ``project``), else a new empty manifest. Reads only."""
    if not has_manifest(path):
        return Manifest(project=project)
    manifest = load_manifest(path)
    if manifest.project != project:
        raise ManifestError(
            f"{path}: this manifest belongs to project {manifest.project!r}, not {project!r}; "
            "use another --out folder (the file was left untouched)",
            path=str(path),
        )
    return manifest
