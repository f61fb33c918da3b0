"""A folder with a version-1 manifest (the committed fixture, written by the code of 2026-12-01) is migrated once,
losing nothing, and the old file is kept beside."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.errors import ForeignStoreError, ManifestError, StoreError
from orchestrator.store import DATABASE_NAME, V1_KEPT_NAME, RenderStore, load_state, state_from_v1
from orchestrator.store.manifest import (
    LOCK_NAME,
    MANIFEST_NAME,
    PENDING_REMOTE,
    SUCCEEDED,
    UNCONFIRMED,
    Manifest,
    Render,
    ShotRecord,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "manifest-v1" / "manifest.json"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(FIXTURE, out / MANIFEST_NAME)
    return out


def test_every_record_becomes_the_current_render_of_its_shot(folder: Path) -> None:
    v1 = json.loads(FIXTURE.read_text())
    store = RenderStore.open(folder, project="fixture")
    assert store.shot_ids == tuple(v1["shots"])
    for shot_id, record in v1["shots"].items():
        current = store.current(shot_id)
        assert current is not None
        assert current.status == record["status"]
        assert current.fingerprint == record["fingerprint"]
        assert current.external_task_id == record["external_task_id"]
        assert current.task_id == record["task_id"]
        assert current.attempt == record["attempts"]
        assert current.error == record["error"]
        assert current.request == record["request"]
        assert [(o.path, o.sha256, o.bytes) for o in current.outputs] == [
            (o["path"], o["sha256"], o["bytes"]) for o in record["outputs"]
        ]
        assert (current.cost, current.charged, current.provider_status) == (
            record["cost"],
            record["charged"],
            record["provider_status"],
        )
        assert (current.created_at, current.updated_at, current.submitted_at, current.finished_at) == (
            record["created_at"],
            record["updated_at"],
            record["submitted_at"],
            record["finished_at"],
        )
        assert (current.take, current.variant) == (1, None)
    assert {store.current(s).status for s in store.shot_ids} >= {"succeeded", "failed", "unconfirmed", "queued"}  # type: ignore[union-attr]
    store.close()


def test_the_history_becomes_older_renders_and_the_folder_facts_are_kept(folder: Path) -> None:
    store = RenderStore.open(folder, project="fixture")
    older, current = store.renders_of("s01-done")
    assert older.render_id < current.render_id
    assert (older.task_id, older.external_task_id) == ("861309198188019000", "fixture-s01-done-000000000000-k3x9q2")
    assert (older.status, older.attempt, older.cost, older.charged) == (SUCCEEDED, 1, 2.0, 2.0)
    assert older.outputs[0].path == "s01-done/000000000000.mp4" and older.outputs[0].bytes == 999
    assert older.request["prompt"] == "an old pan"
    assert older.finished_at == "2026-12-01T19:10:00.000Z"
    assert store.current("s02-failed").charged == 0.0  # type: ignore[union-attr]
    facts = store.facts
    assert (facts.project, facts.salt, facts.provider, facts.tool_version) == ("fixture", "k3x9q2", "cometapi", "0.1.0")
    assert (facts.spec_path, facts.spec_sha256[:4], facts.spec_version) == ("/studio/fixture/project.yaml", "cccc", 1)
    store.close()


def test_the_old_file_is_kept_beside_and_the_migration_runs_once(folder: Path) -> None:
    store = RenderStore.open(folder, project="fixture")
    assert (folder / V1_KEPT_NAME).read_bytes() == FIXTURE.read_bytes()
    assert json.loads((folder / MANIFEST_NAME).read_text())["manifest_version"] == 2  # now the store's snapshot
    first = store.current("s06-pending")
    assert first is not None
    store.update_render(first.render_id, status="queued", external_task_id="fixture-s06-pending-666666666666-k3x9q2")
    renders = store.state().renders
    store.close()
    again = RenderStore.open(folder, project="fixture")
    assert again.state().renders == renders  # the database is the truth now; nothing was migrated a second time
    again.close()
    assert (folder / V1_KEPT_NAME).read_bytes() == FIXTURE.read_bytes()


def test_readers_see_a_version_1_folder_as_its_migration_would_make_it(folder: Path) -> None:
    before = load_state(folder)  # read only: nothing written
    assert sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME) == [MANIFEST_NAME]
    store = RenderStore.open(folder, project="fixture")
    assert store.state().renders == before.renders
    store.close()


def test_a_migration_stopped_halfway_is_taken_up_again(folder: Path) -> None:
    shutil.copy(FIXTURE, folder / V1_KEPT_NAME)  # kept, then the run was killed before the database was in place
    (folder / f".{DATABASE_NAME}.new.4242").write_bytes(b"half a database")
    store = RenderStore.open(folder, project="fixture")
    assert len(store.state().renders) == 8
    store.close()


def test_another_file_where_the_old_one_must_be_kept_stops_the_migration(folder: Path) -> None:
    (folder / V1_KEPT_NAME).write_text("someone's notes\n")
    with pytest.raises(StoreError, match=r"manifest\.v1\.json: already exists and differs"):
        RenderStore.open(folder, project="fixture")
    assert not (folder / DATABASE_NAME).exists()
    assert (folder / MANIFEST_NAME).read_bytes() == FIXTURE.read_bytes()
    assert (folder / V1_KEPT_NAME).read_text() == "someone's notes\n"


def test_another_projects_manifest_is_not_migrated(folder: Path) -> None:
    with pytest.raises(ForeignStoreError, match="belongs to project 'fixture', not 'pilot'"):
        RenderStore.open(folder, project="pilot")
    assert sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME) == [MANIFEST_NAME]


def test_a_corrupt_version_1_manifest_is_not_migrated(folder: Path) -> None:
    data = json.loads(FIXTURE.read_text())
    data["shots"]["s01-done"]["attempts"] = "two"
    (folder / MANIFEST_NAME).write_text(json.dumps(data))
    before = (folder / MANIFEST_NAME).read_bytes()
    with pytest.raises(ManifestError, match="manifest is corrupt"):
        RenderStore.open(folder, project="fixture")
    assert sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME) == [MANIFEST_NAME]
    assert (folder / MANIFEST_NAME).read_bytes() == before


def test_history_entries_get_the_state_that_kept_them() -> None:
    # Version 1 kept a render in history when it had files, a task not seen through, or a create never answered.
    history = [
        Render(fingerprint="a", task_id=None, external_task_id="p-s-a-salt", outputs=[], request={}),
        Render(fingerprint="b", task_id="t2", external_task_id="p-s-b-salt-r3", outputs=[], request={}),
    ]
    state = state_from_v1(Manifest(project="p", shots={"s": ShotRecord(fingerprint="c", history=history)}))
    unanswered, in_flight, current = state.renders
    assert (unanswered.status, unanswered.attempt) == (UNCONFIRMED, 1)
    assert (in_flight.status, in_flight.attempt) == (PENDING_REMOTE, 3)
    assert state.current("s") == current
