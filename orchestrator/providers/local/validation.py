"""Checking a create request the way the real service does (the request table of ``docs/wire.md``).

Every rule of the contract's request table is enforced; a broken rule becomes ``InvalidRequest`` (HTTP 400 with
business code 1201, or 1200 when the body is not a JSON object at all) whose message names the field, as Kling's do.
Unknown fields are ignored, as the real API ignores them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from PIL import Image

from orchestrator.spec.shot import ASPECT_RATIOS, KNOWN_MODELS, MODES

# The models the simulator accepts: the one Kling documents on this route, and those clients send through gateways
# (docs/wire.md); all are charged by the same card.
SIMULATED_MODELS: tuple[str, ...] = (*KNOWN_MODELS, "kling-v2-1", "kling-v2-5-turbo")
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MIN_IMAGE_SIDE = 300
MAX_ASPECT = 2.5
MAX_PROMPT = 500
MAX_NEGATIVE_PROMPT = 200
DURATIONS = ("5", "10")
MAX_MASK_GROUPS = 6
MIN_POINTS, MAX_POINTS = 2, 77
JPEG_MAGIC = b"\xff\xd8\xff"
# Creates of one project send the same few boards again and again: a checked image is remembered by the hash of its
# base64 text (only images up to this size, so the memo stays within a few tens of MB).
CHECKED_CACHE_SIZE = 32
CHECKED_CACHE_MAX_TEXT = 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class InvalidRequest(Exception):
    """A request the real service would refuse with HTTP 400."""

    def __init__(self, message: str, *, code: int = 1201) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Board:
    """One image of ``image_list``: the bytes when sent inline, else the URL (never fetched)."""

    data: bytes | None
    url: str | None


@dataclass(frozen=True)
class CreateRequest:
    boards: tuple[Board, ...]
    prompt: str
    mode: str
    duration: int
    aspect_ratio: str
    external_task_id: str | None
    callback_url: str | None


def parse_create(body: Any) -> CreateRequest:
    """Validate a decoded JSON body; raises ``InvalidRequest`` naming the first bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code=1200)
    _check_model(body.get("model_name"))
    boards = _check_image_list(body.get("image_list"))
    prompt = _optional_text(body, "prompt", MAX_PROMPT) or ""
    _optional_text(body, "negative_prompt", MAX_NEGATIVE_PROMPT)
    mode = _choice(body, "mode", MODES, default="std")
    duration = _choice(body, "duration", DURATIONS, default="5")
    aspect_ratio = _choice(body, "aspect_ratio", ASPECT_RATIOS, default="16:9")
    _check_cfg_scale(body.get("cfg_scale"))
    if body.get("static_mask") is not None:
        _check_image(body["static_mask"], "static_mask")
    _check_dynamic_masks(body.get("dynamic_masks"))
    callback_url = _optional_url(body, "callback_url")
    external_task_id = _optional_text(body, "external_task_id", 256)
    if external_task_id == "":
        raise InvalidRequest("external_task_id must not be empty")
    return CreateRequest(
        boards=boards,
        prompt=prompt,
        mode=mode,
        duration=int(duration),
        aspect_ratio=aspect_ratio,
        external_task_id=external_task_id,
        callback_url=callback_url,
    )


def _check_model(value: Any) -> None:
    if value is not None and value not in SIMULATED_MODELS:
        raise InvalidRequest(f"model_name {value!r} is not supported; use {', '.join(SIMULATED_MODELS)}")


def _check_image_list(value: Any) -> tuple[Board, ...]:
    if not isinstance(value, list) or not 2 <= len(value) <= 4:
        raise InvalidRequest("image_list must be an array of 2 to 4 items")
    boards = []
    for index, item in enumerate(value):
        field = f"image_list[{index}].image"
        if not isinstance(item, dict) or "image" not in item:
            raise InvalidRequest(f"{field} is required (each item is an object with an image)")
        boards.append(_check_image(item["image"], field))
    return tuple(boards)


def _check_image(value: Any, field: str) -> Board:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{field} must be a non-empty string (an http(s) URL or Base64)")
    if value.startswith(("http://", "https://")):
        return Board(data=None, url=value)
    if value.startswith("data:"):
        raise InvalidRequest(f"{field}: send raw Base64 without a 'data:' prefix")
    key = hashlib.sha256(value.encode()).digest() if len(value) <= CHECKED_CACHE_MAX_TEXT else None
    board = _CHECKED.get(key) if key is not None else None
    if board is not None:
        return board
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field} is neither an http(s) URL nor valid Base64") from None
    _check_image_bytes(data, field)
    board = Board(data=data, url=None)
    if key is not None:
        _CHECKED.put(key, board)  # only images that passed: a refusal is checked again (its message names the field)
    return board


class _CheckedImages:
    """Images that passed the checks, by the sha256 of their base64 text (a small thread-safe LRU)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, Board] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Board | None:
        with self._lock:
            board = self._items.get(key)
            if board is not None:
                self._items.move_to_end(key)
            return board

    def put(self, key: bytes, board: Board) -> None:
        with self._lock:
            self._items[key] = board
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_CHECKED = _CheckedImages(CHECKED_CACHE_SIZE)


def _check_image_bytes(data: bytes, field: str) -> None:
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidRequest(f"{field} is {len(data)} bytes; images must be at most 10 MB")
    if not data.startswith((JPEG_MAGIC, PNG_MAGIC)):
        raise InvalidRequest(f"{field} is not a JPG/JPEG or PNG image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        raise InvalidRequest(f"{field} could not be read as an image") from None
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InvalidRequest(f"{field} is {width}x{height} px; images must be at least 300x300 px")
    if max(width / height, height / width) > MAX_ASPECT:
        raise InvalidRequest(f"{field} is {width}x{height} px; the aspect ratio must be between 1:2.5 and 2.5:1")


def _optional_text(body: dict[str, Any], field: str, limit: int) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string")
    if len(value) > limit:
        raise InvalidRequest(f"{field} is {len(value)} characters; at most {limit} are allowed")
    return value


def _choice(body: dict[str, Any], field: str, allowed: tuple[str, ...], *, default: str) -> str:
    value = body.get(field, default)
    if not isinstance(value, str) or value not in allowed:
        wanted = ", ".join(f'"{a}"' for a in allowed)
        raise InvalidRequest(f"{field} must be one of {wanted} (strings), not {value!r}")
    return value


def _check_cfg_scale(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest("cfg_scale must be a number between 0 and 1")
    if not 0 <= value <= 1:
        raise InvalidRequest(f"cfg_scale must be between 0 and 1, not {value}")


def _check_dynamic_masks(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list) or len(value) > MAX_MASK_GROUPS:
        raise InvalidRequest(f"dynamic_masks must be an array of at most {MAX_MASK_GROUPS} groups")
    for index, group in enumerate(value):
        field = f"dynamic_masks[{index}]"
        if not isinstance(group, dict):
            raise InvalidRequest(f"{field} must be an object with mask and trajectories")
        _check_image(group.get("mask"), f"{field}.mask")
        points = group.get("trajectories")
        if not isinstance(points, list) or not MIN_POINTS <= len(points) <= MAX_POINTS:
            raise InvalidRequest(f"{field}.trajectories must hold {MIN_POINTS} to {MAX_POINTS} points")
        for point in points:
            if not isinstance(point, dict) or not all(_is_int(point.get(axis)) for axis in ("x", "y")):
                raise InvalidRequest(f"{field}.trajectories points must be objects with integer x and y")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_url(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InvalidRequest(f"{field} must be an http(s) URL")
    return value
