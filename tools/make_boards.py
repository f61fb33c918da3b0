"""Draw the storyboard boards and masks used by specs/demo and specs/examples.

Run from anywhere: ``.venv/bin/python tools/make_boards.py``. The output is deterministic (fixed seeds, no clock,
no system fonts: Pillow's bundled font), so regenerating leaves ``git status`` clean on the same Pillow version.

Everything is drawn with Pillow primitives in coordinates relative to the panel (0..1 on both axes), so one scene
function serves 16:9, 9:16 and 1:1 boards. Boards are quantised to a small palette to keep all of specs/ well under
1 MB; two boards are written as JPEG on purpose, so the demo exercises both formats Kling accepts.

``--print-base64`` prints the small inline PNG that specs/examples/all-features.yaml embeds as a ``base64`` image.
"""

from __future__ import annotations

import argparse
import base64
import io
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
BOARDS_DIR = ROOT / "specs" / "demo" / "boards"
MASKS_DIR = ROOT / "specs" / "examples" / "masks"
PROJECT = "HARBOR-TRAILER"

RGB = tuple[int, int, int]
Point = tuple[float, float]

PAPER: RGB = (246, 242, 232)
INK: RGB = (38, 42, 50)
PENCIL: RGB = (92, 98, 108)
RED: RGB = (196, 52, 44)
SCARF: RGB = (206, 64, 52)
LAMP: RGB = (250, 214, 110)
DAWN_TOP: RGB = (168, 196, 222)
DAWN_LOW: RGB = (246, 200, 150)
STORM_TOP: RGB = (70, 76, 88)
STORM_LOW: RGB = (128, 134, 140)
NIGHT_TOP: RGB = (28, 34, 52)
NIGHT_LOW: RGB = (70, 80, 100)
SEA_CALM: RGB = (112, 150, 170)
SEA_GREY: RGB = (84, 100, 110)
SEA_NIGHT: RGB = (40, 52, 68)
WOOD: RGB = (150, 116, 84)
WOOD_DARK: RGB = (96, 72, 52)
STONE: RGB = (120, 118, 112)
WHITE: RGB = (250, 250, 246)
MASK_WHITE: RGB = (255, 255, 255)

PALETTE_COLOURS = 48  # enough for soft gradients, small enough for tiny PNGs


class Pen:
    """Draws on one panel in relative coordinates: (0, 0) is top-left, (1, 1) bottom-right."""

    def __init__(self, image: Image.Image, *, seed: int) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.w, self.h = image.size
        self.rng = random.Random(seed)  # every board has its own seed: regeneration is byte-stable

    def p(self, x: float, y: float) -> tuple[int, int]:
        return round(x * self.w), round(y * self.h)

    def pts(self, points: Sequence[Point]) -> list[tuple[int, int]]:
        return [self.p(x, y) for x, y in points]

    def stroke(self, width: float) -> int:
        """A line width that looks the same on every board size (``width`` is in pixels at 360 px)."""
        return max(1, round(width * min(self.w, self.h) / 360))

    def poly(self, points: Sequence[Point], fill: RGB | None, outline: RGB | None = INK, width: float = 1.5) -> None:
        self.draw.polygon(self.pts(points), fill=fill, outline=outline, width=self.stroke(width))

    def line(self, points: Sequence[Point], fill: RGB = INK, width: float = 1.5) -> None:
        self.draw.line(self.pts(points), fill=fill, width=self.stroke(width), joint="curve")

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB | None, outline: RGB | None = INK) -> None:
        """An ellipse centred on (cx, cy); ``rx`` is relative to the width, ``ry`` to the height."""
        box = [self.p(cx - rx, cy - ry), self.p(cx + rx, cy + ry)]
        self.draw.ellipse(box, fill=fill, outline=outline, width=self.stroke(1.2))

    def circle(self, cx: float, cy: float, r: float, fill: RGB | None, outline: RGB | None = INK) -> None:
        """A true circle whose radius ``r`` is relative to the shorter side."""
        x, y = self.p(cx, cy)
        radius = r * min(self.w, self.h)
        self.draw.ellipse(
            [x - radius, y - radius, x + radius, y + radius], fill=fill, outline=outline, width=self.stroke(1.2)
        )

    def glow(self, points: Sequence[Point], colour: RGB, alpha: int) -> None:
        """A translucent polygon (lamp beams, light): ImageDraw overwrites pixels, so blend through a layer."""
        layer = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        ImageDraw.Draw(layer).polygon(self.pts(points), fill=(*colour, alpha))
        blended = Image.alpha_composite(self.image.convert("RGBA"), layer).convert("RGB")
        self.image.paste(blended)


