"""The manifest: the durable truth of a run, one JSON file beside the videos.

``<out>/manifest.json`` maps each shot id to a record of where its render stands: status, fingerprint, the ids the
provider knows it by, attempts, the last error, the resolved request (images by sha256, never base64, never a key)
and its output files with their hashes. Every write is atomic (temp file, fsync, rename) and keeps a ``.bak`` of the
last good file, so a crash at any moment leaves either the old or the new manifest, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import ManifestError

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"

# A shot's states, in the order a render moves through them (see shared/design.md).
PENDING = "pending"
SUBMITTING = "submitting"
SUBMITTED = "submitted"
PROCESSING = "processing"
DOWNLOADING = "downloading"
SUCCEEDED = "succeeded"
FAILED = "failed"
PENDING_REMOTE = "pending-remote"
STATUSES: tuple[str, ...] = (
    PENDING,
    SUBMITTING,
    SUBMITTED,
    PROCESSING,
    DOWNLOADING,
    SUCCEEDED,
    FAILED,
    PENDING_REMOTE,
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    cost: float | None = None
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
        return asdict(self)


@dataclass
class Manifest:
    """The whole manifest. ``shots`` keeps insertion order (spec order on first run)."""

    project: str
    spec_path: str = ""
    spec_sha256: str = ""
    spec_version: int = 1
    provider: str = ""
    tool_version: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    shots: dict[str, ShotRecord] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest_version": self.manifest_version,
            "tool_version": self.tool_version,
            "project": self.project,
            "spec": {"path": self.spec_path, "sha256": self.spec_sha256, "version": self.spec_version},
            "provider": self.provider,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "shots": {shot_id: record.to_json() for shot_id, record in self.shots.items()},
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
        try:
            spec = data.get("spec") or {}
            return cls(
                manifest_version=data["manifest_version"],
                tool_version=data.get("tool_version", ""),
                project=data["project"],
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
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{path}: manifest is corrupt (invalid JSON at line {exc.lineno}); "
            f"it was left untouched, a backup may be at {path.name}.bak",
            path=str(path),
        ) from None
    return Manifest.from_json(data, path=str(path))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
    if path.exists():
        backup = path.with_name(path.name + ".bak")
        write_atomic(backup, path.read_text(encoding="utf-8"))
    write_atomic(path, json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n")
