"""The reel's pictures as YUV 4:2:0 planes, and the burn-in boxes stamped straight into them.

The reel used to draw every frame in PIL (RGB) and convert it back for the encoder. Now a picture stays in the
encoder's own format from the decoder to the encoder: PyAV scales it to the reel's size, and a burn-in is a small
box (white text on opaque black) drawn once in PIL as grey levels, turned into luma, and copied over its rectangle.
The box is opaque, so nothing is blended: its luma replaces the picture's, and the chroma blocks it touches are set
to neutral (grey has no colour), which is what converting the drawn RGB frame gave, to within the edge blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Plane = NDArray[np.uint8]

NEUTRAL_CHROMA = 128
# Grey level to limited-range luma (BT.601, as swscale converts RGB to yuv420p): 0 -> 16, 255 -> 235.
_LUMA_OF_GREY: Plane = np.round(16 + np.arange(256) * 219 / 255).astype(np.uint8)
_MEASURE = ImageDraw.Draw(Image.new("L", (1, 1)))  # text boxes are measured without a picture to draw on


@dataclass(frozen=True)
class Planes:
    """A 4:2:0 picture's three planes (views or arrays): luma full size, chroma half size each way."""

    y: Plane
    u: Plane
    v: Plane

    @property
    def size(self) -> tuple[int, int]:
        return self.y.shape[1], self.y.shape[0]

    def copy_into(self, other: Planes) -> None:
        np.copyto(other.y, self.y)
        np.copyto(other.u, self.u)
        np.copyto(other.v, self.v)


@dataclass(frozen=True)
class Box:
    """A burn-in ready to stamp: its luma at ``(x, y)`` of the picture, already clipped to it."""

    x: int
    y: int
    luma: Plane

    def stamp(self, planes: Planes) -> None:
        height, width = self.luma.shape
        planes.y[self.y : self.y + height, self.x : self.x + width] = self.luma
        # Every chroma sample whose 2x2 block the box touches turns neutral (the box is black and white).
        cx0, cy0 = self.x // 2, self.y // 2
        cx1, cy1 = (self.x + width + 1) // 2, (self.y + height + 1) // 2
        planes.u[cy0:cy1, cx0:cx1] = NEUTRAL_CHROMA
        planes.v[cy0:cy1, cx0:cx1] = NEUTRAL_CHROMA


def text_box(text: str, *, font: Font, anchor: str, xy: tuple[int, int], pad: int, size: tuple[int, int]) -> Box | None:
    """``text`` in white at ``xy`` (PIL ``anchor``) on a black box ``pad`` wider than its ink, inside ``size``.

    The same box and text as drawing on the whole frame (``ImageDraw.rectangle`` includes both corners); ``None``
    when the box falls outside the picture.
    """
    # Whole pixels for a font drawn at a whole position; rounded for the type checker's sake.
    left, top, right, bottom = (round(edge) for edge in _MEASURE.textbbox(xy, text, font=font, anchor=anchor))
    x0, y0, x1, y1 = left - pad, top - pad, right + pad + 1, bottom + pad + 1  # x1, y1 exclusive
    grey = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(grey).text((xy[0] - x0, xy[1] - y0), text, font=font, fill=255, anchor=anchor)
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(size[0], x1), min(size[1], y1)
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    luma = _LUMA_OF_GREY[np.asarray(grey, dtype=np.uint8)[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]]
    return Box(cx0, cy0, luma)


def frame_planes(frame: Any) -> Planes:
    """Writable views on a yuv420p ``av.VideoFrame``'s planes (rows are ``line_size`` apart, maybe padded)."""
    views = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        views.append(rows[: plane.height, : plane.width])
    return Planes(*views)


def owned_planes(frame: Any) -> Planes:
    """A yuv420p frame's planes copied into arrays of our own (the frame may be reused by the decoder)."""
    view = frame_planes(frame)
    return Planes(view.y.copy(), view.u.copy(), view.v.copy())


def black_planes(size: tuple[int, int]) -> Planes:
    """Black in limited-range yuv420p: luma 16, chroma neutral."""
    width, height = size
    return Planes(
        np.full((height, width), 16, dtype=np.uint8),
        np.full((height // 2, width // 2), NEUTRAL_CHROMA, dtype=np.uint8),
        np.full((height // 2, width // 2), NEUTRAL_CHROMA, dtype=np.uint8),
    )


def paste(picture: Planes, onto: Planes) -> None:
    """``picture`` centred on ``onto`` (offsets even, so that the chroma lines up)."""
    (width, height), (canvas_width, canvas_height) = picture.size, onto.size
    x, y = (canvas_width - width) // 4 * 2, (canvas_height - height) // 4 * 2
    onto.y[y : y + height, x : x + width] = picture.y
    chroma_height, chroma_width = picture.u.shape
    onto.u[y // 2 : y // 2 + chroma_height, x // 2 : x // 2 + chroma_width] = picture.u
    onto.v[y // 2 : y // 2 + chroma_height, x // 2 : x // 2 + chroma_width] = picture.v
