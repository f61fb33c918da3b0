"""The CometAPI client for Kling multi-image-to-video: the provider that spends the user's money.

It follows ``kling-api.md`` to the letter: one ``httpx.AsyncClient`` (built in ``_build_client``) with explicit
timeouts, the request body exactly as the contract (``duration`` a string, raw base64 for local files, optional
fields only when set), answers parsed tolerantly into ``Task`` records, and every failure classified by
``orchestrator.providers.classify``. It never retries by itself: the scheduler decides, from the error's class.

The API key lives in the client's default headers and nowhere else: not in ``repr``, not in messages (provider
messages are scrubbed), not in logs. Downloads to another host than the API's never carry it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import select
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self
from urllib.parse import quote

import anyio
import anyio.to_thread
import httpcore
import httpx

from orchestrator.config import credentials_from_env
from orchestrator.errors import (
    ConfigError,
    DownloadError,
    ServerError,
    ShotRejectedError,
    TaskNotFoundError,
)
from orchestrator.providers.base import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    MAX_LIST_PAGE,
    Capabilities,
    Download,
    Task,
    TaskStatus,
    Video,
)
from orchestrator.providers.classify import Operation, classify_error, network_error, read_answer, redact
from orchestrator.shot import ImageRef, ResolvedShot

__all__ = [
    "DEFAULT_TIMEOUT",
    "ROUTE",
    "CometAPIProvider",
    "ImageChangedError",
    "build_request_body",
    "parse_task",
]

logger = logging.getLogger(__name__)

ROUTE = "/kling/v1/videos/multi-image2video"
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=120.0, pool=60.0)
"""Writes get longer: a create carries up to four base64 images of up to 10 MB each."""
DEFAULT_MAX_CONNECTIONS = 100
BASE64_CACHE_SIZE = 64
_DOWNLOAD_CHUNK = 256 * 1024
_SPILL_BYTES = 4 * 1024 * 1024

_STATUS_ALIASES: Mapping[str, TaskStatus] = {
    "submitted": TaskStatus.SUBMITTED,
    "queued": TaskStatus.SUBMITTED,
    "pending": TaskStatus.SUBMITTED,
    "processing": TaskStatus.PROCESSING,
    "running": TaskStatus.PROCESSING,
    "succeed": TaskStatus.SUCCEED,
    "succeeded": TaskStatus.SUCCEED,
    "success": TaskStatus.SUCCEED,
    "failed": TaskStatus.FAILED,
    "fail": TaskStatus.FAILED,
    "failure": TaskStatus.FAILED,
}


class ImageChangedError(ShotRejectedError):
    """A local image no longer has the content it had when the spec was validated (or cannot be read)."""


# --- request body -------------------------------------------------------------------------------------------------


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


def build_request_body(shot: ResolvedShot, *, cache: Base64Cache | None = None) -> dict[str, Any]:
    """The create request's JSON body for ``shot``, exactly as ``kling-api.md`` says.

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
    body["external_task_id"] = shot.external_task_id
    return body


def _encoded_body(shot: ResolvedShot, *, cache: Base64Cache | None) -> bytes:
    return json.dumps(build_request_body(shot, cache=cache), ensure_ascii=False).encode()


# --- answers ------------------------------------------------------------------------------------------------------


def parse_task(data: object, *, request_id: str | None = None) -> Task:
    """A ``Task`` from an answer's ``data`` object. Tolerant of missing optional parts; a missing ``task_id`` or a
    ``data`` that is not an object is a ``ServerError`` (the answer is not a Kling task)."""
    if not isinstance(data, Mapping) or data.get("task_id") in (None, ""):
        raise ServerError("the provider's answer has no task in it", request_id=request_id)
    info = data.get("task_info")
    external = info.get("external_task_id") if isinstance(info, Mapping) else None
    external = external or data.get("external_task_id")
    return Task(
        task_id=str(data["task_id"]),
        status=_status(data.get("task_status")),
        status_message=str(data.get("task_status_msg") or ""),
        external_task_id=str(external) if external else None,
        videos=_videos(data.get("task_result")),
        created_at=_int_or_none(data.get("created_at")),
        updated_at=_int_or_none(data.get("updated_at")),
        request_id=request_id,
    )


