"""The run's records on the render store: group commit, new renders, corrupt and foreign manifests (the lock:
``test_manifest_lock.py``)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import anyio
import pytest

from orchestrator.errors import ManifestError
from orchestrator.store.manifest import (
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


def test_a_version_1_file_is_written_atomically_without_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    save_manifest(Manifest(project="p", shots={"a": ShotRecord(status="pending")}), path)
    save_manifest(Manifest(project="p", shots={"a": ShotRecord(status=SUCCEEDED)}), path)
    assert load_manifest(path).shots["a"].status == SUCCEEDED
    assert json.loads(path.read_text())["manifest_version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no .bak, no temp file


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
async def test_commits_go_to_the_store_and_manifest_json_is_only_written_at_close(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    save_manifest(Manifest(project="p", shots={"old": ShotRecord(status=SUCCEEDED, task_id="1")}), path)
    store = ManifestStore.open(path, project="p")  # migrates the version-1 folder
    snapshot = path.read_bytes()
    store.update("a", status="submitting", external_task_id="p-a-ü", attempts=1)
    store.put("b", ShotRecord(status="pending", attempts=1))
    await store.commit()
    assert path.read_bytes() == snapshot  # a commit writes the database, never the snapshot
    on_disk = load_manifest(path)  # reads renders.db beside it
    assert on_disk.shots["a"].external_task_id == "p-a-ü" and on_disk.shots["b"].status == "pending"
    store.update("a", status="submitted", task_id="42")
    await store.commit()
    assert load_manifest(path).shots["a"].task_id == "42"
    store.close()
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["manifest_version"] == 2 and list(written["shots"]) == ["old", "a", "b"]
    assert written["shots"]["a"]["renders"][0]["task_id"] == "42"
    assert (tmp_path / "manifest.v1.json").exists()
    assert not _leftovers(tmp_path)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".bak" in p.name or p.name.endswith(".tmp")]


@pytest.mark.anyio
async def test_a_new_render_keeps_the_previous_one_as_a_row(tmp_path: Path) -> None:
    from orchestrator.store import load_state

    store = ManifestStore.open(tmp_path / "manifest.json", project="p")
    store.update("a", status=SUCCEEDED, fingerprint="f1", attempts=1, task_id="9", outputs=[Output("a/1.mp4", "h", 1)])
    store.put("a", start_render(store.record("a"), fingerprint="f2", request={"prompt": "two"}))
    store.update("a", status="failed", error="refused")
    store.put("a", start_render(store.record("a"), fingerprint="f3", request={"prompt": "three"}))
    await store.commit()
    renders = load_state(tmp_path).renders_of("a")
    assert [(r.fingerprint, r.status) for r in renders] == [("f1", SUCCEEDED), ("f2", "failed"), ("f3", "pending")]
    assert load_state(tmp_path).current("a") == renders[-1]
    # The read model lists what a version-1 history kept: the render with files, not the failed one.
    assert [h.fingerprint for h in load_manifest(tmp_path).shots["a"].history] == ["f1"]
    store.close()


def test_corrupt_manifest_is_an_error_naming_the_file_and_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"manifest_version": 1, "shots": {')
    with pytest.raises(ManifestError, match=r"manifest\.json.*corrupt"):
        ManifestStore.open(path, project="p")
    assert path.read_text() == '{"manifest_version": 1, "shots": {'
    assert ManifestLock(tmp_path / LOCK_NAME).live_holder() is None  # the lock is released on the way out


def test_foreign_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    save_manifest(Manifest(project="other"), path)
    before = path.read_text()
    with pytest.raises(ManifestError, match="belongs to project 'other'"):
        ManifestStore.open(path, project="mine")
    assert path.read_text() == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"hello": 1}')
    with pytest.raises(ManifestError, match=r"manifest\.json: manifest is corrupt"):
        ManifestStore.open(other / "manifest.json", project="mine")
    assert (other / "manifest.json").read_text() == '{"hello": 1}'


def test_unknown_field_update_is_a_bug_not_silently_stored(tmp_path: Path) -> None:
    store = ManifestStore.open(tmp_path / "manifest.json", project="p")
    with pytest.raises(AttributeError):
        store.update("a", colour="red")
    store.close()


def test_atomic_writes_get_the_usual_file_mode_not_a_private_one(tmp_path: Path) -> None:

    from orchestrator.store.manifest import write_atomic

    umask = os.umask(0)  # read the umask (the only way), then put it back
    os.umask(umask)
    target = tmp_path / "report.html"
    write_atomic(target, "<p>hi</p>")
    assert target.read_text() == "<p>hi</p>"
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_epoch_seconds_reads_back_now_iso() -> None:
    from orchestrator.store.manifest import epoch_seconds, now_iso

    assert abs((epoch_seconds(now_iso()) or 0) - time.time()) < 5
    assert epoch_seconds("2026-11-25T15:00:00.000Z") == 1795618800.0
    assert epoch_seconds(None) is None and epoch_seconds("yesterday") is None
