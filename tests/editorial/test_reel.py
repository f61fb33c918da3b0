"""The reel, checked with PyAV: its length is the slate's plus the timeline's, to the frame; slate and burn-in show."""

from __future__ import annotations

import datetime
from pathlib import Path

import av
import numpy as np

from orchestrator.editorial.export import export_cut
from orchestrator.editorial.reel import render_reel, timecode
from tests.editorial.conftest import Store

RATE = 8.0  # a short reel: 2 s slate + 3 x 5 s at 8 fps = 136 frames


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_the_reel_is_the_slate_plus_the_timeline_to_the_frame(store: Store, tmp_path: Path) -> None:
    cut = store.cut()
    timeline = export_cut(cut, tmp_path / "cut.otio", rate=RATE)
    seen: list[tuple[int, int]] = []
    result = render_reel(
        cut,
        tmp_path / "reel.mp4",
        rate=RATE,
        height=144,
        progress=lambda d, t: seen.append((d, t)),
        today=datetime.date(2026, 1, 2),
    )
    frames = _frames(tmp_path / "reel.mp4")
    assert result.slate_frames == 16 and len(frames) == result.frames == 16 + timeline.frames
    with av.open(str(tmp_path / "reel.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 8
        assert (stream.width, stream.height) == (256, 144)
    assert seen[-1] == (result.frames, result.frames) and len(seen) == result.frames


def test_slate_and_burn_in_are_on_the_frames(store: Store, tmp_path: Path) -> None:
    result = render_reel(store.cut(), tmp_path / "reel.mp4", rate=RATE, height=288)
    frames = _frames(tmp_path / "reel.mp4")
    slate, first_shot, held = frames[0], frames[result.slate_frames + 4], frames[-1]
    assert (slate > 200).all(axis=2).sum() > 50  # white slate text
    assert not np.array_equal(slate, first_shot)
    # The boards are blue-grey with no white: white pixels in the top-left and bottom-right corners are the burn-in.
    for frame in (first_shot, held):
        assert (frame[:40, :240] > 200).all(axis=2).sum() > 10
        assert (frame[-40:, -160:] > 200).all(axis=2).sum() > 10


def test_timecodes_are_hours_minutes_seconds_frames() -> None:
    assert timecode(86400, 24) == "01:00:00:00"
    assert timecode(86400 + 24 * 61 + 5, 24) == "01:01:01:05"