def lerp(a: RGB, b: RGB, t: float) -> RGB:
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return (r, g, bl)


# --- scenery ---------------------------------------------------------------------------------------------------


def sky(pen: Pen, top: RGB, low: RGB, horizon: float) -> None:
    rows = round(horizon * pen.h)
    for row in range(rows + 1):
        pen.draw.line([(0, row), (pen.w, row)], fill=lerp(top, low, row / max(rows, 1)))


def sea(pen: Pen, horizon: float, colour: RGB, *, roughness: float) -> None:
    """Water below the horizon, with wave strokes that grow towards the camera (cheap perspective)."""
    pen.draw.rectangle([pen.p(0, horizon), pen.p(1, 1)], fill=colour)
    pen.line([(0, horizon), (1, horizon)], width=1.2)
    crest = lerp(colour, WHITE, 0.35 + 0.3 * roughness)
    for _ in range(int(26 + 40 * roughness)):
        depth = pen.rng.random() ** 1.6  # more strokes near the horizon, where the sea looks busier
        y = horizon + (1 - horizon) * depth
        x = pen.rng.random()
        size = 0.012 + 0.05 * depth * (1 + roughness)
        lift = size * (0.25 + roughness) * pen.w / pen.h
        pen.line([(x - size, y), (x, y - lift), (x + size, y)], fill=crest, width=0.8 + 1.4 * depth)


def sun(pen: Pen, x: float, y: float, r: float) -> None:
    pen.circle(x, y, r * 1.6, fill=lerp(DAWN_LOW, WHITE, 0.3), outline=None)
    pen.circle(x, y, r, fill=(252, 226, 170), outline=PENCIL)


def clouds(pen: Pen, cx: float, cy: float, span: float, colour: RGB, *, puffs: int = 7) -> None:
    for _ in range(puffs):
        x = cx + (pen.rng.random() - 0.5) * span
        y = cy + (pen.rng.random() - 0.5) * span * 0.25
        r = span * (0.12 + 0.1 * pen.rng.random())
        pen.ellipse(x, y, r, r * 0.55 * pen.w / pen.h, fill=colour, outline=lerp(colour, INK, 0.4))


def rain(pen: Pen, *, density: int, slant: float, top: float = 0.0) -> None:
    for _ in range(density):
        x, y = pen.rng.random() * 1.2 - 0.1, top + pen.rng.random() * (1 - top)
        length = 0.04 + 0.05 * pen.rng.random()
        pen.line([(x, y), (x + slant * length, y + length)], fill=(190, 198, 206), width=0.8)


def lightning(pen: Pen, x: float, top: float, bottom: float) -> None:
    steps = 5
    points: list[Point] = [(x, top)]
    for i in range(1, steps + 1):
        jag = (pen.rng.random() - 0.5) * 0.06
        points.append((x + jag + i * 0.01, top + (bottom - top) * i / steps))
    pen.line(points, fill=(255, 236, 160), width=6)
    pen.line(points, fill=WHITE, width=2)


def gulls(pen: Pen, positions: Sequence[Point], size: float = 0.018) -> None:
    for x, y in positions:
        pen.line([(x - size, y - size * 0.4), (x - size * 0.3, y), (x, y - size * 0.2)], width=1.2)
        pen.line([(x, y - size * 0.2), (x + size * 0.3, y), (x + size, y - size * 0.4)], width=1.2)


def houses(pen: Pen, horizon: float, xs: Sequence[float]) -> None:
    """A row of harbour cottages on the far shore, left side."""
    pen.poly([(0, horizon), (0, horizon - 0.06), (max(xs) + 0.08, horizon - 0.03), (max(xs) + 0.12, horizon)], STONE)
    for i, x in enumerate(xs):
        h = 0.06 + 0.02 * (i % 2)
        base = horizon - 0.02
        pen.poly([(x, base), (x, base - h), (x + 0.05, base - h), (x + 0.05, base)], (226, 218, 204))
        pen.poly([(x - 0.008, base - h), (x + 0.025, base - h - 0.045), (x + 0.058, base - h)], (170, 90, 74))
        pen.draw.rectangle([pen.p(x + 0.018, base - h * 0.6), pen.p(x + 0.032, base - h * 0.3)], fill=LAMP)


