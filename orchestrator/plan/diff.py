"""Diff: what differs between two versions of a project, shot by shot and field by field.

Each side is a spec file, a manifest (what was rendered), or ``SPEC@REV``: the spec and every file it names (boards,
masks) as of a git revision, read from git's objects. Shots are matched by id, a shot with variants variant by
variant (``s03/wide``: the spec's request, the store's newest render of that variant); their render fields (the ones
the fingerprint covers) are compared, and prompts get a word diff. Nothing here renders, writes or deletes anything.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ConfigError
from orchestrator.plan.work import render_key
from orchestrator.review.decisions import (
    DecisionChange,
    Decisions,
    decision_changes,
    decisions_path,
    load_decisions,
    parse_decisions,
)
from orchestrator.spec.fingerprint import FieldChange, field_changes, request_record
from orchestrator.spec.shot import ResolvedProject
from orchestrator.spec.yamlsource import MAX_SPEC_BYTES, Source, parse_source
from orchestrator.store import FolderState, RenderRecord, load_state
from orchestrator.store.manifest import MANIFEST_NAME, Manifest, looks_like_manifest, manifest_from_state, store_source

if TYPE_CHECKING:
    from orchestrator.spec.images import ImageCheck

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
    # The review decisions beside the spec (``<stem>.review.yaml``), for a spec or SPEC@REV; None for a manifest.
    decisions: Decisions | None = None


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
    decisions: tuple[DecisionChange, ...] = ()  # selects, approvals, retakes and holds that differ

    @property
    def equal(self) -> bool:
        same_shots = all(shot.kind == UNCHANGED for shot in self.shots)
        return same_shots and self.a.project == self.b.project and not self.decisions

    def counts(self) -> dict[str, int]:
        return {kind: sum(1 for s in self.shots if s.kind == kind) for kind in KINDS}


# --- reading a side ---------------------------------------------------------------------------------------------


def default_spec_loader() -> SpecLoader:
    # Imported late: the spec layer is optional for manifest-only diffs, and this keeps the import graph one-way.
    module = importlib.import_module("orchestrator.spec.load")
    loader: SpecLoader = module.load_project
    return loader


def side_from_project(project: ResolvedProject, *, label: str) -> DiffSide:
    # One view per request: a shot with variants is compared variant by variant (``s03/wide``).
    shots = {s.key: ShotView(s.key, request_record(s), s.fingerprint) for s in project.shots}
    return DiffSide(label=label, kind="spec", project=project.project, shots=shots)


def side_from_manifest(manifest: Manifest, *, label: str, state: FolderState | None = None) -> DiffSide:
    """One view per shot from its current record; with the store's ``state``, a shot whose renders carry variants
    gets one view per variant (``s03/wide``, its newest render), as a spec's side has them."""
    shots: dict[str, ShotView] = {}
    for shot_id, record in manifest.shots.items():
        variants = _newest_of_each_variant(state, shot_id) if state is not None else {}
        if not variants:
            shots[shot_id] = ShotView(shot_id, dict(record.request), record.fingerprint, record.status)
        for variant, render in variants.items():
            key = render_key(shot_id, variant=variant)
            shots[key] = ShotView(key, render.request, render.fingerprint, render.status)
    return DiffSide(label=label, kind="manifest", project=manifest.project, shots=shots)


def _newest_of_each_variant(state: FolderState, shot_id: str) -> dict[str, RenderRecord]:
    """Each variant's newest render, when the shot's current render is a variant's; empty for a plain shot (and for
    one whose spec dropped its variants since: its current render is plain again, older variants are history)."""
    current = state.current(shot_id)
    if current is None or current.variant is None:
        return {}
    newest: dict[str, RenderRecord] = {}
    for render in state.renders_of(shot_id):  # oldest first: the last one seen of a variant is its newest
        if render.variant is not None:
            newest[render.variant] = render
    return newest


def _side_from_store(path: Path, *, label: str) -> DiffSide:
    """A folder, its store or a snapshot: the store's state read once, for the records and the renders both."""
    state = load_state(store_source(path))
    return side_from_manifest(manifest_from_state(state), label=label, state=state)


