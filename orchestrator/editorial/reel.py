"""The reel: the cut rendered to one H.264 MP4 with PyAV, for people who watch rather than edit.

A two-second slate (project, spec revision when in git, date, shot count, length), then every shot's select (or
its held board) for exactly its clip's length in the timeline, with a burn-in of shot id, take, review status and
record timecode.

It streams, and stays in C where it can: pictures go from the decoder to the encoder as yuv420p planes, scaled by
PyAV (swscale) straight to the reel's size; the burn-in is stamped on its boxes only (``overlay``), the static label
drawn once per shot and the timecode once per frame; a held board or the slate is converted once and shown for as
many frames as it lasts. Decoding runs on a thread of its own a few frames ahead of the encoder, so memory stays
flat however long the reel.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from queue import Full, Queue
from typing import Any, TypeVar, cast

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from orchestrator.editorial.cut import Cut
from orchestrator.editorial.media import MediaFacts, held_image
from orchestrator.editorial.overlay import Box, Planes, black_planes, frame_planes, owned_planes, paste, text_box
from orchestrator.editorial.timeline import DEFAULT_RATE, RECORD_START_SECONDS, ClipPlan, plan_clips
from orchestrator.errors import EditorialError

SLATE_SECONDS = 2
DEFAULT_HEIGHT = 720
ASPECTS: dict[str, Fraction] = {"16:9": Fraction(16, 9), "9:16": Fraction(9, 16), "1:1": Fraction(1)}
ENCODER_OPTIONS = {"preset": "veryfast", "crf": "23"}
ENCODER_THREADS = "AUTO"  # frame threads, as the ffmpeg command line (PyAV asks for slices: bigger files)
PREFETCH = 8  # pictures decoded ahead of the encoder (a 720p picture is 1.4 MB)
SCALER = "BILINEAR"  # swscale's, as PIL's BILINEAR before: filter support widened when shrinking

Progress = Callable[[int, int], None]
T = TypeVar("T")


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
            slate = _planes_of(_slate(cut, plans, size=size, rate=rate, total=total - slate_frames, today=today))
            for _ in range(slate_frames):
                encoder.write(slate)
            record = RECORD_START_SECONDS * round(rate)
            # Closed on the way out, whatever ends the loop: the decoding thread never outlives the reel.
            with closing(_ahead(_reel_pictures(plans, size=size, rate=rate), depth=PREFETCH)) as pictures:
                for burn_in, picture in pictures:
                    encoder.write(picture, burn_in.boxes(timecode(record, rate)))
                    record += 1
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
    """One H.264 stream; each frame is a base picture copied into a fresh yuv420p frame, burn-ins stamped on it."""

    def __init__(self, container: Any, *, size: tuple[int, int], rate: float, total: int, progress: Progress | None):
        self._container = container
        self._stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
        self._stream.width, self._stream.height, self._stream.pix_fmt = size[0], size[1], "yuv420p"
        self._stream.codec_context.time_base = 1 / Fraction(rate).limit_denominator(1001)
        self._stream.options = dict(ENCODER_OPTIONS)
        self._stream.codec_context.thread_type = ENCODER_THREADS
        self._size = size
        self._count = 0
        self._total = total
        self._progress = progress

    def write(self, picture: Planes, boxes: Iterable[Box] = ()) -> None:
        import av

        # A fresh frame each time: the encoder may still hold the last one, and the picture is shared by frames.
        frame = av.VideoFrame(self._size[0], self._size[1], "yuv420p")
        planes = frame_planes(frame)
        picture.copy_into(planes)
        for box in boxes:
            box.stamp(planes)
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


def _reel_pictures(plans: list[ClipPlan], *, size: tuple[int, int], rate: float) -> Iterator[tuple[_BurnIn, Planes]]:
    """Every frame's picture after the slate, with its shot's burn-in."""
    for plan in plans:
        burn_in = _BurnIn(plan, size)
        for picture in _clip_pictures(plan, size=size, rate=rate):
            yield burn_in, picture


def _ahead(items: Iterator[T], *, depth: int) -> Generator[T, None, None]:
    """``items``, produced on a thread of their own at most ``depth`` ahead of the consumer.

    Decoding and scaling (the producer) and encoding (the consumer) run in C without the GIL, so on two cores the
    stages overlap; the bounded queue keeps memory flat. An error in the producer is raised here; when the consumer
    stops early the producer stops too and closes ``items`` (its open files) on its own thread.
    """
    queue: Queue[tuple[bool, T | None, BaseException | None]] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, T | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((False, item, None)):
                    return
            put((True, None, None))
        except BaseException as exc:  # whatever it is, the consumer raises it: this thread has no one to tell
            put((True, None, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="reel-decode", daemon=True)
    worker.start()
    try:
        while True:
            done, item, error = queue.get()
            if error is not None:
                raise error
            if done:
                return
            yield cast(T, item)
    finally:
        stop.set()
        worker.join()


def _clip_pictures(plan: ClipPlan, *, size: tuple[int, int], rate: float) -> Iterator[Planes]:
    """``plan.frames`` pictures at ``rate``: the media resampled by time (held or dropped frames), or the board.

    A picture shown for several frames (a held board, a slower video's frame) is the same object each time.
    """
    if plan.shot.media is None:
        board = _planes_of(_fit(held_image(plan.shot), size))
        for _ in range(plan.frames):
            yield board
        return
    yield from _resampled(plan.shot.media, plan.frames, size=size, rate=rate)


def _resampled(path: Path, frames: int, *, size: tuple[int, int], rate: float) -> Iterator[Planes]:
    import av
    from av.video.reformatter import VideoReformatter

    # One scaler for the clip: ``VideoFrame.reformat`` sets a new one up on every call, which costs 5x the scaling.
    scaler = VideoReformatter()
    try:
        with av.open(str(path)) as container:
            decoded = _timed_frames(container)
            current = next(decoded, None)
            upcoming = next(decoded, None)
            shown: tuple[Any, Planes] | None = None
            for number in range(frames):
                t = number / rate
                while upcoming is not None and upcoming[0] <= t + 1e-9:
                    current, upcoming = upcoming, next(decoded, None)
                if current is None:
                    raise EditorialError(f"{path}: the video has no frames")
                if shown is None or shown[0] is not current[1]:
                    # Scaled once per source frame, however many reel frames show it; dropped ones never are.
                    shown = current[1], _scaled(current[1], size, scaler)
                yield shown[1]
    except av.FFmpegError as exc:
        raise EditorialError(f"{path}: cannot decode ({exc})") from None


def _timed_frames(container: Any) -> Iterator[tuple[float, Any]]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    start = None
    for frame in container.decode(stream):
        seconds = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
        start = seconds if start is None else start
        yield seconds - start, frame


def _scaled(frame: Any, size: tuple[int, int], scaler: Any) -> Planes:
    """A decoded frame whole inside ``size``, centred on black, scaled by PyAV straight to yuv420p."""
    scale = min(size[0] / frame.width, size[1] / frame.height)
    fitted = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    picture = frame_planes(
        scaler.reformat(frame, width=fitted[0], height=fitted[1], format="yuv420p", interpolation=SCALER)
    )
    if fitted == size:
        return picture
    canvas = black_planes(size)
    paste(picture, canvas)
    return canvas


def _planes_of(image: Image.Image) -> Planes:
    """A PIL picture the reel's size as yuv420p planes (converted once: the slate, a held board)."""
    import av

    frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB"), dtype=np.uint8), format="rgb24")
    return owned_planes(frame.reformat(format="yuv420p"))


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


@lru_cache(maxsize=32)
def _font(height: int, divisor: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, height // divisor))


class _BurnIn:
    """Shot id, take and review status at the top left (drawn once per shot), record timecode at the bottom right
    (drawn per frame), each on a dark box."""

    def __init__(self, plan: ClipPlan, size: tuple[int, int]) -> None:
        shot = plan.shot
        take = f"take {shot.take}" if shot.take is not None else "board held"
        stand_in = "  (stand-in)" if shot.stand_in and not shot.held else ""
        label = f"{shot.shot_id}  {take}  {shot.review_status}{stand_in}"
        self._size = size
        self._font = _font(size[1], 18)
        self._pad = max(2, size[1] // 90)
        self._label = text_box(label, font=self._font, anchor="la", xy=(self._pad, self._pad), pad=self._pad, size=size)

    def boxes(self, code: str) -> list[Box]:
        corner = (self._size[0] - self._pad, self._size[1] - self._pad)
        timecode_box = text_box(code, font=self._font, anchor="rd", xy=corner, pad=self._pad, size=self._size)
        return [box for box in (self._label, timecode_box) if box is not None]


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