def pier_side(pen: Pen, *, x0: float, x1: float, deck: float, water: float) -> None:
    """A pier seen from the side, running from x0 to x1 (the camera looks along the shore)."""
    posts = max(3, round((x1 - x0) / 0.07))
    for i in range(posts + 1):
        x = x0 + (x1 - x0) * i / posts
        pen.poly(
            [(x - 0.006, deck), (x + 0.006, deck), (x + 0.006, water + 0.03), (x - 0.006, water + 0.03)], WOOD_DARK
        )
    pen.poly([(x0, deck - 0.025), (x1, deck - 0.025), (x1, deck + 0.01), (x0, deck + 0.01)], WOOD)


def pier_perspective(pen: Pen, *, vanish: Point, near_left: float, near_right: float, length: float) -> None:
    """A pier running away from the camera towards ``vanish``; ``length`` (0..1) is how far it reaches."""
    vx, vy = vanish

    def along(x: float, t: float) -> Point:
        return (x + (vx - x) * t, 1 + (vy - 1) * t)

    far_left, far_right = along(near_left, length), along(near_right, length)
    for t in (0.1, 0.3, 0.5, 0.7, 0.85):
        if t < length:
            for x in (near_left, near_right):
                top = along(x, t)
                thick = 0.09 * (1 - t)
                half = 0.01 * (1 - t)
                post = [(top[0] - half, top[1]), (top[0] + half, top[1])]
                post += [(top[0] + half, top[1] + thick), (top[0] - half, top[1] + thick)]
                pen.poly(post, WOOD_DARK, width=1)
    pen.poly([(near_left, 1), far_left, far_right, (near_right, 1)], WOOD)
    steps = 14
    for i in range(1, steps):
        t = length * (1 - (1 - i / steps) ** 1.7)  # planks crowd together with distance
        pen.line([along(near_left, t), along(near_right, t)], fill=WOOD_DARK, width=0.8)


def boat(pen: Pen, x: float, water: float, size: float, *, tilt: float = 0.0, light: bool = False) -> None:
    """The Gull: a small fishing boat with a wheelhouse and mast. ``size`` is its length relative to the width."""
    aspect = pen.w / pen.h
    shapes: dict[str, list[Point]] = {
        "hull": [(-0.5, -0.12), (0.5, -0.16), (0.38, 0.1), (-0.42, 0.1)],
        "house": [(-0.25, -0.12), (-0.25, -0.36), (0.05, -0.36), (0.05, -0.12)],
        "mast": [(0.2, -0.14), (0.2, -0.75)],
        "sail": [(0.22, -0.7), (0.22, -0.2), (0.5, -0.22)],
    }
    angle = math.radians(tilt)

    def place(points: list[Point]) -> list[Point]:
        out: list[Point] = []
        for px, py in points:
            rx = px * math.cos(angle) - py * math.sin(angle)
            ry = px * math.sin(angle) + py * math.cos(angle)
            out.append((x + rx * size, water + ry * size * aspect))
        return out

    pen.poly(place(shapes["sail"]), (236, 230, 214))
    pen.line(place(shapes["mast"]), width=1.5)
    pen.poly(place(shapes["house"]), (232, 226, 212))
    pen.poly(place(shapes["hull"]), (58, 86, 120))
    pen.line(place([(-0.46, -0.05), (0.44, -0.08)]), fill=RED, width=1.5)
    if light:
        lx, ly = place([(-0.1, -0.26)])[0]
        pen.circle(lx, ly, 0.02, fill=LAMP, outline=None)


