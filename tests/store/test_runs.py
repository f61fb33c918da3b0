"""Runs on the render store: a version-1 folder migrated by ``run``, bytes per state change flat through a real
``Scheduler`` run, readers that never migrate and take the database over a stale ``manifest.json``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest

from orchestrator.api import arun_project
from orchestrator.plan.plan import CHANGED, plan_project
from orchestrator.providers.local import SimulatorOptions
from orchestrator.report.status import locate_manifest
from orchestrator.run.events import SHOT, Event
from orchestrator.run.polling import PollPolicy
from orchestrator.run.scheduler import RetryPolicy
from orchestrator.spec.shot import Limits, ResolvedProject, ResolvedShot
from orchestrator.store import DATABASE_NAME, V1_KEPT_NAME, load_state
from orchestrator.store.manifest import MANIFEST_NAME, SUCCEEDED, load_manifest
from tests.fake_provider import FakeProvider, make_shot, open_store, options, plan_renders, scheduler_for
from tests.helpers import fingerprinted, image_ref, write_board

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "manifest-v1" / "manifest.json"
FAST = {
    "poll": PollPolicy(initial_estimate=1.0, probe_start=0.05, min_interval=0.01, max_interval=0.2, deadline=20),
    "retry": RetryPolicy(base=0.02, cap=0.1, concurrency_floor=0.05),
    "rps": 500.0,
}


@pytest.fixture
def v1_folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(FIXTURE, out / MANIFEST_NAME)
    return out


def fixture_project(tmp_path: Path, out: Path) -> ResolvedProject:
    """Project ``fixture`` with the fixture's shot ids, each changed (new fingerprints): a run renders all anew."""
    boards = [image_ref(write_board(tmp_path / f"b{k}.png", (400, 300), (60 * k, 90, 120))) for k in range(2)]
    shot_ids = list(json.loads(FIXTURE.read_text())["shots"])
    shots = tuple(
        fingerprinted(
            ResolvedShot(
                id=shot_id, index=i, project="fixture", model="kling-v1-6", images=tuple(boards), prompt=f"pan {i}"
            )
        )
        for i, shot_id in enumerate(shot_ids)
    )
    return ResolvedProject(
        path=tmp_path / "project.yaml",
        sha256="0" * 64,
        version=1,
        project="fixture",
        model="kling-v1-6",
        output_dir=out,
        shots=shots,
        limits=Limits(concurrency=4, requests_per_second=50.0),
        provider="local",
    )


@pytest.mark.anyio
async def test_a_run_migrates_the_committed_version_1_folder_once_losing_nothing(
    tmp_path: Path, v1_folder: Path
) -> None:
    before = load_state(FIXTURE)  # the fixture as its migration reads it
    project = fixture_project(tmp_path, v1_folder)
    simulator = SimulatorOptions(render_time=0.2, render_jitter=0.0, cheap_video=True, seed=4)
    result = await arun_project(project, provider="local", simulator_options=simulator, **FAST)

    assert result.ok, result.failures
    assert (v1_folder / V1_KEPT_NAME).read_bytes() == FIXTURE.read_bytes()  # the old file kept as it was
    assert json.loads((v1_folder / MANIFEST_NAME).read_text())["manifest_version"] == 2
    after = load_state(v1_folder / DATABASE_NAME)
    assert after.facts.salt == before.facts.salt == "k3x9q2"  # so the folder's ids stay its own
    for old in before.renders:  # every render of the version-1 folder is still there, unchanged
        kept = after.render(old.render_id)
        assert kept is not None
        assert (kept.shot_id, kept.fingerprint, kept.external_task_id, kept.task_id, kept.outputs, kept.charged) == (
            old.shot_id,
            old.fingerprint,
            old.external_task_id,
            old.task_id,
            old.outputs,
            old.charged,
        )
    for shot in project.shots:  # and each shot's new render is current, sent with the folder's salt
        current = after.current(shot.id)
        assert current is not None and current.status == SUCCEEDED and current.fingerprint == shot.fingerprint
        assert current.render_id > len(before.renders) and "k3x9q2" in (current.external_task_id or "")
    assert len(after.renders) == len(before.renders) + len(project.shots)

    # Migrated once: a second run reads the database and leaves the kept file alone.
    kept_at = (v1_folder / V1_KEPT_NAME).stat().st_mtime_ns
    again = await arun_project(project, provider="local", simulator_options=simulator, **FAST)
    assert again.ok and again.statuses == {} and len(again.skipped) == len(project.shots)
    assert (v1_folder / V1_KEPT_NAME).stat().st_mtime_ns == kept_at
    assert len(load_state(v1_folder).renders) == len(after.renders)


def test_read_only_commands_read_a_version_1_folder_without_migrating_it(tmp_path: Path, v1_folder: Path) -> None:
    project = fixture_project(tmp_path, v1_folder)
    plan = plan_project(project)
    assert {entry.category for entry in plan.entries} == {CHANGED}
    located = locate_manifest(str(v1_folder), load_spec=lambda: lambda path: project)
    assert located.manifest.shots["s01-done"].charged == 2.0
    assert sorted(p.name for p in v1_folder.iterdir()) == [MANIFEST_NAME]  # no store, no lock, nothing kept
    assert (v1_folder / MANIFEST_NAME).read_bytes() == FIXTURE.read_bytes()


@pytest.mark.anyio
async def test_the_database_is_the_truth_over_a_stale_manifest_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    shots = [make_shot("a"), make_shot("b")]
    store = open_store(out)
    scheduler = scheduler_for(FakeProvider(), store, options=options())
    with anyio.fail_after(20):
        await scheduler.run(plan_renders(store, shots, scheduler.provider))
    store.close()
    (out / MANIFEST_NAME).write_bytes(FIXTURE.read_bytes())  # a stale snapshot of something else entirely
    for target in (out, out / MANIFEST_NAME, out / DATABASE_NAME):
        assert set(load_manifest(target).shots) == {"a", "b"}
    copy = tmp_path / "copied.json"
    shutil.copy(FIXTURE, copy)
    assert "s01-done" in load_manifest(copy).shots  # a file given alone is read as the snapshot it is


async def _bytes_per_state_change(out: Path, n: int) -> tuple[float, int]:
    """Bytes the process wrote per shot state change during a real run of ``n`` shots, and the commits made."""
    shots = [make_shot(f"s{i:05}") for i in range(n)]
    changes: list[Event] = []
    store = open_store(out)
    listeners = [lambda event: changes.append(event) if event.kind == SHOT else None]
    provider = FakeProvider(render=0.01)  # its videos are a few bytes each: the writes measured are the store's
    scheduler = scheduler_for(provider, store, options=options(concurrency=100), listeners=listeners)
    started = _written()
    with anyio.fail_after(120):
        await scheduler.run(plan_renders(store, shots, scheduler.provider))
    written = _written() - started
    store.close()  # the snapshot, written once at the end, is not a state change
    assert all(state == SUCCEEDED for state in (r.status for r in load_manifest(out).shots.values()))
    return written / len(changes), store.writes


def _written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


@pytest.mark.anyio
@pytest.mark.timeout(240)
@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts bytes through /proc/self/io (Linux)")
async def test_bytes_written_per_state_change_stay_flat_from_100_to_1000_shots(tmp_path: Path) -> None:
    small, _ = await _bytes_per_state_change(tmp_path / "small", 100)
    large, commits = await _bytes_per_state_change(tmp_path / "large", 1000)
    # A manifest rewritten on every commit made this ratio about 10 (its size grows with the shots).
    assert large < 2 * small, (small, large)
    assert large < 32 * 1024 and commits > 10, (large, commits)
