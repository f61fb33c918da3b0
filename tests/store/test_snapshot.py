"""manifest.json v2: the same store always gives the same bytes, and reads back into the same value as the database."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.errors import NewerStoreError, StoreCorruptError
from orchestrator.store import (
    DATABASE_NAME,
    SNAPSHOT_VERSION,
    OutputFile,
    RenderStore,
    load_state,
    read_database,
    read_snapshot,
    snapshot_text,
)
from orchestrator.store.manifest import MANIFEST_NAME, SUCCEEDED
from orchestrator.store.snapshot import snapshot_json

from .conftest import request

FP = "f" * 64


def _fill(store: RenderStore) -> None:
    old = store.new_render("s02", fingerprint=FP, request=request("old"))
    store.update_render(
        old.render_id, status=SUCCEEDED, attempt=1, charged=2.0, outputs=[OutputFile("s02/a.mp4", "d" * 64, 9)]
    )
    store.new_render("s02", fingerprint="e" * 64, request=request("new"), take=2, variant="close-up")
    store.new_render("s01", fingerprint=FP, request=request())
    store.place_shots(["s01", "s02"])


def test_the_snapshot_reads_back_into_the_value_the_database_gives(store: RenderStore) -> None:
    _fill(store)
    store.close()
    from_database = read_database(store.directory / DATABASE_NAME)
    from_snapshot = read_snapshot(store.directory / MANIFEST_NAME)
    assert from_snapshot == from_database
    assert from_snapshot.facts.finished_at is not None


def test_the_snapshot_is_deterministic_and_marks_the_current_render(store: RenderStore) -> None:
    _fill(store)
    text = snapshot_text(store.state())
    assert snapshot_text(store.state()) == text
    assert snapshot_text(read_snapshot(store.write_snapshot())) == text  # written, read, written again: same bytes
    data = json.loads(text)
    assert data["manifest_version"] == SNAPSHOT_VERSION
    assert list(data["shots"]) == ["s01", "s02"]  # spec order
    renders = data["shots"]["s02"]["renders"]
    assert [r["current"] for r in renders] == [False, True]
    assert (renders[1]["take"], renders[1]["variant"]) == (2, "close-up")
    assert list(renders[0]["request"]) == sorted(renders[0]["request"])


def test_the_snapshot_written_shot_by_shot_is_the_json_of_the_whole(store: RenderStore) -> None:
    # Written a shot at a time (a big store's snapshot never whole in memory), yet byte for byte the one document,
    # with ids that JSON must escape and renders nested at every depth.
    assert snapshot_text(store.state()) == json.dumps(snapshot_json(store.state()), indent=2) + "\n"  # no shots
    _fill(store)
    store.new_render('s "quoted"\n', fingerprint=FP, request=request("café"))
    store.place_shots(["s01", "s02", 's "quoted"\n'])
    whole = json.dumps(snapshot_json(store.state()), indent=2, ensure_ascii=False) + "\n"
    assert snapshot_text(store.state()) == whole
    assert (store.write_snapshot()).read_text(encoding="utf-8") == whole


def test_a_snapshot_copied_elsewhere_stands_for_its_folder(store: RenderStore, tmp_path: Path) -> None:
    _fill(store)
    store.close()
    copy = tmp_path / "elsewhere" / "pilot-manifest.json"
    copy.parent.mkdir()
    shutil.copy(store.directory / MANIFEST_NAME, copy)
    assert load_state(copy) == load_state(store.directory) == load_state(store.directory / DATABASE_NAME)


def test_a_folder_whose_database_was_lost_is_restored_from_its_snapshot(store: RenderStore) -> None:
    _fill(store)
    store.close()
    kept = read_snapshot(store.directory / MANIFEST_NAME)
    (store.directory / DATABASE_NAME).unlink()
    reopened = RenderStore.open(store.directory, project="pilot")
    assert reopened.state().renders == kept.renders
    assert reopened.facts.salt == kept.facts.salt  # so a resume sends the very same external ids
    reopened.close()


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda d: d.update(manifest_version=3), NewerStoreError, "manifest version 3 was written by a newer"),
        (lambda d: d.update(store_version=7), NewerStoreError, "store version 7 was written by a newer"),
        (
            lambda d: d["shots"]["s01"]["renders"][0].update(status="asleep"),
            StoreCorruptError,
            "shots/s01/renders/0/status",
        ),
        (lambda d: d["shots"]["s02"]["renders"][0].update(current=True), StoreCorruptError, "2 current renders"),
        (lambda d: d.pop("salt"), StoreCorruptError, "'salt' is a required property"),
    ],
)
def test_a_bad_snapshot_is_one_line_naming_the_file_and_is_left_untouched(
    store: RenderStore, change: object, error: type[Exception], match: str
) -> None:
    _fill(store)
    path = store.write_snapshot()
    data = json.loads(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    with pytest.raises(error, match=match) as caught:
        read_snapshot(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert path.read_bytes() == before


def test_a_snapshot_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST_NAME
    path.write_text('{"manifest_version": 2, ')
    with pytest.raises(StoreCorruptError, match="not JSON"):
        load_state(path)