def load_side(arg: str, *, load_spec: SpecLoader | None = None) -> DiffSide:
    """Read one side: an output folder (its store, ``renders.db``, or else its ``manifest.json``), a snapshot or a
    store given as a file (a JSON file with ``manifest_version``, a ``renders.db``), ``SPEC@REV``, or a spec file
    (read with ``load_spec``). Nothing is written: a version-1 folder is read as it is."""
    path = Path(arg)
    if path.is_dir():
        return _side_from_store(path / MANIFEST_NAME, label=arg)
    if not path.exists():
        at_rev = split_revision(arg)
        if at_rev is not None:
            spec, rev = at_rev
            side = side_from_project(load_spec_at_revision(spec, rev), label=arg)
            return replace(side, decisions=decisions_at_revision(spec, rev))
        raise ConfigError(f"{arg}: no such file (give a spec, a manifest, or SPEC@REV for a git revision)")
    if looks_like_manifest(path):
        return _side_from_store(path, label=arg)
    side = side_from_project((load_spec or default_spec_loader())(path), label=arg)
    return replace(side, decisions=load_decisions(decisions_path(path)))


def split_revision(arg: str) -> tuple[Path, str] | None:
    """``specs/a.yaml@HEAD~1`` as (path, revision); ``None`` when ``arg`` has no usable ``@REV`` suffix."""
    spec, sep, rev = arg.rpartition("@")
    if not sep or not spec or not rev:
        return None
    return Path(spec), rev


def load_spec_at_revision(spec: Path, rev: str) -> ResolvedProject:
    """Resolve the spec as it was at ``rev``, and every file it names (boards, masks) as it was at ``rev`` too, so
    the diff of two revisions is the diff of what each would have rendered. Problems name ``SPEC@REV``."""
    module = importlib.import_module("orchestrator.spec.load")
    files = GitRevision.open(spec, rev)
    project: ResolvedProject = module.load_project(spec, files=files, display=f"{spec}@{rev}")
    return project


def decisions_at_revision(spec: Path, rev: str) -> Decisions:
    """The decisions file beside the spec as of ``rev`` (empty when it did not exist then)."""
    files = GitRevision.open(spec, rev)
    path = decisions_path(spec)
    relative = files._relative(path)
    entry = files._entry(relative) if relative is not None else None
    if entry is None or entry.type != "blob":
        return Decisions(path)
    source = parse_source(files._blob(entry.object_id), file=f"{path}@{rev}")
    return parse_decisions(source, path=path)


_SAFE_REV = re.compile(r"^[^\s:-][^\s:]*$")


@dataclass(frozen=True)
class _TreeEntry:
    mode: str
    type: str  # "blob", "tree" or "commit" (a submodule)
    object_id: str
    size: int  # 0 for trees and submodules


