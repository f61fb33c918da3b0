"""Takes and variants through a real run against the local simulator: every take a separate request with its own
external id and file, a resumed run that creates nothing, and a retake that renders exactly one more take."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.api import RunResult, run_project
from orchestrator.review import Review
from orchestrator.run.events import SHOT, Event
from orchestrator.spec.load import load_project
from orchestrator.store import load_state
from orchestrator.store.manifest import SUCCEEDED
from tests.helpers import write_board
from tests.test_api import FAST, Spy, sim

SPEC = """\
version: 1
project: tk
output_dir: out
provider: local
limits: {concurrency: 4, requests_per_second: 100}
shots:
  - id: s01
    images: [a.png, b.png]
    prompt: "dawn over the harbour"
    takes: 2
    variants:
      wide: {prompt: "wide dawn over the bay"}
      pro: {mode: pro}
"""
KEYS = {"s01/wide", "s01/wide#2", "s01/pro", "s01/pro#2"}


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    write_board(tmp_path / "a.png", (400, 300), (200, 40, 40))
    write_board(tmp_path / "b.png", (400, 300), (40, 200, 40))
    path = tmp_path / "project.yaml"
    path.write_text(SPEC)
    return path


def run(spec: Path, spy: Spy | None = None) -> RunResult:
    return run_project(spec, simulator_options=sim(), listeners=[spy] if spy else [], **FAST)


def videos(spec: Path) -> list[str]:
    return sorted(path.name for path in (spec.parent / "out" / "s01").glob("*.mp4"))


def shot_events(spy: Spy) -> list[Event]:
    return [event for event in spy.events if event.kind == SHOT]


def test_two_takes_of_two_variants_are_four_billed_renders_and_four_files(spec: Path) -> None:
    spy = Spy()
    result = run(spec, spy)
    assert result.ok and set(result.statuses) == KEYS and set(result.statuses.values()) == {SUCCEEDED}
    assert result.stats is not None and result.stats.creates == 4
    project = load_project(spec)
    wide, pro = project.shots
    assert videos(spec) == sorted(
        [
            f"{wide.fingerprint[:12]}-wide.mp4",
            f"{wide.fingerprint[:12]}-t2-wide.mp4",
            f"{pro.fingerprint[:12]}-pro.mp4",
            f"{pro.fingerprint[:12]}-t2-pro.mp4",
        ]
    )
    renders = load_state(spec.parent / "out").renders
    assert sorted((r.variant or "", r.take) for r in renders) == [("pro", 1), ("pro", 2), ("wide", 1), ("wide", 2)]
    assert len({render.external_task_id for render in renders}) == 4  # four requests, each billed on its own
    # Every event names its render: key, label, take and variant.
    succeeded = {event.data["render"]: event.data for event in shot_events(spy) if event.new == SUCCEEDED}
    assert set(succeeded) == KEYS
    assert (succeeded["s01/pro#2"]["label"], succeeded["s01/pro#2"]["take"]) == ("s01 pro#2", 2)
    assert succeeded["s01/pro#2"]["variant"] == "pro"
    started = next(event for event in spy.events if event.kind == "run-started")
    assert set(started.data["shots"]) == KEYS and started.data["to_render"] == 4
    # The shot's current render is its newest finished one.
    state = load_state(spec.parent / "out")
    current = state.current("s01")
    assert current is not None and current.status == SUCCEEDED
    assert current.finished_at == max(r.finished_at or "" for r in state.renders)


def test_external_ids_carry_variant_and_take(spec: Path) -> None:
    run(spec)
    state = load_state(spec.parent / "out")
    salt = state.facts.salt
    by_take = {(r.variant, r.take): r.external_task_id for r in state.renders}
    wide = load_project(spec).shots[0]
    assert by_take[("wide", 1)] == f"tk-s01-{wide.fingerprint[:12]}-{salt}-wide"
    assert by_take[("wide", 2)] == f"tk-s01-{wide.fingerprint[:12]}-{salt}-wide-t2"


def test_a_resumed_run_creates_nothing(spec: Path) -> None:
    assert run(spec).ok
    again = run(spec)
    assert again.ok and again.statuses == {} and set(again.skipped) == KEYS
    assert again.stats is not None and again.stats.creates == 0
    assert len(load_state(spec.parent / "out").renders) == 4 and len(videos(spec)) == 4


def test_a_retake_renders_exactly_one_more_take(spec: Path) -> None:
    assert run(spec).ok
    review = Review.open(spec)
    wide_2 = next(row.number for row in review.shot("s01").takes if (row.ref.variant, row.ref.take) == ("wide", 2))
    review.select("s01", wide_2, by="alice")
    review.retake("s01", "slower pan", by="alice")
    spy = Spy()
    result = run(spec, spy)
    assert result.ok and result.statuses == {"s01/wide#3": SUCCEEDED}
    assert result.stats is not None and result.stats.creates == 1
    assert len(videos(spec)) == 5 and f"{load_project(spec).shots[0].fingerprint[:12]}-t3-wide.mp4" in videos(spec)
    assert Review.open(spec).pending_retakes() == ()
    # The old takes stay; the next run has nothing to do.
    assert len(load_state(spec.parent / "out").renders) == 5
    after = run(spec)
    assert after.statuses == {} and after.stats is not None and after.stats.creates == 0


def test_the_cut_has_the_shot_once_whatever_its_variants(spec: Path) -> None:
    from orchestrator.editorial.cut import build_cut

    assert run(spec).ok
    cut = build_cut(load_project(spec), load_state(spec.parent / "out"))
    assert [shot.shot_id for shot in cut.shots] == ["s01"]
