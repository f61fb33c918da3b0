"""Helpers shared by tests in several folders: boards written to disk and shots built by hand.

Imported as ``from tests.helpers import ...`` (pytest's importlib mode makes ``tests`` importable as a package).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from PIL import Image

from orchestrator.spec.fingerprint import fingerprint
from orchestrator.spec.shot import ImageRef, ResolvedShot


def write_board(path: Path, size: tuple[int, int] = (640, 360), colour: tuple[int, int, int] = (10, 20, 30)) -> Path:
    """A valid PNG board at ``path`` (folders made as needed); give each board its own colour for distinct bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")
    return path


def image_ref(path: Path) -> ImageRef:
    """The reference the spec loader would make for the board file at ``path``, with its facts."""
    data = path.read_bytes()
    with Image.open(path) as image:
        width, height, fmt = image.width, image.height, image.format
    return ImageRef(
        source="path",
        ref=path.name,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        format=fmt,
        bytes=len(data),
    )


def fingerprinted(shot: ResolvedShot) -> ResolvedShot:
    """The shot with its fingerprint filled in, as the resolver does."""
    return dataclasses.replace(shot, fingerprint=fingerprint(shot))


def hand_shot(shot_id: str, *, images: tuple[ImageRef, ...], **overrides: Any) -> ResolvedShot:
    """A fingerprinted shot of project ``demo`` built by hand, prompt ``prompt of <id>`` unless overridden."""
    fields: dict[str, Any] = {
        "id": shot_id,
        "index": 0,
        "project": "demo",
        "model": "kling-v1-6",
        "images": images,
        "prompt": f"prompt of {shot_id}",
    }
    fields.update(overrides)
    return fingerprinted(ResolvedShot(**fields))


def write_two_board_spec(folder: Path, n: int, *, project: str, concurrency: int | None = None) -> Path:
    """``folder/project.yaml``: ``n`` shots ``shot0..`` over two boards, rendered locally into ``folder/out``.

    ``concurrency`` (with 100 requests/s) sets the spec's limits; without it the defaults apply.
    """
    for k in range(2):
        write_board(folder / f"b{k}.png", (400, 300), (60 * k, 90, 120))
    shots = "".join(f"  - {{id: shot{i}, images: [b0.png, b1.png], prompt: 'pan {i}'}}\n" for i in range(n))
    limits = f"limits: {{concurrency: {concurrency}, requests_per_second: 100}}\n" if concurrency else ""
    spec = folder / "project.yaml"
    spec.write_text(f"version: 1\nproject: {project}\noutput_dir: out\nprovider: local\n{limits}shots:\n{shots}")
    return spec