def _status(raw: object) -> TaskStatus:
    # An unknown status is treated as still running: polling on is safe, declaring an outcome is not.
    return _STATUS_ALIASES.get(str(raw or "").strip().lower(), TaskStatus.PROCESSING)


def _videos(result: object) -> tuple[Video, ...]:
    videos = result.get("videos") if isinstance(result, Mapping) else None
    if not isinstance(videos, list):
        return ()
    return tuple(
        Video(id=str(v.get("id") or ""), url=str(v["url"]), duration=str(v.get("duration") or ""))
        for v in videos
        if isinstance(v, Mapping) and v.get("url")
    )


def _int_or_none(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return int(raw)
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    return None


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


# --- the provider -------------------------------------------------------------------------------------------------


class CometAPIProvider:
    """Kling multi-image-to-video through CometAPI (or anything that speaks its routes, like the local simulator).

    Use as ``async with CometAPIProvider(...) as provider``. Every method makes one HTTP call (``find_task`` up to
    three) and raises ``orchestrator.errors`` types; none retries.
    """

    # The ways to look a task up by external id (kling-api.md), in the order first tried; see ``_lookup_request``.
    LOOKUP_FORMS: tuple[str, ...] = ("path", "path-flag", "query")

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        name: str = "cometapi",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if not api_key:
            raise ConfigError(f"provider {name}: the API key is empty")
        self.name = name
        # Today's behaviour, until the providers are split by dialect: lookups and lists are tried, best effort.
        self.capabilities = Capabilities(find_by_external_id=True, list_tasks=True, absence_is_proof=True)
        self.base_url = _checked_base_url(base_url)
        self._api_key = api_key
        self._origin = httpx.URL(self.base_url)
        self._cache = Base64Cache()
        self._lookup_form: str | None = None
        self._client = self._build_client(transport=transport, timeout=timeout, max_connections=max_connections)

    @classmethod
    def from_env(cls, **kw: Any) -> Self:
        """A provider for ``COMETAPI_BASE_URL`` (default CometAPI) with ``COMETAPI_KEY``; ``ConfigError`` if unset."""
        credentials = credentials_from_env()
        return cls(base_url=credentials.base_url, api_key=credentials.api_key, **kw)

    def _build_client(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None,
        timeout: httpx.Timeout,
        max_connections: int,
    ) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(20, max_connections))
        if transport is None and self._origin.scheme == "http":
            transport = _TLSOnDemand(limits=limits)
        client = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {self._api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            timeout=timeout,
            limits=limits,
            transport=transport,
            # A redirect from the API means a wrong base URL: report it rather than follow it with the key.
            follow_redirects=False,
        )
        if isinstance(transport, _TLSOnDemand):
            _check_idle_sockets_cheaply(transport.plain)
        elif transport is None:
            _check_idle_sockets_cheaply(client._transport)
        return client

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- the protocol ---------------------------------------------------------------------------------------------

    async def create_task(self, shot: ResolvedShot) -> Task:
        # Reading, hashing and encoding up to four 10 MB images (and the JSON around them) stays off the event loop;
        # when every image is already encoded in the cache, the body is a small JSON dump, cheaper than the hop.
        encode = partial(_encoded_body, shot, cache=self._cache)
        content = encode() if self._all_cached(shot) else await anyio.to_thread.run_sync(encode)
        data, request_id = await self._call("POST", ROUTE, content=content, operation="create")
        task = parse_task(data, request_id=request_id)
        if task.external_task_id is None:
            # Some answers leave task_info empty; the id we sent is still the task's.
            task = _with_external_id(task, shot.external_task_id)
        return task

    def _all_cached(self, shot: ResolvedShot) -> bool:
        images = [*shot.images, *([shot.static_mask] if shot.static_mask else [])]
        images += [group.mask for group in shot.dynamic_masks]
        # Inline base64 may be megabytes of JSON to dump: that goes to the thread like a file read would.
        return all(
            image.source == "url" or (image.source == "path" and image.sha256 and self._cache.get(image.sha256))
            for image in images
        )

    async def get_task(self, task_id: str) -> Task:
        path = f"{ROUTE}/{quote(task_id, safe='')}"
        data, request_id = await self._call("GET", path, operation="get", task_id=task_id)
        return parse_task(data, request_id=request_id)

    async def list_tasks(self, *, page_size: int) -> list[Task]:
        """The most recent tasks, newest first: one call, whose ``data`` must be an array of tasks.

        Kling documents this route; CometAPI does not, so an answer of any other shape is a ``ShotRejectedError``
        (a definite "this provider does not list"), and items that are not tasks are skipped.
        """
        size = min(max(1, page_size), MAX_LIST_PAGE)
        params = {"pageNum": "1", "pageSize": str(size)}
        data, request_id = await self._call("GET", ROUTE, params=params, operation="list")
        if not isinstance(data, list):
            message = "the provider does not list tasks (its answer is not a list)"
            raise ShotRejectedError(message, request_id=request_id)
        tasks = []
        for item in data:
            try:
                tasks.append(parse_task(item, request_id=request_id))
            except ServerError:
                continue
        return tasks

    async def find_task(self, external_task_id: str) -> Task | None:
        """Try the lookup forms (the one that worked last time first); ``None`` if none finds the task.

        A form the provider does not support looks like "not found", so every form is tried before concluding.
        Transient and account errors propagate: "could not ask" must never be mistaken for "not there".
        """
        forms = sorted(self.LOOKUP_FORMS, key=lambda form: form != self._lookup_form)
        for form in forms:
            task = await self._find_with(form, external_task_id)
            if task is not None:
                self._lookup_form = form
                return task
        return None

    async def download(self, url: str, dest: Path, *, max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES) -> Download:
        """Stream ``url`` into ``dest`` through a temp file beside it; nothing partial is ever left behind.

        The size is capped (``Content-Length`` upfront, then counted), the sha256 computed on the way, the file
        fsynced and renamed into place. The API key goes only to the API's own origin, never to a CDN.
        """
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            target = None
        if target is None or target.scheme not in ("http", "https") or not target.host:
            # A relative URL would resolve against the API (and carry the key); file:, data: and friends are not
            # downloads; a malformed one would raise httpx.InvalidURL, which is no error of ours.
            raise DownloadError("the provider gave an unusable video URL (not http or https)", url=url, retryable=False)
        request = self._client.build_request("GET", target, headers={"Accept": "*/*"})
        if not _same_origin(request.url, self._origin):
            del request.headers["Authorization"]
        spool = _Spool(dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part")
        try:
            digest, size = await self._stream_to(request, spool, url=url, max_bytes=max_bytes)
            await anyio.to_thread.run_sync(spool.finish, dest)
        except OSError as exc:
            spool.discard()
            raise DownloadError(f"cannot write {dest}: {exc.strerror or exc}", url=url) from None
        except BaseException:
            # Synchronous on purpose: this must run even while the task is being cancelled.
            spool.discard()
            raise
        return Download(path=dest, sha256=digest, bytes=size)

    # --- internals ------------------------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        operation: Operation,
        task_id: str | None = None,
    ) -> tuple[Any, str | None]:
        """One API call: the success envelope's ``data`` and ``request_id``, or a classified error."""
        try:
            response = await self._client.request(method, path, content=content, params=params)
        except httpx.HTTPError as exc:
            logger.debug("%s %s failed: %s", method, path, type(exc).__name__)
            raise network_error(exc, operation=operation, task_id=task_id) from None
        answer = read_answer(response.content)
        request_id = answer.request_id or response.headers.get("x-request-id")
        logger.debug("%s %s -> HTTP %s code %s request %s", method, path, response.status_code, answer.code, request_id)
        if response.is_success and answer.succeeded:
            body = answer.body if isinstance(answer.body, Mapping) else {}
            return body.get("data", body), request_id
        raise classify_error(
            http_status=response.status_code,
            content=response.content,
            headers=response.headers,
            operation=operation,
            task_id=task_id,
            secret=self._api_key,
        )

    async def _find_with(self, form: str, external_task_id: str) -> Task | None:
        path, params = _lookup_request(form, external_task_id)
        try:
            data, request_id = await self._call("GET", path, params=params, operation="find")
        except (TaskNotFoundError, ShotRejectedError):
            return None  # this form says "no such task", or is not understood here
        return _match(data, external_task_id=external_task_id, by_path=form != "query", request_id=request_id)

    async def _stream_to(self, request: httpx.Request, spool: _Spool, *, url: str, max_bytes: int) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        try:
            response = await self._client.send(request, stream=True, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise DownloadError(f"download failed: {network_error(exc, operation='get')}", url=url) from None
        try:
            _check_download_response(response, url=url, max_bytes=max_bytes)
            async for chunk in response.aiter_bytes(_DOWNLOAD_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise _too_big(url, max_bytes)
                digest.update(chunk)
                if spool.add(chunk):
                    await anyio.to_thread.run_sync(spool.spill)
        except httpx.HTTPError as exc:
            raise DownloadError(f"download broke off: {network_error(exc, operation='get')}", url=url) from None
        finally:
            await response.aclose()
        if size == 0:
            raise DownloadError("download failed: the provider sent an empty file", url=url)
        return digest.hexdigest(), size


# The ``timeout`` parameters below (ruff ASYNC109) are httpcore's interface, which these classes implement.
class _SocketOnce(httpcore.AsyncNetworkStream):
    """A pooled connection's stream that answers "is the socket readable?" from a socket looked up once.

    Before every request httpcore asks each idle pooled connection that question; through anyio each asking
    rebuilds the stream's whole attribute table (getpeername and all), which made the pool scan the largest CPU
    cost of a busy run (about a third of each API call's). Everything else passes straight through.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: Any = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        return _SocketOnce(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            if self._socket is None:
                self._socket = self._inner.get_extra_info("socket")
            if self._socket is not None:
                return _socket_readable(self._socket)
        return self._inner.get_extra_info(info)


class _SocketOnceBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _SocketOnce(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _SocketOnce(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _socket_readable(sock: socket.socket) -> bool:
    """httpcore's own check: an idle keep-alive socket with something to read was closed by the server."""
    fd = sock.fileno()
    if fd == -1:
        return True
    if not hasattr(select, "poll"):  # Windows
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _TLSOnDemand(httpx.AsyncBaseTransport):
    """The transport for an ``http://`` API (the local simulator, a gateway on the LAN): plain requests through a
    pool that holds no CA bundle, and ``https://`` (a video on a CDN) through a fully verifying pool made on first use.

    Loading the CA bundle costs ~50 ms, about a twentieth of a whole one-second render wave, for a client that may
    never speak TLS. The plain pool's SSL context trusts no certificate at all, so it can never be used to skip
    verification: every https request goes to the verifying pool."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        self._limits = limits
        self.plain = httpx.AsyncHTTPTransport(verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), limits=limits)
        self._tls: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            return await self.plain.handle_async_request(request)
        if self._tls is None:
            self._tls = httpx.AsyncHTTPTransport(limits=self._limits)
        return await self._tls.handle_async_request(request)

    async def aclose(self) -> None:
        await self.plain.aclose()
        if self._tls is not None:
            await self._tls.aclose()


def _check_idle_sockets_cheaply(transport: httpx.AsyncBaseTransport | None) -> None:
    """Wrap the connections of a default httpx transport's pool in ``_SocketOnce`` (proxy mounts from the
    environment are left as they are). Neither the transport's pool nor its backend is a public setting: if a future
    httpx/httpcore moves them, the client is used as it comes, only slower."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = _SocketOnceBackend(backend)  # type: ignore[union-attr]


class _Spool:
    """A download on its way to disk. Most videos are small: they are kept in memory, then written, fsynced and
    renamed into place in one worker-thread call (a thread hop per chunk, flush and fsync was the larger part of a
    download's cost). Past ``_SPILL_BYTES`` the bytes go to the temp file as they come, so memory stays bounded."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._file: BinaryIO | None = None

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; True when enough is buffered that it should be spilled to disk (``spill``)."""
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        return self._buffered >= _SPILL_BYTES

    def spill(self) -> None:
        """Write what is buffered to the temp file (blocking: call it in a worker thread)."""
        if self._file is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.tmp, "wb")  # noqa: SIM115 (closed in finish or discard)
        self._file.write(b"".join(self._chunks))
        self._chunks.clear()
        self._buffered = 0

    def finish(self, dest: Path) -> None:
        """Write the rest, fsync and rename the temp file to ``dest`` (blocking: call it in a worker thread)."""
        self.spill()
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, dest)

    def discard(self) -> None:
        """Drop everything, the temp file included; synchronous so that it also runs during cancellation."""
        if self._file is not None:
            self._file.close()
        self.tmp.unlink(missing_ok=True)