def figure(pen: Pen, x: float, feet: float, height: float, *, pose: str = "stand", back: bool = False) -> None:
    """Mara: dark coat, red scarf. ``height`` is relative to the panel height; ``pose`` is stand, walk, wave or run."""
    u = height / 7  # a figure is about seven heads tall
    ux = u * pen.h / pen.w  # the same length measured along x
    stride = {"stand": 0.3, "walk": 0.9, "wave": 0.3, "run": 1.4}[pose]
    hip = feet - 3.2 * u
    pen.line([(x - 0.3 * ux, hip), (x - stride * ux, feet)], width=2.2)
    pen.line([(x + 0.3 * ux, hip), (x + stride * ux, feet)], width=2.2)
    shoulder = feet - 5.6 * u
    pen.poly(
        [
            (x - 0.9 * ux, shoulder),
            (x + 0.9 * ux, shoulder),
            (x + 1.2 * ux, hip + u * 0.4),
            (x - 1.2 * ux, hip + u * 0.4),
        ],
        (64, 70, 82),
    )
    if pose == "wave":
        pen.line(
            [
                (x + 0.8 * ux, shoulder + 0.3 * u),
                (x + 1.8 * ux, shoulder - 0.8 * u),
                (x + 2.0 * ux, shoulder - 2.0 * u),
            ],
            width=2,
        )
    else:
        swing = 0.6 if pose in ("walk", "run") else 0.2
        pen.line([(x + 0.8 * ux, shoulder + 0.3 * u), (x + (1.1 + swing) * ux, hip)], width=2)
    pen.line([(x - 0.8 * ux, shoulder + 0.3 * u), (x - (1.1 + 0.3) * ux, hip)], width=2)
    pen.poly(
        [
            (x - 0.8 * ux, shoulder - 0.1 * u),
            (x + 0.8 * ux, shoulder - 0.1 * u),
            (x + 2.0 * ux, shoulder + 0.6 * u),
            (x + 1.6 * ux, shoulder + 0.9 * u),
            (x - 0.8 * ux, shoulder + 0.5 * u),
        ],
        SCARF,
        width=1,
    )
    head = (232, 200, 170) if not back else (70, 54, 44)  # seen from behind we see hair, not a face
    pen.ellipse(x, shoulder - 0.75 * u, 0.62 * ux, 0.75 * u, fill=head)


def lighthouse(pen: Pen, x: float, base: float, top: float, width: float, *, lit: bool) -> None:
    """A striped tower on rocks. ``width`` is the base width relative to the panel width."""
    height = base - top
    half_base, half_top = width / 2, width * 0.32
    bands = 5
    for i in range(bands):
        y0, y1 = base - height * i / bands, base - height * (i + 1) / bands
        w0 = half_base + (half_top - half_base) * i / bands
        w1 = half_base + (half_top - half_base) * (i + 1) / bands
        colour = WHITE if i % 2 == 0 else RED
        pen.poly([(x - w0, y0), (x + w0, y0), (x + w1, y1), (x - w1, y1)], colour)
    gallery = top - 0.012
    pen.poly(
        [
            (x - half_top * 1.5, top),
            (x + half_top * 1.5, top),
            (x + half_top * 1.5, gallery),
            (x - half_top * 1.5, gallery),
        ],
        INK,
    )
    room_top = gallery - height * 0.12
    pen.poly(
        [(x - half_top, gallery), (x + half_top, gallery), (x + half_top, room_top), (x - half_top, room_top)],
        LAMP if lit else (60, 66, 78),
    )
    pen.poly([(x - half_top * 1.2, room_top), (x + half_top * 1.2, room_top), (x, room_top - height * 0.08)], INK)
    for dx in (-0.6, 0.0, 0.6):
        pen.line([(x + dx * half_top, gallery), (x + dx * half_top, room_top)], width=0.8)
    pen.poly(
        [
            (x - half_base * 2.4, 1),
            (x - half_base * 1.6, base - 0.02),
            (x - half_base * 0.2, base + 0.005),
            (x + half_base * 1.4, base - 0.015),
            (x + half_base * 2.6, 1),
        ],
        STONE,
    )


def beam(pen: Pen, source: Point, *, to_left: bool, spread: float, alpha: int) -> None:
    sx, sy = source
    end = -0.1 if to_left else 1.1
    pen.glow([(sx, sy - 0.005), (end, sy - spread), (end, sy + spread), (sx, sy + 0.005)], LAMP, alpha)


def arrow(pen: Pen, start: Point, end: Point, label: str) -> None:
    """A storyboard direction arrow (camera or subject motion) in red pencil, with a short label."""
    pen.line([start, end], fill=RED, width=2)
    angle = math.atan2((end[1] - start[1]) * pen.h, (end[0] - start[0]) * pen.w)
    head = 10 * pen.stroke(1)
    ex, ey = pen.p(*end)
    for side in (-1, 1):
        a = angle + math.pi + side * 0.45
        pen.draw.line([(ex, ey), (ex + head * math.cos(a), ey + head * math.sin(a))], fill=RED, width=pen.stroke(2))
    sx, sy = pen.p(*start)
    pen.draw.text(
        (sx + 5 * pen.stroke(1), sy - 4 * pen.stroke(1)), label, fill=RED, font=font(11 * pen.stroke(1)), anchor="ls"
    )


