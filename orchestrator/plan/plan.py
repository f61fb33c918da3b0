"""Plan: what a run would do, decided by comparing resolved shots with the manifest, before anything is sent.

The plan has one entry per render the spec wants: each take of each request (a shot, or each of its variants), plus
the one more take a retake asks for. An existing take is the store's newest render of that shot, variant and take
with the request's fingerprint (else its newest render of that take, whose request changed). Each entry falls in
one category:

- ``new``: the manifest has no record of it;
- ``changed``: its fingerprint differs from the recorded one (``fields`` says which render fields changed);
- ``unchanged``: same fingerprint, succeeded, and its outputs are on disk with the recorded hashes;
- ``failed``: same fingerprint, but the last attempt failed or never finished (it will be retried or resumed);
- ``removed``: in the manifest but no longer in the spec (outputs are kept, never deleted).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ManifestError
from orchestrator.plan.pricing import Pricing
from orchestrator.plan.work import render_key, units_to_spend
from orchestrator.spec.fingerprint import FieldChange, field_changes, request_record
from orchestrator.spec.shot import ResolvedProject, ResolvedShot
from orchestrator.store.manifest import (
    FAILED,
    LOCK_NAME,
    MANIFEST_NAME,
    SUCCEEDED,
    UNCONFIRMED,
    LockInfo,
    Manifest,
    ManifestLock,
    ShotRecord,
    has_manifest,
    load_manifest,
    record_of,
    store_source,
)
from orchestrator.store.records import DEFAULT_TAKE, FolderState, RenderRecord

if TYPE_CHECKING:
    from orchestrator.review.api import RetakeWanted

NEW = "new"
CHANGED = "changed"
UNCHANGED = "unchanged"
FAILED_BEFORE = "failed"
UNCONFIRMED_BEFORE = "unconfirmed"  # its create may have been billed: settled by the user, never resent by a plan
REMOVED = "removed"
CATEGORIES = (NEW, CHANGED, UNCHANGED, FAILED_BEFORE, UNCONFIRMED_BEFORE, REMOVED)
# Work a run takes up. An unconfirmed shot is confirmed where the provider can, sent again only on the user's word.
WORK_CATEGORIES = (NEW, CHANGED, FAILED_BEFORE, UNCONFIRMED_BEFORE)

# How each category is marked in the plan's text form, and what the mark means (the legend).
MARKS: dict[str, str] = {
    NEW: "+",
    CHANGED: "~",
    UNCHANGED: "=",
    FAILED_BEFORE: "!",
    UNCONFIRMED_BEFORE: "?",
    REMOVED: "-",
}
LEGEND: dict[str, str] = {
    NEW: "new, will render",
    CHANGED: "changed, will rerender",
    UNCHANGED: "unchanged, output kept",
    FAILED_BEFORE: "failed before, will retry",
    UNCONFIRMED_BEFORE: "unconfirmed, may have been billed: adopt its task or run --resend-unconfirmed",
    REMOVED: "removed from the spec, outputs kept",
}
SUMMARY_WORDS: dict[str, str] = {
    NEW: "new",
    CHANGED: "changed",
    UNCHANGED: "unchanged",
    FAILED_BEFORE: "to retry",
    UNCONFIRMED_BEFORE: "unconfirmed",
    REMOVED: "removed",
}


@dataclass(frozen=True)
class PlanEntry:
    shot_id: str
    category: str
    shot: ResolvedShot | None = None  # None for removed shots
    record: ShotRecord | None = None
    fields: tuple[str, ...] = ()  # for changed shots: which render fields changed
    reason: str = ""
    changes: tuple[FieldChange, ...] = ()  # for changed shots: the same fields, with old and new values
    running_in: LockInfo | None = None  # for a shot left unfinished: the live run working on it now, if any
    forced: bool = False  # rendered anew with --force, even where its task could be reused
    take: int = DEFAULT_TAKE
    variant: str | None = None
    takes: int = 1  # how many takes the spec wants of this request
    retake: bool = False  # the one more take a retake asks for
    render_id: int | None = None  # the store's row of ``record``, when the plan was made from the store
    note: str = ""  # what the review's decisions say of it: a retake's note, a stale approval

    @property
    def key(self) -> str:
        """The render's name in events and the store writer: ``s03``, ``s03/wide``, ``s03/wide#2``."""
        return render_key(self.shot_id, variant=self.variant, take=self.take)

    @property
    def label(self) -> str:
        """How the plan names the render: ``s03``; ``s03 wide``; ``s03 wide take 2/3``; ``s03 take 4 (retake)``."""
        name = self.shot_id if self.variant is None else f"{self.shot_id} {self.variant}"
        if self.retake:
            return f"{name} take {self.take} (retake)"
        return f"{name} take {self.take}/{self.takes}" if self.takes > 1 else name

    @property
    def needs_render(self) -> bool:
        return self.category in WORK_CATEGORIES

    def units(self, pricing: Pricing) -> float:
        """What this entry would cost in the next run, by the run's own rule (``units_to_spend``): nothing unless it
        renders, nothing for a task already paid for, and nothing for an unconfirmed shot unless the user resends it
        (see ``orchestrator.api.prepare``)."""
        if not (self.needs_render or self.forced) or self.shot is None:
            return 0.0
        return units_to_spend(self.shot, self.record, pricing=pricing, fresh=self.forced)


