"""The simulator's HTTP face: a Starlette app speaking the CometAPI/Kling wire contract in one of three dialects.

``cometapi`` (the default) serves the routes below under ``/kling/v1`` and, as before, also under ``/v1``;
``kling`` (Kling direct) serves them under ``/v1`` only and checks a JWT (``kling_auth``); ``gateway`` (CometAPI as a
new-api gateway, ``gateway``) serves create and one-task query under ``/kling/v1`` only, in the gateway's shapes.

    POST /kling/v1/videos/multi-image2video                  create a task
    GET  /kling/v1/videos/multi-image2video/{id}             a task by task_id, else by external_task_id;
                                                             ``?external_task_id=true`` means {id} is external
    GET  /kling/v1/videos/multi-image2video?external_task_id=X   a task by external id
    GET  /kling/v1/videos/multi-image2video?pageNum=&pageSize=   list, newest first (data is a plain array)
    GET  /_sim/videos/{task_id}.mp4                          the rendered animatic (no auth, like a CDN link)
    GET  /_sim/stats   POST /_sim/config   POST /_sim/reset  admin: counters, fault knobs, forget everything

Kling routes need ``Authorization: Bearer <key>``; admin and video routes do not (the server is loopback-only).
Faults (drops, 1302, 5xx) are thrown on the Kling routes only, after authentication, each in the dialect's shape.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, ImageDraw, ImageFont
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from orchestrator.errors import ConfigError
from orchestrator.providers.local import gateway
from orchestrator.providers.local.animatic import render_animatic
from orchestrator.providers.local.kling_auth import AuthFailure, bearer_token, verify_token
from orchestrator.providers.local.persist import StateStore, TaskRecord, now_ms, sim_task
from orchestrator.providers.local.state import (
    LOCAL_ACCESS_KEY,
    LOCAL_SECRET_KEY,
    Refusal,
    SimTask,
    SimulatorOptions,
    SimulatorState,
    format_units,
    public_options,
)
from orchestrator.providers.local.validation import Board, CreateRequest, InvalidRequest, parse_create
from orchestrator.spec.shot import DEFAULT_MODEL

KLING_PREFIXES = ("/kling/v1", "/v1")
PREFIXES_BY_DIALECT: dict[str, tuple[str, ...]] = {
    "cometapi": KLING_PREFIXES,
    "kling": ("/v1",),
    "gateway": ("/kling/v1",),
}
COLLECTION = "/videos/multi-image2video"
MAX_BODY_BYTES = 64 * 1024 * 1024  # four 10 MB images in Base64, with room to spare
SERVER_ERRORS = ((500, 5000, "internal server error"), (503, 5001, "service under maintenance"), (504, 5002, "timeout"))
CHEAP_CACHE_SIZE = 64  # cheap videos are a few kB each


def envelope(data: Any, *, code: int = 0, message: str = "SUCCEED", status: int = 200) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": str(uuid.uuid4()), "data": data}
    return JSONResponse(body, status_code=status)


def error(status: int, code: int, message: str) -> JSONResponse:
    return envelope(None, code=code, message=message, status=status)


class DroppedConnection(Response):
    """No answer: start a response and stop, so the server closes the connection mid-reply.

    Under uvicorn the client sees the connection end before a complete answer (httpx raises a
    ``RemoteProtocolError``); that is the closest an ASGI app can come to pulling the plug.
    """

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1024")]})


def task_json(task: SimTask, *, base_url: str, now: float) -> dict[str, Any]:
    """The task object of the wire contract, as of ``now``; a succeeded task says what it cost."""
    status, message, since = task.status_at(now)
    result: dict[str, Any] = {}
    if status == "succeed":
        video = {"id": f"{task.task_id}01", "url": f"{base_url}/_sim/videos/{task.task_id}.mp4"}
        result = {"videos": [{**video, "duration": f"{task.duration}.0"}]}
    data = {
        "task_id": task.task_id,
        "task_status": status,
        "task_status_msg": message,
        "task_info": {"external_task_id": task.external_task_id} if task.external_task_id else {},
        "task_result": result,
        "created_at": task.created_ms,
        "updated_at": task.created_ms + round((since - task.created_mono) * 1000),
    }
    if status == "succeed":  # failed tasks are not charged
        data["final_unit_deduction"] = format_units(task.units)
    return data


def placeholder_board(url: str) -> bytes:
    """A board standing in for an image given by URL (the simulator never fetches anything)."""
    image = Image.new("RGB", (960, 540), (38, 50, 72))
    draw = ImageDraw.Draw(image)
    draw.rectangle((24, 24, 935, 515), outline=(200, 200, 210), width=4)
    font = ImageFont.load_default(size=28)
    parts = urlsplit(url)
    tail = parts.path.rsplit("/", 1)[-1] or parts.path
    draw.text((60, 200), "image by URL (not fetched)", font=font, fill=(230, 230, 235))
    draw.text((60, 260), f"{parts.netloc}", font=font, fill=(170, 200, 255))
    draw.text((60, 310), tail[:60], font=font, fill=(170, 200, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _board_bytes(boards: tuple[Board, ...]) -> list[bytes]:
    return [board.data if board.data is not None else placeholder_board(board.url or "") for board in boards]


def cheap_video_key(create: CreateRequest) -> str:
    """What a cheap animatic depends on: its boards, duration and aspect ratio (no caption, fixed frame rate)."""
    digest = hashlib.sha256(f"{create.duration}|{create.aspect_ratio}".encode())
    for board in create.boards:
        part = board.data if board.data is not None else b"url:" + (board.url or "").encode()
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


class CheapVideos:
    """Cheap animatics already encoded, by ``cheap_video_key``: a benchmark's hundreds of tasks share a handful of
    board sets, and the simulator must cost next to nothing per task (it shares the machine, and in-process its
    event loop shares the GIL with the render threads). The same inputs give the same bytes, so this is a memo."""

    def __init__(self, *, size: int = CHEAP_CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                self.hits += 1
            return data

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._items[key] = data
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class SimulatorApi:
    """Request handlers over one ``SimulatorState``; renders go to ``executor`` (a small thread pool)."""

    def __init__(
        self, *, state: SimulatorState, storage_dir: Path, executor: Executor, stopping: threading.Event | None = None
    ) -> None:
        self.state = state
        self.storage_dir = storage_dir
        self.executor = executor
        self.stopping = stopping or threading.Event()
        self.cheap_videos = CheapVideos()
        if state.store is not None:
            self._restore(state.store)

    def _restore(self, store: StateStore) -> None:
        """Take back the tasks of an earlier run; those whose video is missing are rendered (again)."""
        now_mono, wall_ms = self.state.now(), now_ms()
        tasks: list[tuple[SimTask, TaskRecord]] = []
        for record in store.tasks:
            video = self.storage_dir / f"{record.task_id}.mp4"
            tasks.append((sim_task(record, now_mono=now_mono, wall_ms=wall_ms, video=video), record))
        self.state.restore([task for task, _ in tasks])
        for task, record in tasks:
            if task.render is None and not task.fails:
                task.render = self.executor.submit(self._render_again, task, record, store)

    def _render_again(self, task: SimTask, record: TaskRecord, store: StateStore) -> None:
        self._render(task, store.create_request(record), self.state.options)

    # -- plumbing -----------------------------------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        return self.state.options.dialect

    def _authenticate(self, request: Request) -> str | JSONResponse:
        """The caller's key (the access key under the kling dialect), or the 401 to answer."""
        header = request.headers.get("authorization")
        if self.dialect == "kling":
            options = self.state.options
            keys = options.kling_keys if options.kling_keys is not None else {LOCAL_ACCESS_KEY: LOCAL_SECRET_KEY}
            try:
                return verify_token(bearer_token(header), keys)
            except AuthFailure as failure:
                return error(401, failure.code, failure.message)
        try:
            token = bearer_token(header, what="key")
        except AuthFailure as failure:
            return self._unauthorized(failure.code, failure.message)
        accepted = self.state.options.api_keys
        if accepted is not None and token not in accepted:
            return self._unauthorized(1000, "authentication failed: unknown API key")
        return token

    def _unauthorized(self, code: int, message: str) -> JSONResponse:
        if self.dialect == "gateway":
            return gateway.api_error(401, "invalid_token", f"invalid token: {message}")
        return error(401, code, message)

    def _kling_error(self, status: int, code: int, message: str) -> Response:
        """A Kling-coded error in the dialect's shape (under the gateway: relayed from the upstream account)."""
        if self.dialect == "gateway":
            return gateway.upstream_error(status, code, message)
        return error(status, code, message)

    def _fault(self) -> Response | None:
        """Throw the per-request dice: a dropped connection, 1302 or a 5xx, or ``None`` to carry on."""
        options = self.state.options
        if self.state.roll("drop", options.drop_rate):
            return DroppedConnection()
        if self.state.roll("1302", options.rate_1302):
            return self._kling_error(429, 1302, "requests too fast: rate limit exceeded")
        if self.state.roll("5xx", options.rate_5xx):
            status, code, message = self.state.choose(SERVER_ERRORS)
            if self.dialect == "gateway" and status == 504:
                return gateway.html_page(504)  # the gateway's proxy timed out: a page, not JSON
            return self._kling_error(status, code, message)
        return None

    def _enter(self, request: Request, route: str, *, create: bool = False) -> str | Response:
        """Count the request, authenticate it and throw the fault dice; the key, or the answer to send."""
        self.state.count_request(f"{request.method} {route}")
        key = self._authenticate(request)
        if isinstance(key, Response):
            return key
        if create:
            self.state.count_create_attempt()
        return self._fault() or key

    @staticmethod
    def _base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def _answer(self, request: Request, task: SimTask) -> JSONResponse:
        return envelope(task_json(task, base_url=self._base_url(request), now=self.state.now()))

    # -- Kling routes -------------------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        key = self._enter(request, f"{_prefix(request)}{COLLECTION}", create=True)
        if isinstance(key, Response):
            return key
        try:
            body = await _json_body(request)
            refused = self._no_channel(body)
            if refused is not None:
                return refused
            create = parse_create(body)
            task = self.state.create(
                api_key=key,
                external_task_id=create.external_task_id,
                duration=create.duration,
                mode=create.mode,
                request=create,
            )
        except InvalidRequest as exc:
            return self._kling_error(400, exc.code, exc.message)
        except Refusal as exc:
            return self._kling_error(exc.status, exc.code, exc.message)
        if not task.fails:
            task.render = self.executor.submit(self._render, task, create, self.state.options)
        if self.state.roll("drop_after_create", self.state.options.drop_after_create_rate):
            return DroppedConnection()
        if self.dialect == "gateway" and self.state.roll("bill_then_524", self.state.options.bill_then_524_rate):
            return gateway.html_page(524)  # recorded and billed upstream; the answer timed out in front of it
        data = task_json(task, base_url=self._base_url(request), now=task.created_mono)
        return envelope({k: data[k] for k in ("task_id", "task_status", "task_info", "created_at", "updated_at")})

    def _no_channel(self, body: Any) -> Response | None:
        """The gateway's 503 for a model it has no channel for (it routes on the model before any upstream)."""
        disabled = self.state.options.disabled_models
        if self.dialect != "gateway" or not disabled or not isinstance(body, dict):
            return None
        model = body.get("model_name") or DEFAULT_MODEL
        if model not in disabled:
            return None
        self.state.count_fault("model_not_found")
        return gateway.model_not_found(str(model))

    def _render(self, task: SimTask, create: CreateRequest, options: SimulatorOptions) -> None:
        dest = self.storage_dir / f"{task.task_id}.mp4"
        key = cheap_video_key(create) if options.cheap_video else None
        cached = self.cheap_videos.get(key) if key is not None else None
        if cached is not None:
            # Nobody can fetch the file before mark_rendered announces it, so a plain write is complete enough.
            dest.write_bytes(cached)
        else:
            render_animatic(
                _board_bytes(create.boards),
                duration=create.duration,
                aspect_ratio=create.aspect_ratio,
                dest=dest,
                caption=(task.external_task_id or task.task_id) if options.caption else None,
                fps=options.fps,
                cheap=options.cheap_video,
                # A stopping simulator does not wait for long renders: with a state folder they are redone on start.
                cancelled=self.stopping.is_set,
            )
            if key is not None:
                self.cheap_videos.put(key, dest.read_bytes())
        self.state.mark_rendered(task)

    async def query(self, request: Request) -> Response:
        key = self._enter(request, f"{_prefix(request)}{COLLECTION}/{{id}}")
        if isinstance(key, Response):
            return key
        ident = request.path_params["ident"]
        if self.dialect == "gateway":
            return self._gateway_query(request, key, ident)
        by_external = request.query_params.get("external_task_id", "").lower() == "true"
        task = None if by_external else self.state.get(api_key=key, task_id=ident)
        # Clients in the wild also put the external id where the task id goes: fall back to it.
        task = task or self.state.find(api_key=key, external_task_id=ident)
        if task is None:
            return error(404, 1203, f"task {ident!r} does not exist")
        return self._answer(request, task)

    def _gateway_query(self, request: Request, key: str, ident: str) -> Response:
        """The gateway knows task ids only (query flags are ignored), and only once its poller has seen them."""
        task = self.state.get(api_key=key, task_id=ident)
        if task is None:
            return gateway.task_not_exist()
        now = self.state.now()
        if now - task.created_mono < self.state.options.not_visible_for:
            self.state.count_fault("not_visible")
            return gateway.task_not_exist()
        kling_task = task_json(task, base_url=self._base_url(request), now=now)
        inner = self.state.options.gateway_inner
        return JSONResponse(gateway.wrapped_task(kling_task, task=task, now=now, inner=inner))

    async def collection(self, request: Request) -> Response:
        key = self._enter(request, f"{_prefix(request)}{COLLECTION}")
        if isinstance(key, Response):
            return key
        external = request.query_params.get("external_task_id")
        if external is not None:
            task = self.state.find(api_key=key, external_task_id=external)
            if task is None:
                return error(404, 1203, f"no task with external_task_id {external!r}")
            return self._answer(request, task)
        try:
            page_num = _int_param(request, "pageNum", default=1, low=1, high=1000)
            page_size = _int_param(request, "pageSize", default=30, low=1, high=500)
        except InvalidRequest as exc:
            return error(400, exc.code, exc.message)
        now, base_url = self.state.now(), self._base_url(request)
        tasks = self.state.page(api_key=key, page_num=page_num, page_size=page_size)
        return envelope([task_json(task, base_url=base_url, now=now) for task in tasks])

    # -- files and admin ----------------------------------------------------------------------------------------

    async def video(self, request: Request) -> Response:
        self.state.count_request("GET /_sim/videos/{file}")
        name = request.path_params["name"]
        path = self.storage_dir / name
        # Only our own file names: digits + .mp4, so no path ever leaves the storage directory.
        if not (name.endswith(".mp4") and name[:-4].isdigit()) or not path.is_file():
            return error(404, 1203, f"no video named {name!r}")
        return FileResponse(path, media_type="video/mp4")

    async def stats(self, request: Request) -> Response:
        self.state.count_request("GET /_sim/stats")
        return envelope(self.state.stats().to_json())

    async def config(self, request: Request) -> Response:
        self.state.count_request("POST /_sim/config")
        try:
            changes = await _json_body(request)
            if not isinstance(changes, dict):
                raise InvalidRequest("config must be a JSON object of option: value", code=1200)
            options = self.state.configure(changes)
        except InvalidRequest as exc:
            return error(400, exc.code, exc.message)
        except ConfigError as exc:
            return error(400, 1201, exc.message)
        return envelope(public_options(options))

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return envelope(None)


