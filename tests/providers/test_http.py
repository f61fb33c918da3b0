"""The HTTP machinery: the speed-ups that reach into httpx's private attributes must still be in effect.

``check_idle_sockets_cheaply`` swaps the pool's network backend through httpx's and httpcore's private attributes,
and ``SocketOnce`` relies on httpcore asking idle connections ``is_readable``. An upgrade that moves either leaves the
client working but slower, silently: these tests fail instead. And downloads: a failure to write one (a full disk
at the fsync, the close or a spill) is a ``DownloadError`` naming the file, and leaves no ``.part`` behind.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest

from orchestrator.errors import DownloadError
from orchestrator.providers import http
from orchestrator.providers.cometapi import CometAPIProvider
from orchestrator.providers.local import LocalSimulator, SimulatorOptions


@pytest.fixture
def simulator() -> Iterator[LocalSimulator]:
    with LocalSimulator(SimulatorOptions(render_time=0.1, cheap_video=True, seed=1)) as sim:
        yield sim


def test_the_default_transport_still_has_a_pool_with_a_backend_to_wrap() -> None:
    assert http.check_idle_sockets_cheaply(httpx.AsyncHTTPTransport()) is True
    assert http.check_idle_sockets_cheaply(httpx.MockTransport(lambda r: httpx.Response(200))) is False


@pytest.mark.anyio
async def test_idle_pooled_connections_are_checked_through_the_cached_socket(
    simulator: LocalSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[bool] = []
    original = http.socket_readable

    def counting(sock: object) -> bool:
        checks.append(result := original(sock))  # type: ignore[arg-type]
        return result

    monkeypatch.setattr(http, "socket_readable", counting)
    async with CometAPIProvider(base_url=simulator.base_url, api_key=LocalSimulator.LOCAL_API_KEY) as provider:
        for _ in range(3):
            await provider.list_tasks(page_size=1)  # over loopback, one keep-alive connection reused
    # httpcore asked the idle connection before each reuse, and the answer came from SocketOnce: still open.
    assert len(checks) >= 2 and not any(checks)


def test_a_base_url_names_the_setting_to_fix() -> None:
    with pytest.raises(Exception, match="check KLING_BASE_URL"):
        http.checked_base_url("nope", setting="KLING_BASE_URL", key_setting="KLING_ACCESS_KEY")
    assert http.checked_base_url(" https://x.test/ ", setting="S", key_setting="K") == "https://x.test"


# --- a download that cannot be written --------------------------------------------------------------------------

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
ORIGIN = httpx.URL("https://api.example.test")


class FailingFile:
    """A temp file on a full disk: its writes (when ``write_fails``) and its close fail, as a real one's can. The
    close still closes, as Python's does when flushing the rest fails."""

    def __init__(self, real: BinaryIO, *, write_fails: bool) -> None:
        self.real, self.write_fails = real, write_fails

    def write(self, data: bytes) -> int:
        if self.write_fails:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real.write(data)

    def flush(self) -> None:
        self.real.flush()

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        self.real.close()
        raise OSError(errno.ENOSPC, "No space left on device")


async def download_into(folder: Path) -> Path:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=VIDEO))
    dest = folder / "shot" / "abc.mp4"
    async with httpx.AsyncClient(transport=transport) as client:
        await http.download(client, f"{ORIGIN}/v.mp4", dest, origin=ORIGIN, max_bytes=1 << 20)
    return dest


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


@pytest.mark.anyio
async def test_a_failed_fsync_is_a_download_error_naming_the_file_and_leaves_no_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(http.os, "fsync", full_disk)
    with pytest.raises(DownloadError, match=r"cannot write .*shot/abc\.mp4: No space left on device"):
        await download_into(tmp_path)
    assert files_in(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize("write_fails", [False, True], ids=["close fails", "spill and close fail"])
async def test_a_failed_close_is_a_download_error_naming_the_file_and_leaves_no_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_fails: bool
) -> None:
    real_open = open

    def open_on_a_full_disk(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> FailingFile:
        return FailingFile(real_open(path, mode, *args, **kwargs), write_fails=write_fails)

    monkeypatch.setattr(http, "open", open_on_a_full_disk, raising=False)
    monkeypatch.setattr(http, "SPILL_BYTES", 1000)  # spill as the bytes come, as a large video does
    with pytest.raises(DownloadError, match=r"cannot write .*shot/abc\.mp4: No space left on device") as caught:
        await download_into(tmp_path)
    assert caught.value.url == f"{ORIGIN}/v.mp4"
    assert files_in(tmp_path) == []  # neither the video nor its .part
