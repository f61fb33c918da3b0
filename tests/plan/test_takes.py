"""The plan of takes and variants: one entry per render wanted, matched in the store by shot, variant, take and
fingerprint; the cost of every take; a retake's one more take; a stale approval planned again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.api import prepare, run_project
from orchestrator.cli import cli
from orchestrator.errors import ConfigError
from orchestrator.plan.plan import CHANGED, FAILED_BEFORE, NEW, UNCHANGED, Plan, plan_project, plan_to_json
from orchestrator.plan.pricing import Pricing
from orchestrator.review import Review
from orchestrator.spec.fingerprint import request_record
from orchestrator.spec.load import load_project
from orchestrator.spec.shot import ResolvedProject, ResolvedShot
from orchestrator.store import OutputFile, RenderStore, load_state
from orchestrator.store.manifest import FAILED, SUCCEEDED
from tests.helpers import write_board

SPEC = """\
version: 1
project: tk
output_dir: out
shots:
  - id: s01
    images: [a.png, b.png]
    prompt: "dawn over the harbour"
    takes: 2
    variants:
      wide: {prompt: "wide dawn over the bay"}
      pro: {mode: pro}
  - {id: s02, images: [a.png, b.png], prompt: "gulls lift off the water"}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    write_board(tmp_path / "a.png", (400, 300), (200, 40, 40))
    write_board(tmp_path / "b.png", (400, 300), (40, 200, 40))
    path = tmp_path / "project.yaml"
    path.write_text(SPEC)
    return path


def request(project: ResolvedProject, key: str) -> ResolvedShot:
    return next(shot for shot in project.shots if shot.key == key)


def seed(project: ResolvedProject, *takes: tuple[str, int, str], fingerprint: str | None = None) -> None:
    """Renders of (request key, take, status) in the store, as a run leaves them (a finished one with its file)."""
    store = RenderStore.open(project.output_dir, project=project.project, provider="local", stamp_run=False)
    try:
        for key, take, status in takes:
            shot = request(project, key)
            fp = fingerprint or shot.fingerprint
            render = store.new_render(
                shot.id, fingerprint=fp, request=request_record(shot), take=take, variant=shot.variant, attempt=1
            )
            changes: dict[str, object] = {"status": status, "task_id": f"task-{key}-{take}", "cost": 2.0}
            if status == SUCCEEDED:
                relative = f"{shot.id}/{render.output_stem}.mp4"
                video = project.output_dir / relative
                video.parent.mkdir(parents=True, exist_ok=True)
                video.write_bytes(f"video of {key} take {take}".encode())
                data = video.read_bytes()
                changes["outputs"] = [OutputFile(relative, hashlib.sha256(data).hexdigest(), len(data))]
            store.update_render(render.render_id, **changes)
    finally:
        store.close(finished=False)


def lines(plan: Plan) -> list[tuple[str, str]]:
    return [(entry.label, entry.category) for entry in plan.entries]


def test_one_entry_per_take_of_each_variant_costing_every_take(spec: Path) -> None:
    project = load_project(spec)
    plan = plan_project(project)
    assert lines(plan) == [
        ("s01 wide take 1/2", NEW),
        ("s01 wide take 2/2", NEW),
        ("s01 pro take 1/2", NEW),
        ("s01 pro take 2/2", NEW),
        ("s02", NEW),
    ]
    assert [entry.key for entry in plan.entries] == ["s01/wide", "s01/wide#2", "s01/pro", "s01/pro#2", "s02"]
    # kling-v1-6: std 5 s 2 units, pro 5 s 3.5 units: two takes of each variant, and s02.
    assert plan.total_units(Pricing()) == 2 * 2 + 2 * 3.5 + 2
    data = plan_to_json(plan, Pricing())
    first = data["shots"][1]
    shown = (first["id"], first["key"], first["variant"], first["take"], first["takes"])
    assert shown == ("s01", "s01/wide#2", "wide", 2, 2)
    assert data["summary"]["new"] == 5 and data["summary"]["units"] == 13


