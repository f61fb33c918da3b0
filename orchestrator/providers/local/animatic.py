"""The animatic renderer: storyboard boards in, a real H.264 MP4 out.

Each board is shown whole ("contain") over a blurred, darkened copy of itself that fills the frame, so nothing the
artist drew is cropped and there are no black bars. Over its time on screen a board slowly zooms (in on even boards,
out on odd ones) and pans, and neighbouring boards crossfade. An optional caption band (the shot id and which board
is showing) sits at the bottom. The file is exactly ``duration`` seconds: ``duration * fps`` frames, one per tick of
a ``1/fps`` time base.

Speed matters because the demo renders several shots back to back: each board is decoded, fitted and blurred once
into a "plate"; a frame is then one box-resize of a plate (two during a crossfade), a numpy blend and the encoder.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from orchestrator.errors import OrchestratorError

FRAME_SIZES: dict[str, tuple[int, int]] = {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960)}
# Benchmarks render hundreds of these: a few hundred pixels at a low frame rate encode in milliseconds.
CHEAP_FRAME_SIZES: dict[str, tuple[int, int]] = {"16:9": (64, 36), "9:16": (36, 64), "1:1": (48, 48)}
CHEAP_FPS = 2
ZOOM = 0.08  # how far a board zooms over its time on screen: slow enough to read, enough to feel alive
PAN = 0.5  # fraction of the zoom margin a board pans across
MAX_CROSSFADE = 0.8  # seconds
MIN_CAPTION_FONT = 12  # px: below this a caption is no longer worth reading
# Shots and benchmark tasks reuse the same boards: keep a few fitted plates (a full-size one is about 2.7 MB).
PLATE_CACHE_SIZE = 12
_PLATES: OrderedDict[tuple[bytes, tuple[int, int]], Image.Image] = OrderedDict()
_PLATE_LOCK = threading.Lock()

Frame = NDArray[np.uint8]


class AnimaticError(OrchestratorError):
    """A board could not be read or the video could not be written."""


@dataclass(frozen=True)
class _Segment:
    start: float  # seconds; a board is visible from start to end, crossfades included
    end: float
    plate: Image.Image
    caption: Frame | None  # RGBA band for the bottom of the frame


def frame_size(aspect_ratio: str, *, cheap: bool = False) -> tuple[int, int]:
    """Width and height of the animatic for an aspect ratio (as Kling would deliver it, or tiny when cheap)."""
    sizes = CHEAP_FRAME_SIZES if cheap else FRAME_SIZES
    try:
        return sizes[aspect_ratio]
    except KeyError:
        raise AnimaticError(f"unsupported aspect ratio {aspect_ratio!r}; use one of {', '.join(sizes)}") from None


def render_animatic(
    boards: Sequence[bytes],
    *,
    duration: int,
    aspect_ratio: str,
    dest: Path,
    caption: str | None = None,
    fps: int = 24,
    cheap: bool = False,
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """Render ``boards`` (JPEG/PNG bytes, in order) to an H.264 MP4 at ``dest``, exactly ``duration`` seconds long.

    The file appears at ``dest`` only when complete (written beside it, then renamed). ``cancelled`` is asked before
    each frame; when it says yes the render stops with ``AnimaticError`` and leaves no file.
    """
    if not boards:
        raise AnimaticError("an animatic needs at least one board")
    if duration <= 0 or fps <= 0:
        raise AnimaticError("duration and fps must be positive")
    width, height = frame_size(aspect_ratio, cheap=cheap)
    fps = CHEAP_FPS if cheap else fps
    segments = _segments(boards, duration=duration, size=(width, height), caption=None if cheap else caption)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp.mp4", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _encode(
            segments, frames=duration * fps, fps=fps, size=(width, height), dest=tmp, cheap=cheap, cancelled=cancelled
        )
        tmp.replace(dest)
    except av.FFmpegError as exc:
        raise AnimaticError(f"could not encode the animatic: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _segments(boards: Sequence[bytes], *, duration: int, size: tuple[int, int], caption: str | None) -> list[_Segment]:
    count = len(boards)
    slot = duration / count
    half_fade = min(MAX_CROSSFADE, slot * 0.3) / 2
    segments = []
    for index, data in enumerate(boards):
        start = max(0.0, index * slot - half_fade)
        end = min(float(duration), (index + 1) * slot + half_fade)
        band = None
        if caption is not None:
            parts = [caption, f"board {index + 1}/{count}"] if count > 1 else [caption]
            band = _caption_band(parts, width=size[0], height=size[1])
        segments.append(_Segment(start=start, end=end, plate=_plate(data, size=size), caption=band))
    return segments


def _open_board(data: bytes, size: tuple[int, int]) -> Image.Image:
    try:
        source = Image.open(io.BytesIO(data))
        source.draft("RGB", size)  # JPEG only: decode at a reduced scale when the board is much larger than the frame
        image = source.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise AnimaticError(f"a board is not a readable JPEG or PNG image: {exc}") from exc
    # A box reduction by a whole factor first makes the filtered resizes below cheap (tiny frames, big boards).
    factor = min(image.width // size[0], image.height // size[1])
    return image.reduce(factor) if factor >= 2 else image


def _plate(data: bytes, *, size: tuple[int, int]) -> Image.Image:
    """The board fitted whole inside the frame over a blurred fill of itself, at output size (cached by content)."""
    key = (hashlib.sha256(data).digest(), size)
    with _PLATE_LOCK:
        plate = _PLATES.get(key)
        if plate is not None:
            _PLATES.move_to_end(key)
            return plate
    plate = _make_plate(data, size=size)
    with _PLATE_LOCK:
        _PLATES[key] = plate
        while len(_PLATES) > PLATE_CACHE_SIZE:
            _PLATES.popitem(last=False)
    return plate


def _make_plate(data: bytes, *, size: tuple[int, int]) -> Image.Image:
    width, height = size
    board = _open_board(data, size)
    cover = max(width / board.width, height / board.height)
    fill = board.resize(_scaled(board, cover), Image.Resampling.BILINEAR)
    left, top = (fill.width - width) // 2, (fill.height - height) // 2
    fill = fill.crop((left, top, left + width, top + height))
    # Blur at a quarter size: the same look for a fraction of the cost.
    small = fill.resize((max(1, width // 4), max(1, height // 4)), Image.Resampling.BILINEAR)
    small = small.filter(ImageFilter.GaussianBlur(radius=max(1, width // 160)))
    plate = small.resize(size, Image.Resampling.BILINEAR).point(lambda v: v * 45 // 100)
    contain = min(width / board.width, height / board.height)
    fitted = board.resize(_scaled(board, contain), Image.Resampling.LANCZOS)
    plate.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return plate


def _scaled(image: Image.Image, factor: float) -> tuple[int, int]:
    return max(1, round(image.width * factor)), max(1, round(image.height * factor))


def caption_layout(parts: Sequence[str], *, width: int, height: int) -> tuple[int, list[str]]:
    """Font size and lines of the caption band, so that every line fits the frame's width.

    The caption is the shot's external id and ``board i/n``: on one line when that fits at a readable size,
    else on two (a portrait frame is narrow and ids are long); whichever layout allows the larger font wins. A
    line too long even at the smallest size loses its middle to an ellipsis, never its end.
    """
    base = max(MIN_CAPTION_FONT, height // 28)
    room = width - 2 * _caption_margin(width)
    one = "   ".join(parts)
    layouts = [[one]] if len(parts) == 1 else [[one], list(parts)]
    best_size, best_lines = 0, [one]
    for lines in layouts:
        size = min(_fitting_size(line, base, room) for line in lines)
        if size > best_size:
            best_size, best_lines = size, lines
    font = ImageFont.load_default(size=best_size)
    return best_size, [_ellipsized(line, font, room) for line in best_lines]


def _caption_margin(width: int) -> int:
    return max(8, width // 40)


def _fitting_size(text: str, base: int, room: int) -> int:
    """The largest font size up to ``base`` (and at least the minimum) at which ``text`` is at most ``room`` wide."""
    size = base
    while size > MIN_CAPTION_FONT and ImageFont.load_default(size=size).getlength(text) > room:
        # Text width grows about linearly with the size: jump close to the answer, then step down.
        length = ImageFont.load_default(size=size).getlength(text)
        size = max(MIN_CAPTION_FONT, min(size - 1, int(size * room / length)))
    return size


def _ellipsized(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, room: int) -> str:
    if font.getlength(text) <= room:
        return text
    keep = len(text)
    while keep > 2:
        keep -= 1
        head, tail = text[: keep - keep // 2], text[len(text) - keep // 2 :]
        candidate = f"{head}…{tail}"
        if font.getlength(candidate) <= room:
            return candidate
    return "…"


def _caption_band(parts: Sequence[str], *, width: int, height: int) -> Frame:
    size, lines = caption_layout(parts, width=width, height=height)
    font = ImageFont.load_default(size=size)
    line_height = round(size * 1.25)
    padding = size // 2
    band = Image.new("RGBA", (width, 2 * padding + line_height * len(lines)), (0, 0, 0, 150))
    draw = ImageDraw.Draw(band)
    for number, line in enumerate(lines):
        draw.text((_caption_margin(width), padding + number * line_height), line, font=font, fill=(255, 255, 255, 255))
    return np.asarray(band, dtype=np.uint8)


def _view(segment: _Segment, index: int, t: float, size: tuple[int, int]) -> Frame:
    """The board's plate at time ``t``: a zoomed, panned window, resized back to the frame."""
    width, height = size
    span = segment.end - segment.start
    progress = min(1.0, max(0.0, (t - segment.start) / span)) if span > 0 else 0.0
    zoom = 1.0 + ZOOM * (progress if index % 2 == 0 else 1.0 - progress)
    box_w, box_h = width / zoom, height / zoom
    margin_x, margin_y = (width - box_w) / 2, (height - box_h) / 2
    direction = 1.0 if index % 4 < 2 else -1.0
    shift = (progress - 0.5) * 2 * PAN * direction
    x0 = margin_x + shift * margin_x
    y0 = margin_y + shift * margin_y * 0.5
    view = segment.plate.resize(size, Image.Resampling.BILINEAR, box=(x0, y0, x0 + box_w, y0 + box_h))
    return np.asarray(view, dtype=np.uint8)


