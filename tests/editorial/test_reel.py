"""The reel, checked with PyAV: its length is the slate's plus the timeline's, to the frame; slate and burn-in show."""

from __future__ import annotations

import datetime
import io
import threading
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from itertools import cycle, islice
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from orchestrator.editorial.cut import Cut
from orchestrator.editorial.export import export_cut
from orchestrator.editorial.media import MediaFacts, probe
from orchestrator.editorial.reel import render_reel, timecode
from orchestrator.errors import EditorialError
from orchestrator.providers.local.animatic import render_animatic
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


def _peak_traced_bytes(cut: Cut, dest: Path) -> int:
    tracemalloc.start()
    try:
        render_reel(cut, dest, rate=RATE, height=144, today=datetime.date(2026, 1, 2))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_with_the_length_of_the_reel(store: Store, tmp_path: Path) -> None:
    cut = store.cut()  # two videos and a held board, repeated: 4 shots (176 frames), then 16 (656 frames)
    short, long = (replace(cut, shots=tuple(islice(cycle(cut.shots), count))) for count in (4, 16))
    _peak_traced_bytes(short, tmp_path / "warm.mp4")  # fonts, codecs and caches loaded once, outside the measure
    short_peak = _peak_traced_bytes(short, tmp_path / "short.mp4")
    long_peak = _peak_traced_bytes(long, tmp_path / "long.mp4")
    # Keeping the frames would add 480 x 55 KB (26 MB); the cut's own records for 12 more shots are a few KB.
    assert long_peak < short_peak * 1.1 + 256 * 1024, (short_peak, long_peak)


def test_an_unreadable_video_is_one_clear_error_and_leaves_nothing(store: Store, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 100)
    cut = store.cut()
    cut = replace(cut, shots=(cut.shots[0], replace(cut.shots[1], media=broken)))
    threads = threading.active_count()
    with pytest.raises(EditorialError, match=r"broken\.mp4: cannot decode"):
        render_reel(cut, tmp_path / "reel.mp4", rate=RATE, height=144, facts=_facts_of_first_video(cut))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.mp4"]
    assert threading.active_count() == threads  # the decoding thread is gone too


def _facts_of_first_video(cut: Cut) -> Callable[[Path], MediaFacts]:
    # The probe would refuse the broken file before the reel starts: say it is like the good one, so that the
    # error comes from decoding, on the reel's decoding thread.
    first = cut.shots[0].media
    assert first is not None
    facts = probe(first)
    return lambda path: facts


def test_a_reel_stopped_midway_stops_its_decoding_thread(store: Store, tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done == 40:  # past the slate, in the first shot: the decoding thread is running
            raise KeyboardInterrupt

    threads = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        render_reel(store.cut(), tmp_path / "reel.mp4", rate=RATE, height=144, progress=interrupt)
    assert threading.active_count() == threads and list(tmp_path.iterdir()) == []


def test_a_video_of_another_shape_is_centred_on_black(store: Store, tmp_path: Path) -> None:
    tall = tmp_path / "tall.mp4"  # 9:16 in a 16:9 reel: 144 high, 81 wide (odd), pillarboxed
    board = io.BytesIO()
    Image.new("RGB", (36, 64), (250, 250, 250)).save(board, format="PNG")
    render_animatic([board.getvalue()], duration=2, aspect_ratio="9:16", dest=tall, cheap=True)
    cut = store.cut()
    cut = replace(cut, shots=(cut.shots[0], replace(cut.shots[0], shot_id="tall", media=tall)))
    result = render_reel(cut, tmp_path / "reel.mp4", rate=RATE, height=144)
    frame = _frames(tmp_path / "reel.mp4")[-1].astype(int)
    middle = frame[40:100]  # below the label, above the timecode
    assert (middle[:, 128 - 30 : 128 + 30] > 200).all()  # the white board, in the middle
    assert (middle[:, :80] < 30).all() and (middle[:, -80:] < 30).all()  # black either side
    assert result.frames == result.slate_frames + 40 + 16
