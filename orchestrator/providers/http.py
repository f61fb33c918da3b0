"""The HTTP machinery under every provider client: the pooled ``httpx.AsyncClient``, and downloads.

Nothing here knows the Kling wire format (``orchestrator.providers.wire``) or any provider's auth: ``build_client``
takes an ``httpx.Auth``. What it adds to a plain client (docs/wire.md, "Transport"):

- an ``http://`` API (the local simulator) gets ``TLSOnDemand``, which loads the CA bundle only when something asks
  for ``https://`` (a video on a CDN), through a pool that always verifies;
- the pool's idle-socket check answers from a socket looked up once (``SocketOnce``): the largest CPU cost of a busy
  run otherwise. It reaches into httpx's private attributes; ``tests/providers/test_http.py`` fails when an upgrade
  undoes it;
- ``download`` streams a video to a temp file beside its destination, size-capped and hashed, and sends the
  provider's auth only to the API's own origin.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import select
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import anyio.to_thread
import httpcore
import httpx

from orchestrator.errors import ConfigError, DownloadError
from orchestrator.providers.base import Download
from orchestrator.providers.classify import network_error, redact

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "SocketOnceBackend",
    "TLSOnDemand",
    "build_client",
    "check_idle_sockets_cheaply",
    "checked_base_url",
    "download",
    "same_origin",
    "socket_readable",
]

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=120.0, pool=60.0)
"""Writes get longer: a create carries up to four base64 images of up to 10 MB each."""
DEFAULT_MAX_CONNECTIONS = 100
DOWNLOAD_CHUNK = 256 * 1024
SPILL_BYTES = 4 * 1024 * 1024


def build_client(
    *,
    base_url: str,
    auth: httpx.Auth,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> httpx.AsyncClient:
    """The one ``httpx.AsyncClient`` of a provider: JSON headers, explicit timeouts, no redirects followed."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(20, max_connections))
    if transport is None and httpx.URL(base_url).scheme == "http":
        transport = TLSOnDemand(limits=limits)
    client = httpx.AsyncClient(
        base_url=base_url,
        auth=auth,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        timeout=timeout,
        limits=limits,
        transport=transport,
        # A redirect from the API means a wrong base URL: report it rather than follow it with the key.
        follow_redirects=False,
    )
    if isinstance(transport, TLSOnDemand):
        check_idle_sockets_cheaply(transport.plain)
    elif transport is None:
        check_idle_sockets_cheaply(client._transport)
    return client


