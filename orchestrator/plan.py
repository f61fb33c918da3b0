"""Plan: what a run would do, decided by comparing resolved shots with the manifest, before anything is sent.

Each shot falls in one category:

- ``new``: the manifest has no record of it;
- ``changed``: its fingerprint differs from the recorded one (``fields`` says which render fields changed);
- ``unchanged``: same fingerprint, succeeded, and its outputs are on disk with the recorded hashes;
- ``failed``: same fingerprint, but the last attempt failed or never finished (it will be retried or resumed);
- ``removed``: in the manifest but no longer in the spec (outputs are kept, never deleted).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.fingerprint import changed_fields, request_record
from orchestrator.manifest import SUCCEEDED, Manifest, ShotRecord
from orchestrator.shot import ResolvedShot

NEW = "new"
CHANGED = "changed"
UNCHANGED = "unchanged"
FAILED_BEFORE = "failed"
REMOVED = "removed"
WORK_CATEGORIES = (NEW, CHANGED, FAILED_BEFORE)


@dataclass(frozen=True)
class PlanEntry:
    shot_id: str
    category: str
    shot: ResolvedShot | None = None  # None for removed shots
    record: ShotRecord | None = None
    fields: tuple[str, ...] = ()  # for changed shots: which render fields changed
    reason: str = ""

    @property
    def needs_render(self) -> bool:
        return self.category in WORK_CATEGORIES


@dataclass(frozen=True)
class Plan:
    entries: tuple[PlanEntry, ...] = field(default=())

    def by_category(self, category: str) -> list[PlanEntry]:
        return [e for e in self.entries if e.category == category]

    @property
    def to_render(self) -> list[ResolvedShot]:
        return [e.shot for e in self.entries if e.needs_render and e.shot is not None]


def outputs_intact(record: ShotRecord, base: Path, *, verify_hash: bool = True) -> bool:
    """True when every recorded output exists with its recorded size (and, by default, sha256)."""
    if not record.outputs:
        return False
    for output in record.outputs:
        path = base / output.path
        try:
            if path.stat().st_size != output.bytes:
                return False
        except OSError:
            return False
        if verify_hash and _sha256_file(path) != output.sha256:
            return False
    return True


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def classify(shot: ResolvedShot, record: ShotRecord | None, base: Path) -> PlanEntry:
    if record is None:
        return PlanEntry(shot.id, NEW, shot=shot, reason="not rendered before")
    if record.fingerprint != shot.fingerprint:
        fields = tuple(changed_fields(record.request, request_record(shot))) or ("fingerprint",)
        return PlanEntry(shot.id, CHANGED, shot, record, fields, "changed: " + ", ".join(fields))
    if record.status == SUCCEEDED:
        if outputs_intact(record, base):
            return PlanEntry(shot.id, UNCHANGED, shot, record)
        return PlanEntry(shot.id, FAILED_BEFORE, shot, record, reason="output missing or modified")
    reason = record.error or f"last run left it {record.status}"
    return PlanEntry(shot.id, FAILED_BEFORE, shot, record, reason=reason)


def make_plan(shots: Iterable[ResolvedShot], manifest: Manifest | None, *, manifest_dir: Path) -> Plan:
    """Compare shots with the manifest (``None`` when there is none yet); removed shots come last."""
    records = manifest.shots if manifest else {}
    shots = list(shots)
    entries = [classify(shot, records.get(shot.id), manifest_dir) for shot in shots]
    present = {shot.id for shot in shots}
    entries += [
        PlanEntry(shot_id, REMOVED, record=record, reason="no longer in the spec")
        for shot_id, record in records.items()
        if shot_id not in present
    ]
    return Plan(tuple(entries))