@dataclass(frozen=True)
class Plan:
    entries: tuple[PlanEntry, ...] = field(default=())

    def by_category(self, category: str) -> list[PlanEntry]:
        return [e for e in self.entries if e.category == category]

    @property
    def to_render(self) -> list[ResolvedShot]:
        """The request of every render to make (a request once per take)."""
        return [e.shot for e in self.entries if e.needs_render and e.shot is not None]

    def of_shot(self, shot_id: str) -> list[PlanEntry]:
        return [e for e in self.entries if e.shot_id == shot_id]

    @property
    def has_work(self) -> bool:
        return any(e.needs_render for e in self.entries)

    def counts(self) -> dict[str, int]:
        """Entries per category, every category present (zero when empty), in display order."""
        return {category: len(self.by_category(category)) for category in CATEGORIES}

    def total_units(self, pricing: Pricing) -> float:
        return sum(entry.units(pricing) for entry in self.entries)


def output_file(base: Path, relative: str) -> Path | None:
    """The regular file a manifest output names, or ``None`` when it is missing or not ours to read.

    A manifest is a file anyone can edit: an output path that is absolute, climbs out of ``base`` (``../``, a
    symlink) or names a device or FIFO (``/dev/zero`` would be hashed forever) is treated as missing, never opened.
    """
    try:
        found = _regular_file_inside(os.path.realpath(base), relative)
    except (OSError, ValueError):
        return None
    return Path(found[0]) if found is not None else None


def _regular_file_inside(root: str, relative: str) -> tuple[str, os.stat_result] | None:
    """``relative``'s real path under ``root`` (a real path itself) and its ``stat``, if it is a regular file there.

    The usual output path (``shot/file.mp4``, no symlink) is checked with one ``lstat`` per part: resolving every
    path in full (``Path.resolve``, twice per output) was the largest cost of planning a big production. Anything
    else (a symlink, ``..``, ``.``) is resolved in full and must still land inside ``root``.
    """
    if not isinstance(relative, str) or not relative or "\\" in relative or "\0" in relative:
        return None  # not a str: the manifest's types are not checked on load
    if os.path.isabs(relative):
        return None
    parts = relative.split("/")
    path, info = root, None
    if "" not in parts and "." not in parts and ".." not in parts:
        for part in parts:
            path = f"{path}/{part}" if path != "/" else f"/{part}"
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                info = None
                break
    if info is None:
        path = os.path.realpath(os.path.join(root, relative))
        if os.path.commonpath((root, path)) != root:
            return None
        info = os.stat(path)
    return (path, info) if stat.S_ISREG(info.st_mode) else None


