"""Every written file is read back with OpenTimelineIO and compared clip by clip; the EDL with pycmx too, and the
FCP7 XML with the standard library."""

from __future__ import annotations

import io
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import opentimelineio as otio
import pycmx
import pytest

import orchestrator
from orchestrator.editorial.export import FORMATS, export_cut, format_for, read_timeline
from orchestrator.editorial.since import changed_shots, earlier_state
from orchestrator.errors import EditorialError
from tests.editorial.conftest import MEDIA_FRAMES_AT_24, Store

# Markers each format brings back (name, colour); None: the format drops them.
MARKERS_KEPT = {
    "otio": ("pending-review", "YELLOW"),
    "xml": ("pending-review", None),  # FCP7 markers have no colour
    "fcpxml": ("pending-review", None),  # nor do the adapter's FCPXML markers
    "edl": ("PENDING-REVIEW", "YELLOW"),  # a LOC comment: upper case
    "aaf": None,  # the AAF writer drops markers
}


def _clips(path: Path) -> list[otio.schema.Clip]:
    timeline = read_timeline(path)  # held while its track is read: OTIO frees children with their timeline
    return [item for item in timeline.video_tracks()[0] if item.schema_name() == "Clip"]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_reads_back_clip_by_clip(store: Store, tmp_path: Path, fmt: str) -> None:
    cut = store.cut()
    dest = tmp_path / f"cut.{fmt}"
    result = export_cut(cut, dest)
    assert result.format == fmt and result.clips == 3 and result.frames == 3 * MEDIA_FRAMES_AT_24
    clips = _clips(dest)
    assert [clip.name for clip in clips] == ["shot0", "shot1", "shot2"]
    assert [round(clip.duration().rescaled_to(24).value) for clip in clips] == [MEDIA_FRAMES_AT_24] * 3
    expected_urls = [cut.shots[0].media.as_uri(), cut.shots[1].media.as_uri()]  # type: ignore[union-attr]
    expected_urls.append((store.out / "editorial" / "shot2.png").as_uri())
    assert [clip.media_reference.target_url for clip in clips] == expected_urls
    kept = MARKERS_KEPT[fmt]
    for clip in clips:
        if kept is None:
            assert not clip.markers
        else:
            assert clip.markers[0].name == kept[0]
            if kept[1]:
                assert clip.markers[0].color == kept[1]


def test_the_otio_keeps_the_metadata_and_starts_at_one_hour(store: Store, tmp_path: Path) -> None:
    export_cut(store.cut(), tmp_path / "cut.otio")
    timeline = otio.adapters.read_from_file(str(tmp_path / "cut.otio"))
    assert timeline.global_start_time == otio.opentime.RationalTime(86400, 24)
    meta = [clip.metadata["orchestrator"] for clip in timeline.find_clips()]
    newest = store.state().renders_of("shot1")[-1]
    assert meta[1]["fingerprint"] == newest.fingerprint and meta[1]["task_id"] == newest.task_id
    assert meta[1]["prompt"] == "pan 1, slower" and meta[1]["take"] == 1 and meta[1]["cost"] == newest.cost
    assert meta[2]["held_board"] is True and meta[0]["stand_in"] is True


def test_the_held_board_is_a_png_inside_the_output_folder(store: Store, tmp_path: Path) -> None:
    result = export_cut(store.cut(), tmp_path / "cut.xml")
    assert result.stills == (store.out / "editorial" / "shot2.png",)
    from PIL import Image

    with Image.open(result.stills[0]) as still:
        assert still.format == "PNG" and still.size == (1280, 720)
        # the shot id is burnt in: white text on the dark band at the bottom
        band = still.crop((0, 660, 400, 720)).convert("L")
        assert band.getextrema()[1] > 200


def test_the_edl_has_unique_short_reels_and_records_from_one_hour(store: Store, tmp_path: Path) -> None:
    export_cut(store.cut(), tmp_path / "cut.edl")
    edl = pycmx.parse_cmx3600(io.StringIO((tmp_path / "cut.edl").read_text()))
    edits = [edit for event in edl.events for edit in event.edits]
    assert [edit.clip_name for edit in edits] == ["shot0", "shot1", "shot2"]
    reels = [edit.source for edit in edits]
    assert len(set(reels)) == 3 and all(len(reel) <= 8 for reel in reels)
    assert [edit.record_in for edit in edits] == ["01:00:00:00", "01:00:05:00", "01:00:10:00"]
    assert edits[-1].record_out == "01:00:15:00"


def test_the_fcp7_xml_has_absolute_pathurls(store: Store, tmp_path: Path) -> None:
    cut = store.cut()
    export_cut(cut, tmp_path / "cut.xml")
    urls = [element.text for element in ET.parse(tmp_path / "cut.xml").iter("pathurl")]
    assert urls[:2] == [cut.shots[0].media.as_uri(), cut.shots[1].media.as_uri()]  # type: ignore[union-attr]
    assert all(url and url.startswith("file:///") for url in urls)
    names = [element.findtext("name") for element in ET.parse(tmp_path / "cut.xml").iter("clipitem")]
    assert names == ["shot0", "shot1", "shot2"]


def test_the_rate_changes_the_frames_not_the_seconds(store: Store, tmp_path: Path) -> None:
    result = export_cut(store.cut(), tmp_path / "cut.otio", rate=25)
    assert result.frames == 3 * 125
    assert read_timeline(tmp_path / "cut.otio").global_start_time == otio.opentime.RationalTime(90000, 25)


@pytest.mark.parametrize("since", ["snapshot", "git"])
def test_changed_since_keeps_the_new_select_and_gaps_for_the_rest(store: Store, tmp_path: Path, since: str) -> None:
    project = orchestrator.load_project(store.spec)
    cut = store.cut()
    ref = str(store.before) if since == "snapshot" else "first"
    only = changed_shots(project, cut, earlier_state(ref, store.out))
    assert only == {"shot1"}
    result = export_cut(cut, tmp_path / "new.otio", only=only)
    timeline = read_timeline(tmp_path / "new.otio")
    items = list(timeline.video_tracks()[0])
    assert [item.schema_name() for item in items] == ["Gap", "Clip", "Gap"]
    assert items[1].name == "shot1" and result.frames == 3 * MEDIA_FRAMES_AT_24


def test_changed_since_a_revision_that_is_not_there_is_one_clear_error(store: Store) -> None:
    with pytest.raises(EditorialError, match="neither a snapshot file nor a revision"):
        earlier_state("no-such-rev", store.out)


def test_the_format_comes_from_the_extension_or_is_refused() -> None:
    assert format_for(Path("a.fcpxml"), None).name == "fcpxml"
    assert format_for(Path("a.txt"), "edl").name == "edl"
    with pytest.raises(EditorialError, match="cannot tell the format"):
        format_for(Path("a.mov"), None)


def test_nothing_is_written_beside_a_refused_file(store: Store, tmp_path: Path) -> None:
    shutil.rmtree(store.out / "editorial", ignore_errors=True)
    with pytest.raises(EditorialError):
        export_cut(store.cut(), tmp_path / "cut.mov")
    assert list(tmp_path.iterdir()) == []
