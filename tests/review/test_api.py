"""``Review.retake`` on shots with variants: the select's variant, the only variant, or a select asked for first."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import DecisionError
from orchestrator.review import Review
from orchestrator.spec.fingerprint import request_record
from orchestrator.spec.load import load_project
from orchestrator.store import OutputFile, RenderStore
from orchestrator.store.manifest import SUCCEEDED
from tests.helpers import write_board

SPEC = """\
version: 1
project: variants
output_dir: out
shots:
  - id: s01
    images: [a.png, b.png]
    prompt: "dawn"
    variants: {wide: {prompt: "wide dawn"}, pro: {mode: pro}}
  - id: s02
    images: [a.png, b.png]
    prompt: "dusk"
    variants: {tele: {prompt: "tele dusk"}}
"""


@pytest.fixture
def review(tmp_path: Path) -> Review:
    """Take 1 of every variant finished, and take 2 of ``s01/pro``."""
    write_board(tmp_path / "a.png", (400, 300), (200, 40, 40))
    write_board(tmp_path / "b.png", (400, 300), (40, 200, 40))
    spec = tmp_path / "project.yaml"
    spec.write_text(SPEC)
    project = load_project(spec)
    store = RenderStore.open(project.output_dir, project="variants", stamp_run=False)
    try:
        for shot in project.shots:
            for take in (1, 2) if shot.variant == "pro" else (1,):
                render = store.new_render(
                    shot.id, fingerprint=shot.fingerprint, request=request_record(shot), take=take, variant=shot.variant
                )
                video = OutputFile(f"{shot.id}/{render.output_stem}.mp4", "0" * 64, 1)
                store.update_render(render.render_id, status=SUCCEEDED, outputs=[video])
    finally:
        store.close(finished=False)
    return Review(spec, project)


def test_a_retake_of_a_shot_with_variants_asks_for_a_select_first(review: Review) -> None:
    with pytest.raises(DecisionError) as caught:
        review.retake("s01", "warmer")
    message = caught.value.message
    assert "s01: it has 2 variants (wide, pro); select the take to render again first" in message
    assert f"orchestrator select {review.spec} s01 N" in message and "no take of its current request" not in message
    assert not review.decisions_file.exists()  # nothing decided


def test_a_retake_renders_another_take_of_the_selects_variant(review: Review) -> None:
    pro_2 = next(row for row in review.shot("s01").takes if (row.ref.variant, row.ref.take) == ("pro", 2))
    review.select("s01", pro_2.number)
    decision = review.retake("s01", "warmer")
    assert (decision.status, decision.retake_take) == ("retake", 3)
    (wanted,) = review.pending_retakes()
    assert (wanted.shot_id, wanted.variant, wanted.take) == ("s01", "pro", 3)


def test_a_retake_of_a_shot_with_one_variant_retakes_it(review: Review) -> None:
    decision = review.retake("s02", "slower")
    assert decision.retake_take == 2
    (wanted,) = review.pending_retakes()
    assert (wanted.shot_id, wanted.variant, wanted.take, wanted.note) == ("s02", "tele", 2, "slower")
