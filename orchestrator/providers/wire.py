"""The Kling wire format, provider-neutral: the create body, and one normaliser for every answer shape.

What goes out and what comes back is described in docs/wire.md. ``build_request_body`` writes the create body exactly
as the contract says (``duration`` a string, raw base64 for local files, optional fields only when set).
``read_reply`` turns an HTTP answer into its ``data`` or into one of our errors (through ``classify``'s table), and
``parse_task`` turns any task shape into our ``Task``: Kling's task object, or the gateway's task wrapper (``code:
"success"``, ``data.status`` in capitals, the Kling task one or two levels down in ``data.data``). No HTTP happens
here; ``orchestrator.providers.client`` does that.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import httpx

from orchestrator.errors import ServerError, ShotRejectedError
from orchestrator.providers.base import Task, TaskStatus, Video
from orchestrator.providers.classify import COMETAPI_HINTS, Hints, Operation, Secrets, classify_error, read_answer
from orchestrator.spec.fingerprint import external_task_id as default_external_id
from orchestrator.spec.shot import ImageRef, ResolvedShot

__all__ = [
    "BASE64_CACHE_SIZE",
    "TASKS_PATH",
    "Base64Cache",
    "ImageChangedError",
    "ListReader",
    "Reply",
    "build_request_body",
    "encode_image",
    "encoded_body",
    "parse_task",
    "read_reply",
    "task_status",
]

TASKS_PATH = "/v1/videos/multi-image2video"
"""The route below a provider's prefix: ``/kling`` through CometAPI, nothing at Kling itself."""
BASE64_CACHE_SIZE = 64

# Every status word seen on the wire, lower-cased: Kling's own, its common variants, and the gateway's capitals.
_STATUS_WORDS: Mapping[str, TaskStatus] = {
    "submitted": TaskStatus.SUBMITTED,
    "queued": TaskStatus.SUBMITTED,
    "pending": TaskStatus.SUBMITTED,
    "not_start": TaskStatus.SUBMITTED,
    "processing": TaskStatus.PROCESSING,
    "running": TaskStatus.PROCESSING,
    "in_progress": TaskStatus.PROCESSING,
    "succeed": TaskStatus.SUCCEED,
    "succeeded": TaskStatus.SUCCEED,
    "success": TaskStatus.SUCCEED,
    "failed": TaskStatus.FAILED,
    "fail": TaskStatus.FAILED,
    "failure": TaskStatus.FAILED,
}


class ImageChangedError(ShotRejectedError):
    """A local image no longer has the content it had when the spec was validated (or cannot be read)."""


# --- the create body ----------------------------------------------------------------------------------------------


