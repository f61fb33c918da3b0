"""What editorial needs of the media: each video's real length and rate (PyAV), and the held-board stills.

Lengths come from the files, never the spec: Kling's "5 s" clip is 5.1 s, and a cut built on the spec's numbers
drifts by a few frames a shot. A shot with nothing finished holds its first board, written once as a PNG with the
shot id burnt in, under ``<out>/editorial/`` only.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from orchestrator.editorial.cut import CutShot
from orchestrator.errors import EditorialError

STILL_SIZES: dict[str, tuple[int, int]] = {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960)}
CARD_COLOUR = (40, 40, 40)  # a shot whose board is a URL or inline: a plain card, id burnt in


@dataclass(frozen=True)
class MediaFacts:
    """A video's length in its own frames and rate, and its picture size."""

    frames: int
    rate: Fraction
    width: int
    height: int

    @property
    def seconds(self) -> float:
        return float(self.frames / self.rate)

    def frames_at(self, rate: float) -> int:
        """Its length in frames of another rate (the timeline's), to the nearest frame, at least one."""
        return max(1, round(self.frames * rate / float(self.rate)))


def probe(path: Path) -> MediaFacts:
    """Length, rate and size of the first video stream of ``path``; ``EditorialError`` when it is not a video."""
    import av  # PyAV is heavy: imported when a file is actually read

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = Fraction(stream.average_rate or stream.guessed_rate or 24)
            frames = stream.frames or _counted_frames(container, stream)
            return MediaFacts(frames=frames, rate=rate, width=stream.width, height=stream.height)
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise EditorialError(f"{path}: not a readable video ({exc})") from None


def _counted_frames(container: object, stream: object) -> int:
    # Containers that do not say how many frames they hold: count the packets (no decoding).
    demux = container.demux(stream)  # type: ignore[attr-defined]
    return sum(1 for packet in demux if packet.size)


def still_path(cut_output: Path, shot: CutShot) -> Path:
    """Where the held board of ``shot`` lives: ``<out>/editorial/<shot id>.png``."""
    return cut_output / "editorial" / f"{shot.shot_id}.png"


def held_image(shot: CutShot) -> Image.Image:
    """The shot's first board fitted into the frame, with the shot id burnt in (a plain card without a board)."""
    size = STILL_SIZES.get(shot.aspect_ratio, STILL_SIZES["16:9"])
    frame = Image.new("RGB", size, CARD_COLOUR)
    if shot.board is not None:
        try:
            with Image.open(shot.board) as board:
                board.thumbnail(size)
                fitted = board.convert("RGB")
        except (OSError, ValueError) as exc:
            raise EditorialError(f"{shot.board}: shot {shot.shot_id}: the board cannot be read ({exc})") from None
        frame.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    burn_caption(frame, [shot.shot_id, "no render yet: board held"])
    return frame


def write_still(out_dir: Path, shot: CutShot) -> Path:
    """Write the held board of ``shot`` under ``out_dir/editorial/`` (atomically) and return its path."""
    dest = still_path(out_dir, shot)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        held_image(shot).save(tmp, format="PNG")
        os.replace(tmp, dest)
    except OSError as exc:
        raise EditorialError(f"{dest}: cannot write the held board ({exc.strerror or exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def burn_caption(image: Image.Image, lines: list[str], *, top: bool = False) -> None:
    """Draw ``lines`` in white on a dark band across the bottom (or top) of ``image``, in place."""
    size = max(10, image.height // 20)
    font = ImageFont.load_default(size=size)
    line_height = round(size * 1.3)
    band_height = line_height * len(lines) + size // 2
    y0 = 0 if top else image.height - band_height
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, y0, image.width, y0 + band_height), fill=(0, 0, 0))
    for number, line in enumerate(lines):
        draw.text((size // 2, y0 + size // 4 + number * line_height), line, font=font, fill=(255, 255, 255))