def outputs_intact(record: ShotRecord, base: Path, *, verify_hash: bool = True) -> bool:
    """True when every recorded output exists inside ``base`` with its recorded size (and, by default, sha256)."""
    return _outputs_intact(record, os.path.realpath(base), verify_hash=verify_hash)


def _outputs_intact(record: ShotRecord, root: str, *, verify_hash: bool = True) -> bool:
    if not record.outputs:
        return False
    for output in record.outputs:
        try:
            found = _regular_file_inside(root, output.path)
            if found is None or found[1].st_size != output.bytes:
                return False
            if verify_hash and file_sha256(found[0]) != output.sha256:
                return False
        except (OSError, ValueError):
            return False
    return True


@dataclass(frozen=True)
class _Identity:
    """What changes when a file's bytes may have: ``ctime`` too, which even a write that puts ``mtime`` back moves."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> _Identity:
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


# sha256 of the outputs this process has hashed, by path, with the identity the file had when it was read. Planning
# again (the API, a review app, ``run`` after ``plan`` in one process) hashes only files whose identity changed.
_HASHES: dict[str, tuple[_Identity, str]] = {}
_MAX_HASHES = 200_000  # about 40 MB at most; past it the cache starts afresh
_READ_SIZE = 1 << 20  # a file up to this size is hashed from one read; a bigger one a chunk of this size at a time


def file_sha256(path: str) -> str:
    """The file's sha256, from this process's cache while its device, inode, size, mtime and ctime are unchanged."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        identity = _Identity.of(os.fstat(fd))  # before reading: a write meanwhile moves it on
        cached = _HASHES.get(path)
        if cached is not None and cached[0] == identity:
            return cached[1]
        digest = _read_digest(fd, identity.size)
    finally:
        os.close(fd)
    if len(_HASHES) >= _MAX_HASHES:
        _HASHES.clear()
    _HASHES[path] = (identity, digest)
    return digest


def _read_digest(fd: int, size: int) -> str:
    """The sha256 of what ``fd`` holds, read to its end whatever ``size`` (its size when opened) said.

    Plain reads of the file descriptor: ``hashlib.file_digest`` makes a 256 KiB buffer for every file and reads it
    through a buffered file object, which was most of hashing the outputs of a big plan.
    """
    digest = hashlib.sha256()
    chunk = min(size + 1, _READ_SIZE)  # one more byte than it holds: most files end in the first read
    while data := os.read(fd, chunk):
        digest.update(data)
    return digest.hexdigest()


def classify(
    shot: ResolvedShot, record: ShotRecord | None, base: Path | str, *, running_in: LockInfo | None = None
) -> PlanEntry:
    """The shot's category. ``running_in``: the live run holding the output folder's lock, if any.

    ``base`` is the output folder; a ``str`` is taken as its real path already (``make_plan`` resolves it once).
    """
    if record is None:
        return PlanEntry(shot.id, NEW, shot=shot, reason="not rendered before")
    if record.fingerprint != shot.fingerprint:
        changes = _changes(record, shot)
        fields = tuple(change.name for change in changes) or ("fingerprint",)
        reason = "changed: " + ", ".join(c.describe() for c in changes) if changes else "changed: fingerprint"
        return PlanEntry(shot.id, CHANGED, shot, record, fields, reason, changes)
    if record.status == SUCCEEDED:
        root = base if isinstance(base, str) else os.path.realpath(base)
        if _outputs_intact(record, root):
            return PlanEntry(shot.id, UNCHANGED, shot, record)
        return PlanEntry(shot.id, FAILED_BEFORE, shot, record, reason="output missing or modified")
    if running_in is not None and record.status != FAILED:
        # Not a run that stopped half-way: one that is working on it now (its lock says which process).
        return PlanEntry(
            shot.id, FAILED_BEFORE, shot, record, reason=in_flight_reason(running_in), running_in=running_in
        )
    if record.status == UNCONFIRMED:
        reason = f"its create may have been billed; external id {record.external_task_id}"
        return PlanEntry(shot.id, UNCONFIRMED_BEFORE, shot, record, reason=reason)
    reason = record.error or f"last run left it {record.status}"
    return PlanEntry(shot.id, FAILED_BEFORE, shot, record, reason=reason)


