"""run_project / arun_project against the local simulator and its fault knobs (short renders, cheap video)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orchestrator.api import arun_project, prepare, run_project
from orchestrator.errors import ConfigError
from orchestrator.plan.plan import CHANGED, UNCHANGED
from orchestrator.providers.local import SimulatorOptions
from orchestrator.run.events import RUN_FINISHED, RUN_STARTED, Event
from orchestrator.run.polling import PollPolicy
from orchestrator.run.scheduler import RetryPolicy
from orchestrator.spec.shot import ImageRef, Limits, ResolvedProject, ResolvedShot
from orchestrator.store.manifest import FAILED, PENDING, SUCCEEDED, load_manifest
from tests.helpers import fingerprinted

FAST = {
    "poll": PollPolicy(initial_estimate=1.0, probe_start=0.05, min_interval=0.01, max_interval=0.2, deadline=20),
    "retry": RetryPolicy(base=0.02, cap=0.1, concurrency_floor=0.05),
    "rps": 500.0,
}


def sim(**kw: Any) -> SimulatorOptions:
    return SimulatorOptions(**{"render_time": 0.3, "render_jitter": 0.1, "cheap_video": True, "seed": 5, **kw})


def board(path: Path, colour: tuple[int, int, int]) -> ImageRef:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), colour).save(buffer, format="PNG")
    data = buffer.getvalue()
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    return ImageRef(
        source="path", ref=path.name, path=path, sha256=sha, width=400, height=300, format="PNG", bytes=len(data)
    )


def make_project(tmp: Path, n: int = 6, *, prompt: str = "slow pan", concurrency: int = 4) -> ResolvedProject:
    boards = [board(tmp / f"b{k}.png", (60 * k, 100, 200 - 40 * k)) for k in range(3)]
    shots = []
    for i in range(n):
        shot = ResolvedShot(
            id=f"s{i:02d}",
            index=i,
            project="apitest",
            model="kling-v1-6",
            images=(boards[i % 3], boards[(i + 1) % 3]),
            prompt=f"{prompt} {i}",
        )
        shots.append(fingerprinted(shot))
    return ResolvedProject(
        path=tmp / "project.yaml",
        sha256="0" * 64,
        version=1,
        project="apitest",
        model="kling-v1-6",
        output_dir=tmp / "out",
        shots=tuple(shots),
        limits=Limits(concurrency=concurrency, requests_per_second=2.0),
        provider="local",
    )


class Spy:
    """Keeps the events of a run."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


async def run_with_stats(project: ResolvedProject, options: SimulatorOptions, **kw: Any) -> tuple[Any, Any]:
    """Run with the local provider entered here, so the simulator's stats can be read after the run."""
    from orchestrator.providers import open_provider

    async with open_provider("local", simulator_options=options) as provider:
        result = await arun_project(project, provider=provider, **{**FAST, **kw})
        stats = provider.simulator.stats()  # type: ignore[attr-defined]
    return result, stats


def assert_all_rendered(project: ResolvedProject, stats: Any) -> None:
    manifest = load_manifest(project.output_dir / "manifest.json")
    for shot in project.shots:
        record = manifest.shots[shot.id]
        assert record.status == SUCCEEDED, (shot.id, record.status, record.error)
        assert (project.output_dir / record.outputs[0].path).stat().st_size == record.outputs[0].bytes
    assert max(stats.submissions.values()) == 1, stats.submissions  # nobody billed twice