def _checked_base_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"base URL {redact(url, secret=None)!r} is not an http(s) URL (check COMETAPI_BASE_URL)")
    if parsed.userinfo or parsed.query or parsed.fragment:
        # Credentials belong in COMETAPI_KEY: a URL is printed at the start of every run and kept in messages.
        raise ConfigError(
            f"base URL for {parsed.host} must not carry a user, password or query (check COMETAPI_BASE_URL); "
            "the key goes in COMETAPI_KEY"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        # httpx accepts it; the socket layer raises OverflowError mid-run, after shots were marked submitting.
        raise ConfigError(f"base URL {redact(url, secret=None)!r} has no valid port (check COMETAPI_BASE_URL)")
    return url


def _with_external_id(task: Task, external_task_id: str) -> Task:
    return replace(task, external_task_id=external_task_id)


def _lookup_request(form: str, external_task_id: str) -> tuple[str, dict[str, str] | None]:
    path = f"{ROUTE}/{quote(external_task_id, safe='')}"
    if form == "path":
        return path, None
    if form == "path-flag":
        return path, {"external_task_id": "true"}
    return ROUTE, {"external_task_id": external_task_id}


def _match(data: object, *, external_task_id: str, by_path: bool, request_id: str | None) -> Task | None:
    """The task in a lookup answer that is ours, if any.

    A list (or a server that ignored our query and listed everything) must name our id; a by-path answer that
    names no external id is accepted, since the server found it under the id we gave.
    """
    candidates = data if isinstance(data, list) else [data]
    for item in candidates:
        if not isinstance(item, Mapping) or not item.get("task_id"):
            continue
        task = parse_task(item, request_id=request_id)
        if task.external_task_id == external_task_id:
            return task
        if task.external_task_id is None and by_path and not isinstance(data, list):
            return _with_external_id(task, external_task_id)
    return None


def _check_download_response(response: httpx.Response, *, url: str, max_bytes: int) -> None:
    status = response.status_code
    if not response.is_success:
        retryable = not (400 <= status < 500) or status in (408, 425, 429)
        raise DownloadError(f"download failed with HTTP {status}", url=url, retryable=retryable)
    if "html" in response.headers.get("content-type", "").lower():
        raise DownloadError("download failed: the server sent a web page instead of a video", url=url)
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise _too_big(url, max_bytes)


def _too_big(url: str, max_bytes: int) -> DownloadError:
    return DownloadError(f"download refused: the video is larger than {max_bytes} bytes", url=url, retryable=False)
