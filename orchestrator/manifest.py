"""The manifest: the durable truth of a run, one JSON file beside the videos.

``<out>/manifest.json`` maps each shot id to a record of where its render stands: status, fingerprint, the ids the
provider knows it by, attempts, the last error, the resolved request (images by sha256, never base64, never a key)
and its output files with their hashes. Every write is atomic (temp file, fsync, rename) and keeps a ``.bak`` of the
last good file, so a crash at any moment leaves either the old or the new manifest, never half of one.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import jsonschema

from orchestrator.errors import ManifestError, ManifestLockedError

MANIFEST_VERSION = 1
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


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_seconds(stamp: str | None) -> float | None:
    """A ``now_iso()`` stamp as seconds since the epoch; ``None`` when missing or unreadable."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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
        # Written out by hand: a run serialises every record on each manifest write, and ``dataclasses.asdict``
        # (a recursive deep copy) was the largest cost of a 200-shot run. Same keys, same order as ``asdict``.
        # ``request`` dicts are shared, not copied: they are built once per render and never changed in place.
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
    error = jsonschema.exceptions.best_match(_manifest_validator().iter_errors(data))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "top level"
    return f"{where}: {error.message}"


@cache
def _manifest_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(MANIFEST_SCHEMA)


@dataclass
class Manifest:
    """The whole manifest. ``shots`` keeps insertion order (spec order on first run)."""

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
    """Read a manifest. A missing file is a ``ManifestError`` too: callers decide whether that is fine."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest here", path=str(path)) from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror})", path=str(path)) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise ManifestError(
            f"{path}: manifest is corrupt (nested too deeply); it was left untouched", path=str(path)
        ) from None
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{path}: manifest is corrupt (invalid JSON at line {exc.lineno}); "
            f"it was left untouched, a backup may be at {path.name}.bak",
            path=str(path),
        ) from None
    return Manifest.from_json(data, path=str(path))


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _new_file_mode()


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode any other file the user creates would get.
        os.fchmod(fd, _NEW_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_manifest(manifest: Manifest, path: Path) -> None:
    """Write the manifest atomically, first keeping the current file as ``<name>.bak``."""
    write_manifest_text(path, manifest_text(manifest))


def manifest_text(manifest: Manifest) -> str:
    return json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n"


def write_manifest_text(path: Path, text: str) -> None:
    """Keep the current file as ``<name>.bak``, then atomically replace it with ``text``."""
    if path.exists():
        _keep_backup(path)
    write_atomic(path, text)


def _keep_backup(path: Path) -> None:
    # The manifest is only ever replaced, never edited in place, so a hard link to the current file is a complete,
    # durable copy of the last good version at the cost of a directory entry (a copy of a large manifest on every
    # one of a run's ~1,000 writes would double the I/O). Filesystems without hard links get a real copy.
    backup = path.with_name(path.name + ".bak")
    link = path.with_name(f".{path.name}.bak.{os.getpid()}.tmp")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, backup)
    except OSError:
        link.unlink(missing_ok=True)
        write_atomic(backup, path.read_text(encoding="utf-8"))


def start_render(previous: ShotRecord | None, *, fingerprint: str, request: dict[str, Any]) -> ShotRecord:
    """A record for a new render of a shot; the previous render, if it produced files, moves into ``history``.

    ``attempts`` carries over when the fingerprint is unchanged (a retry or a forced rerender of the same request), so
    each new attempt gets a fresh, still deterministic external id; it starts again at 0 for a changed request.
    """
    history = list(previous.history) if previous else []
    # Kept: a render with files, and one that may have been paid for without being seen through (a task id, or a
    # create that may have reached the provider) so that its ids are not lost.
    if previous is not None and (
        previous.outputs
        or (previous.task_id and previous.status != FAILED)
        or previous.status in (SUBMITTING, UNCONFIRMED)
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


# --- the lock ------------------------------------------------------------------------------------------------------

LOCK_NAME = ".lock"


@dataclass(frozen=True)
class LockInfo:
    """Who holds a manifest's lock: process id, host and start time."""

    pid: int
    host: str
    started_at: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started_at}"