@pytest.mark.anyio
async def test_happy_path_renders_a_six_shot_project(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    spy = Spy()
    result, stats = await run_with_stats(project, sim(), listeners=[spy])
    assert result.ok and result.exit_code == 0 and not result.failures
    assert_all_rendered(project, stats)
    assert stats.creates_accepted == 6
    # Tasks in flight were followed through the task list, not polled one by one.
    assert stats.requests["GET /kling/v1/videos/multi-image2video"] > 0
    assert stats.requests.get("GET /kling/v1/videos/multi-image2video/{id}", 0) == 0
    assert spy.events[0].kind == RUN_STARTED and spy.events[-1].kind == RUN_FINISHED
    assert spy.events[0].data["base_url"].startswith("http://127.0.0.1:")
    assert "key" not in str(spy.events[0].to_json()).lower()
    # A second run finds everything unchanged and sends nothing.
    again, stats2 = await run_with_stats(project, sim())
    assert again.ok and again.statuses == {} and len(again.skipped) == 6 and stats2.creates_attempted == 0


@pytest.mark.anyio
async def test_rate_limits_server_errors_and_dropped_connections_never_fail_a_shot(tmp_path: Path) -> None:
    project = make_project(tmp_path, n=8)
    faults = sim(rate_1302=0.1, rate_1303=0.1, rate_5xx=0.1, drop_rate=0.05, drop_after_create_rate=0.1, seed=11)
    result, stats = await run_with_stats(project, faults)
    assert result.ok, result.failures
    assert_all_rendered(project, stats)
    assert sum(stats.faults.values()) > 0


@pytest.mark.anyio
async def test_ambiguous_creates_are_never_submitted_twice(tmp_path: Path) -> None:
    project = make_project(tmp_path, n=6)
    result, stats = await run_with_stats(project, sim(drop_after_create_rate=0.5, seed=3))
    assert result.ok, result.failures
    assert stats.faults.get("drop_after_create", 0) > 0
    assert_all_rendered(project, stats)


@pytest.mark.anyio
async def test_account_cap_below_concurrency(tmp_path: Path) -> None:
    project = make_project(tmp_path, n=8, concurrency=6)
    result, stats = await run_with_stats(project, sim(concurrency_cap=2))
    assert result.ok, result.failures
    assert stats.max_in_flight <= 2
    assert_all_rendered(project, stats)


@pytest.mark.anyio
async def test_account_exhausted_mid_run_stops_submitting_and_records_in_flight(tmp_path: Path) -> None:
    project = make_project(tmp_path, n=8, concurrency=3)
    spy = Spy()
    result, stats = await run_with_stats(project, sim(account_exhausted_after=3), listeners=[spy])
    assert (result.aborted is not None and "1102" in result.aborted) or "resource" in (result.aborted or "")
    assert result.exit_code == 1
    statuses = list(result.statuses.values())
    assert statuses.count(SUCCEEDED) == 3 and set(statuses) <= {SUCCEEDED, PENDING}
    assert stats.creates_accepted == 3
    assert stats.creates_attempted <= 3 + 3  # the refusals of the creates already under way, then nothing
    # The next run (account topped up) renders only the rest.
    result2, stats2 = await run_with_stats(project, sim())
    assert result2.ok and stats2.creates_accepted == 5


@pytest.mark.anyio
async def test_permanent_failures_are_recorded_while_others_continue(tmp_path: Path) -> None:
    project = make_project(tmp_path, n=8)
    result, _stats = await run_with_stats(project, sim(failure_rate=0.4, seed=3))
    statuses = result.statuses
    failed = [shot for shot, status in statuses.items() if status == FAILED]
    assert failed and len(failed) < len(statuses)
    assert set(statuses.values()) == {SUCCEEDED, FAILED}
    assert result.exit_code == 1 and {shot for shot, _ in result.failures} == set(failed)
    assert all(reason for _, reason in result.failures)


@pytest.mark.anyio
async def test_only_force_max_cost_and_dry_run(tmp_path: Path) -> None:
    project = make_project(tmp_path, n=4)
    dry = await arun_project(project, provider="local", dry_run=True)
    assert dry.dry_run and not (project.output_dir / "manifest.json").exists()
    with pytest.raises(ConfigError, match="more than --max-cost 3"):
        await arun_project(project, provider="local", max_cost=3)

    first, _ = await run_with_stats(project, sim(), only="s0[01]")
    assert sorted(first.statuses) == ["s00", "s01"]
    forced, _ = await run_with_stats(project, sim(), force="s00")
    assert sorted(forced.statuses) == ["s00", "s02", "s03"] and forced.skipped == ("s01",)
    record = load_manifest(project.output_dir / "manifest.json").shots["s00"]
    assert record.attempts == 2 and record.external_task_id and record.external_task_id.endswith("-r2")
    assert len(record.history) == 1 and (project.output_dir / record.history[0].outputs[0].path).exists()


def test_sync_run_project_uses_the_spec_provider(tmp_path: Path) -> None:
    project = make_project(tmp_path, n=2)
    result = run_project(project, simulator_options=sim(), **FAST)
    assert result.ok and result.settings is not None and result.settings.provider == "local"


def test_demo_spec_renders_with_cheap_video(tmp_path: Path) -> None:
    spec = Path(__file__).resolve().parent.parent / "specs" / "demo" / "project.yaml"
    if not spec.exists():
        pytest.skip("no demo spec")
    pytest.importorskip("orchestrator.spec.load")
    events: list[Event] = []
    record: Callable[[Event], None] = events.append
    result = run_project(
        spec, provider="local", out=tmp_path / "out", simulator_options=sim(), listeners=[record], **FAST
    )
    assert result.ok, result.failures
    assert len(result.statuses) >= 6


@pytest.mark.anyio
async def test_patterns_matching_no_shot_refuse_the_run_before_anything_is_written(tmp_path: Path) -> None:
    project = make_project(tmp_path, n=3)
    with pytest.raises(ConfigError, match=r"--only 'zz\*' matches no shot in the spec \(3 shots: s00, s01, s02\)"):
        await arun_project(project, provider="local", only=["s00", "zz*"])
    with pytest.raises(ConfigError, match="--force 's02' matches no shot that --only selects"):
        await arun_project(project, provider="local", only="s0[01]", force="s02")
    assert not project.output_dir.exists()  # no manifest, no lock, no simulator state


def test_the_selection_is_what_the_run_renders(tmp_path: Path) -> None:
    project = make_project(tmp_path, n=4)
    prepared = prepare(project, only="s0[12]")
    assert [entry.shot_id for entry in prepared.selection.entries] == ["s01", "s02"]
    assert prepared.selection.total_units(prepared.pricing) == prepared.cost == 4  # 2 units each (kling-v1-6)
    assert prepared.not_selected == 2
    everything = prepare(project)
    assert len(everything.selection.entries) == 4 and everything.not_selected == 0


def test_a_forced_shot_shows_as_changed_in_the_selection(tmp_path: Path) -> None:
    project = make_project(tmp_path, n=2)
    run_project(project, simulator_options=sim(), **FAST)
    prepared = prepare(project, force="s01")
    categories = {entry.shot_id: (entry.category, entry.reason) for entry in prepared.selection.entries}
    assert categories == {"s00": (UNCHANGED, ""), "s01": (CHANGED, "forced with --force")}
    assert [shot.id for shot in prepared.shots] == ["s01"] and prepared.skipped == ("s00",)
    assert prepared.selection.total_units(prepared.pricing) == prepared.cost == 2