def window_frame(pen: Pen) -> None:
    """The lamp room from inside: dark walls, a tall window with mullions, the brass lamp at the side."""
    wall = (48, 44, 46)
    pen.draw.rectangle([pen.p(0, 0), pen.p(0.14, 1)], fill=wall)
    pen.draw.rectangle([pen.p(0.86, 0), pen.p(1, 1)], fill=wall)
    pen.draw.rectangle([pen.p(0, 0), pen.p(1, 0.08)], fill=wall)
    for x in (0.14, 0.5, 0.86):
        pen.draw.rectangle([pen.p(x - 0.012, 0.08), pen.p(x + 0.012, 0.78)], fill=INK)
    pen.draw.rectangle([pen.p(0.14, 0.42), pen.p(0.86, 0.44)], fill=INK)


# --- text and frame --------------------------------------------------------------------------------------------


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def wrap(text: str, *, width_px: int, size: int) -> list[str]:
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and measure.textlength(candidate, font=font(size)) <= width_px:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


@dataclass(frozen=True)
class Board:
    name: str  # file name under specs/demo/boards/, extension decides PNG or JPEG
    size: tuple[int, int]
    shot: int
    panel: str  # "2/3"
    caption: str
    scene: Callable[[Pen], None]


@dataclass(frozen=True)
class Layout:
    margin: int
    header: int
    caption_size: int
    caption_lines: tuple[str, ...]
    box: tuple[int, int, int, int]  # the framed panel: left, top, right, bottom in board pixels


def layout(board: Board) -> Layout:
    """Where the header, panel and caption go; masks use the same panel box so they line up with the scene."""
    w, h = board.size
    margin = round(min(w, h) * 0.035)
    header = round(min(w, h) * 0.06)
    caption_size = max(12, round(min(w, h) * 0.042))
    lines = tuple(wrap(board.caption, width_px=w - 2 * margin, size=caption_size))
    caption_h = round(caption_size * 1.3) * len(lines) + margin
    return Layout(margin, header, caption_size, lines, (margin, margin + header, w - margin, h - margin - caption_h))


def render(board: Board, *, seed: int) -> Image.Image:
    """Paper, header line, framed panel with the scene, caption underneath: a page torn from a storyboard pad."""
    w, h = board.size
    at = layout(board)
    page = Image.new("RGB", board.size, PAPER)
    panel = Image.new("RGB", (at.box[2] - at.box[0], at.box[3] - at.box[1]), WHITE)
    board.scene(Pen(panel, seed=seed))
    page.paste(panel, at.box[:2])
    draw = ImageDraw.Draw(page)
    draw.rectangle(at.box, outline=INK, width=max(2, round(min(w, h) / 150)))
    small = font(max(10, round(min(w, h) * 0.032)))
    top = at.margin + at.header * 0.7
    draw.text((at.margin, top), f"{PROJECT}  SHOT {board.shot:02d}", fill=INK, font=small, anchor="ls")
    draw.text((w - at.margin, top), f"PANEL {board.panel}", fill=PENCIL, font=small, anchor="rs")
    y = at.box[3] + at.margin * 0.6
    for line in at.caption_lines:
        draw.text((at.margin, y), line, fill=INK, font=font(at.caption_size), anchor="lt")
        y += round(at.caption_size * 1.3)
    return page


# --- the story, panel by panel ---------------------------------------------------------------------------------

HORIZON = 0.46


def harbor_scene(pen: Pen, *, sun_y: float, birds: bool) -> None:
    sky(pen, DAWN_TOP, DAWN_LOW, HORIZON)
    sun(pen, 0.72, sun_y, 0.07)
    sea(pen, HORIZON, SEA_CALM, roughness=0.1)
    houses(pen, HORIZON, (0.03, 0.11, 0.19, 0.27))
    pier_side(pen, x0=0.0, x1=0.45, deck=0.7, water=0.74)
    for bx, size in ((0.58, 0.12), (0.8, 0.09), (0.36, 0.08)):
        boat(pen, bx, 0.62 if size < 0.1 else 0.8, size)
    if birds:
        gulls(pen, [(0.55, 0.2), (0.62, 0.14), (0.66, 0.24), (0.85, 0.18)])


