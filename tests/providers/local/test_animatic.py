"""The animatic is a real, decodable H.264 MP4 of the right size and exact duration."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from PIL import Image, ImageFont

from orchestrator.providers.local.animatic import (
    AnimaticError,
    _caption_band,
    caption_layout,
    frame_size,
    render_animatic,
)


def _board(color, size=(640, 360), fmt="PNG"):
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def _probe(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return {
            "codec": stream.codec_context.name,
            "size": (stream.width, stream.height),
            "pix_fmt": stream.codec_context.pix_fmt,
            "duration": container.duration / 1_000_000,
            "rate": float(stream.average_rate),
            "frames": frames,
        }


@pytest.mark.parametrize(
    ("aspect_ratio", "duration", "size"),
    [("16:9", 5, (64, 36)), ("9:16", 10, (36, 64)), ("1:1", 5, (48, 48))],
)
def test_cheap_animatic_has_the_right_size_and_exact_duration(tmp_path, aspect_ratio, duration, size) -> None:
    dest = tmp_path / "out.mp4"
    boards = [_board("red"), _board("blue")]
    render_animatic(boards, duration=duration, aspect_ratio=aspect_ratio, dest=dest, cheap=True)
    info = _probe(dest)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["size"] == size == frame_size(aspect_ratio, cheap=True)
    assert info["duration"] == pytest.approx(duration, abs=1 / info["rate"])
    assert len(info["frames"]) == duration * 2  # cheap: 2 fps
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temp file left behind


def test_boards_appear_in_order_with_a_crossfade(tmp_path) -> None:
    dest = tmp_path / "out.mp4"
    boards = [_board((255, 0, 0)), _board((0, 0, 255))]
    render_animatic(boards, duration=5, aspect_ratio="16:9", dest=dest, fps=8, cheap=False, caption=None)
    frames = _probe(dest)["frames"]
    centre = [frame[360, 640].astype(int) for frame in frames]
    assert centre[0][0] > 200 and centre[0][2] < 60  # first board: red
    assert centre[-1][2] > 200 and centre[-1][0] < 60  # last board: blue
    mixed = [c for c in centre if 60 < c[0] < 200 and 60 < c[2] < 200]
    assert mixed, "no crossfade frame between the boards"


def test_caption_is_burnt_into_the_bottom(tmp_path) -> None:
    plain, captioned = tmp_path / "plain.mp4", tmp_path / "captioned.mp4"
    boards = [_board("white"), _board("white")]
    render_animatic(boards, duration=5, aspect_ratio="1:1", dest=plain, fps=2)
    render_animatic(boards, duration=5, aspect_ratio="1:1", dest=captioned, fps=2, caption="shot-01")
    a, b = _probe(plain)["frames"][0], _probe(captioned)["frames"][0]
    assert np.abs(a[-40:].astype(int) - b[-40:].astype(int)).mean() > 20
    assert np.abs(a[:400].astype(int) - b[:400].astype(int)).mean() < 2


@pytest.mark.slow
def test_full_size_animatic_is_1280x720_and_exactly_five_seconds(tmp_path) -> None:
    dest = tmp_path / "full.mp4"
    boards = [_board("red", (1600, 900), "JPEG"), _board("green", (900, 1600)), _board("blue", (800, 800))]
    render_animatic(boards, duration=5, aspect_ratio="16:9", dest=dest, caption="demo-shot-01")
    info = _probe(dest)
    assert info["codec"] == "h264"
    assert info["size"] == (1280, 720)
    assert info["rate"] == 24
    assert len(info["frames"]) == 120
    assert info["duration"] == pytest.approx(5.0, abs=1 / 24)


@pytest.mark.parametrize(
    ("boards", "options"),
    [
        ([b"not an image"], {}),
        ([], {}),
        ([_board("red")], {"aspect_ratio": "4:3"}),
        ([_board("red")], {"duration": 0}),
    ],
)
def test_bad_input_is_an_animatic_error_and_leaves_no_file(tmp_path, boards, options) -> None:
    dest = tmp_path / "out.mp4"
    arguments = {"duration": 5, "aspect_ratio": "16:9", "cheap": True, **options}
    with pytest.raises(AnimaticError):
        render_animatic(boards, dest=dest, **arguments)
    assert list(tmp_path.iterdir()) == []


LONG_ID = "harbor-trailer-s05-lighthouse-a7b9c3d2e1f04a5b6c7d8e9f0a1b"


@pytest.mark.parametrize("aspect_ratio", ["9:16", "16:9", "1:1"])
def test_caption_fits_the_frame_width_and_keeps_the_board_label(aspect_ratio) -> None:
    width, height = frame_size(aspect_ratio)
    size, lines = caption_layout([LONG_ID, "board 1/2"], width=width, height=height)
    font = ImageFont.load_default(size=size)
    margin = max(8, width // 40)
    assert all(font.getlength(line) <= width - 2 * margin for line in lines)
    assert any(line.endswith("board 1/2") for line in lines)
    assert size >= 12


def test_portrait_caption_band_leaves_the_right_margin_clear(tmp_path) -> None:
    # The bug: at 720 px wide the text ran off the right edge and "board 1/2" was never drawn.
    band = _caption_band([LONG_ID, "board 1/2"], width=720, height=1280)
    margin = max(8, 720 // 40)
    assert band.shape[1] == 720
    assert band[:, -margin:, :3].max() < 30  # only the translucent band colour, no text pixels
    assert band[:, : 720 // 2, :3].max() > 200  # text is drawn


def test_caption_too_long_even_when_small_loses_its_middle() -> None:
    size, lines = caption_layout(["x" * 400, "board 2/3"], width=720, height=1280)
    assert size == 12 and "…" in lines[0] and lines[-1].endswith("board 2/3")
