"""The reel: the cut rendered to one H.264 MP4 with PyAV, for people who watch rather than edit.

A two-second slate (project, spec revision when in git, date, shot count, length), then every shot's select (or
its held board) for exactly its clip's length in the timeline, with a burn-in of shot id, take, review status and
record timecode. Frames are decoded, drawn and encoded one at a time: memory stays flat however long the reel.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from orchestrator.editorial.cut import Cut
from orchestrator.editorial.media import MediaFacts, held_image
from orchestrator.editorial.timeline import DEFAULT_RATE, RECORD_START_SECONDS, ClipPlan, plan_clips
from orchestrator.errors import EditorialError

SLATE_SECONDS = 2
DEFAULT_HEIGHT = 720
ASPECTS: dict[str, Fraction] = {"16:9": Fraction(16, 9), "9:16": Fraction(9, 16), "1:1": Fraction(1)}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReelResult:
    path: Path
    frames: int  # slate included
    slate_frames: int
    rate: float
    width: int
    height: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def render_reel(
    cut: Cut,
    dest: Path,
    *,
    rate: float = DEFAULT_RATE,
    height: int = DEFAULT_HEIGHT,
    progress: Progress | None = None,
    facts: Callable[[Path], MediaFacts] | None = None,
    today: datetime.date | None = None,
) -> ReelResult:
    """Render the reel of ``cut`` to ``dest`` (written beside it, renamed into place complete)."""
    import av

    if not cut.shots:
        raise EditorialError("the cut has no shots: nothing to put in a reel")
    plans = plan_clips(cut, rate=rate, facts=facts)
    size = _frame_size(plans, height)
    slate_frames = round(SLATE_SECONDS * rate)
    total = slate_frames + sum(plan.frames for plan in plans)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".tmp.mp4", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            encoder = _Encoder(container, size=size, rate=rate, total=total, progress=progress)
            slate = _slate(cut, plans, size=size, rate=rate, total=total - slate_frames, today=today)
            for _ in range(slate_frames):
                encoder.write(slate)
            record = 0
            for plan in plans:
                for number, image in enumerate(_clip_frames(plan, size=size, rate=rate)):
                    _burn_in(image, plan, timecode(RECORD_START_SECONDS * round(rate) + record + number, rate))
                    encoder.write(image)
                record += plan.frames
            encoder.finish()
        tmp.replace(dest)
    except av.FFmpegError as exc:
        raise EditorialError(f"{dest}: could not encode the reel: {exc}") from None
    except OSError as exc:
        raise EditorialError(f"{dest}: cannot write the reel ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return ReelResult(dest, total, slate_frames, rate, size[0], size[1])


class _Encoder:
    """One H.264 stream; frames go in as PIL images, numbered from 0 at ``1/rate``."""

    def __init__(self, container: Any, *, size: tuple[int, int], rate: float, total: int, progress: Progress | None):
        self._container = container
        self._stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
        self._stream.width, self._stream.height, self._stream.pix_fmt = size[0], size[1], "yuv420p"
        self._stream.codec_context.time_base = 1 / Fraction(rate).limit_denominator(1001)
        self._stream.options = {"preset": "veryfast", "crf": "23"}
        self._count = 0
        self._total = total
        self._progress = progress

    def write(self, image: Image.Image) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.asarray(image, dtype=np.uint8), format="rgb24")
        frame.pts = self._count
        frame.time_base = self._stream.codec_context.time_base
        self._container.mux(self._stream.encode(frame))
        self._count += 1
        if self._progress is not None:
            self._progress(self._count, self._total)

    def finish(self) -> None:
        self._container.mux(self._stream.encode(None))


def _frame_size(plans: list[ClipPlan], height: int) -> tuple[int, int]:
    """The reel's size: ``height`` tall, as wide as the first shot's picture; both even (yuv420p wants it)."""
    first = plans[0]
    aspect = (
        Fraction(first.media.width, first.media.height)
        if first.media is not None
        else ASPECTS.get(first.shot.aspect_ratio, ASPECTS["16:9"])
    )
    even_height = max(2, height - height % 2)
    width = max(2, round(even_height * aspect))
    return width - width % 2, even_height


def _clip_frames(plan: ClipPlan, *, size: tuple[int, int], rate: float) -> Iterator[Image.Image]:
    """``plan.frames`` pictures at ``rate``: the media resampled by time (held or dropped frames), or the board."""
    if plan.shot.media is None:
        board = _fit(held_image(plan.shot), size)
        for _ in range(plan.frames):
            yield board.copy()
        return
    yield from _resampled(plan.shot.media, plan.frames, size=size, rate=rate)


def _resampled(path: Path, frames: int, *, size: tuple[int, int], rate: float) -> Iterator[Image.Image]:
    import av

    try:
        with av.open(str(path)) as container:
            decoded = _timed_frames(container)
            current = next(decoded, None)
            upcoming = next(decoded, None)
            for number in range(frames):
                t = number / rate
                while upcoming is not None and upcoming[0] <= t + 1e-9:
                    current, upcoming = upcoming, next(decoded, None)
                if current is None:
                    raise EditorialError(f"{path}: the video has no frames")
                yield _fit(current[1], size)
    except av.FFmpegError as exc:
        raise EditorialError(f"{path}: cannot decode ({exc})") from None


def _timed_frames(container: Any) -> Iterator[tuple[float, Image.Image]]:
    stream = container.streams.video[0]
    start = None
    for frame in container.decode(stream):
        seconds = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
        start = seconds if start is None else start
        yield seconds - start, frame.to_image()


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` whole inside ``size``, centred on black."""
    if image.size == size:
        return image.convert("RGB")
    scale = min(size[0] / image.width, size[1] / image.height)
    resized = image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
    )
    if resized.size == size:
        return resized
    canvas = Image.new("RGB", size)
    canvas.paste(resized, ((size[0] - resized.width) // 2, (size[1] - resized.height) // 2))
    return canvas


def _font(height: int, divisor: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, height // divisor))


def _burn_in(image: Image.Image, plan: ClipPlan, code: str) -> None:
    """Shot id, take and review status at the top left, record timecode at the bottom right, on dark boxes."""
    shot = plan.shot
    take = f"take {shot.take}" if shot.take is not None else "board held"
    label = f"{shot.shot_id}  {take}  {shot.review_status}{'  (stand-in)' if shot.stand_in and not shot.held else ''}"
    font = _font(image.height, 18)
    draw = ImageDraw.Draw(image)
    pad = max(2, image.height // 90)
    for text, anchor, xy in ((label, "la", (pad, pad)), (code, "rd", (image.width - pad, image.height - pad))):
        left, top, right, bottom = draw.textbbox(xy, text, font=font, anchor=anchor)
        draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=(0, 0, 0))
        draw.text(xy, text, font=font, fill=(255, 255, 255), anchor=anchor)


def _slate(
    cut: Cut, plans: list[ClipPlan], *, size: tuple[int, int], rate: float, total: int, today: datetime.date | None
) -> Image.Image:
    revision = spec_revision(cut.spec_path)
    lines = [
        cut.project,
        f"spec {cut.spec_path.name}" + (f" @ {revision}" if revision else " (not in git)"),
        (today or datetime.date.today()).isoformat(),
        f"{len(plans)} shot{'s' if len(plans) != 1 else ''}, {timecode(total, rate)} ({total / rate:.1f} s)",
    ]
    image = Image.new("RGB", size, (24, 24, 32))
    draw = ImageDraw.Draw(image)
    font = _font(size[1], 12)
    line_height = round(max(8, size[1] // 12) * 1.4)
    y = (size[1] - line_height * len(lines)) // 2
    for line in lines:
        draw.text((size[0] // 2, y), line, font=font, fill=(255, 255, 255), anchor="ma")
        y += line_height
    return image


def timecode(frame: int, rate: float) -> str:
    """``HH:MM:SS:FF`` of a frame count at ``rate`` (non-drop: the nominal rate, rounded)."""
    base = max(1, round(rate))
    seconds, frames = divmod(frame, base)
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    return f"{hours:02d}:{mins:02d}:{secs:02d}:{frames:02d}"


def spec_revision(spec: Path) -> str | None:
    """The short hash of the last commit touching the spec, with ``+`` when it has changes since; ``None``
    outside git."""
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", spec.name],
            cwd=spec.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode != 0 or not done.stdout.strip():
            return None
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", spec.name], cwd=spec.parent, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() + ("+" if dirty.returncode == 1 else "")