def pier_walk_scene(pen: Pen, *, progress: float) -> None:
    """Mara walks away from us along the pier; ``progress`` 0..1 moves her towards its far end."""
    sky(pen, DAWN_TOP, DAWN_LOW, 0.4)
    sun(pen, 0.2, 0.34, 0.05)
    sea(pen, 0.4, SEA_CALM, roughness=0.15)
    pier_perspective(pen, vanish=(0.55, 0.4), near_left=0.25, near_right=0.85, length=0.8)
    depth = 0.1 + 0.62 * progress
    feet = 1 + (0.4 - 1) * depth
    x = 0.55 + (0.55 - 0.55) * depth
    figure(pen, x, feet - 0.02, 0.55 * (1 - depth) + 0.04, pose="walk" if progress < 1 else "stand", back=True)
    if progress >= 1:
        boat(pen, 0.8, 0.42, 0.05)
    else:
        arrow(pen, (0.1, 0.9), (0.1, 0.62), "TRACK IN")


def departure_scene(pen: Pen, *, boat_x: float, boat_size: float) -> None:
    sky(pen, DAWN_TOP, DAWN_LOW, HORIZON)
    sun(pen, 0.85, 0.28, 0.05)
    sea(pen, HORIZON, SEA_CALM, roughness=0.2)
    boat_water = HORIZON + 0.02 + 0.3 * boat_size / 0.2
    for i in range(4):  # the wake fans out behind the boat
        wx = boat_x - boat_size * (0.6 + i * 0.5)
        pen.line(
            [(wx, boat_water + 0.01 * i), (wx - boat_size * 0.4, boat_water + 0.02 + 0.012 * i)], fill=WHITE, width=1.2
        )
    boat(pen, boat_x, boat_water, boat_size)
    pier_side(pen, x0=0.0, x1=0.3, deck=0.82, water=0.86)
    figure(pen, 0.24, 0.795, 0.3, pose="wave")
    arrow(
        pen,
        (boat_x + boat_size * 0.7, boat_water - 0.12),
        (boat_x + boat_size * 0.7 + 0.15, boat_water - 0.16),
        "EXIT R",
    )


def storm_scene(pen: Pen, *, stage: int) -> None:
    """Four beats of the storm: 1 clouds on the horizon ... 4 rain swallows everything."""
    dark = stage / 4
    sky(pen, lerp(DAWN_TOP, STORM_TOP, dark), lerp(DAWN_LOW, STORM_LOW, dark), HORIZON)
    for i in range(stage + 1):
        clouds(pen, 0.2 + 0.3 * i, 0.3 - 0.07 * i, 0.5, lerp((150, 154, 162), (60, 64, 74), dark), puffs=6)
    sea(pen, HORIZON, lerp(SEA_CALM, SEA_GREY, dark), roughness=0.25 * stage)
    if stage == 3:
        lightning(pen, 0.7, 0.12, HORIZON)
    boat(pen, 0.45, HORIZON + 0.12 + 0.03 * stage, 0.06 + 0.03 * stage, tilt=(-8, 10, -22, 16)[stage - 1])
    if stage >= 3:
        rain(pen, density=60 * (stage - 2), slant=-0.4)


def lighthouse_scene(pen: Pen, *, lit: bool) -> None:
    horizon = 0.62
    sky(pen, NIGHT_TOP, NIGHT_LOW, horizon)
    clouds(pen, 0.5, 0.12, 0.9, (56, 62, 78), puffs=8)
    sea(pen, horizon, SEA_NIGHT, roughness=0.8)
    lighthouse(pen, 0.5, 0.86, 0.3, 0.2, lit=lit)
    if lit:
        beam(pen, (0.5, 0.26), to_left=True, spread=0.05, alpha=120)
        beam(pen, (0.5, 0.26), to_left=False, spread=0.03, alpha=70)
    rain(pen, density=120, slant=-0.3)