def in_flight_reason(holder: LockInfo) -> str:
    return (
        f"in flight in the run of process {holder.pid} (on {holder.host}, started {holder.started_at}); "
        "plan again when it ends"
    )


def running_run(folder: Path) -> LockInfo | None:
    """The live run holding ``folder``'s lock, if one does; ``None`` when it is free (a killed run's lock is free:
    the kernel released it).

    Judged by trying the lock for an instant, never by the pid in the file: a plan never holds it, writes nothing
    and creates no lock file.
    """
    # The lock's own check, so the plan agrees with the run that would be refused.
    return ManifestLock(folder / LOCK_NAME).live_holder()


def _changes(record: ShotRecord, shot: ResolvedShot) -> tuple[FieldChange, ...]:
    # A record that never got as far as a request (or one written by an older fingerprint version) has nothing to
    # compare field by field: then the fingerprint alone says it changed.
    if not record.request:
        return ()
    return tuple(field_changes(record.request, request_record(shot)))


TakeKey = tuple[str, str | None, int]  # (shot id, variant, take)


class TakeRecords:
    """The store's renders by take: which record each wanted render (shot, variant, take, fingerprint) continues."""

    def __init__(self, renders: Mapping[TakeKey, Sequence[RenderRecord]], current: Mapping[str, ShotRecord]) -> None:
        self._renders = renders
        self._current = current  # without a store's renders (an old caller's manifest): the shot's current record

    @classmethod
    def of_state(cls, state: FolderState) -> TakeRecords:
        renders: dict[TakeKey, list[RenderRecord]] = {}
        for render in state.renders:
            renders.setdefault((render.shot_id, render.variant, render.take), []).append(render)
        return cls(renders, {})

    @classmethod
    def of_manifest(cls, manifest: Manifest | None) -> TakeRecords:
        return cls({}, manifest.shots if manifest else {})

    def find(self, shot: ResolvedShot, take: int) -> RenderRecord | None:
        """The newest render of this take with the shot's fingerprint, else its newest render (a changed request)."""
        renders = self._renders.get((shot.id, shot.variant, take))
        if not renders:
            return None
        same = [render for render in renders if render.fingerprint == shot.fingerprint]
        return (same or list(renders))[-1]

    def record(self, shot: ResolvedShot, take: int) -> ShotRecord | None:
        """``find``'s render as a record (without a store's renders: the shot's current record, for take 1)."""
        if not self._renders and shot.variant is None and take == DEFAULT_TAKE:
            return self._current.get(shot.id)
        found = self.find(shot, take)
        return _as_record(found) if found is not None else None


def _as_record(render: RenderRecord) -> ShotRecord:
    """A take's render as the record the plan and the run decide from (the shape of a shot's current record)."""
    return record_of(render)


@dataclass(frozen=True)
class ReviewWants:
    """What the review's decisions add to a plan: one more take per retake, and shots whose approval is stale."""

    retakes: tuple[RetakeWanted, ...] = ()
    stale: frozenset[str] = frozenset()


def review_wants(project: ResolvedProject, state: FolderState | None) -> ReviewWants:
    """The decisions file beside the spec, against the store (``state``; none before the first run)."""
    # Late: the review package is not the plan's to load eagerly, and most folders have no decisions file.
    from orchestrator.review.api import Review
    from orchestrator.review.decisions import decisions_path

    if not decisions_path(project.path).exists():
        return ReviewWants()
    review = Review(project.path, project)
    if state is None:
        return ReviewWants(stale=frozenset(review.stale_approvals()))
    return ReviewWants(review.pending_retakes(state), frozenset(review.stale_approvals()))


