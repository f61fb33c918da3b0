"""The review's decisions choose the cut: a select names its render, the status and note reach the markers, and
``--changed-since`` a git revision of the decisions file exports the shots whose select changed since."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import orchestrator
from orchestrator.editorial.cut import APPROVED, PENDING_REVIEW, build_cut
from orchestrator.editorial.since import changed_shots, earlier
from orchestrator.review import api as review
from orchestrator.review.decisions import TakeRef, decisions_path, load_decisions
from orchestrator.store import load_state
from tests.editorial.conftest import Store


@pytest.fixture
def folder(store: Store, tmp_path: Path) -> Path:
    """A copy of the shared store's folder (spec, boards, renders, git), for tests that write decisions."""
    copy = tmp_path / "copy"
    shutil.copytree(store.spec.parent, copy, symlinks=True)
    return copy / "project.yaml"


def cut_of(spec: Path):  # type: ignore[no-untyped-def]
    project = orchestrator.load_project(spec)
    decisions = load_decisions(decisions_path(spec))
    return build_cut(project, load_state(project.output_dir), decisions=decisions)


def test_a_select_names_its_render_and_its_status_and_note_reach_the_cut(folder: Path) -> None:
    state = load_state(folder.parent / "out")
    old, new = state.renders_of("shot1")  # the first prompt's render, then the changed prompt's
    review.select(folder, "shot1", TakeRef(old.fingerprint), by="ed", note="the slower one drags")
    review.approve(folder, "shot0", by="ed", note="lovely")
    cut = cut_of(folder)
    shot0, shot1, shot2 = cut.shots
    assert shot1.fingerprint == old.fingerprint and not shot1.stand_in
    assert shot1.media is not None and shot1.media.name == Path(old.outputs[0].path).name
    assert (shot1.review_status, shot1.note) == (PENDING_REVIEW, "the slower one drags")
    assert (shot0.review_status, shot0.note, shot0.stand_in) == (APPROVED, "lovely", False)
    assert shot2.held and shot2.stand_in  # nothing rendered: the board holds, nobody decided
    assert new.fingerprint != old.fingerprint


def test_a_select_whose_video_is_gone_falls_back_to_the_newest_render(folder: Path) -> None:
    state = load_state(folder.parent / "out")
    old, new = state.renders_of("shot1")
    review.select(folder, "shot1", TakeRef(old.fingerprint))
    (folder.parent / "out" / old.outputs[0].path).unlink()
    shot1 = cut_of(folder).shot("shot1")
    assert shot1 is not None and shot1.fingerprint == new.fingerprint and shot1.stand_in


def test_changed_since_a_revision_of_the_decisions_file_is_the_shots_picked_since(folder: Path) -> None:
    state = load_state(folder.parent / "out")
    old, _ = state.renders_of("shot1")
    review.approve(folder, "shot0")

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
            cwd=folder.parent,
            check=True,
            capture_output=True,
            timeout=30,
        )

    git("add", decisions_path(folder).name, "out/manifest.json")  # what was handed off: decisions and renders
    git("commit", "-q", "-m", "selects of the first cut")
    git("tag", "published")
    review.select(folder, "shot1", TakeRef(old.fingerprint))  # a different take since the publish
    project = orchestrator.load_project(folder)
    decisions = load_decisions(decisions_path(folder))
    cut = build_cut(project, state, decisions=decisions)
    then = earlier("published", spec=folder, output_dir=cut.output_dir, state=state, decisions=decisions)
    assert changed_shots(project, cut, then) == {"shot1"}