def test_max_cost_counts_every_take_of_every_variant(spec: Path) -> None:
    assert prepare(spec).cost == 13
    with pytest.raises(ConfigError, match="this run would cost 13 units, more than --max-cost 12"):
        run_project(spec, provider="local", max_cost=12)
    assert load_state(spec.parent / "out").renders == ()  # nothing sent, no render recorded


def test_an_existing_take_is_matched_by_variant_take_and_fingerprint(spec: Path) -> None:
    project = load_project(spec)
    seed(project, ("s01/wide", 1, SUCCEEDED), ("s01/wide", 2, FAILED), ("s02", 1, SUCCEEDED))
    seed(project, ("s01/pro", 1, SUCCEEDED), fingerprint="0" * 64)  # an older request of the pro variant
    plan = plan_project(project)
    assert lines(plan) == [
        ("s01 wide take 1/2", UNCHANGED),
        ("s01 wide take 2/2", FAILED_BEFORE),
        ("s01 pro take 1/2", CHANGED),
        ("s01 pro take 2/2", NEW),
        ("s02", UNCHANGED),
    ]
    assert plan.total_units(Pricing()) == 2 + 3.5 + 3.5


def test_a_changed_request_plans_all_of_its_takes_again(spec: Path) -> None:
    project = load_project(spec)
    everything = [(key, take, SUCCEEDED) for key in ("s01/wide", "s01/pro") for take in (1, 2)]
    seed(project, *everything, ("s02", 1, SUCCEEDED))
    assert not plan_project(project).has_work
    spec.write_text(SPEC.replace("wide dawn over the bay", "wide dusk over the bay"))
    plan = plan_project(load_project(spec))
    assert lines(plan)[:4] == [
        ("s01 wide take 1/2", CHANGED),
        ("s01 wide take 2/2", CHANGED),
        ("s01 pro take 1/2", UNCHANGED),
        ("s01 pro take 2/2", UNCHANGED),
    ]
    assert plan.entries[0].fields == ("prompt",)


def test_a_retake_adds_one_more_take_of_that_shot_only(spec: Path) -> None:
    project = load_project(spec)
    everything = [(key, take, SUCCEEDED) for key in ("s01/wide", "s01/pro") for take in (1, 2)]
    seed(project, *everything, ("s02", 1, SUCCEEDED))
    review = Review(spec, project)
    pro_take_2 = next(row.number for row in review.shot("s01").takes if (row.ref.variant, row.ref.take) == ("pro", 2))
    review.select("s01", pro_take_2, by="alice")
    review.retake("s01", "slower pan", by="alice")
    plan = plan_project(project)
    work = [entry for entry in plan.entries if entry.needs_render]
    assert [(entry.label, entry.category, entry.note) for entry in work] == [
        ("s01 pro take 3 (retake)", NEW, "retake: slower pan")
    ]
    assert plan.total_units(Pricing()) == 3.5
    assert [entry.label for entry in plan.entries if entry.shot_id == "s01"][-1] == "s01 pro take 3 (retake)"


def test_a_stale_approval_plans_the_shot_again_and_says_so(spec: Path) -> None:
    project = load_project(spec)
    seed(project, ("s02", 1, SUCCEEDED))
    Review(spec, project).approve("s02", by="alice")
    spec.write_text(SPEC.replace("gulls lift off the water", "gulls land on the water"))
    [s02] = [entry for entry in plan_project(load_project(spec)).entries if entry.shot_id == "s02"]
    assert s02.category == CHANGED and s02.note.startswith("approved (stale)")


def test_the_plan_command_shows_takes_and_a_summary_per_shot(spec: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", str(spec)], catch_exceptions=False)
    out = result.output
    assert "+ s01 wide take 2/2  new  2 units" in out
    assert "+ s01 pro take 1/2   new  3.5 units" in out
    assert "s01: 4 renders (2 variants x 2 takes): 4 to render, 0 as they are - est. 11 units" in out
    assert "+ s02                new  2 units" in out
    assert "5 new - est. 13 units" in out
    data = json.loads(CliRunner().invoke(cli, ["plan", str(spec), "--json"]).output)
    assert [(row["variant"], row["take"]) for row in data["shots"]] == [
        ("wide", 1),
        ("wide", 2),
        ("pro", 1),
        ("pro", 2),
        (None, 1),
    ]
