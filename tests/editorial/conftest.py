"""A small real store for the editorial tests: three shots rendered by the simulator (tiny 2 fps MP4s).

``shot0`` rendered once; ``shot1`` rendered, then its prompt changed and rendered again (two renders: the newest
stands in for its select); ``shot2`` never rendered (its board is held). ``before.json`` is the snapshot taken
before the second render of ``shot1``, also committed to git in the folder (revision ``first``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import orchestrator
from orchestrator.api import run_project
from orchestrator.editorial.cut import Cut, build_cut
from orchestrator.providers.local import SimulatorOptions
from orchestrator.store import FolderState, load_state
from tests.helpers import write_two_board_spec

FAST = SimulatorOptions(render_time=0.05, render_jitter=0.0, cheap_video=True, seed=7)
MEDIA_FRAMES_AT_24 = 120  # a 5 s simulator clip at 2 fps is 10 frames: 120 at the timeline's 24 fps


@dataclass(frozen=True)
class Store:
    spec: Path
    out: Path
    before: Path  # manifest.json as it was before shot1's second render

    def cut(self) -> Cut:
        return build_cut(orchestrator.load_project(self.spec), self.state())

    def state(self) -> FolderState:
        return load_state(self.out)


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    folder = tmp_path_factory.mktemp("editorial")
    spec = write_two_board_spec(folder, 3, project="edit", concurrency=3)
    assert run_project(spec, only=["shot0", "shot1"], simulator_options=FAST).ok
    out = folder / "out"
    before = folder / "before.json"
    shutil.copy(out / "manifest.json", before)
    _git(folder, "init", "-q")
    _git(folder, "add", "out/manifest.json")
    _git(folder, "commit", "-q", "-m", "first hand-off")
    _git(folder, "tag", "first")
    spec.write_text(spec.read_text().replace("prompt: 'pan 1'", "prompt: 'pan 1, slower'"))
    assert run_project(spec, only=["shot1"], simulator_options=FAST).ok
    return Store(spec=spec, out=out, before=before)
