"""The manifest store: atomic writes with a backup, group commit, the lock, corrupt and foreign manifests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import anyio
import pytest

from orchestrator.errors import ManifestError, ManifestLockedError
from orchestrator.manifest import (
    LOCK_NAME,
    SUCCEEDED,
    Manifest,
    ManifestLock,
    ManifestStore,
    Output,
    Render,
    ShotRecord,
    load_manifest,
    save_manifest,
    start_render,
)


def test_record_json_matches_asdict_and_round_trips() -> None:
    record = ShotRecord(
        status=SUCCEEDED,
        fingerprint="f" * 64,
        request={"prompt": "p", "images": ["sha256:a"]},
        outputs=[Output("a/x.mp4", "s" * 64, 10)],
        history=[Render("e" * 64, "1", "ext", [Output("a/y.mp4", "t" * 64, 3)], {"prompt": "old"})],
    )
    assert record.to_json() == asdict(record)
    assert ShotRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_save_keeps_the_previous_file_as_backup(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    save_manifest(Manifest(project="p", shots={"a": ShotRecord(status="pending")}), path)
    save_manifest(Manifest(project="p", shots={"a": ShotRecord(status=SUCCEEDED)}), path)
    assert load_manifest(path).shots["a"].status == SUCCEEDED
    backup = json.loads((tmp_path / "manifest.json.bak").read_text())
    assert backup["shots"]["a"]["status"] == "pending"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "manifest.json.bak"]


def test_start_render_archives_the_previous_render_and_counts_attempts() -> None:
    old = ShotRecord(status=SUCCEEDED, fingerprint="old", attempts=2, task_id="9", outputs=[Output("a/o.mp4", "h", 1)])
    changed = start_render(old, fingerprint="new", request={"prompt": "n"})
    assert changed.attempts == 0 and changed.status == "pending" and changed.outputs == []
    assert [(h.fingerprint, h.task_id) for h in changed.history] == [("old", "9")]
    again = start_render(old, fingerprint="old", request={})
    assert again.attempts == 2  # the scheduler adds one: a new external id


@pytest.mark.anyio
async def test_group_commit_makes_changes_durable_with_fewer_writes(tmp_path: Path) -> None:
    store = ManifestStore.open(tmp_path / "manifest.json", project="p")

    async def change(i: int) -> None:
        store.update(f"s{i}", status="submitting", attempts=1)
        await store.commit()
        # Once commit returns, this shot's change is on disk.
        assert load_manifest(tmp_path / "manifest.json").shots[f"s{i}"].status == "submitting"

    async with anyio.create_task_group() as group:
        for i in range(30):
            group.start_soon(change, i)
    assert 1 <= store.writes < 30
    store.close()
    manifest = load_manifest(tmp_path / "manifest.json")
    assert len(manifest.shots) == 30 and manifest.finished_at is not None


@pytest.mark.anyio
async def test_a_commit_writes_exactly_the_manifest_encoding_only_what_changed(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    save_manifest(Manifest(project="p", shots={"old": ShotRecord(status=SUCCEEDED, task_id="1")}), path)
    store = ManifestStore.open(path, project="p")

    def on_disk() -> object:
        return json.loads(path.read_text(encoding="utf-8"))

    store.update("a", status="submitting", external_task_id="p-a-ü")
    store.put("b", ShotRecord(status="pending", attempts=1))
    await store.commit()
    assert on_disk() == store.manifest.to_json()
    encoded = dict(store._encoded)
    store.update("a", status="submitted", task_id="42")
    await store.commit()
    assert on_disk() == store.manifest.to_json()
    assert store._encoded["b"] is encoded["b"] and store._encoded["old"] is encoded["old"]  # not encoded again
    assert store._encoded["a"] != encoded["a"]
    store.close()
    assert load_manifest(path).shots["a"].task_id == "42"


def test_lock_stops_a_second_run_and_is_released(tmp_path: Path) -> None:
    store = ManifestStore.open(tmp_path / "manifest.json", project="p")
    with pytest.raises(ManifestLockedError, match=f"pid {os.getpid()}"):
        ManifestStore.open(tmp_path / "manifest.json", project="p")
    store.close()
    assert not (tmp_path / LOCK_NAME).exists()
    ManifestStore.open(tmp_path / "manifest.json", project="p").close()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    info = {"pid": int(dead.stdout), "host": socket.gethostname(), "started_at": "2020-01-01T00:00:00Z"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(info))
    store = ManifestStore.open(tmp_path / "manifest.json", project="p")
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    store.close()


def test_half_written_lock_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("")
    lock = ManifestLock(tmp_path / LOCK_NAME)
    lock.acquire()
    assert lock.held
    lock.release()


def test_corrupt_manifest_is_an_error_naming_the_file_and_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"manifest_version": 1, "shots": {')
    with pytest.raises(ManifestError, match=r"manifest\.json.*corrupt"):
        ManifestStore.open(path, project="p")
    assert path.read_text() == '{"manifest_version": 1, "shots": {'
    assert not (tmp_path / LOCK_NAME).exists()  # the lock is released on the way out


def test_foreign_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    save_manifest(Manifest(project="other"), path)
    before = path.read_text()
    with pytest.raises(ManifestError, match="belongs to project 'other'"):
        ManifestStore.open(path, project="mine")
    assert path.read_text() == before
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ManifestError, match="not an orchestrator manifest"):
        ManifestStore.open(tmp_path / "x.json", project="mine")


def test_unknown_field_update_is_a_bug_not_silently_stored(tmp_path: Path) -> None:
    store = ManifestStore.open(tmp_path / "manifest.json", project="p")
    with pytest.raises(AttributeError):
        store.update("a", colour="red")
    store.close()


def test_atomic_writes_get_the_usual_file_mode_not_a_private_one(tmp_path: Path) -> None:
    import os

    from orchestrator.manifest import write_atomic

    umask = os.umask(0)  # read the umask (the only way), then put it back
    os.umask(umask)
    target = tmp_path / "report.html"
    write_atomic(target, "<p>hi</p>")
    assert target.read_text() == "<p>hi</p>"
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_epoch_seconds_reads_back_now_iso() -> None:
    from orchestrator.manifest import epoch_seconds, now_iso

    assert abs((epoch_seconds(now_iso()) or 0) - time.time()) < 5
    assert epoch_seconds("2026-11-25T15:00:00.000Z") == 1795618800.0
    assert epoch_seconds(None) is None and epoch_seconds("yesterday") is None