class ManifestLock:
    """``<out>/.lock``: one run at a time per output folder. A lock left by a dead process is taken over.

    The lock is a file created with ``O_EXCL`` holding the owner's pid, host and start time. Liveness is checked with
    ``kill(pid, 0)`` on the same host; a lock from another host is always respected (we cannot tell if it is alive).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = False

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ManifestError(
                f"{self.path.parent}: cannot create the output folder ({reason})", path=str(self.path)
            ) from None
        for _ in range(3):
            if self._try_create():
                self.held = True
                return
            holder = self._read()
            if holder is not None and _alive(holder):
                raise ManifestLockedError(
                    f"{self.path.parent}: another run is using this output folder ({holder.describe()}); "
                    f"wait for it to finish or stop it. If no run is active, delete {self.path}",
                    path=str(self.path),
                )
            # Stale (dead owner, or a half-written lock from a crash): take it over.
            self.path.unlink(missing_ok=True)
        raise ManifestLockedError(f"{self.path}: could not take the lock; try again", path=str(self.path))

    def release(self) -> None:
        if not self.held:
            return
        holder = self._read()
        if holder is not None and holder.pid == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": now_iso()}
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(info) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def live_holder(self) -> LockInfo | None:
        """The live run holding this lock, if one does (``None`` when free or left by a dead process). Only reads."""
        holder = self._read()
        return holder if holder is not None and _alive(holder) else None

    def _read(self) -> LockInfo | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return LockInfo(pid=int(data["pid"]), host=str(data["host"]), started_at=str(data["started_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _alive(holder: LockInfo) -> bool:
    if holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return _not_zombie(holder.pid)


def _not_zombie(pid: int) -> bool:
    # A killed child that its parent has not reaped yet still answers kill(pid, 0); it holds nothing any more.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


# --- the store: the manifest of one run, written as it changes -----------------------------------------------------


class ManifestStore:
    """The manifest a run works on: loaded (or created) under the lock, changed in memory, written durably.

    ``commit()`` is a group commit: it returns once a write that includes every change made before the call is on
    disk. Changes made by many shots while a write is under way share the next write, so 200 shots x 6 changes do
    not cost 1,200 writes, yet each caller still knows its change is durable before it takes its next step.

    Each record's compact JSON is kept between writes and encoded again only after ``put``/``update`` touched it:
    encoding all of a 200-shot manifest takes ~3 ms holding the GIL (the event loop), on each of ~100 writes. Change
    records only through ``put``/``update``; ``save()`` (start and end of a run) encodes everything afresh anyway.
    """

    def __init__(self, path: Path, manifest: Manifest, lock: ManifestLock) -> None:
        self.path = path
        self.manifest = manifest
        self._lock = lock
        self._version = 0
        self._written = 0
        self._write_lock: anyio.Lock | None = None
        self._encoded: dict[str, str] = {}  # shot id -> '"id":{record}' as compact JSON, as of its last put/update
        self._stale: set[str] = set(manifest.shots)  # records changed since they were encoded
        self.writes = 0
        self.write_seconds = 0.0

    @property
    def directory(self) -> Path:
        return self.path.parent

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
    ) -> ManifestStore:
        """Take the lock, then load the manifest at ``path`` (or start a new one). Raises ``ManifestError``."""
        lock = ManifestLock(path.parent / LOCK_NAME)
        lock.acquire()
        try:
            manifest = read_or_new(path, project=project)
        except BaseException:
            lock.release()
            raise
        manifest.salt = manifest.salt or new_salt()  # once per folder; kept, so a resume sends the same ids
        manifest.spec_path = spec_path or manifest.spec_path
        manifest.spec_sha256 = spec_sha256 or manifest.spec_sha256
        manifest.spec_version = spec_version
        manifest.provider = provider or manifest.provider
        manifest.tool_version = tool_version or manifest.tool_version
        manifest.started_at = now_iso()
        manifest.finished_at = None
        return cls(path, manifest, lock)

    def record(self, shot_id: str) -> ShotRecord | None:
        return self.manifest.shots.get(shot_id)

    def put(self, shot_id: str, record: ShotRecord) -> None:
        self.manifest.shots[shot_id] = record
        self._stale.add(shot_id)
        self._version += 1

    def update(self, shot_id: str, **changes: Any) -> ShotRecord:
        """Change fields of a shot's record in memory (``updated_at`` too); ``commit()`` makes it durable."""
        record = self.manifest.shots.setdefault(shot_id, ShotRecord(created_at=now_iso()))
        for name, value in changes.items():
            if not hasattr(record, name):
                raise AttributeError(f"ShotRecord has no field {name!r}")
            setattr(record, name, value)
        record.updated_at = now_iso()
        self._stale.add(shot_id)
        self._version += 1
        return record

    async def commit(self) -> None:
        """Return once every change made so far is on disk."""
        wanted = self._version
        if self._write_lock is None:
            self._write_lock = anyio.Lock()
        async with self._write_lock:
            if self._written >= wanted:
                return
            version = self._version
            # Encode in the event loop (no shot can change a record halfway), only what changed; write in a thread.
            text = self._compact_text()
            await anyio.to_thread.run_sync(self._write_text, text)
            self._written = version

    def save(self) -> None:
        """Write now, synchronously (start and end of a run)."""
        self._write_snapshot(self.manifest.to_json())
        self._written = self._version
        self._stale = set(self.manifest.shots)  # the next commit encodes every record afresh

    def close(self, *, finished: bool = True) -> None:
        """Final write (with ``finished_at`` when ``finished``), then release the lock."""
        try:
            if finished:
                self.manifest.finished_at = now_iso()
            self.save()
        finally:
            self._lock.release()

    def release(self) -> None:
        """Release the lock without writing: for a command that changed nothing (a refused ``adopt``)."""
        self._lock.release()

    def _compact_text(self) -> str:
        """The manifest as compact JSON (what ``to_json`` gives), from the records' cached encodings."""
        shots = self.manifest.shots
        for shot_id in self._stale:
            if shot_id in shots:
                self._encoded[shot_id] = f"{_compact(shot_id)}:{_compact(shots[shot_id].to_json())}"
            else:
                self._encoded.pop(shot_id, None)
        self._stale.clear()
        body = ",".join(self._encoded[shot_id] for shot_id in shots)
        return f'{_compact(self.manifest.head_json())[:-1]},"shots":{{{body}}}}}\n'

    def _write_snapshot(self, snapshot: dict[str, Any]) -> None:
        # The final write is indented for people. During a run the manifest is written compact (``_compact_text``):
        # ``indent`` makes json fall back to its pure-Python encoder, 3x slower and holding the GIL the whole time.
        self._write_text(json.dumps(snapshot, indent=2, ensure_ascii=False) + "\n")

    def _write_text(self, text: str) -> None:
        started = time.perf_counter()
        try:
            write_manifest_text(self.path, text)
        except OSError as exc:
            raise ManifestError(
                f"{self.path}: cannot write the manifest ({exc.strerror or exc}); the run stops to stay safe",
                path=str(self.path),
            ) from None
        self.writes += 1
        self.write_seconds += time.perf_counter() - started


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def read_or_new(path: Path, *, project: str) -> Manifest:
    """The manifest at ``path`` if there is one (it must belong to ``project``), else a new empty one."""
    if not path.exists():
        return Manifest(project=project)
    manifest = load_manifest(path)
    if manifest.project != project:
        raise ManifestError(
            f"{path}: this manifest belongs to project {manifest.project!r}, not {project!r}; "
            "use another --out folder (the file was left untouched)",
            path=str(path),
        )
    return manifest