class GitRevision:
    """A spec's files as of a git revision: the spec and its images are read from git's objects with ``git
    ls-tree`` and ``git cat-file`` (no shell, paths relative to the repository's top level), never the work tree.

    Each folder is listed once; each blob is read at most once per process, cached by its object id (a hash of
    its content, see ``images.inspect_stored``).
    """

    def __init__(self, root: Path, rev: str, commit: str, label: str) -> None:
        self.root = root
        self.rev = rev
        self.commit = commit
        self.label = label
        self._folders: dict[str, dict[str, _TreeEntry]] = {}

    @classmethod
    def open(cls, spec: Path, rev: str) -> GitRevision:
        """The repository that holds ``spec``'s folder, at ``rev`` (resolved to one commit now, so it cannot move)."""
        where = f"{spec}@{rev}"
        if not _SAFE_REV.match(rev):
            raise ConfigError(f"{where}: {rev!r} is not a git revision")
        folder = _existing_folder(spec.parent if str(spec.parent) else Path())
        top = _git(
            ["rev-parse", "--show-toplevel"],
            cwd=folder,
            where=where,
            failure="not inside a git repository",
            quote_git=False,
        )
        root = Path(top.decode().strip()).resolve()
        commit = _git(
            ["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            cwd=root,
            where=where,
            failure=f"cannot read the spec at that revision ({rev!r} is not a commit of this repository)",
            quote_git=False,
        )
        return cls(root, rev, commit.decode().strip(), where)

    # ---- SpecFiles ----------------------------------------------------------------------------------------------

    def read_spec(self, path: Path, *, display: str) -> Source:
        relative = self._relative(path)
        entry = self._entry(relative) if relative is not None else None
        if relative is None or entry is None or entry.type != "blob":
            shown = relative or str(path)
            raise ConfigError(f"{self.label}: cannot read the spec at that revision ({shown} is not in {self.rev})")
        if entry.size > MAX_SPEC_BYTES:
            raise ConfigError(f"{self.label}: the spec is over {MAX_SPEC_BYTES // (1024 * 1024)} MB at {self.rev}")
        return parse_source(self._blob(entry.object_id), file=display)

    def inspect_image(self, path: Path) -> ImageCheck:
        from orchestrator.spec import images as imagelib  # Pillow: only when a revision's images are read

        relative = self._relative(path)
        if relative is None:
            return imagelib.ImageCheck(error=f"is outside the git repository, so it has no version at {self.rev}")
        entry = self._entry(relative)
        if entry is None:
            return imagelib.ImageCheck(error=f"does not exist at {self.rev}")
        if entry.type != "blob" or entry.mode == _SYMLINK_MODE:
            return imagelib.ImageCheck(error=f"is not a regular file at {self.rev}")
        return imagelib.inspect_stored(entry.object_id, entry.size, lambda: self._blob(entry.object_id))

    # ---- git -------------------------------------------------------------------------------------------------------

    def _relative(self, path: Path) -> str | None:
        """``path`` relative to the repository's top level, in git's form (``specs/demo/boards/a.png``)."""
        if "\0" in str(path):
            return None
        absolute = Path(os.path.normpath(path if path.is_absolute() else Path.cwd() / path))
        try:
            relative = absolute.relative_to(self.root)
        except ValueError:
            try:  # the spec's folder may be reached through a symlink; the repository root is resolved
                relative = absolute.parent.resolve().joinpath(absolute.name).relative_to(self.root)
            except (ValueError, OSError):
                return None
        return relative.as_posix()

    def _entry(self, relative: str) -> _TreeEntry | None:
        folder, _, name = relative.rpartition("/")
        return self._folder(folder).get(name)

    def _folder(self, folder: str) -> dict[str, _TreeEntry]:
        listed = self._folders.get(folder)
        if listed is None:
            listed = self._list(folder)
            self._folders[folder] = listed
        return listed

    def _list(self, folder: str) -> dict[str, _TreeEntry]:
        # `ls-tree COMMIT -- dir/` lists that folder's entries; a folder missing at the revision lists nothing.
        args = ["ls-tree", "-l", "-z", "--full-name", self.commit]
        if folder:
            args += ["--", f"{folder}/"]
        output = _git(args, cwd=self.root, where=self.label, failure="git ls-tree failed")
        entries: dict[str, _TreeEntry] = {}
        for record in output.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, object_id, size = meta.decode().split()
            entry = _TreeEntry(mode, kind, object_id, int(size) if size.isdigit() else 0)
            entries[os.fsdecode(name).rpartition("/")[2]] = entry
        return entries

    def _blob(self, object_id: str) -> bytes:
        return _git(["cat-file", "blob", object_id], cwd=self.root, where=self.label, failure="git cat-file failed")


_SYMLINK_MODE = "120000"


def _existing_folder(folder: Path) -> Path:
    # The spec (and its folder) may be gone from the work tree and still be in the revision.
    absolute = folder.resolve()
    while not absolute.is_dir() and absolute != absolute.parent:
        absolute = absolute.parent
    return absolute


def _git(args: list[str], *, cwd: Path, where: str, failure: str, quote_git: bool = True) -> bytes:
    """Run ``git ARGS`` in ``cwd`` (no shell) and return its stdout; any failure is one ConfigError naming ``where``."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_PAGER": "cat", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"},
        )
    except FileNotFoundError:
        raise ConfigError(f"{where}: git is not installed, so revisions cannot be read") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{where}: git {args[0]} took longer than {GIT_TIMEOUT_S} s") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        detail = f": {reason[-1]}" if reason and quote_git else ""
        raise ConfigError(f"{where}: {failure}{detail}")
    return done.stdout


# --- comparing --------------------------------------------------------------------------------------------------


def diff_sides(a: DiffSide, b: DiffSide) -> DiffResult:
    """Shots in B's order (added, changed, unchanged), then the shots only A has (removed)."""
    result = [_diff_shot(a.shots.get(shot_id), view) for shot_id, view in b.shots.items()]
    result += [ShotDiff(shot_id, REMOVED) for shot_id in a.shots if shot_id not in b.shots]
    decided = decision_changes(a.decisions, b.decisions) if a.decisions is not None and b.decisions is not None else ()
    return DiffResult(a, b, tuple(result), decided)


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
        "decisions": [change.to_json() for change in result.decisions],
    }


def _shot_json(shot: ShotDiff) -> dict[str, Any]:
    data: dict[str, Any] = {"id": shot.shot_id, "kind": shot.kind, "fields": shot.fields}
    if shot.changes:
        data["changes"] = [{"field": c.name, "old": c.old, "new": c.new} for c in shot.changes]
    if shot.word_diffs:
        data["word_diff"] = {name: format_word_diff(ops) for name, ops in shot.word_diffs.items()}
    return data
