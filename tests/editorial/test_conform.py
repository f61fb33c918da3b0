"""conform on timelines edited by code the way an editor would: reorder, delete, trim, swap a clip's media, add."""

from __future__ import annotations

import copy
from pathlib import Path

import opentimelineio as otio
import pytest

from orchestrator.editorial.conform import ADDED, MOVED, OTHER_TAKE, REMOVED, TRIMMED, conform, conform_to_json
from orchestrator.editorial.export import export_cut, read_timeline
from orchestrator.errors import EditorialError
from tests.editorial.conftest import Store

EDITABLE = ["otio", "xml", "fcpxml", "edl"]


def _write(timeline: otio.schema.Timeline, path: Path) -> None:
    options = {"rate": 24} if path.suffix == ".edl" else {}
    otio.adapters.write_to_file(timeline, str(path), **options)


def _edit(store: Store, tmp_path: Path, fmt: str) -> tuple[otio.schema.Timeline, otio.schema.Track]:
    export_cut(store.cut(), tmp_path / f"handed.{fmt}")
    timeline = read_timeline(tmp_path / f"handed.{fmt}")
    return timeline, timeline.video_tracks()[0]


@pytest.mark.parametrize("fmt", EDITABLE)
def test_an_untouched_timeline_conforms_clean(store: Store, tmp_path: Path, fmt: str) -> None:
    export_cut(store.cut(), tmp_path / f"cut.{fmt}")
    result = conform(store.cut(), tmp_path / f"cut.{fmt}", state=store.state())
    assert result.changes == () and result.unchanged == ("shot0", "shot1", "shot2")


@pytest.mark.parametrize("fmt", EDITABLE)
def test_reorder_delete_and_trim_are_reported(store: Store, tmp_path: Path, fmt: str) -> None:
    timeline, track = _edit(store, tmp_path, fmt)
    shot0 = track[0]
    track.remove(shot0)
    track.append(shot0)  # shot0 moved to the end: shot1, shot2, shot0
    track[0].source_range = otio.opentime.TimeRange(
        otio.opentime.RationalTime(12, 24), otio.opentime.RationalTime(60, 24)
    )  # shot1 trimmed to frames 12..72
    _write(timeline, tmp_path / f"edited.{fmt}")
    result = conform(store.cut(), tmp_path / f"edited.{fmt}", state=store.state())
    kinds = {(change.kind, change.shot_id) for change in result.changes}
    assert kinds == {(MOVED, "shot0"), (TRIMMED, "shot1")}
    trim = next(change for change in result.changes if change.kind == TRIMMED)
    assert (trim.was_in, trim.was_out, trim.in_frame, trim.out_frame) == (0, 120, 12, 72)
    moved = next(change for change in result.changes if change.kind == MOVED)
    assert (moved.spec_position, moved.edit_position) == (1, 3)


@pytest.mark.parametrize("fmt", EDITABLE)
def test_a_deleted_shot_is_removed(store: Store, tmp_path: Path, fmt: str) -> None:
    timeline, track = _edit(store, tmp_path, fmt)
    del track[1]
    _write(timeline, tmp_path / f"edited.{fmt}")
    result = conform(store.cut(), tmp_path / f"edited.{fmt}", state=store.state())
    assert [(change.kind, change.shot_id) for change in result.changes] == [(REMOVED, "shot1")]
    assert result.unchanged == ("shot0", "shot2")


@pytest.mark.parametrize("fmt", EDITABLE)
def test_a_swapped_take_and_an_outside_clip_are_reported(store: Store, tmp_path: Path, fmt: str) -> None:
    timeline, track = _edit(store, tmp_path, fmt)
    old_render = store.state().renders_of("shot1")[0]
    old_file = (store.out / old_render.outputs[0].path).absolute()
    track[1].media_reference = otio.schema.ExternalReference(
        target_url=old_file.as_uri(), available_range=track[1].media_reference.available_range
    )
    outside = copy.deepcopy(track[0])
    outside.name = "stock-sunset"
    outside.metadata.clear()
    outside.metadata["cmx_3600"] = {"reel": "STOCK1"}
    outside.media_reference = otio.schema.ExternalReference(
        target_url=(tmp_path / "stock.mov").as_uri(), available_range=outside.source_range
    )
    track.append(outside)
    _write(timeline, tmp_path / f"edited.{fmt}")
    result = conform(store.cut(), tmp_path / f"edited.{fmt}", state=store.state())
    by_kind = {change.kind: change for change in result.changes}
    assert set(by_kind) == {OTHER_TAKE, ADDED}
    assert by_kind[OTHER_TAKE].shot_id == "shot1" and by_kind[OTHER_TAKE].take == old_render.take
    assert by_kind[ADDED].clip == "stock-sunset" and by_kind[ADDED].shot_id is None
    data = conform_to_json(result)
    assert data["counts"][ADDED] == 1 and data["changed"] is True


def test_conform_changes_nothing_on_disk(store: Store, tmp_path: Path) -> None:
    export_cut(store.cut(), tmp_path / "cut.otio")
    before = sorted((p, p.stat().st_mtime_ns) for p in store.out.rglob("*"))
    conform(store.cut(), tmp_path / "cut.otio", state=store.state())
    assert sorted((p, p.stat().st_mtime_ns) for p in store.out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.otio"]


def test_an_unreadable_edit_is_one_error(store: Store, tmp_path: Path) -> None:
    (tmp_path / "broken.xml").write_text("<xmeml><not closed")
    with pytest.raises(EditorialError, match="not a readable xml timeline"):
        conform(store.cut(), tmp_path / "broken.xml")