def checked_base_url(base_url: str, *, setting: str, key_setting: str) -> str:
    """``base_url`` without its trailing slash, or a ``ConfigError`` naming ``setting`` (the environment variable)."""
    url = base_url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"base URL {redact(url, secret=None)!r} is not an http(s) URL (check {setting})")
    if parsed.userinfo or parsed.query or parsed.fragment:
        # Credentials belong in the key's variable: a URL is printed at the start of every run and kept in messages.
        raise ConfigError(
            f"base URL for {parsed.host} must not carry a user, password or query (check {setting}); "
            f"the key goes in {key_setting}"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        # httpx accepts it; the socket layer raises OverflowError mid-run, after shots were marked submitting.
        raise ConfigError(f"base URL {redact(url, secret=None)!r} has no valid port (check {setting})")
    return url


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


# --- downloads ----------------------------------------------------------------------------------------------------


async def download(client: httpx.AsyncClient, url: str, dest: Path, *, origin: httpx.URL, max_bytes: int) -> Download:
    """Stream ``url`` into ``dest`` through a temp file beside it; nothing partial is ever left behind.

    The size is capped (``Content-Length`` upfront, then counted), the sha256 computed on the way, the file fsynced
    and renamed into place. The client's auth goes only to ``origin`` (the API's own), never to a CDN; httpx drops
    it on a redirect to another origin.
    """
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        target = None
    if target is None or target.scheme not in ("http", "https") or not target.host:
        # A relative URL would resolve against the API (and carry the key); file:, data: and friends are not
        # downloads; a malformed one would raise httpx.InvalidURL, which is no error of ours.
        raise DownloadError("the provider gave an unusable video URL (not http or https)", url=url, retryable=False)
    request = client.build_request("GET", target, headers={"Accept": "*/*"})
    spool = _Spool(dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part")
    try:
        digest, size = await _stream_to(
            client, request, spool, url=url, max_bytes=max_bytes, authed=same_origin(request.url, origin)
        )
        await anyio.to_thread.run_sync(spool.finish, dest)
    except OSError as exc:
        spool.discard()
        raise DownloadError(f"cannot write {dest}: {exc.strerror or exc}", url=url) from None
    except BaseException:
        # Synchronous on purpose: this must run even while the task is being cancelled.
        spool.discard()
        raise
    return Download(path=dest, sha256=digest, bytes=size)


async def _stream_to(
    client: httpx.AsyncClient,
    request: httpx.Request,
    spool: _Spool,
    *,
    url: str,
    max_bytes: int,
    authed: bool,
) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        if authed:
            response = await client.send(request, stream=True, follow_redirects=True)
        else:
            response = await client.send(request, stream=True, follow_redirects=True, auth=None)
    except httpx.HTTPError as exc:
        raise DownloadError(f"download failed: {network_error(exc, operation='get')}", url=url) from None
    try:
        _check_download_response(response, url=url, max_bytes=max_bytes)
        async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
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


class _Spool:
    """A download on its way to disk. Most videos are small: they are kept in memory, then written, fsynced and
    renamed into place in one worker-thread call (a thread hop per chunk, flush and fsync was the larger part of a
    download's cost). Past ``SPILL_BYTES`` the bytes go to the temp file as they come, so memory stays bounded."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._file: BinaryIO | None = None

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; True when enough is buffered that it should be spilled to disk (``spill``)."""
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        return self._buffered >= SPILL_BYTES

    def spill(self) -> None:
        """Write what is buffered to the temp file (blocking: call it in a worker thread)."""
        if self._file is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.tmp, "wb")  # noqa: SIM115 (closed in finish or discard)
        self._file.write(b"".join(self._chunks))
        self._chunks.clear()
        self._buffered = 0

    def finish(self, dest: Path) -> None:
        """Write the rest, fsync and rename the temp file to ``dest`` (blocking: call it in a worker thread).

        Any step may raise ``OSError`` (a full disk shows at the flush, the fsync or the close); the caller then
        calls ``discard``.
        """
        self.spill()
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        file, self._file = self._file, None
        file.close()
        os.replace(self.tmp, dest)

    def discard(self) -> None:
        """Drop everything, the temp file included; never raises, and is synchronous so that it also runs during
        cancellation. A close that fails (the unwritten rest of a full disk's buffer) still closes the file."""
        file, self._file = self._file, None
        self._chunks.clear()
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)


# --- the pooled transport -----------------------------------------------------------------------------------------


# The ``timeout`` parameters below (ruff ASYNC109) are httpcore's interface, which these classes implement.
class SocketOnce(httpcore.AsyncNetworkStream):
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
        return SocketOnce(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            if self._socket is None:
                self._socket = self._inner.get_extra_info("socket")
            if self._socket is not None:
                return socket_readable(self._socket)
        return self._inner.get_extra_info(info)


class SocketOnceBackend(httpcore.AsyncNetworkBackend):
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
        return SocketOnce(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return SocketOnce(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def socket_readable(sock: socket.socket) -> bool:
    """httpcore's own check: an idle keep-alive socket with something to read was closed by the server."""
    fd = sock.fileno()
    if fd == -1:
        return True
    if not hasattr(select, "poll"):  # Windows
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class TLSOnDemand(httpx.AsyncBaseTransport):
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


def check_idle_sockets_cheaply(transport: httpx.AsyncBaseTransport | None) -> bool:
    """Wrap the connections of a default httpx transport's pool in ``SocketOnce`` (proxy mounts from the
    environment are left as they are); True if it could. Neither the transport's pool nor its backend is a public
    setting: if a future httpx/httpcore moves them, the client is used as it comes, only slower (and the test of
    this function fails, to say so)."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = SocketOnceBackend(backend)  # type: ignore[union-attr]
        return True
    return False