def make_plan(
    shots: Iterable[ResolvedShot],
    manifest: Manifest | None,
    *,
    manifest_dir: Path,
    running_in: LockInfo | None = None,
    state: FolderState | None = None,
    wants: ReviewWants | None = None,
) -> Plan:
    """Compare each wanted render with the store (``state``; or ``manifest``'s current records, ``None`` when there
    is none yet); removed shots come last.

    ``running_in`` is the live run holding the folder's lock (see ``running_run``): its unfinished shots are in flight
    there, not failed. ``wants`` adds the retakes asked for and says which approvals are stale.
    """
    takes = TakeRecords.of_state(state) if state is not None else TakeRecords.of_manifest(manifest)
    shots = list(shots)
    root = os.path.realpath(manifest_dir)  # once, not per output
    entries = [
        _take_entry(shot, take, takes, root, running_in=running_in)
        for shot in shots
        for take in range(DEFAULT_TAKE, shot.takes + 1)
    ]
    if wants is not None:
        entries = _with_review(entries, shots, wants, takes, root, running_in=running_in)
    present = {shot.id for shot in shots}
    entries += [
        PlanEntry(shot_id, REMOVED, record=record, reason="no longer in the spec")
        for shot_id, record in _removed(state, manifest, present)
    ]
    return Plan(tuple(entries))


def _removed(state: FolderState | None, manifest: Manifest | None, present: set[str]) -> list[tuple[str, ShotRecord]]:
    """The store's shots no longer in the spec, each with its current render's record."""
    if state is None:
        return [
            (shot_id, record)
            for shot_id, record in (manifest.shots if manifest else {}).items()
            if shot_id not in present
        ]
    gone = [(row.shot_id, state.current(row.shot_id)) for row in state.shots if row.shot_id not in present]
    return [(shot_id, _as_record(current)) for shot_id, current in gone if current is not None]


def _take_entry(
    shot: ResolvedShot,
    take: int,
    takes: TakeRecords,
    root: str,
    *,
    running_in: LockInfo | None,
    retake: bool = False,
) -> PlanEntry:
    entry = classify(shot, takes.record(shot, take), root, running_in=running_in)
    found = takes.find(shot, take)
    render_id = found.render_id if found is not None else None
    if render_id is None and take == DEFAULT_TAKE and shot.variant is None and shot.takes == 1 and not retake:
        return entry  # a plain shot's only take, new: the entry as it is (a big plan makes thousands)
    return replace(entry, take=take, variant=shot.variant, takes=shot.takes, retake=retake, render_id=render_id)


def _with_review(
    entries: list[PlanEntry],
    shots: Sequence[ResolvedShot],
    wants: ReviewWants,
    takes: TakeRecords,
    root: str,
    *,
    running_in: LockInfo | None,
) -> list[PlanEntry]:
    """Each retake's one more take (after the shot's other entries), and a stale approval said in the reason."""
    requests = {(shot.id, shot.variant): shot for shot in shots}
    entries = [
        replace(entry, note=STALE_NOTE) if entry.shot_id in wants.stale and entry.needs_render else entry
        for entry in entries
    ]
    for wanted in wants.retakes:
        shot = requests.get((wanted.shot_id, wanted.variant))
        if shot is None:
            continue  # its variant is no longer in the spec
        note = f"retake: {wanted.note}" if wanted.note else "retake"
        found = next((e for e in entries if e.shot is shot and e.take == wanted.take), None)
        if found is not None:  # a take the spec wants anyway
            entries[entries.index(found)] = replace(found, note=note)
            continue
        entry = replace(_take_entry(shot, wanted.take, takes, root, running_in=running_in, retake=True), note=note)
        last = max(i for i, e in enumerate(entries) if e.shot_id == shot.id)
        entries.insert(last + 1, entry)
    return entries


STALE_NOTE = "approved (stale): the approved take renders an older request, so the shot is planned again"


def manifest_path_for(project: ResolvedProject, *, out: Path | None = None) -> Path:
    """Where a project's manifest lives: ``<out>/manifest.json``, out being ``--out`` or the spec's output_dir."""
    return (out if out is not None else project.output_dir) / MANIFEST_NAME


