"""A spec of three shots and an output folder whose store holds several renders per shot, with real MP4s.

``s01`` has takes 1 and 2 finished and take 3 failed; ``s02`` has take 1 finished and a take of an older request (its
prompt changed since); ``s03`` has no render. Renders go in through ``RenderStore`` as a run would put them, and
videos come from the simulator's animatic encoder (tiny frames), so the app serves files a browser can play.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.providers.local.animatic import render_animatic
from orchestrator.review import Review
from orchestrator.spec.fingerprint import request_record
from orchestrator.spec.load import load_project
from orchestrator.spec.shot import ResolvedShot
from orchestrator.store import OutputFile, RenderRecord, RenderStore
from orchestrator.store.manifest import FAILED, SUCCEEDED
from tests.helpers import write_board

SPEC_TEXT = """\
version: 1
project: pilot
output_dir: out
shots:
  - {id: s01, images: [boards/a.png, boards/b.png], prompt: "a slow pan over the harbour"}
  - {id: s02, images: [boards/b.png, boards/c.png], prompt: "gulls lift off the water"}
  - {id: s03, images: [boards/a.png, boards/c.png], prompt: "night falls"}
"""
OLD_FINGERPRINT = "0" * 63 + "1"


@dataclass
class Production:
    """The spec, its output folder and what is in it."""

    spec: Path
    out: Path
    review: Review

    @property
    def decisions(self) -> Path:
        return self.spec.with_name("project.review.yaml")

    def shot(self, shot_id: str) -> ResolvedShot:
        return self.review.project.shot(shot_id)

    def add_take(self, shot_id: str, take: int, *, status: str = SUCCEEDED, fingerprint: str | None = None) -> int:
        """Add a render of ``shot_id`` to the store (the store is opened for it, like a run would), return its id."""
        store = RenderStore.open(self.out, project="pilot", provider="local", stamp_run=False)
        try:
            return add_render(store, self.shot(shot_id), take, status=status, fingerprint=fingerprint).render_id
        finally:
            store.close(finished=False)


def add_render(
    store: RenderStore, shot: ResolvedShot, take: int, *, status: str = SUCCEEDED, fingerprint: str | None = None
) -> RenderRecord:
    """A render of ``shot`` (its take ``take``) as a run leaves it: finished with a video, or failed."""
    fingerprint = fingerprint or shot.fingerprint
    render = store.new_render(shot.id, fingerprint=fingerprint, request=request_record(shot), take=take, attempt=1)
    changes: dict[str, object] = {"status": status, "cost": 2.0, "external_task_id": f"pilot-{shot.id}-t{take}"}
    if status == SUCCEEDED:
        relative = f"{shot.id}/{render.output_stem}.mp4"
        video = store.directory / relative
        boards = [image.path.read_bytes() for image in shot.images if image.path is not None]
        render_animatic(boards, duration=5, aspect_ratio="16:9", dest=video, cheap=True)
        data = video.read_bytes()
        changes["outputs"] = [OutputFile(relative, hashlib.sha256(data).hexdigest(), len(data))]
        changes["charged"] = 2.0
    else:
        changes["error"] = "the provider said the task failed"
    return store.update_render(render.render_id, **changes)


def make_production(folder: Path) -> Production:
    for name, colour in (("a", (200, 40, 40)), ("b", (40, 200, 40)), ("c", (40, 40, 200))):
        write_board(folder / "boards" / f"{name}.png", (400, 300), colour)
    spec = folder / "project.yaml"
    spec.write_text(SPEC_TEXT)
    project = load_project(spec)
    out = project.output_dir
    store = RenderStore.open(out, project="pilot", provider="local", stamp_run=False)
    try:
        store.place_shots([shot.id for shot in project.shots])
        s01, s02 = project.shot("s01"), project.shot("s02")
        add_render(store, s01, 1)
        add_render(store, s01, 2)
        add_render(store, s01, 3, status=FAILED)
        add_render(store, s02, 1, fingerprint=OLD_FINGERPRINT)
        add_render(store, s02, 1)
    finally:
        store.close(finished=False)
    return Production(spec, out, Review(spec, project))


@pytest.fixture
def production(tmp_path: Path) -> Production:
    return make_production(tmp_path / "pilot")
