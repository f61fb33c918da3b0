"""Fixtures for the render store: an open store in a fresh folder, and a request record like the run's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store import RenderStore


def request(prompt: str = "a slow pan") -> dict[str, Any]:
    """A request record as the run builds it: images by hash and the reference the spec wrote."""
    return {
        "model": "kling-v1-6",
        "mode": "std",
        "duration": 5,
        "aspect_ratio": "16:9",
        "prompt": prompt,
        "images": ["sha256:" + "a" * 64, "sha256:" + "b" * 64],
        "image_refs": ["boards/a.png", "boards/b.png"],
        "callback_url": None,
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RenderStore]:
    opened = RenderStore.open(tmp_path / "out", project="pilot", provider="local", tool_version="0.1.0")
    try:
        yield opened
    finally:
        if (tmp_path / "out" / ".lock").exists():
            opened.release()
