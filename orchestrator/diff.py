"""Diff: what differs between two versions of a project, shot by shot and field by field.

Each side is a spec file, a manifest (what was rendered), or ``SPEC@REV``: the spec as of a git revision, read with
``git show``. Shots are matched by id; their render fields (the ones the fingerprint covers) are compared, and
prompts get a word diff. Nothing here renders, writes or deletes anything.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError, SpecError
from orchestrator.fingerprint import FieldChange, field_changes, request_record
from orchestrator.manifest import MANIFEST_NAME, Manifest, load_manifest
from orchestrator.shot import ResolvedProject
from orchestrator.status import looks_like_manifest

ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"
UNCHANGED = "unchanged"
KINDS = (ADDED, REMOVED, CHANGED, UNCHANGED)

EQUAL, DELETE, INSERT = "equal", "delete", "insert"
WORD_DIFF_FIELDS = ("prompt", "negative_prompt")
GIT_TIMEOUT_S = 30

SpecLoader = Callable[[Path], ResolvedProject]


@dataclass(frozen=True)
class ShotView:
    """One shot as one side knows it: its request record (render fields, image refs) and fingerprint."""

    id: str
    request: dict[str, Any]
    fingerprint: str
    status: str | None = None  # manifests only


@dataclass(frozen=True)
class DiffSide:
    """One side of a diff: a label for people (``spec.yaml@HEAD~1``), what it was read from, and its shots."""

    label: str
    kind: str  # "spec" or "manifest"
    project: str
    shots: dict[str, ShotView]


@dataclass(frozen=True)
class WordOp:
    op: str  # "equal", "delete" or "insert"
    text: str


@dataclass(frozen=True)
class ShotDiff:
    shot_id: str
    kind: str
    changes: tuple[FieldChange, ...] = ()
    word_diffs: dict[str, tuple[WordOp, ...]] | None = None  # per text field that changed: prompt, negative_prompt

    @property
    def fields(self) -> list[str]:
        return [change.name for change in self.changes] or (["fingerprint"] if self.kind == CHANGED else [])


@dataclass(frozen=True)
class DiffResult:
    a: DiffSide
    b: DiffSide
    shots: tuple[ShotDiff, ...]

    @property
    def equal(self) -> bool:
        return all(shot.kind == UNCHANGED for shot in self.shots) and self.a.project == self.b.project

    def counts(self) -> dict[str, int]:
        return {kind: sum(1 for s in self.shots if s.kind == kind) for kind in KINDS}


# --- reading a side ---------------------------------------------------------------------------------------------


def default_spec_loader() -> SpecLoader:
    # Imported late: the spec layer is optional for manifest-only diffs, and this keeps the import graph one-way.
    module = importlib.import_module("orchestrator.spec")
    loader: SpecLoader = module.load_project
    return loader


def side_from_project(project: ResolvedProject, *, label: str) -> DiffSide:
    shots = {s.id: ShotView(s.id, request_record(s), s.fingerprint) for s in project.shots}
    return DiffSide(label=label, kind="spec", project=project.project, shots=shots)


def side_from_manifest(manifest: Manifest, *, label: str) -> DiffSide:
    shots = {
        shot_id: ShotView(shot_id, dict(record.request), record.fingerprint, record.status)
        for shot_id, record in manifest.shots.items()
    }
    return DiffSide(label=label, kind="manifest", project=manifest.project, shots=shots)


def load_side(arg: str, *, load_spec: SpecLoader | None = None) -> DiffSide:
    """Read one side: a manifest (a JSON file with ``manifest_version``, or a folder holding ``manifest.json``),
    ``SPEC@REV``, or a spec file."""
    path = Path(arg)
    if path.is_dir():
        return side_from_manifest(load_manifest(path / MANIFEST_NAME), label=arg)
    if not path.exists():
        at_rev = split_revision(arg)
        if at_rev is not None:
            spec, rev = at_rev
            return side_from_project(load_spec_at_revision(spec, rev, load_spec=load_spec), label=arg)
        raise ConfigError(f"{arg}: no such file (give a spec, a manifest, or SPEC@REV for a git revision)")
    if looks_like_manifest(path):
        return side_from_manifest(load_manifest(path), label=arg)
    return side_from_project((load_spec or default_spec_loader())(path), label=arg)


def split_revision(arg: str) -> tuple[Path, str] | None:
    """``specs/a.yaml@HEAD~1`` as (path, revision); ``None`` when ``arg`` has no usable ``@REV`` suffix."""
    spec, sep, rev = arg.rpartition("@")
    if not sep or not spec or not rev:
        return None
    return Path(spec), rev


def load_spec_at_revision(spec: Path, rev: str, *, load_spec: SpecLoader | None = None) -> ResolvedProject:
    """Resolve the spec as it was at ``rev``. Its text is written beside the current spec (so relative image paths
    resolve the same way) under a hidden temporary name, loaded, and removed again. Images are read as they are on
    disk now, not as of ``rev``."""
    text = git_show(spec, rev)
    temp = _write_beside(spec, text, where=f"{spec}@{rev}")
    try:
        return (load_spec or default_spec_loader())(temp)
    except SpecError as exc:
        # Point problems at what the user typed, not at our temporary file.
        label = f"{spec}@{rev}"
        raise SpecError(
            [replace(p, file=label) if Path(p.file).name == temp.name else p for p in exc.problems]
        ) from None
    finally:
        temp.unlink(missing_ok=True)


def _write_beside(spec: Path, data: bytes, *, where: str) -> Path:
    folder = spec.parent if str(spec.parent) else Path()
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{spec.stem}@", suffix=spec.suffix or ".yaml")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot write a temporary copy in {folder} ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return Path(name)


_SAFE_REV = re.compile(r"^[^\s:-][^\s:]*$")


def git_show(spec: Path, rev: str) -> bytes:
    """The bytes of ``spec`` at git revision ``rev`` (``git show REV:./name`` run in the spec's folder)."""
    where = f"{spec}@{rev}"
    if not _SAFE_REV.match(rev):
        raise ConfigError(f"{where}: {rev!r} is not a git revision")
    folder = spec.parent if str(spec.parent) else Path()
    if not folder.is_dir():
        raise ConfigError(f"{where}: folder {folder} does not exist")
    try:
        done = subprocess.run(
            ["git", "show", f"{rev}:./{spec.name}"],
            cwd=folder,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_PAGER": "cat", "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise ConfigError(f"{where}: git is not installed, so revisions cannot be read") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{where}: git show took longer than {GIT_TIMEOUT_S} s") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"{where}: cannot read the spec at that revision ({reason[-1] if reason else 'git failed'})")
    return done.stdout


# --- comparing --------------------------------------------------------------------------------------------------


def diff_sides(a: DiffSide, b: DiffSide) -> DiffResult:
    """Shots in B's order (added, changed, unchanged), then the shots only A has (removed)."""
    result = [_diff_shot(a.shots.get(shot_id), view) for shot_id, view in b.shots.items()]
    result += [ShotDiff(shot_id, REMOVED) for shot_id in a.shots if shot_id not in b.shots]
    return DiffResult(a, b, tuple(result))


def _diff_shot(old: ShotView | None, new: ShotView) -> ShotDiff:
    if old is None:
        return ShotDiff(new.id, ADDED)
    if not old.request or not new.request:
        # A record that never reached the provider has no request: only its fingerprint can be compared.
        return ShotDiff(new.id, UNCHANGED if old.fingerprint == new.fingerprint else CHANGED)
    changes = tuple(field_changes(old.request, new.request))
    if not changes:
        return ShotDiff(new.id, UNCHANGED)
    words = {
        c.name: word_diff(c.old or "", c.new or "")
        for c in changes
        if c.name in WORD_DIFF_FIELDS and isinstance(c.old or "", str) and isinstance(c.new or "", str)
    }
    return ShotDiff(new.id, CHANGED, changes, words)


def diff_paths(a: str, b: str, *, load_spec: SpecLoader | None = None) -> DiffResult:
    """Read both sides (spec, manifest or ``SPEC@REV``) and compare them."""
    return diff_sides(load_side(a, load_spec=load_spec), load_side(b, load_spec=load_spec))


# --- word diff --------------------------------------------------------------------------------------------------

_TOKENS = re.compile(r"\s+|\S+")


def word_diff(old: str, new: str) -> tuple[WordOp, ...]:
    """Word-level differences; whitespace runs are tokens too, so joining the equal and insert texts gives ``new``."""
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    ops: list[WordOp] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            ops.append(WordOp(EQUAL, "".join(a[i1:i2])))
            continue
        if i2 > i1:
            ops.append(WordOp(DELETE, "".join(a[i1:i2])))
        if j2 > j1:
            ops.append(WordOp(INSERT, "".join(b[j1:j2])))
    return _join_changes(_slide_spaces(ops))


_LEADING_SPACE = re.compile(r"^\s+")


def _slide_spaces(ops: list[WordOp]) -> list[WordOp]:
    # difflib may anchor a pure insertion or deletion on the space before it ("a{+ small+} boat"); when the text after
    # it starts with the same space, sliding it along reads better ("a {+small +}boat") and means the same.
    ops = list(ops)
    for k in range(1, len(ops) - 1):
        before, op, after = ops[k - 1], ops[k], ops[k + 1]
        if op.op == EQUAL or before.op != EQUAL or after.op != EQUAL:
            continue
        space = _LEADING_SPACE.match(op.text)
        if space and after.text.startswith(space.group()) and len(space.group()) < len(op.text):
            w = space.group()
            ops[k - 1] = WordOp(EQUAL, before.text + w)
            ops[k] = WordOp(op.op, op.text[len(w) :] + w)
            ops[k + 1] = WordOp(EQUAL, after.text[len(w) :])
    return [op for op in ops if op.text]


def _join_changes(ops: list[WordOp]) -> tuple[WordOp, ...]:
    # A lone space that happens to match between two changed words would split one edit into many
    # ("[-a-]{+b+} [-c-]{+d+}"); fold it into the change so it reads "[-a c-]{+b d+}".
    out: list[WordOp] = []
    deleted = inserted = ""
    for k, op in enumerate(ops):
        between_changes = (deleted or inserted) and k + 1 < len(ops) and ops[k + 1].op != EQUAL
        if op.op == EQUAL and op.text.isspace() and between_changes:
            deleted, inserted = deleted + op.text, inserted + op.text
        elif op.op == DELETE:
            deleted += op.text
        elif op.op == INSERT:
            inserted += op.text
        else:
            _flush(out, deleted, inserted)
            out.append(op)
            deleted = inserted = ""
    _flush(out, deleted, inserted)
    return tuple(out)


def _flush(out: list[WordOp], deleted: str, inserted: str) -> None:
    if deleted:
        out.append(WordOp(DELETE, deleted))
    if inserted:
        out.append(WordOp(INSERT, inserted))


def format_word_diff(ops: tuple[WordOp, ...]) -> str:
    """The ``wdiff`` form: ``a boat at [-dawn-]{+dusk+}``."""
    marks = {EQUAL: ("", ""), DELETE: ("[-", "-]"), INSERT: ("{+", "+}")}
    return "".join(marks[op.op][0] + op.text + marks[op.op][1] for op in ops)


# --- JSON -------------------------------------------------------------------------------------------------------


def diff_to_json(result: DiffResult) -> dict[str, Any]:
    return {
        "a": {"label": result.a.label, "kind": result.a.kind, "project": result.a.project},
        "b": {"label": result.b.label, "kind": result.b.kind, "project": result.b.project},
        "equal": result.equal,
        "summary": result.counts(),
        "shots": [_shot_json(shot) for shot in result.shots],
    }


def _shot_json(shot: ShotDiff) -> dict[str, Any]:
    data: dict[str, Any] = {"id": shot.shot_id, "kind": shot.kind, "fields": shot.fields}
    if shot.changes:
        data["changes"] = [{"field": c.name, "old": c.old, "new": c.new} for c in shot.changes]
    if shot.word_diffs:
        data["word_diff"] = {name: format_word_diff(ops) for name, ops in shot.word_diffs.items()}
    return data