def _prefix(request: Request) -> str:
    path = request.url.path
    return next((p for p in KLING_PREFIXES if path.startswith(p + "/")), "")


async def _json_body(request: Request) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise InvalidRequest("request body is too large", code=1200)
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("request body is not valid JSON", code=1200) from None


def _int_param(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    code, message = (1202, "method not allowed on this route") if status == 405 else (1202, "no such route")
    return error(404 if status in (404, 405) else status, code, message)


async def _gateway_not_found(request: Request, exc: Exception) -> Response:
    # new-api answers every route it does not relay (the list, /v1/videos/...) with its own 404.
    return gateway.invalid_url(request.method, request.url.path)


def create_app(
    *, state: SimulatorState, storage_dir: Path, executor: Executor, stopping: threading.Event | None = None
) -> Starlette:
    """The ASGI app. ``storage_dir`` must exist; ``executor`` runs renders (keep it small: rendering is CPU-bound).

    Setting ``stopping`` makes renders in progress give up (the simulator is shutting down). The dialect (fixed for
    the app's life) decides which Kling routes exist.
    """
    api = SimulatorApi(state=state, storage_dir=storage_dir, executor=executor, stopping=stopping)
    routes = [Route("/_sim/videos/{name}", api.video, methods=["GET"])]
    routes += [
        Route("/_sim/stats", api.stats, methods=["GET"]),
        Route("/_sim/config", api.config, methods=["POST"]),
        Route("/_sim/reset", api.reset, methods=["POST"]),
    ]
    dialect = state.options.dialect
    for prefix in PREFIXES_BY_DIALECT[dialect]:
        routes.append(Route(prefix + COLLECTION, api.create, methods=["POST"]))
        if dialect != "gateway":  # the gateway has no list and no lookup by external id
            routes.append(Route(prefix + COLLECTION, api.collection, methods=["GET"]))
        routes.append(Route(prefix + COLLECTION + "/{ident}", api.query, methods=["GET"]))
    not_found = _gateway_not_found if dialect == "gateway" else _not_found
    handlers: dict[Any, Callable[[Request, Exception], Any]] = {404: not_found, 405: not_found}
    return Starlette(routes=routes, exception_handlers=handlers)
