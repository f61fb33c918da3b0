from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ManifestError
from orchestrator.plan import plan as plan_module
from orchestrator.plan.plan import (
    CHANGED,
    FAILED_BEFORE,
    NEW,
    REMOVED,
    UNCHANGED,
    format_units,
    make_plan,
    plan_project,
    plan_to_json,
    running_run,
    summary_line,
)
from orchestrator.plan.pricing import DEFAULT_PRICING, Pricing, project_pricing
from orchestrator.spec.fingerprint import request_record
from orchestrator.spec.shot import ImageRef, ResolvedProject, ResolvedShot
from orchestrator.store.manifest import (
    FAILED,
    LOCK_NAME,
    SUBMITTED,
    SUCCEEDED,
    Manifest,
    ManifestLock,
    Output,
    ShotRecord,
    save_manifest,
)
from tests.helpers import hand_shot


def image(sha: str) -> ImageRef:
    return ImageRef(source="path", ref=f"boards/{sha[:4]}.png", sha256=sha)


def shot(shot_id: str, **overrides: Any) -> ResolvedShot:
    images = overrides.pop("images", (image("a" * 64), image("b" * 64)))
    return hand_shot(shot_id, images=images, **overrides)


def rendered(s: ResolvedShot, out: Path, *, status: str = SUCCEEDED, error: str | None = None) -> ShotRecord:
    """A record as a finished run leaves it, with its video really on disk."""
    video = out / s.id / f"{s.fingerprint[:12]}.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    data = f"video of {s.id}".encode()
    video.write_bytes(data)
    output = Output(path=f"{s.id}/{video.name}", sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    return ShotRecord(
        status=status,
        fingerprint=s.fingerprint,
        request=request_record(s),
        outputs=[output] if status == SUCCEEDED else [],
        error=error,
        task_id="1",
    )


def test_each_category(tmp_path: Path) -> None:
    same, edited, broken, gone = shot("same"), shot("edited"), shot("broken"), shot("gone")
    manifest = Manifest(project="demo")
    manifest.shots = {
        "same": rendered(same, tmp_path),
        "edited": rendered(edited, tmp_path),
        "broken": rendered(broken, tmp_path, status=FAILED, error="content moderation"),
        "gone": rendered(gone, tmp_path),
    }
    spec_shots = [same, shot("edited", mode="pro", prompt="new words"), broken, shot("fresh")]

    plan = make_plan(spec_shots, manifest, manifest_dir=tmp_path)

    assert [(e.shot_id, e.category) for e in plan.entries] == [
        ("same", UNCHANGED),
        ("edited", CHANGED),
        ("broken", FAILED_BEFORE),
        ("fresh", NEW),
        ("gone", REMOVED),
    ]
    assert plan.entries[2].reason == "content moderation"
    assert [s.id for s in plan.to_render] == ["edited", "broken", "fresh"]
    assert plan.has_work
    # Nothing in the plan deletes: a removed shot keeps its record and its video.
    assert plan.entries[4].record is manifest.shots["gone"]
    assert (tmp_path / manifest.shots["gone"].outputs[0].path).exists()


def test_changed_names_each_field_with_old_and_new_scalars(tmp_path: Path) -> None:
    old = shot("s1")
    new = shot("s1", mode="pro", duration=10, prompt="other", images=(image("a" * 64), image("c" * 64)))
    manifest = Manifest(project="demo", shots={"s1": rendered(old, tmp_path)})

    entry = make_plan([new], manifest, manifest_dir=tmp_path).entries[0]

    assert entry.category == CHANGED
    assert entry.fields == ("mode", "duration", "prompt", "images[1]")
    assert entry.reason == "changed: mode: std -> pro, duration: 5 -> 10, prompt, images[1]"
    assert (entry.changes[0].old, entry.changes[0].new) == ("std", "pro")


def test_a_record_without_request_is_changed_by_fingerprint(tmp_path: Path) -> None:
    manifest = Manifest(project="demo", shots={"s1": ShotRecord(status=SUBMITTED, fingerprint="0" * 64)})
    entry = make_plan([shot("s1")], manifest, manifest_dir=tmp_path).entries[0]
    assert (entry.category, entry.fields) == (CHANGED, ("fingerprint",))


@pytest.mark.parametrize("damage", ["delete", "modify"])
def test_succeeded_shot_whose_video_is_gone_or_modified_is_retried(tmp_path: Path, damage: str) -> None:
    s = shot("s1")
    record = rendered(s, tmp_path)
    video = tmp_path / record.outputs[0].path
    if damage == "delete":
        video.unlink()
    else:
        video.write_bytes(b"x" * record.outputs[0].bytes)  # same size, other bytes: only the hash can tell
    entry = make_plan([s], Manifest(project="demo", shots={"s1": record}), manifest_dir=tmp_path).entries[0]
    assert (entry.category, entry.reason) == (FAILED_BEFORE, "output missing or modified")


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The inodes of the outputs the plan reads to hash, in order (``_read_digest`` is only called on a cache miss)."""
    read: list[int] = []
    real = plan_module._read_digest

    def spy(fd: int, size: int) -> str:
        read.append(os.fstat(fd).st_ino)
        return real(fd, size)

    monkeypatch.setattr(plan_module, "_read_digest", spy)
    return read


def test_planning_again_hashes_only_outputs_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shots = [shot(f"s{i}") for i in range(3)]
    manifest = Manifest(project="demo", shots={s.id: rendered(s, tmp_path) for s in shots})
    read = counting_reads(monkeypatch)
    plan_module._HASHES.clear()

    def categories() -> list[str]:
        return [e.category for e in make_plan(shots, manifest, manifest_dir=tmp_path).entries]

    assert categories() == [UNCHANGED] * 3 and len(read) == 3
    assert categories() == [UNCHANGED] * 3 and len(read) == 3  # nothing changed: nothing read again

    video = tmp_path / manifest.shots["s1"].outputs[0].path
    before = video.stat()
    video.write_bytes(b"x" * before.st_size)  # same size, other bytes
    os.utime(video, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime put back: ctime still moves
    assert categories() == [UNCHANGED, FAILED_BEFORE, UNCHANGED]
    assert read[3:] == [video.stat().st_ino]


def test_a_file_replaced_by_another_is_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = shot("s1")
    manifest = Manifest(project="demo", shots={"s1": rendered(s, tmp_path)})
    read = counting_reads(monkeypatch)
    assert make_plan([s], manifest, manifest_dir=tmp_path).entries[0].category == UNCHANGED
    video = tmp_path / manifest.shots["s1"].outputs[0].path
    first = video.stat().st_ino
    stand_in = video.with_name("other.mp4")
    stand_in.write_bytes(b"y" * video.stat().st_size)
    os.replace(stand_in, video)  # another inode under the same name
    assert make_plan([s], manifest, manifest_dir=tmp_path).entries[0].category == FAILED_BEFORE
    assert read == [first, video.stat().st_ino] and first != read[1]


def test_output_paths_with_symlinks_inside_the_folder_still_count(tmp_path: Path) -> None:
    s = shot("s1")
    record = rendered(s, tmp_path)
    (tmp_path / "alias").symlink_to(tmp_path / "s1")  # a link that stays inside the output folder
    record.outputs[0].path = record.outputs[0].path.replace("s1/", "alias/", 1)
    assert make_plan([s], Manifest(project="demo", shots={"s1": record}), manifest_dir=tmp_path).entries[
        0
    ].category == (UNCHANGED)
    record.outputs[0].path = "./" + record.outputs[0].path
    assert make_plan([s], Manifest(project="demo", shots={"s1": record}), manifest_dir=tmp_path).entries[
        0
    ].category == (UNCHANGED)


def test_unfinished_shot_is_failed_before_with_its_state(tmp_path: Path) -> None:
    s = shot("s1")
    record = rendered(s, tmp_path, status=SUBMITTED)
    entry = make_plan([s], Manifest(project="demo", shots={"s1": record}), manifest_dir=tmp_path).entries[0]
    assert (entry.category, entry.reason) == (FAILED_BEFORE, "last run left it submitted")


def test_cost_counts_only_shots_that_render(tmp_path: Path) -> None:
    same = shot("same")
    manifest = Manifest(project="demo", shots={"same": rendered(same, tmp_path), "gone": rendered(shot("x"), tmp_path)})
    shots = [same, shot("a"), shot("b", mode="pro"), shot("c", duration=10), shot("d", mode="pro", duration=10)]

    plan = make_plan(shots, manifest, manifest_dir=tmp_path)

    # kling-v1-6's card (docs/wire.md): std 5 s 2, pro 5 s 3.5, std 10 s 4, pro 10 s 7.
    assert [e.units(DEFAULT_PRICING) for e in plan.entries] == [0, 2, 3.5, 4, 7, 0]
    assert plan.total_units(DEFAULT_PRICING) == 16.5
    assert summary_line(plan, DEFAULT_PRICING) == "4 new, 1 unchanged, 1 removed - est. 16.5 units"
    assert plan.total_units(Pricing(std_5s=2)) == 2 * (1 + 3.5 + 2 + 7)  # the older form, read as before


def test_cost_line_says_when_a_model_has_no_rate_card(tmp_path: Path) -> None:
    shots = [shot("a"), shot("b", model="kling-v2-1", mode="pro")]
    plan = make_plan(shots, None, manifest_dir=tmp_path)
    line = "2 new - est. 5.5 units (kling-v2-1 estimated at kling-v1-6's rates)"
    assert summary_line(plan, DEFAULT_PRICING) == line
    data = plan_to_json(plan, DEFAULT_PRICING)["summary"]
    assert (data["unpriced_models"], data["estimated_at"]) == (["kling-v2-1"], "kling-v1-6")

    priced = project_pricing(spec={"kling-v2-1": {"std_5s": 3, "std_10s": 6, "pro_5s": 5, "pro_10s": 10}})
    assert summary_line(plan, priced) == "2 new - est. 7 units"
    assert plan_to_json(plan, priced)["summary"]["unpriced_models"] == []


def test_summary_of_nothing_to_do(tmp_path: Path) -> None:
    s = shot("s1")
    plan = make_plan([s], Manifest(project="demo", shots={"s1": rendered(s, tmp_path)}), manifest_dir=tmp_path)
    assert not plan.has_work
    assert summary_line(plan, DEFAULT_PRICING) == "1 unchanged - est. 0 units"
    assert summary_line(make_plan([], None, manifest_dir=tmp_path), DEFAULT_PRICING) == "no shots - est. 0 units"


def test_plan_json_carries_categories_changes_and_units(tmp_path: Path) -> None:
    manifest = Manifest(project="demo", shots={"s1": rendered(shot("s1"), tmp_path)})
    data = plan_to_json(make_plan([shot("s1", mode="pro")], manifest, manifest_dir=tmp_path), DEFAULT_PRICING)
    assert data["summary"]["changed"] == 1
    assert data["summary"]["units"] == 3.5
    assert data["shots"][0]["changes"] == [{"field": "mode", "old": "std", "new": "pro"}]


def test_format_units() -> None:
    assert [format_units(u) for u in (14.5, 3.0, 0.25, 0.0, 1234567.0)] == ["14.5", "3", "0.25", "0", "1,234,567"]


def project(tmp_path: Path, shots: tuple[ResolvedShot, ...], name: str = "demo") -> ResolvedProject:
    return ResolvedProject(
        path=tmp_path / "spec.yaml",
        sha256="0" * 64,
        version=1,
        project=name,
        model="kling-v1-6",
        output_dir=tmp_path / "renders",
        shots=shots,
    )


def test_plan_project_reads_the_manifest_in_output_dir_or_out(tmp_path: Path) -> None:
    s = shot("s1")
    out = tmp_path / "elsewhere"
    save_manifest(Manifest(project="demo", shots={"s1": rendered(s, out)}), out / "manifest.json")
    assert plan_project(project(tmp_path, (s,))).entries[0].category == NEW
    assert plan_project(project(tmp_path, (s,)), out=out).entries[0].category == UNCHANGED


def test_manifest_of_another_project_is_refused(tmp_path: Path) -> None:
    save_manifest(Manifest(project="other"), tmp_path / "renders" / "manifest.json")
    with pytest.raises(ManifestError, match="belongs to project 'other'"):
        plan_project(project(tmp_path, (shot("s1"),)))


# --- the whole loop: plan, run, edit one prompt, plan and run again ---------------------------------------------

SIX_SHOTS = "".join(
    f"  - id: s{i}\n    images: [boards/b{i % 3}.png, boards/b{(i + 1) % 3}.png]\n    prompt: shot number {i}\n"
    for i in range(1, 7)
)


@pytest.mark.anyio
async def test_changing_one_prompt_rerenders_exactly_one_shot(tmp_path: Path) -> None:
    from PIL import Image

    from orchestrator.api import arun_project
    from orchestrator.providers.cometapi import CometAPIProvider
    from orchestrator.providers.local import LocalSimulator, SimulatorOptions
    from orchestrator.run.polling import PollPolicy
    from orchestrator.run.scheduler import RetryPolicy
    from orchestrator.spec.load import load_project
    from orchestrator.store.manifest import load_manifest

    (tmp_path / "boards").mkdir()
    for i in range(3):
        Image.new("RGB", (640, 360), (70 * i, 90, 160)).save(tmp_path / "boards" / f"b{i}.png")
    spec = tmp_path / "project.yaml"
    spec.write_text(f"version: 1\nproject: six\noutput_dir: renders\nshots:\n{SIX_SHOTS}")
    fast = {
        "poll": PollPolicy(initial_estimate=0.2, probe_start=0.05, min_interval=0.02, max_interval=0.2, deadline=60),
        "retry": RetryPolicy(base=0, concurrency_floor=0),
        "rps": 1000.0,
        "concurrency": 6,
    }
    options = SimulatorOptions(render_time=0.2, cheap_video=True, caption=False, seed=7)
    with LocalSimulator(options) as sim:
        async with CometAPIProvider(base_url=sim.base_url, api_key=sim.LOCAL_API_KEY, name="local") as provider:
            first = await arun_project(spec, provider=provider, **fast)
            assert first.ok, first.failures
            assert sim.stats().creates_accepted == 6
            before = load_manifest(tmp_path / "renders" / "manifest.json")

            spec.write_text(spec.read_text().replace("shot number 4", "shot number four, at night"))
            plan = plan_project(load_project(spec))
            assert [(e.shot_id, e.category) for e in plan.entries if e.category != UNCHANGED] == [("s4", CHANGED)]

            second = await arun_project(spec, provider=provider, **fast)
            assert second.ok, second.failures
            assert sim.stats().creates_accepted == 7  # exactly one new task

    after = load_manifest(tmp_path / "renders" / "manifest.json")
    for shot_id in ("s1", "s2", "s3", "s5", "s6"):
        assert after.shots[shot_id].outputs == before.shots[shot_id].outputs
        assert after.shots[shot_id].task_id == before.shots[shot_id].task_id
    assert after.shots["s4"].outputs != before.shots["s4"].outputs
    # The previous video of s4 is kept on disk and in its history.
    old_video = before.shots["s4"].outputs[0].path
    assert (tmp_path / "renders" / old_video).is_file()
    assert old_video in [o.path for render in after.shots["s4"].history for o in render.outputs]
    assert not plan_project(load_project(spec)).has_work


def test_unfinished_shots_of_a_live_run_are_in_flight_there_not_failed(tmp_path: Path) -> None:
    busy, done, broken = shot("busy"), shot("done"), shot("broken")
    manifest = Manifest(project="demo")
    manifest.shots = {
        "busy": rendered(busy, tmp_path, status=SUBMITTED),
        "done": rendered(done, tmp_path),
        "broken": rendered(broken, tmp_path, status=FAILED, error="content moderation"),
    }
    lock = ManifestLock(tmp_path / LOCK_NAME)
    lock.acquire()  # a live run holds the folder (this process, through its own open of the lock file)
    try:
        running_in = running_run(tmp_path)
    finally:
        lock.release()
    assert running_in is not None and running_in.pid == os.getpid()
    plan = make_plan([busy, done, broken], manifest, manifest_dir=tmp_path, running_in=running_in)
    reasons = {entry.shot_id: entry.reason for entry in plan.entries}
    assert reasons["busy"] == (
        f"in flight in the run of process {os.getpid()} (on {socket.gethostname()}, started {running_in.started_at}); "
        "plan again when it ends"
    )
    assert reasons["broken"] == "content moderation"  # a failure is still a failure

    holder = {"pid": dead_pid(), "host": socket.gethostname(), "started_at": "2026-01-01T00:00:00Z"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder))
    assert running_run(tmp_path) is None  # what a killed run leaves: its details, and no kernel lock
    plan = make_plan([busy], manifest, manifest_dir=tmp_path, running_in=running_run(tmp_path))
    assert plan.entries[0].reason == "last run left it submitted"


def dead_pid() -> int:
    """A pid that was alive a moment ago and is gone now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 10_000])
def test_an_output_is_hashed_whole_in_one_read_or_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(plan_module, "_READ_SIZE", 4096)  # so that the bigger files take several reads
    video = tmp_path / "v.mp4"
    data = os.urandom(size)
    video.write_bytes(data)
    plan_module._HASHES.clear()
    assert plan_module.file_sha256(str(video)) == hashlib.sha256(data).hexdigest()


def test_a_file_longer_than_its_size_when_opened_is_hashed_to_its_end(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"abc" * 1000)
    fd = os.open(video, os.O_RDONLY)
    try:
        assert plan_module._read_digest(fd, 10) == hashlib.sha256(b"abc" * 1000).hexdigest()
    finally:
        os.close(fd)
