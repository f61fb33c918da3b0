"""Fixtures for the simulator tests: a running simulator on loopback and small valid boards."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from orchestrator.providers.local import LocalSimulator, SimulatorOptions

CREATE = "/kling/v1/videos/multi-image2video"
KEY = LocalSimulator.LOCAL_API_KEY


def image_bytes(size: tuple[int, int] = (320, 320), *, fmt: str = "PNG", color: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BOARD = b64(image_bytes())
BOARD_JPEG = b64(image_bytes((640, 360), fmt="JPEG", color="orange"))


def body(**changes: Any) -> dict[str, Any]:
    """A valid create body, with fields replaced (a value of ``None`` removes the field)."""
    base: dict[str, Any] = {
        "model_name": "kling-v1-6",
        "image_list": [{"image": BOARD}, {"image": BOARD_JPEG}],
        "prompt": "a slow push in",
        "duration": "5",
        "aspect_ratio": "16:9",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def make_sim() -> Iterator[Callable[..., LocalSimulator]]:
    """Start simulators with the given options (cheap, fast renders unless told); all are stopped afterwards."""
    started: list[LocalSimulator] = []

    def make(**options: Any) -> LocalSimulator:
        options.setdefault("cheap_video", True)
        options.setdefault("render_time", 0.2)
        options.setdefault("seed", 7)
        sim = LocalSimulator(SimulatorOptions(**options))
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: Callable[..., LocalSimulator]) -> LocalSimulator:
    return make_sim()


def client_for(sim: LocalSimulator, *, key: str | None = KEY) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.Client(base_url=sim.base_url, headers=headers, timeout=10)


@pytest.fixture
def client(sim: LocalSimulator) -> Iterator[httpx.Client]:
    with client_for(sim) as c:
        yield c


@pytest.fixture
def make_body() -> Callable[..., dict[str, Any]]:
    return body


@pytest.fixture
def make_client() -> Callable[..., httpx.Client]:
    return client_for


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    return image_bytes
