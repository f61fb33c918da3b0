"""Burn-in boxes stamped on yuv420p planes: the same box, text and place as drawing the whole frame in PIL."""

from __future__ import annotations

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from orchestrator.editorial.overlay import black_planes, frame_planes, paste, text_box

SIZE = (320, 180)
FONT = ImageFont.load_default(size=14)
PAD = 3


def _drawn_in_pil(text: str, anchor: str, xy: tuple[int, int]) -> np.ndarray:
    """The luma of the frame as the reel drew it before: PIL on the whole RGB frame, converted by PyAV."""
    image = Image.new("RGB", SIZE, (90, 30, 160))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox(xy, text, font=FONT, anchor=anchor)
    draw.rectangle((left - PAD, top - PAD, right + PAD, bottom + PAD), fill=(0, 0, 0))
    draw.text(xy, text, font=FONT, fill=(255, 255, 255), anchor=anchor)
    frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24").reformat(format="yuv420p")
    return frame_planes(frame).y.astype(int)


def _stamped(text: str, anchor: str, xy: tuple[int, int]) -> np.ndarray:
    background = av.VideoFrame.from_ndarray(np.asarray(Image.new("RGB", SIZE, (90, 30, 160))), format="rgb24").reformat(
        format="yuv420p"
    )
    planes = frame_planes(background)
    box = text_box(text, font=FONT, anchor=anchor, xy=xy, pad=PAD, size=SIZE)
    assert box is not None
    box.stamp(planes)
    inside_chroma = planes.u[box.y // 2 + 1 : (box.y + box.luma.shape[0]) // 2 - 1, box.x // 2 + 1]
    assert (inside_chroma == 128).all()  # black and white have no colour
    return planes.y.astype(int)


def test_a_stamped_box_is_the_box_pil_draws_on_the_frame() -> None:
    for text, anchor, xy in (
        ("shot0  take 1  approved", "la", (PAD, PAD)),
        ("01:00:01:06", "rd", (SIZE[0] - PAD, SIZE[1] - PAD)),
        ("a label wider than the frame, cut at its edge like PIL cuts it", "la", (PAD, PAD)),
    ):
        expected, got = _drawn_in_pil(text, anchor, xy), _stamped(text, anchor, xy)
        assert np.abs(expected - got).max() <= 1, text  # swscale rounds; the box, the text and the place agree


def test_a_box_outside_the_picture_is_none() -> None:
    assert text_box("x", font=FONT, anchor="la", xy=(SIZE[0] + 50, 0), pad=PAD, size=SIZE) is None


def test_a_smaller_picture_is_centred_on_black() -> None:
    canvas, picture = black_planes((64, 36)), black_planes((32, 36))
    picture.y[:] = 200
    paste(picture, canvas)
    assert (canvas.y[:, 16:48] == 200).all() and (canvas.y[:, :16] == 16).all() and (canvas.y[:, 48:] == 16).all()