def _frame(segments: Sequence[_Segment], t: float, size: tuple[int, int]) -> Frame:
    visible = [(i, s) for i, s in enumerate(segments) if s.start <= t < s.end] or [(len(segments) - 1, segments[-1])]
    index, first = visible[0]
    frame = _view(first, index, t, size)
    if len(visible) > 1:
        second_index, second = visible[1]
        # Crossfade weight runs 0 -> 1 over the overlap of the two boards.
        weight = (t - second.start) / max(1e-9, first.end - second.start)
        other = _view(second, second_index, t, size)
        frame = (frame.astype(np.float32) * (1.0 - weight) + other.astype(np.float32) * weight).astype(np.uint8)
        if weight >= 0.5:
            first = second
    if first.caption is not None:
        frame = _overlay(frame, first.caption)
    return frame


def _overlay(frame: Frame, band: Frame) -> Frame:
    out = frame.copy()
    rows = band.shape[0]
    alpha = band[:, :, 3:4].astype(np.float32) / 255.0
    bottom = out[-rows:].astype(np.float32)
    out[-rows:] = (bottom * (1.0 - alpha) + band[:, :, :3].astype(np.float32) * alpha).astype(np.uint8)
    return out


def _encode(
    segments: Sequence[_Segment],
    *,
    frames: int,
    fps: int,
    size: tuple[int, int],
    dest: Path,
    cheap: bool,
    cancelled: Callable[[], bool] | None,
) -> None:
    width, height = size
    with av.open(str(dest), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        # One x264 thread: the simulator renders two videos at once on a two-core machine.
        stream.options = {"preset": "ultrafast" if cheap else "veryfast", "crf": "23", "threads": "1"}
        for number in range(frames):
            if cancelled is not None and cancelled():
                raise AnimaticError("the render was cancelled")
            image = av.VideoFrame.from_ndarray(_frame(segments, number / fps, size), format="rgb24")
            image.pts = number
            image.time_base = stream.codec_context.time_base
            container.mux(stream.encode(image))
        container.mux(stream.encode(None))
