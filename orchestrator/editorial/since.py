"""What changed since the last hand-off: the shots whose select differs from an earlier snapshot's.

The earlier state is a ``manifest.json`` snapshot (a file, or a folder holding one), or a git revision of the
folder's snapshot file (``git show REV:<out>/manifest.json``). Both cuts are built by the same ``build_cut``, so
"changed" means exactly "a different select": another render, take or variant, or a shot that has one now and
had none then. Changing decisions by git revision (the review file) comes with the review layer.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from orchestrator.editorial.cut import Cut, build_cut
from orchestrator.errors import EditorialError
from orchestrator.spec.shot import ResolvedProject
from orchestrator.store import FolderState, load_state
from orchestrator.store.manifest import MANIFEST_NAME

GIT_TIMEOUT_S = 30


def changed_shots(project: ResolvedProject, cut: Cut, earlier: FolderState) -> set[str]:
    """Shot ids of ``cut`` whose select is not the one the ``earlier`` state gives (new shots included)."""
    before = {shot.shot_id: shot.select_key for shot in build_cut(project, earlier, output_dir=cut.output_dir).shots}
    return {shot.shot_id for shot in cut.shots if before.get(shot.shot_id) != shot.select_key}


def earlier_state(ref: str, output_dir: Path) -> FolderState:
    """The state ``ref`` names: an existing snapshot file or folder, else a git revision of ``<out>/manifest.json``."""
    path = Path(ref)
    if path.exists():
        return load_state(path)
    return _state_at_revision(ref, output_dir / MANIFEST_NAME)


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