def read_manifest_for(project: ResolvedProject, path: Path) -> Manifest | None:
    """The project's manifest, or ``None`` before its first run. A manifest of another project is an error."""
    if not has_manifest(path):
        return None
    manifest = load_manifest(path)  # the folder's store when it has one
    if manifest.project != project.project:
        raise ManifestError(
            f"{path}: this manifest belongs to project {manifest.project!r}, not {project.project!r}; "
            "choose another output folder with --out",
            path=str(path),
        )
    return manifest


def plan_project(project: ResolvedProject, *, out: Path | None = None) -> Plan:
    """The plan for a resolved project against its store (none yet: every render is new), with the retakes and
    stale approvals of the review's decisions file beside the spec."""
    path = manifest_path_for(project, out=out)
    state = read_state_for(project, path)
    running_in = running_run(path.parent) if state is not None else None
    return make_plan(
        project.shots,
        None,  # the store's ``state`` says everything
        manifest_dir=path.parent,
        running_in=running_in,
        state=state,
        wants=review_wants(project, state),
    )


def read_state_for(project: ResolvedProject, path: Path) -> FolderState | None:
    """The project's store beside ``path`` (its ``manifest.json``), read only; ``None`` before its first run. A
    store of another project is an error."""
    if not has_manifest(path):
        return None
    from orchestrator.store.database import load_state

    state = load_state(store_source(path))
    if state.facts.project != project.project:
        raise ManifestError(
            f"{path}: this manifest belongs to project {state.facts.project!r}, not {project.project!r}; "
            "choose another output folder with --out",
            path=str(path),
        )
    return state


def format_units(units: float) -> str:
    """Units for people: ``14.5``, ``3``, ``0.25``; never ``1e+06`` nor sixteen decimals."""
    text = f"{units:,.2f}".rstrip("0").rstrip(".")
    return text or "0"


def units_label(units: float) -> str:
    """``1 unit``, ``3.5 units``."""
    return f"{format_units(units)} unit{'' if units == 1 else 's'}"


def summary_line(plan: Plan, pricing: Pricing) -> str:
    """One line, e.g. ``3 new, 2 changed, 10 unchanged, 1 removed - est. 14.5 units`` (empty categories left out).

    When a shot to render has a model without a rate card, the line says whose rates its cost was estimated at:
    ``2 new - est. 4 units (kling-v2-1 estimated at kling-v1-6's rates)``.
    """
    parts = [f"{count} {SUMMARY_WORDS[category]}" for category, count in plan.counts().items() if count]
    line = f"{', '.join(parts) or 'no shots'} - est. {units_label(plan.total_units(pricing))}"
    note = pricing.estimate_note(plan.to_render)
    return f"{line} ({note})" if note else line


def plan_to_json(plan: Plan, pricing: Pricing) -> dict[str, Any]:
    """The plan as plain JSON: per shot category, changed fields (old and new values), reason and units.

    ``summary.unpriced_models`` lists the models of shots to render that have no rate card (costed at
    ``summary.estimated_at``'s rates).
    """
    summary = {
        **plan.counts(),
        "units": plan.total_units(pricing),
        "has_work": plan.has_work,
        "unpriced_models": list(pricing.unpriced(plan.to_render)),
        "estimated_at": pricing.fallback_model,
    }
    return {"summary": summary, "shots": [_entry_json(entry, pricing) for entry in plan.entries]}


def _entry_json(entry: PlanEntry, pricing: Pricing) -> dict[str, Any]:
    return {
        "id": entry.shot_id,
        "key": entry.key,
        "variant": entry.variant,
        "take": entry.take,
        "takes": entry.takes,
        "retake": entry.retake,
        "note": entry.note,
        "category": entry.category,
        "fields": list(entry.fields),
        "changes": [{"field": c.name, "old": c.old, "new": c.new} for c in entry.changes],
        "reason": entry.reason,
        "units": entry.units(pricing),
        "fingerprint": entry.shot.fingerprint if entry.shot else (entry.record.fingerprint if entry.record else ""),
    }