def window_scene(pen: Pen, *, answer: bool) -> None:
    sky(pen, NIGHT_TOP, NIGHT_LOW, 0.5)
    sea(pen, 0.5, SEA_NIGHT, roughness=0.6)
    if answer:
        pen.glow([(0.86, 0.3), (0.52, 0.6), (0.74, 0.72)], LAMP, 50)  # the beam finds the boat
        pen.circle(0.63, 0.64, 0.035, fill=lerp(SEA_NIGHT, LAMP, 0.5), outline=None)
        boat(pen, 0.63, 0.67, 0.09, tilt=6, light=True)
    window_frame(pen)
    figure(pen, 0.28, 1.3, 1.1, pose="stand", back=True)
    pen.draw.rectangle([pen.p(0, 0.8), pen.p(1, 1)], fill=(70, 60, 54))  # the sill hides her legs
    pen.line([(0, 0.8), (1, 0.8)], width=2)
    pen.circle(1.0, 0.3, 0.2, fill=lerp(LAMP, WHITE, 0.2))  # the big Fresnel lens at the right edge
    for r in (0.15, 0.1, 0.05):
        pen.circle(1.0, 0.3, r, fill=None, outline=(200, 160, 70))


def homecoming_scene(pen: Pen, *, arrived: bool) -> None:
    sky(pen, (196, 214, 232), (250, 214, 160), HORIZON)
    sun(pen, 0.35, 0.3, 0.08)
    sea(pen, HORIZON, SEA_CALM, roughness=0.05)
    lighthouse(pen, 0.9, HORIZON + 0.02, HORIZON - 0.3, 0.05, lit=False)
    if arrived:
        pier_side(pen, x0=0.0, x1=0.7, deck=0.74, water=0.78)
        boat(pen, 0.8, 0.74, 0.2)
        figure(pen, 0.4, 0.715, 0.28, pose="run")
        arrow(pen, (0.18, 0.5), (0.34, 0.5), "RUN")
    else:
        boat(pen, 0.6, 0.66, 0.16)
        gulls(pen, [(0.5, 0.18), (0.56, 0.12)])
        arrow(pen, (0.75, 0.82), (0.62, 0.9), "TOWARD CAM")


def boards() -> list[Board]:
    wide, tall, square = (640, 360), (360, 640), (480, 480)
    # A table reads better one board per entry than as the formatter's one argument per line.
    # fmt: off
    return [
        Board("harbor_1.png", wide, 1, "1/2", "Dawn over the harbour. Boats asleep at their moorings.",
              lambda pen: harbor_scene(pen, sun_y=HORIZON, birds=False)),
        Board("harbor_2.png", wide, 1, "2/2", "The sun clears the sea; gulls lift off the water.",
              lambda pen: harbor_scene(pen, sun_y=0.3, birds=True)),
        Board("pier_1.png", wide, 2, "1/3", "Mara steps onto the pier, red scarf in the wind.",
              lambda pen: pier_walk_scene(pen, progress=0.0)),
        Board("pier_2.png", wide, 2, "2/3", "Halfway out. The boards creak under her boots.",
              lambda pen: pier_walk_scene(pen, progress=0.5)),
        Board("pier_3.png", wide, 2, "3/3", "At the end of the pier she watches the Gull.",
              lambda pen: pier_walk_scene(pen, progress=1.0)),
        Board("boat_1.png", wide, 3, "1/2", "The Gull casts off; Mara waves from the pier.",
              lambda pen: departure_scene(pen, boat_x=0.55, boat_size=0.2)),
        Board("boat_2.jpg", wide, 3, "2/2", "The boat shrinks toward the horizon.",
              lambda pen: departure_scene(pen, boat_x=0.8, boat_size=0.07)),
        Board("storm_1.png", wide, 4, "1/4", "Clouds stack up over the open sea.",
              lambda pen: storm_scene(pen, stage=1)),
        Board("storm_2.png", wide, 4, "2/4", "The wind turns; whitecaps everywhere.",
              lambda pen: storm_scene(pen, stage=2)),
        Board("storm_3.jpg", wide, 4, "3/4", "Lightning. The Gull climbs a wave.",
              lambda pen: storm_scene(pen, stage=3)),
        Board("storm_4.png", wide, 4, "4/4", "Rain swallows the horizon.",
              lambda pen: storm_scene(pen, stage=4)),
        Board("lighthouse_1.png", tall, 5, "1/2", "The lighthouse stands dark in the storm.",
              lambda pen: lighthouse_scene(pen, lit=False)),
        Board("lighthouse_2.png", tall, 5, "2/2", "The lamp flares; a beam cuts the rain.",
              lambda pen: lighthouse_scene(pen, lit=True)),
        Board("window_1.png", square, 6, "1/2", "Mara at the lamp-room glass, searching the sea.",
              lambda pen: window_scene(pen, answer=False)),
        Board("window_2.png", square, 6, "2/2", "A small light answers from the dark water.",
              lambda pen: window_scene(pen, answer=True)),
        Board("home_1.png", wide, 7, "1/2", "Sunrise. The Gull comes home on a calm sea.",
              lambda pen: homecoming_scene(pen, arrived=False)),
        Board("home_2.png", wide, 7, "2/2", "Mara runs down the pier to meet it.",
              lambda pen: homecoming_scene(pen, arrived=True)),
    ]
    # fmt: on