class Base64Cache:
    """A small thread-safe LRU of base64 text by sha256: many shots share the same boards."""

    def __init__(self, *, size: int = BASE64_CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> str | None:
        with self._lock:
            value = self._items.get(sha256)
            if value is not None:
                self._items.move_to_end(sha256)
            return value

    def put(self, sha256: str, value: str) -> None:
        with self._lock:
            self._items[sha256] = value
            self._items.move_to_end(sha256)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def encode_image(image: ImageRef, *, cache: Base64Cache | None = None) -> str:
    """What goes into the wire's ``image`` field: the URL, the inline base64 as given, or a file's raw base64.

    A file must still hash to the sha256 recorded at validation: otherwise the render would not match its
    fingerprint (and the manifest would lie about what was rendered). A cache hit holds exactly those bytes.
    """
    if image.source == "url" and image.url:
        return image.url
    if image.source == "base64" and image.base64 is not None:
        return image.base64
    if image.path is None:
        raise ImageChangedError(f"image {image.ref}: nothing to send (no path, URL or base64)")
    if image.sha256 and cache is not None and (hit := cache.get(image.sha256)) is not None:
        return hit
    try:
        data = image.path.read_bytes()
    except OSError as exc:
        raise ImageChangedError(f"image {image.ref}: cannot read {image.path}: {exc.strerror or exc}") from None
    if image.sha256 and hashlib.sha256(data).hexdigest() != image.sha256:
        raise ImageChangedError(
            f"image {image.ref}: the file changed since the spec was validated; run the command again"
        )
    text = base64.b64encode(data).decode("ascii")
    if image.sha256 and cache is not None:
        cache.put(image.sha256, text)
    return text


def build_request_body(
    shot: ResolvedShot, *, external_task_id: str | None = None, cache: Base64Cache | None = None
) -> dict[str, Any]:
    """The create request's JSON body for ``shot``, exactly as docs/wire.md says, carrying ``external_task_id``
    (the render's; by default the shot's first attempt's, unsalted).

    ``duration`` is a string, local files are raw base64 (no ``data:`` prefix), and optional fields appear only
    when the shot sets them. Raises ``ImageChangedError`` if a local file no longer matches its validated hash.
    """
    encode = partial(encode_image, cache=cache)
    body: dict[str, Any] = {
        "model_name": shot.model,
        "image_list": [{"image": encode(image)} for image in shot.images],
        "prompt": shot.prompt,
    }
    if shot.negative_prompt:
        body["negative_prompt"] = shot.negative_prompt
    if shot.cfg_scale is not None:
        body["cfg_scale"] = shot.cfg_scale
    if shot.static_mask is not None:
        body["static_mask"] = encode(shot.static_mask)
    if shot.dynamic_masks:
        body["dynamic_masks"] = [
            {"mask": encode(group.mask), "trajectories": [{"x": p.x, "y": p.y} for p in group.trajectories]}
            for group in shot.dynamic_masks
        ]
    body["mode"] = shot.mode
    body["duration"] = str(shot.duration)
    body["aspect_ratio"] = shot.aspect_ratio
    if shot.callback_url:
        body["callback_url"] = shot.callback_url
    body["external_task_id"] = external_task_id or default_external_id(shot)
    return body


def encoded_body(shot: ResolvedShot, *, external_task_id: str, cache: Base64Cache | None) -> bytes:
    """The create body as the bytes that go out (blocking for local files: call it in a worker thread)."""
    body = build_request_body(shot, external_task_id=external_task_id, cache=cache)
    return json.dumps(body, ensure_ascii=False).encode()


def all_encoded(shot: ResolvedShot, cache: Base64Cache) -> bool:
    """Is every image of ``shot`` a URL or a file already in ``cache``? Then encoding the body is cheap."""
    images = [*shot.images, *([shot.static_mask] if shot.static_mask else [])]
    images += [group.mask for group in shot.dynamic_masks]
    # Inline base64 may be megabytes of JSON to dump: that goes to the thread like a file read would.
    return all(
        image.source == "url" or (image.source == "path" and image.sha256 and cache.get(image.sha256))
        for image in images
    )


# --- answers ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A successful answer: its ``data`` (a task, a gateway task wrapper, a list...) and ``request_id``."""

    data: Any
    request_id: str | None


def read_reply(
    response: httpx.Response,
    *,
    operation: Operation,
    task_id: str | None = None,
    secret: Secrets = None,
    hints: Hints = COMETAPI_HINTS,
) -> Reply:
    """The ``data`` of a success answer, whichever envelope carries it (Kling's ``code: 0``, the gateway's ``code:
    "success"``, a bare object), or the classified error for anything else: an error envelope of either shape, a
    gateway string code, HTML, an empty body, a redirect."""
    answer = read_answer(response.content)
    request_id = answer.request_id or response.headers.get("x-request-id")
    if response.is_success and answer.succeeded:
        body = answer.body if isinstance(answer.body, Mapping) else {}
        return Reply(data=body.get("data", body), request_id=request_id)
    raise classify_error(
        http_status=response.status_code,
        content=response.content,
        headers=response.headers,
        operation=operation,
        task_id=task_id,
        secret=secret,
        hints=hints,
    )


def parse_task(data: object, *, request_id: str | None = None) -> Task:
    """Our ``Task`` from a Kling task object or from the gateway's task wrapper.

    Tolerant of missing optional parts; a ``data`` with no ``task_id`` anywhere (or that is not an object) is a
    ``ServerError``: the answer is not a Kling task. An unknown status word maps to PROCESSING (polling on is safe,
    declaring an outcome is not) and is kept in ``raw_status`` as it came.
    """
    if isinstance(data, Mapping) and _is_gateway_task(data):
        return _gateway_task(data, request_id=request_id)
    if not isinstance(data, Mapping) or data.get("task_id") in (None, ""):
        raise ServerError("the provider's answer has no task in it", request_id=request_id)
    info = data.get("task_info")
    external = info.get("external_task_id") if isinstance(info, Mapping) else None
    external = external or data.get("external_task_id")
    raw_status = str(data.get("task_status") or "")
    return Task(
        task_id=str(data["task_id"]),
        status=task_status(raw_status) or TaskStatus.PROCESSING,
        status_message=str(data.get("task_status_msg") or ""),
        external_task_id=str(external) if external else None,
        videos=_videos(data.get("task_result")),
        created_at=_int_or_none(data.get("created_at")),
        updated_at=_int_or_none(data.get("updated_at")),
        request_id=request_id,
        raw_status=raw_status,
        units_charged=_units(data),
    )


class ListReader:
    """Reads the pages of one client's list rounds, each task item parsed only when it changed since the last page.

    A run lists every fraction of a second, and each page holds every task in flight: from one page to the next
    nearly all are the same, word for word (a task's ``updated_at`` moves only when its status does). An item equal
    to the one of the same ``task_id`` on the previous page gives back the ``Task`` read from it then (its
    ``request_id`` that answer's); any other is parsed with ``parse_task``, and items that are not tasks are skipped.
    Only the latest page is remembered.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[dict[str, Any], Task]] = {}

    def read(self, items: list[Any], *, request_id: str | None) -> list[Task]:
        last, current = self._last, {}
        tasks = []
        for item in items:
            key = item.get("task_id") if type(item) is dict else None
            if type(key) is not str:
                key = None
            elif (known := last.get(key)) is not None and known[0] == item:
                current[key] = known
                tasks.append(known[1])
                continue
            try:
                task = parse_task(item, request_id=request_id)
            except ServerError:
                continue
            if key is not None:
                current[key] = (item, task)
            tasks.append(task)
        self._last = current
        return tasks


def task_status(raw: object) -> TaskStatus | None:
    """Our status for a wire status word (any case), or ``None`` for a word we do not know."""
    return _STATUS_WORDS.get(str(raw or "").strip().lower())


def with_external_id(task: Task, external_task_id: str) -> Task:
    return replace(task, external_task_id=external_task_id)


def _is_gateway_task(data: Mapping[str, Any]) -> bool:
    # The gateway's wrapper has ``status`` (and often ``action``, ``progress``, a nested ``data``); a Kling task has
    # ``task_status`` instead.
    return "task_status" not in data and "status" in data


def _gateway_task(wrapper: Mapping[str, Any], *, request_id: str | None) -> Task:
    """The gateway's wrapper: its own task id, status, progress and fail reason around the Kling task (or around a
    whole Kling envelope, or nothing yet)."""
    kling = _inner_kling_task(wrapper.get("data"), request_id=request_id)
    task_id = str(wrapper.get("task_id") or (kling.task_id if kling else "") or "")
    if not task_id:
        raise ServerError("the gateway's answer has no task in it", request_id=request_id)
    gateway_word = str(wrapper.get("status") or "")
    status, raw_status = _decide_status(gateway_word, kling)
    fail_reason = str(wrapper.get("fail_reason") or "")
    progress = wrapper.get("progress")
    base = kling or Task(task_id=task_id, status=status, request_id=request_id)
    return replace(
        base,
        task_id=task_id,
        status=status,
        raw_status=raw_status,
        status_message=base.status_message or fail_reason,
        progress=str(progress) if progress not in (None, "") else None,
        created_at=base.created_at or _seconds_to_ms(wrapper.get("submit_time")),
        updated_at=base.updated_at or _seconds_to_ms(wrapper.get("finish_time")),
    )


def _inner_kling_task(inner: object, *, request_id: str | None) -> Task | None:
    if isinstance(inner, str) and inner.lstrip().startswith("{"):
        try:
            inner = json.loads(inner)
        except ValueError:
            return None
    if not isinstance(inner, Mapping):
        return None
    if "task_id" not in inner and isinstance(inner.get("code"), int):  # a whole Kling envelope
        inner = inner.get("data") if inner.get("code") == 0 else None
        if not isinstance(inner, Mapping):
            return None
    if not inner.get("task_id"):
        return None
    return parse_task(inner, request_id=request_id)


def _decide_status(gateway_word: str, kling: Task | None) -> tuple[TaskStatus, str]:
    """One status from the gateway's word and the Kling task's: a terminal word wins (the gateway's first: it is
    the one that bills and refunds), then the further along of the two; an unknown word never ends a task."""
    gateway = task_status(gateway_word)
    upstream = task_status(kling.raw_status) if kling else None
    if gateway is not None and gateway.finished:
        return gateway, gateway_word
    if upstream is not None and kling is not None and (gateway is None or _rank(upstream) >= _rank(gateway)):
        return upstream, kling.raw_status
    if gateway is not None:
        return gateway, gateway_word
    return TaskStatus.PROCESSING, gateway_word or (kling.raw_status if kling else "")


def _rank(status: TaskStatus) -> int:
    return 0 if status is TaskStatus.SUBMITTED else 1 if status is TaskStatus.PROCESSING else 2


def _videos(result: object) -> tuple[Video, ...]:
    videos = result.get("videos") if isinstance(result, Mapping) else None
    if not isinstance(videos, list):
        return ()
    return tuple(
        Video(id=str(v.get("id") or ""), url=str(v["url"]), duration=str(v.get("duration") or ""))
        for v in videos
        if isinstance(v, Mapping) and v.get("url")
    )


def _units(data: Mapping[str, Any]) -> float | None:
    """``final_unit_deduction`` (a string on the wire): the units a finished task was charged."""
    raw = data.get("final_unit_deduction")
    if raw is None:
        result = data.get("task_result")
        raw = result.get("final_unit_deduction") if isinstance(result, Mapping) else None
    if raw is None or isinstance(raw, bool):
        return None
    try:
        units = float(str(raw).strip())
    except ValueError:
        return None
    return units if math.isfinite(units) and units >= 0 else None


def _int_or_none(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return int(raw)
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    return None


def _seconds_to_ms(raw: object) -> int | None:
    # The gateway's submit_time and finish_time are Unix seconds (0 when unset); ours are milliseconds.
    seconds = _int_or_none(raw)
    return seconds * 1000 if seconds else None
