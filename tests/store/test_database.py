"""renders.db: every field kept, commits durable (synchronous and grouped), bytes per change flat, bad files refused."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from orchestrator.errors import (
    ForeignStoreError,
    ManifestLockedError,
    NewerStoreError,
    StoreCorruptError,
    StoreError,
)
from orchestrator.store import DATABASE_NAME, OutputFile, RenderStore, load_state, read_database
from orchestrator.store.manifest import DOWNLOADING, LOCK_NAME, QUEUED, SUBMITTED, SUCCEEDED, ManifestLock

from .conftest import request

FP = "f" * 64
ROOT = Path(__file__).resolve().parents[2]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_field_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = RenderStore.open(out, project="pilot", spec_path="/s/p.yaml", spec_sha256="c" * 64, provider="local")
    first = store.new_render("s01", fingerprint=FP, request=request())
    second = store.new_render("s01", fingerprint="e" * 64, request=request("new"), take=2, variant="wide", attempt=1)
    store.update_render(
        second.render_id,
        attempt=3,
        status=SUCCEEDED,
        external_task_id="pilot-s01-eeee-r3",
        task_id="861309198188019719",
        provider_status="succeed",
        outputs=[OutputFile(path="s01/eeee-t2-wide-r3.mp4", sha256="d" * 64, bytes=1234)],
        cost=2,
        charged=2.0,
        submitted_at="2026-12-01T20:00:01.000Z",
        finished_at="2026-12-01T20:01:00.000Z",
        error="an earlier download failed",
    )
    store.new_render("s02", fingerprint=FP, request=request("other"), current=False)
    expected = store.state()
    store.close(finished=False)

    stored = read_database(out / DATABASE_NAME)
    assert stored == expected
    assert stored.facts.spec_sha256 == "c" * 64 and stored.facts.salt == expected.facts.salt != ""
    assert stored.current("s01") == stored.render(second.render_id)
    assert stored.renders_of("s01")[0] == stored.render(first.render_id)
    assert stored.render(second.render_id).request == request("new")  # type: ignore[union-attr]
    assert stored.render(second.render_id).cost == 2.0  # type: ignore[union-attr]
    assert stored.current("s02") is None
    reopened = RenderStore.open(out, project="pilot")
    assert reopened.state().renders == expected.renders
    assert reopened.facts.salt == expected.facts.salt  # the salt is made once per folder, then kept
    reopened.close()


def test_every_render_is_kept_and_the_current_one_can_change(store: RenderStore) -> None:
    first = store.new_render("s01", fingerprint=FP, request=request())
    second = store.new_render("s01", fingerprint=FP, request=request(), take=2)
    assert store.current("s01") == second
    store.set_current("s01", first.render_id)
    assert store.current("s01") == first
    assert store.renders_of("s01") == (first, second)
    other = store.new_render("s02", fingerprint=FP, request=request())
    with pytest.raises(ValueError, match="s02"):
        store.set_current("s01", other.render_id)


def test_only_known_fields_and_states_can_change(store: RenderStore) -> None:
    render = store.new_render("s01", fingerprint=FP, request=request())
    with pytest.raises(TypeError, match="fingerprint"):
        store.update_render(render.render_id, fingerprint="0" * 64)
    with pytest.raises(TypeError, match="colour"):
        store.update_render(render.render_id, colour="red")
    with pytest.raises(ValueError, match="sleeping"):
        store.update_render(render.render_id, status="sleeping")
    with pytest.raises(TypeError, match="project"):
        store.set_facts(project="other")
    with pytest.raises(ValueError, match="never"):
        store.new_render("s01", fingerprint=FP, request={**request(), "api_key": "sk-1"})


def test_shots_keep_the_spec_order(store: RenderStore) -> None:
    for shot_id in ("a", "b", "c"):
        store.new_render(shot_id, fingerprint=FP, request=request())
    store.place_shots(["c", "new", "a"])
    assert store.shot_ids == ("c", "new", "a", "b")
    assert store.current("new") is None
    store.commit_now()
    assert read_database(store.directory / DATABASE_NAME).shot_ids == ("c", "new", "a", "b")


def test_the_database_is_in_wal_mode_and_commits_synchronously(store: RenderStore) -> None:
    with contextlib.closing(sqlite3.connect(store.directory / DATABASE_NAME)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync on every commit


def test_a_synchronous_commit_is_visible_to_other_readers_at_once(store: RenderStore) -> None:
    render = store.new_render("s01", fingerprint=FP, request=request())
    store.update_render(render.render_id, status=QUEUED, external_task_id="pilot-s01-ffff")
    database = store.directory / DATABASE_NAME
    assert read_database(database).renders == ()  # changed in memory only
    store.commit_now()
    assert read_database(database).current("s01") == store.render(render.render_id)
    assert load_state(store.directory).current("s01") == store.render(render.render_id)  # a reader, while locked


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from orchestrator.store import RenderStore
store = RenderStore.open(Path(sys.argv[1]), project="pilot")
render = store.new_render("s01", fingerprint="f" * 64, request={"prompt": "x"})
store.update_render(render.render_id, status="submitting", external_task_id="pilot-s01-ffff")
store.commit_now()
store.update_render(render.render_id, task_id="never-committed")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_synchronous_commit_survives_kill_9_and_the_next_run_opens_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out)], env=env, check=False)
    assert child.returncode == -signal.SIGKILL
    store = RenderStore.open(out, project="pilot")  # the dead run's lock is taken over
    current = store.current("s01")
    assert current is not None
    assert (current.status, current.external_task_id, current.task_id) == ("submitting", "pilot-s01-ffff", None)
    store.close()


@pytest.mark.anyio
async def test_group_commit_shares_one_transaction_and_returns_only_once_durable(
    store: RenderStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    renders = [store.new_render(f"s{i}", fingerprint=FP, request=request()) for i in range(5)]
    store.commit_now()
    slow_write = store._write_transaction

    def write_slowly(*args: object) -> None:
        time.sleep(0.05)  # in the worker thread: the others arrive while this write is under way
        slow_write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_write_transaction", write_slowly)
    before = store.commits
    seen: dict[int, str | None] = {}

    async def change(index: int) -> None:
        render_id = renders[index].render_id
        store.update_render(render_id, status=SUBMITTED, task_id=f"task-{index}")
        await store.commit()
        seen[index] = read_database(store.directory / DATABASE_NAME).render(render_id).task_id  # type: ignore[union-attr]

    async with anyio.create_task_group() as group:
        group.start_soon(change, 0)
        await anyio.sleep(0.01)  # the first write is in its thread now
        for index in range(1, 5):
            group.start_soon(change, index)
    assert seen == {i: f"task-{i}" for i in range(5)}  # each caller's change was committed when its commit returned
    assert store.commits - before == 2  # the first caller's write, then one shared by the four that waited


@pytest.mark.anyio
async def test_a_commit_with_nothing_new_writes_nothing(store: RenderStore) -> None:
    store.new_render("s01", fingerprint=FP, request=request())
    await store.commit()
    before = store.commits
    await store.commit()
    store.commit_now()
    assert store.commits == before
    assert not store.uncommitted


def test_a_failed_write_is_an_error_and_its_changes_go_in_the_next_one(
    store: RenderStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = store.new_render("s01", fingerprint=FP, request=request())

    def disk_full(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_write_transaction", disk_full)
    with pytest.raises(StoreError, match=r"renders\.db: cannot write the store \(database or disk is full\)"):
        store.commit_now()
    monkeypatch.undo()
    store.commit_now()
    assert read_database(store.directory / DATABASE_NAME).current("s01") == render


def _write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def _bytes_per_change(out: Path, renders: int, changes: int = 60) -> float:
    store = RenderStore.open(out, project="pilot")
    ids = [store.new_render(f"s{i:05}", fingerprint=FP, request=request(f"shot {i}")).render_id for i in range(renders)]
    store.close()  # checkpointed: the log holds nothing of the set-up
    store = RenderStore.open(out, project="pilot")
    statuses = (QUEUED, SUBMITTED, DOWNLOADING, SUCCEEDED)
    started = _write_bytes()
    for change in range(changes):
        render_id = ids[(change * 7919) % len(ids)]  # spread over the whole table
        store.update_render(render_id, status=statuses[change % 4], provider_status=f"step {change}")
        store.commit_now()
    written = _write_bytes() - started
    store.release()
    return written / changes


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts bytes through /proc/self/io (Linux)")
def test_bytes_written_per_change_do_not_grow_with_the_number_of_renders(tmp_path: Path) -> None:
    small = _bytes_per_change(tmp_path / "small", renders=40)
    large = _bytes_per_change(tmp_path / "large", renders=400)
    assert large < 3 * small, (small, large)
    assert large < 64 * 1024  # a few pages of the log, not a rewrite of anything


def test_a_second_run_on_the_folder_is_refused_until_the_first_closes(store: RenderStore) -> None:
    with pytest.raises(ManifestLockedError, match="another run is using this output folder"):
        RenderStore.open(store.directory, project="pilot")
    store.close()
    RenderStore.open(store.directory, project="pilot").close()


def _refused(out: Path, error: type[StoreError], match: str, *, by_readers: bool = True) -> None:
    database = out / DATABASE_NAME
    before = _digest(database)
    with pytest.raises(error, match=match) as caught:
        RenderStore.open(out, project="pilot")
    assert str(database) in str(caught.value) and "\n" not in str(caught.value)
    if by_readers:
        with pytest.raises(error):
            load_state(out)
    assert _digest(database) == before  # never overwritten, never "repaired"
    assert ManifestLock(out / LOCK_NAME).live_holder() is None  # and the lock was given back
    assert not Path(f"{database}-wal").exists()


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / DATABASE_NAME).write_bytes(b"these are not the renders you are looking for\n" * 100)
    _refused(out, StoreCorruptError, "not a readable database")


def test_an_empty_database_file_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / DATABASE_NAME).write_bytes(b"")
    _refused(out, StoreCorruptError, "an empty file")


def test_a_database_of_another_program_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with contextlib.closing(sqlite3.connect(out / DATABASE_NAME)) as other:
        other.execute("PRAGMA journal_mode = WAL")
        other.execute("CREATE TABLE renders (id INTEGER)")
    _refused(out, ForeignStoreError, "a database of another program")


def test_a_store_of_a_newer_orchestrator_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    RenderStore.open(out, project="pilot").close()
    with contextlib.closing(sqlite3.connect(out / DATABASE_NAME)) as raw:
        raw.execute("PRAGMA user_version = 99")
    _refused(out, NewerStoreError, "store version 99 was written by a newer orchestrator")


def test_a_damaged_store_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = RenderStore.open(out, project="pilot")
    for i in range(200):
        store.new_render(f"s{i}", fingerprint=FP, request=request(f"shot {i}"))
    store.close(write_snapshot=False)
    database = out / DATABASE_NAME
    data = bytearray(database.read_bytes())
    data[4096 * 3 : 4096 * 6] = b"\xff" * (4096 * 3)
    database.write_bytes(bytes(data))
    _refused(out, StoreCorruptError, "damaged|not a readable database")


def test_a_render_without_its_request_is_a_damaged_store(tmp_path: Path) -> None:
    # The renders are read joined with their requests: a missing row must not drop the render without a word.
    out = tmp_path / "out"
    store = RenderStore.open(out, project="pilot")
    render = store.new_render("s1", fingerprint=FP, request=request())
    store.close(write_snapshot=False)
    with contextlib.closing(sqlite3.connect(out / DATABASE_NAME)) as raw:
        raw.execute("DELETE FROM requests WHERE render_id = ?", (render.render_id,))
        raw.commit()
    _refused(out, StoreCorruptError, f"damaged .*render {render.render_id} has no request")


def test_another_projects_store_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    RenderStore.open(out, project="other").close()
    _refused(out, ForeignStoreError, "belongs to project 'other', not 'pilot'", by_readers=False)


def test_leftovers_of_a_killed_write_are_cleared_on_open(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    leftovers = [
        out / ".manifest.json.x1y2.tmp",
        out / f".{DATABASE_NAME}.new.4242",
        out / f".{DATABASE_NAME}.new.4242-journal",
    ]
    for leftover in leftovers:
        leftover.write_text("half")
    RenderStore.open(out, project="pilot").close()
    assert not any(leftover.exists() for leftover in leftovers)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "manifest.json", DATABASE_NAME]


def test_downloads_a_killed_run_left_half_way_are_cleared_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "s01" / "deep").mkdir(parents=True)
    parts = [out / "s01" / ".3f2a9c0d1b7e.mp4.0123456789ab.part", out / "s01" / "deep" / ".x.mp4.abcdefabcdef.part"]
    kept = [out / "s01" / "3f2a9c0d1b7e.mp4", out / "s01" / "notes.part", out / ".report.html.x1.tmp"]
    for path in parts + kept:
        path.write_bytes(b"half a video")  # what kill -9 in the middle of a download leaves
    store = RenderStore.open(out, project="pilot")
    assert not any(part.exists() for part in parts)
    assert all(path.read_bytes() == b"half a video" for path in kept)  # not ours to clear: left alone
    store.close()


def test_leftovers_are_not_cleared_while_another_run_holds_the_folder(store: RenderStore) -> None:
    part = store.directory / "s01" / ".v.mp4.0123456789ab.part"
    part.parent.mkdir()
    part.write_bytes(b"being written by the run that holds the folder")
    with pytest.raises(ManifestLockedError):
        RenderStore.open(store.directory, project="pilot")
    assert part.exists()