# --- masks (specs/examples) ------------------------------------------------------------------------------------


def mask(board: Board, *, page: RGB, draw: Callable[[Pen], None]) -> Image.Image:
    """A greyscale mask the size of ``board``; ``draw`` paints the panel in the scene's relative coordinates."""
    at = layout(board)
    image = Image.new("RGB", board.size, page)
    panel = Image.new("RGB", (at.box[2] - at.box[0], at.box[3] - at.box[1]), page)
    draw(Pen(panel, seed=0))
    image.paste(panel, at.box[:2])
    return image.convert("L")


def harbor_static(pen: Pen) -> None:
    """harbor_1.png: white stays still (sky, shore, pier, the page itself), black may move (the sea and boats)."""
    pen.draw.rectangle([pen.p(0, HORIZON), pen.p(1, 1)], fill=(0, 0, 0))
    pen.draw.rectangle([pen.p(0, 0.66), pen.p(0.47, 0.8)], fill=MASK_WHITE)


def boat_static(pen: Pen) -> None:
    """boat_1.png: the sky, the pier and Mara stay still; the sea and the boat may move."""
    pen.draw.rectangle([pen.p(0, HORIZON), pen.p(1, 1)], fill=(0, 0, 0))
    pen.draw.rectangle([pen.p(0, 0.5), pen.p(0.33, 0.92)], fill=MASK_WHITE)


def boat_moves(pen: Pen) -> None:
    """boat_1.png: the Gull, hull to masthead; the example spec's trajectory pulls it out to sea."""
    pen.ellipse(0.55, 0.64, 0.12, 0.22, fill=MASK_WHITE, outline=None)


def arm_waves(pen: Pen) -> None:
    """boat_1.png: Mara's raised arm; its trajectory is a small wave from side to side."""
    pen.ellipse(0.285, 0.55, 0.04, 0.1, fill=MASK_WHITE, outline=None)


def masks() -> dict[str, Image.Image]:
    by_name = {board.name: board for board in boards()}
    black, white = (0, 0, 0), MASK_WHITE
    return {
        "harbor_static.png": mask(by_name["harbor_1.png"], page=white, draw=harbor_static),
        "boat_static.png": mask(by_name["boat_1.png"], page=white, draw=boat_static),
        "boat.png": mask(by_name["boat_1.png"], page=black, draw=boat_moves),
        "wave.png": mask(by_name["boat_1.png"], page=black, draw=arm_waves),
    }


def tiny_png() -> bytes:
    """A 300x300 blank title card: the smallest board Kling accepts, small enough to inline as base64."""
    image = Image.new("P", (300, 300), 0)
    image.putpalette([*PAPER, *INK])
    ImageDraw.Draw(image).rectangle([8, 8, 291, 291], outline=1, width=4)
    return encode(image, "PNG")


# --- writing ---------------------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=80, optimize=True)
    else:
        image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def to_palette(image: Image.Image, colours: int = PALETTE_COLOURS) -> Image.Image:
    # No dithering: flat colour areas compress far better and suit the drawn look.
    return image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--print-base64", action="store_true", help="print the inline base64 PNG and exit")
    args = parser.parse_args(argv)
    if args.print_base64:
        sys.stdout.write(base64.b64encode(tiny_png()).decode("ascii") + "\n")
        return 0
    for seed, board in enumerate(boards(), start=1):
        image = render(board, seed=seed)
        is_jpeg = board.name.endswith(".jpg")
        write(BOARDS_DIR / board.name, encode(image if is_jpeg else to_palette(image), "JPEG" if is_jpeg else "PNG"))
    drawn = masks()
    for name, image in drawn.items():
        write(MASKS_DIR / name, encode(image, "PNG"))
    written = len(boards()) + len(drawn)
    sys.stdout.write(f"wrote {written} images under {BOARDS_DIR.parent.parent.relative_to(ROOT)}/\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
