"""What changed since the last hand-off: the shots whose select differs from an earlier snapshot's.

What came before is an earlier ``manifest.json`` snapshot (a file, or a folder holding one), compared with today's
decisions; or a git revision: the decisions file beside the spec as it was then (``git show
REV:<spec>.review.yaml``), with the folder's snapshot of that revision where git has one (else today's store).
Both cuts are built by the same ``build_cut``, so "changed" means exactly "a different select": another render,
take or variant, or a shot that has one now and had none then.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.editorial.cut import Cut, build_cut
from orchestrator.errors import EditorialError
from orchestrator.review.decisions import Decisions, decisions_path, parse_decisions
from orchestrator.spec.shot import ResolvedProject
from orchestrator.store import FolderState, load_state
from orchestrator.store.manifest import MANIFEST_NAME

GIT_TIMEOUT_S = 30


@dataclass(frozen=True)
class Earlier:
    """What the earlier hand-off was cut from: a store state and the decisions of then."""

    state: FolderState
    decisions: Decisions | None


def changed_shots(project: ResolvedProject, cut: Cut, earlier: Earlier | FolderState) -> set[str]:
    """Shot ids of ``cut`` whose select is not the one ``earlier`` gives (new shots included)."""
    if isinstance(earlier, FolderState):
        earlier = Earlier(earlier, None)
    then = build_cut(project, earlier.state, output_dir=cut.output_dir, decisions=earlier.decisions)
    before = {shot.shot_id: shot.select_key for shot in then.shots}
    return {shot.shot_id for shot in cut.shots if before.get(shot.shot_id) != shot.select_key}


def earlier_state(ref: str, output_dir: Path) -> FolderState:
    """The state ``ref`` names: an existing snapshot file or folder, else a git revision of ``<out>/manifest.json``."""
    path = Path(ref)
    if path.exists():
        return load_state(path)
    return _state_at_revision(ref, output_dir / MANIFEST_NAME)


def earlier(ref: str, *, spec: Path, output_dir: Path, state: FolderState, decisions: Decisions) -> Earlier:
    """What ``ref`` names: a snapshot (with today's ``decisions``), or a git revision of the decisions file and,
    where that revision has one, of the folder's snapshot (else today's ``state``)."""
    if Path(ref).exists():
        return Earlier(load_state(Path(ref)), decisions)
    then = _decisions_at_revision(ref, decisions_path(spec))
    try:
        then_state = _state_at_revision(ref, output_dir / MANIFEST_NAME)
    except EditorialError:
        if then is None:
            raise  # neither file at that revision: say so about the snapshot, as before
        then_state = state
    return Earlier(then_state, then if then is not None else Decisions(decisions.path))


def _decisions_at_revision(rev: str, path: Path) -> Decisions | None:
    """The decisions file as it was at ``rev``; ``None`` when git cannot show it (not committed then, no git)."""
    from orchestrator.spec.yamlsource import parse_source

    folder = _existing_parent(path)
    try:
        root = _git(["rev-parse", "--show-toplevel"], cwd=folder, rev=rev).strip()
        relative = Path(os.path.relpath(path.resolve(), Path(root).resolve())).as_posix()
        text = _git(["show", f"{rev}:{relative}"], cwd=folder, rev=rev)
    except EditorialError:
        return None
    return parse_decisions(parse_source(text.encode(), file=f"{rev}:{relative}"), path=path)


def _state_at_revision(rev: str, snapshot: Path) -> FolderState:
    from orchestrator.store.snapshot import state_from_json

    folder = _existing_parent(snapshot)
    root = _git(["rev-parse", "--show-toplevel"], cwd=folder, rev=rev).strip()
    relative = os.path.relpath(snapshot.resolve(), Path(root).resolve())
    text = _git(["show", f"{rev}:{Path(relative).as_posix()}"], cwd=folder, rev=rev)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise EditorialError(f"{rev}:{relative}: not a snapshot (not JSON)") from None
    return state_from_json(data, path=f"{rev}:{relative}")


def _existing_parent(path: Path) -> Path:
    folder = path.parent.absolute()
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def _git(args: list[str], *, cwd: Path, rev: str) -> str:
    where = f"--changed-since {rev}"
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT_S, check=False, text=True
        )
    except FileNotFoundError:
        raise EditorialError(f"{where}: no such snapshot, and git is not installed to read a revision") from None
    except subprocess.TimeoutExpired:
        raise EditorialError(f"{where}: git {args[0]} took longer than {GIT_TIMEOUT_S} s") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["git failed"])[-1]
        raise EditorialError(f"{where}: neither a snapshot file nor a revision of the snapshot ({reason})")
    return done.stdout
