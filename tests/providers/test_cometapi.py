"""The CometAPI client at the wire level, through httpx.MockTransport: bodies, answers, errors, downloads, secrets."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from orchestrator.errors import (
    AccountError,
    ConcurrencyLimitError,
    ConfigError,
    DownloadError,
    DuplicateExternalIdError,
    NetworkError,
    ProviderError,
    RateLimitedError,
    ServerError,
    ShotRejectedError,
    TaskNotFoundError,
    TransientError,
)
from orchestrator.providers.base import Provider, TaskStatus
from orchestrator.providers.classify import classify_error, parse_retry_after, redact
from orchestrator.providers.cometapi import (
    ROUTE,
    Base64Cache,
    CometAPIProvider,
    ImageChangedError,
    build_request_body,
    parse_task,
)
from orchestrator.providers.factory import open_provider
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.spec.shot import DynamicMask, ImageRef, ResolvedShot, TrajectoryPoint
from tests.helpers import image_ref, write_board

BASE = "http://api.test"
KEY = "sk-test-SECRET-123"
Handler = Callable[[httpx.Request], httpx.Response]


# --- helpers ------------------------------------------------------------------------------------------------------


def board(tmp_path: Path, name: str, color: tuple[int, int, int]) -> ImageRef:
    return image_ref(write_board(tmp_path / name, (320, 320), color))


def make_shot(tmp_path: Path, **overrides: Any) -> ResolvedShot:
    images = (board(tmp_path, "a.png", (200, 10, 10)), board(tmp_path, "b.png", (10, 200, 10)))
    fields: dict[str, Any] = {
        "id": "opening",
        "index": 0,
        "project": "demo",
        "model": "kling-v1-6",
        "images": images,
        "prompt": "slow pan across the harbour",
    }
    fields.update(overrides)
    return ResolvedShot(**fields)


def envelope(data: Any, *, code: int = 0, message: str = "SUCCEED", request_id: str | None = "req-1") -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "data": data}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def task_data(status: str = "submitted", **extra: Any) -> dict[str, Any]:
    return {
        "task_id": "861309198188019719",
        "task_status": status,
        "task_info": {},
        "created_at": 1722769557708,
        "updated_at": 1722769557708,
        **extra,
    }


def provider(handler: Handler) -> CometAPIProvider:
    return CometAPIProvider(base_url=BASE, api_key=KEY, transport=httpx.MockTransport(handler))


def error_response(status: int, code: int, message: str, **headers: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=envelope(None, code=code, message=message), headers=headers)

    return handler


# --- the request body ---------------------------------------------------------------------------------------------


def test_body_has_exactly_the_contract_fields_with_duration_as_string(tmp_path: Path) -> None:
    shot = make_shot(tmp_path)
    body = build_request_body(shot)
    assert set(body) == {"model_name", "image_list", "prompt", "mode", "duration", "aspect_ratio", "external_task_id"}
    assert body["duration"] == "5"
    assert body["mode"] == "std"
    assert body["aspect_ratio"] == "16:9"
    assert body["model_name"] == "kling-v1-6"
    assert body["external_task_id"] == external_task_id(shot)
    first = body["image_list"][0]["image"]
    assert not first.startswith("data:")
    assert base64.b64decode(first, validate=True) == (tmp_path / "a.png").read_bytes()
    assert len(body["image_list"]) == 2


def test_body_carries_optional_fields_only_when_set(tmp_path: Path) -> None:
    mask = board(tmp_path, "mask.png", (255, 255, 255))
    shot = make_shot(
        tmp_path,
        images=(
            ImageRef(source="url", ref="https://cdn.example/a.png", url="https://cdn.example/a.png"),
            ImageRef(source="base64", ref="<base64>", base64="aGVsbG8="),
        ),
        negative_prompt="blur",
        cfg_scale=0.5,
        static_mask=mask,
        dynamic_masks=(DynamicMask(mask=mask, trajectories=(TrajectoryPoint(1, 2), TrajectoryPoint(3, 4))),),
        callback_url="https://hooks.example/kling",
        duration=10,
        mode="pro",
        aspect_ratio="9:16",
    )
    body = build_request_body(shot)
    assert body["image_list"] == [{"image": "https://cdn.example/a.png"}, {"image": "aGVsbG8="}]
    assert body["negative_prompt"] == "blur"
    assert body["cfg_scale"] == 0.5
    assert base64.b64decode(body["static_mask"]) == mask.path.read_bytes()  # type: ignore[union-attr]
    assert body["dynamic_masks"][0]["trajectories"] == [{"x": 1, "y": 2}, {"x": 3, "y": 4}]
    assert body["callback_url"] == "https://hooks.example/kling"
    assert (body["duration"], body["mode"], body["aspect_ratio"]) == ("10", "pro", "9:16")


def test_a_file_changed_since_validation_is_refused(tmp_path: Path) -> None:
    shot = make_shot(tmp_path)
    Image.new("RGB", (320, 320), (0, 0, 255)).save(tmp_path / "a.png", format="PNG")
    with pytest.raises(ImageChangedError, match="changed since the spec was validated"):
        build_request_body(shot)


def test_base64_is_cached_by_content_hash_and_bounded(tmp_path: Path) -> None:
    shot = make_shot(tmp_path)
    cache = Base64Cache(size=2)
    first = build_request_body(shot, cache=cache)
    (tmp_path / "a.png").unlink()  # a cache hit must not read the file again
    assert build_request_body(shot, cache=cache)["image_list"] == first["image_list"]
    cache.put("x", "1")
    assert len(cache) == 2
    assert cache.get(shot.images[0].sha256 or "") is None  # least recently used went first


# --- answers ------------------------------------------------------------------------------------------------------


def test_parse_task_tolerates_running_and_reads_videos() -> None:
    running = parse_task(task_data("processing", task_result={}))
    assert running.status is TaskStatus.PROCESSING and running.videos == () and running.external_task_id is None
    done = parse_task(
        task_data(
            "succeed",
            task_info={"external_task_id": "demo-opening-abc"},
            task_result={"videos": [{"id": "v1", "url": "https://cdn.example/v1.mp4", "duration": "5.1"}]},
        ),
        request_id="r",
    )
    assert done.status is TaskStatus.SUCCEED and done.status.finished
    assert done.videos[0].url == "https://cdn.example/v1.mp4" and done.videos[0].duration == "5.1"
    assert done.external_task_id == "demo-opening-abc" and done.request_id == "r"
    failed = parse_task(task_data("failed", task_status_msg="moderation"))
    assert failed.status is TaskStatus.FAILED and failed.status_message == "moderation"
    with pytest.raises(ServerError):
        parse_task({"task_status": "submitted"})


@pytest.mark.anyio
async def test_create_sends_headers_and_contract_body(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope(task_data(), request_id=None))

    shot = make_shot(tmp_path)
    async with provider(handler) as p:
        task = await p.create_task(shot)
    request = seen[0]
    assert request.method == "POST" and request.url == f"{BASE}{ROUTE}"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert body["duration"] == "5" and body["external_task_id"] == external_task_id(shot)
    assert task.task_id == "861309198188019719" and task.status is TaskStatus.SUBMITTED
    assert task.request_id is None
    assert task.external_task_id == external_task_id(shot)  # task_info {} still yields the id we sent


@pytest.mark.anyio
async def test_get_task_reads_a_finished_task() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"{ROUTE}/42"
        data = task_data("succeed", task_result={"videos": [{"id": "v", "url": f"{BASE}/v.mp4", "duration": "10.0"}]})
        return httpx.Response(200, json=envelope(data))

    async with provider(handler) as p:
        task = await p.get_task("42")
    assert task.status is TaskStatus.SUCCEED and task.videos[0].duration == "10.0" and task.request_id == "req-1"


@pytest.mark.anyio
async def test_list_tasks_asks_for_one_page_and_skips_items_that_are_not_tasks() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json=envelope([task_data("processing"), {"no": "task"}, "junk", task_data("succeed")])
        )

    async with provider(handler) as p:
        tasks = await p.list_tasks(page_size=80)
        await p.list_tasks(page_size=10_000)
        await p.list_tasks(page_size=0)
    assert [t.status for t in tasks] == [TaskStatus.PROCESSING, TaskStatus.SUCCEED]
    assert seen[0].method == "GET" and seen[0].url.path == ROUTE
    assert [dict(r.url.params) for r in seen] == [
        {"pageNum": "1", "pageSize": "80"},
        {"pageNum": "1", "pageSize": "500"},  # the API's largest page
        {"pageNum": "1", "pageSize": "1"},
    ]
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json=envelope(task_data())),  # one task, not a list: the route means something else
        httpx.Response(404, json=envelope(None, code=1202, message="no such route")),
    ],
)
async def test_a_provider_that_does_not_list_says_so_with_a_definite_error(response: httpx.Response) -> None:
    async with provider(lambda request: response) as p:
        with pytest.raises(ProviderError) as caught:
            await p.list_tasks(page_size=5)
    assert not isinstance(caught.value, TransientError | AccountError)


# --- error classification -----------------------------------------------------------------------------------------

HTML = b"<!DOCTYPE html><html><body>Not here</body></html>"


def kling(code: int, message: str = "msg") -> bytes:
    return json.dumps({"code": code, "message": message, "request_id": "req-9"}).encode()


def comet(code: str, message: str = "gateway says no") -> bytes:
    return json.dumps({"error": {"message": message, "type": "comet_api_error", "param": "", "code": code}}).encode()


@pytest.mark.parametrize(
    ("status", "content", "operation", "expected"),
    [
        (429, kling(1303, "parallel task over resource pack limit"), "create", ConcurrencyLimitError),
        (429, kling(1102, "resource pack exhausted"), "create", AccountError),
        (429, kling(1302), "create", RateLimitedError),
        (429, comet("rate_limit_exceeded"), "create", RateLimitedError),
        (429, b"", "create", RateLimitedError),
        (429, comet("1303"), "create", ConcurrencyLimitError),
        (401, kling(1000), "create", AccountError),
        (401, comet("invalid_api_key"), "get", AccountError),
        (403, kling(1103), "create", AccountError),
        (429, kling(1304), "create", AccountError),
        (400, kling(1200, "prompt too long"), "create", ShotRejectedError),
        (400, kling(1201, "external_task_id already exists"), "create", DuplicateExternalIdError),
        (400, kling(1300), "create", ShotRejectedError),
        (400, kling(1301, "content safety"), "create", ShotRejectedError),
        (404, kling(1203), "get", TaskNotFoundError),
        (404, kling(1203, "model does not exist"), "create", ShotRejectedError),
        (404, b'{"code": 404}', "get", TaskNotFoundError),
        (404, b'{"code": 404}', "create", AccountError),
        (404, comet("not_found"), "get", TaskNotFoundError),
        (404, HTML, "get", AccountError),
        (404, HTML, "create", AccountError),
        (301, b"", "create", AccountError),
        (302, HTML, "get", AccountError),
        (500, kling(5000), "create", ServerError),
        (503, kling(5001), "get", ServerError),
        (504, kling(5002), "get", ServerError),
        (502, HTML, "create", ServerError),
        (524, comet("timeout"), "create", ServerError),
        (200, HTML, "create", ServerError),
        (200, b"not json at all", "get", ServerError),
        (200, comet("weird"), "get", ServerError),
    ],
)
def test_classification_table(status: int, content: bytes, operation: Any, expected: type[ProviderError]) -> None:
    error = classify_error(http_status=status, content=content, operation=operation, task_id="t1")
    assert type(error) is expected
    assert error.http_status == status and error.task_id == "t1"
    assert str(error)  # a sentence for the user


def test_a_1201_that_is_not_about_the_external_id_is_a_plain_rejection() -> None:
    error = classify_error(http_status=400, content=kling(1201, "image_list must have 2 to 4 items"))
    assert type(error) is ShotRejectedError
    assert error.provider_message == "image_list must have 2 to 4 items"
    assert "image_list must have 2 to 4 items" in str(error)


def test_errors_carry_code_request_id_and_advice() -> None:
    account = classify_error(http_status=429, content=kling(1102, "arrears"))
    assert account.code == 1102 and account.request_id == "req-9"
    assert "top up or fix the account" in str(account)
    auth = classify_error(http_status=401, content=kling(1001))
    assert "COMETAPI_KEY" in str(auth)
    moved = classify_error(http_status=301, content=b"", headers={"location": "https://www.cometapi.com/"})
    assert "COMETAPI_BASE_URL" in str(moved) and "https://www.cometapi.com/" in str(moved)
    html = classify_error(http_status=404, content=HTML, headers={"content-type": "text/html"})
    assert "COMETAPI_BASE_URL" in str(html)


def test_concurrency_limit_carries_the_providers_hint_only() -> None:
    bare = classify_error(http_status=429, content=kling(1303))
    # The least delay after 1303 is the retry policy's (RetryPolicy.floor_for), not the error's.
    assert isinstance(bare, ConcurrencyLimitError) and bare.retry_after is None
    hinted = classify_error(http_status=429, content=kling(1303), headers={"retry-after": "7"})
    assert isinstance(hinted, ConcurrencyLimitError) and hinted.retry_after == 7.0
    rate = classify_error(http_status=429, content=kling(1302), headers={"retry-after": "2.5"})
    assert isinstance(rate, RateLimitedError) and rate.retry_after == 2.5
    server = classify_error(http_status=503, content=HTML)
    assert isinstance(server, ServerError) and server.retry_after is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after("3", now=0) == 3.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now=now.timestamp()) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("nan") is None


@pytest.mark.anyio
async def test_http_date_retry_after_through_the_client() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    async with provider(error_response(429, 1302, "too fast", **{"Retry-After": when})) as p:
        with pytest.raises(RateLimitedError) as caught:
            await p.get_task("1")
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120


@pytest.mark.anyio
async def test_same_http_429_means_retry_or_stop_depending_on_the_code(tmp_path: Path) -> None:
    shot = make_shot(tmp_path)
    async with provider(error_response(429, 1303, "parallel task over resource pack limit")) as p:
        with pytest.raises(ConcurrencyLimitError):
            await p.create_task(shot)
    async with provider(error_response(429, 1102, "resource pack exhausted")) as p:
        with pytest.raises(AccountError, match="top up or fix the account"):
            await p.create_task(shot)


@pytest.mark.anyio
async def test_html_and_cometapi_shapes_through_the_client(tmp_path: Path) -> None:
    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=HTML, headers={"content-type": "text/html"})

    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "invalid token", "type": "comet_api_error", "code": ""}})

    async with provider(html) as p:
        with pytest.raises(ServerError, match="web page"):
            await p.get_task("1")
    async with provider(gateway) as p:
        with pytest.raises(AccountError, match="invalid token"):
            await p.create_task(make_shot(tmp_path))


@pytest.mark.parametrize(
    ("exc", "ambiguous"),
    [
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
        (httpx.ReadTimeout("timed out"), True),
        (httpx.ReadError("reset"), True),
        (httpx.WriteTimeout("timed out"), True),
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("timed out"), False),
        (httpx.PoolTimeout("timed out"), False),
    ],
)
@pytest.mark.anyio
async def test_transport_failures_are_network_errors(tmp_path: Path, exc: httpx.HTTPError, ambiguous: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    async with provider(handler) as p:
        with pytest.raises(NetworkError) as caught:
            await p.create_task(make_shot(tmp_path))
    assert caught.value.ambiguous is ambiguous


@pytest.mark.anyio
async def test_not_found_on_get_names_the_task() -> None:
    async with provider(error_response(404, 1203, "task not found")) as p:
        with pytest.raises(TaskNotFoundError) as caught:
            await p.get_task("999")
    assert caught.value.task_id == "999"


# --- find_task ----------------------------------------------------------------------------------------------------


def lookup_server(*, form: str, external: str, calls: list[str]) -> Handler:
    """A server that understands only one lookup form and 404s (code 1203) the others."""

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        if request.url.path == f"{ROUTE}/{external}":
            used = "path-flag" if params.get("external_task_id") == "true" else "path"
        elif params.get("external_task_id"):
            used = "query"
        else:
            used = "other"
        calls.append(used)
        if used != form:
            return httpx.Response(404, json=envelope(None, code=1203, message="not found"))
        data = task_data("processing", task_info={"external_task_id": external})
        return httpx.Response(200, json=envelope([data] if form == "query" else data))

    return handler


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["path", "path-flag", "query"])
async def test_find_task_tries_each_form_and_remembers_the_one_that_worked(form: str) -> None:
    calls: list[str] = []
    async with provider(lookup_server(form=form, external="demo-x-1", calls=calls)) as p:
        found = await p.find_task("demo-x-1")
        assert found is not None and found.external_task_id == "demo-x-1"
        calls.clear()
        assert await p.find_task("demo-x-1") is not None
    assert calls == [form]


@pytest.mark.anyio
async def test_find_task_returns_none_when_no_form_finds_it() -> None:
    calls: list[str] = []
    async with provider(lookup_server(form="none", external="demo-x-1", calls=calls)) as p:
        assert await p.find_task("demo-x-1") is None
    assert sorted(calls) == ["path", "path-flag", "query"]


@pytest.mark.anyio
async def test_find_task_ignores_a_list_of_other_tasks() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == ROUTE:  # a server that ignores the query and lists everything
            others = [task_data(task_info={"external_task_id": "someone-else"}), task_data(task_info={})]
            return httpx.Response(200, json=envelope(others))
        return httpx.Response(400, json=envelope(None, code=1200, message="bad id"))

    async with provider(handler) as p:
        assert await p.find_task("demo-x-1") is None


@pytest.mark.anyio
async def test_find_task_propagates_transient_errors() -> None:
    async with provider(error_response(503, 5001, "maintenance")) as p:
        with pytest.raises(ServerError):
            await p.find_task("demo-x-1")


# --- downloads ----------------------------------------------------------------------------------------------------

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


async def chunks(data: bytes, *, size: int = 1000, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        if fail_after is not None and offset >= fail_after:
            raise httpx.ReadError("connection reset")
        yield data[offset : offset + size]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.anyio
async def test_download_writes_verified_file_and_creates_the_folder(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=VIDEO, headers={"content-type": "video/mp4"})

    dest = tmp_path / "out" / "opening" / "abc.mp4"
    async with provider(handler) as p:
        result = await p.download(f"{BASE}/files/v.mp4", dest)
    assert dest.read_bytes() == VIDEO
    assert result.sha256 == hashlib.sha256(VIDEO).hexdigest() and result.bytes == len(VIDEO) and result.path == dest
    assert leftovers(dest.parent) == ["abc.mp4"]


@pytest.mark.anyio
async def test_a_large_download_spills_to_disk_as_it_comes_and_breaks_off_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.providers.http as transport

    monkeypatch.setattr(transport, "SPILL_BYTES", 3000)  # VIDEO is about 10 kB: several spills
    monkeypatch.setattr(transport, "DOWNLOAD_CHUNK", 1000)
    spilled: list[int] = []
    original = transport._Spool.spill

    def counting_spill(self: Any) -> None:
        spilled.append(self._buffered)
        original(self)

    monkeypatch.setattr(transport._Spool, "spill", counting_spill)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks(VIDEO))

    async with provider(handler) as p:
        result = await p.download(f"{BASE}/v.mp4", tmp_path / "new" / "v.mp4")
    assert (tmp_path / "new" / "v.mp4").read_bytes() == VIDEO and result.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert len(spilled) >= 3 and max(spilled[:-1]) < 3000 + 1000  # never more than a spill's worth in memory
    assert leftovers(tmp_path / "new") == ["v.mp4"]

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks(VIDEO, fail_after=6000))

    async with provider(broken) as p:
        with pytest.raises(DownloadError):
            await p.download(f"{BASE}/v.mp4", tmp_path / "new" / "w.mp4")
    assert leftovers(tmp_path / "new") == ["v.mp4"]  # the spilled temp file is gone too


@pytest.mark.anyio
async def test_download_refuses_oversize_by_content_length(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=VIDEO)

    async with provider(handler) as p:
        with pytest.raises(DownloadError, match="larger than") as caught:
            await p.download(f"{BASE}/v.mp4", tmp_path / "v.mp4", max_bytes=100)
    assert caught.value.retryable is False
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_download_refuses_oversize_while_streaming_without_length(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks(VIDEO))

    async with provider(handler) as p:
        with pytest.raises(DownloadError, match="larger than"):
            await p.download(f"{BASE}/v.mp4", tmp_path / "v.mp4", max_bytes=len(VIDEO) - 1)
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_a_broken_download_leaves_nothing_behind(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks(VIDEO, fail_after=5000))

    (tmp_path / "v.mp4").write_bytes(b"previous take")  # an earlier file is not clobbered by a failed download
    async with provider(handler) as p:
        with pytest.raises(DownloadError) as caught:
            await p.download(f"{BASE}/v.mp4", tmp_path / "v.mp4")
    assert caught.value.retryable is True
    assert leftovers(tmp_path) == ["v.mp4"] and (tmp_path / "v.mp4").read_bytes() == b"previous take"


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "retryable"), [(404, False), (403, False), (503, True), (429, True)])
async def test_download_http_errors(tmp_path: Path, status: int, retryable: bool) -> None:
    async with provider(lambda request: httpx.Response(status, content=b"nope")) as p:
        with pytest.raises(DownloadError) as caught:
            await p.download(f"{BASE}/v.mp4", tmp_path / "v.mp4")
    assert caught.value.retryable is retryable
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_download_refuses_an_empty_file(tmp_path: Path) -> None:
    async with provider(lambda request: httpx.Response(200, content=b"")) as p:
        with pytest.raises(DownloadError, match="empty"):
            await p.download(f"{BASE}/v.mp4", tmp_path / "v.mp4")
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_download_network_failure_is_a_retryable_download_error(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with provider(handler) as p:
        with pytest.raises(DownloadError) as caught:
            await p.download(f"{BASE}/v.mp4", tmp_path / "v.mp4")
    assert caught.value.retryable is True


@pytest.mark.anyio
async def test_the_key_goes_to_the_api_host_only(tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.netloc.decode()] = request.headers.get("authorization")
        return httpx.Response(200, content=VIDEO)

    async with provider(handler) as p:
        await p.download("https://cdn.kling.example/v.mp4", tmp_path / "a.mp4")
        await p.download(f"{BASE}/files/v.mp4", tmp_path / "b.mp4")
        await p.download("http://api.test:8080/files/v.mp4", tmp_path / "c.mp4")
    assert seen["cdn.kling.example"] is None
    assert seen["api.test"] == f"Bearer {KEY}"
    assert seen["api.test:8080"] is None  # another port is another origin


# --- the key stays secret -----------------------------------------------------------------------------------------

ECHOING_HANDLERS: list[Handler] = [
    error_response(401, 1000, f"invalid key {KEY}"),
    error_response(429, 1102, f"account of Bearer {KEY} in arrears"),
    error_response(429, 1302, f"slow down {KEY}"),
    error_response(429, 1303, f"too many for {KEY}"),
    error_response(400, 1201, f"external_task_id duplicate for {KEY}"),
    error_response(400, 1301, f"unsafe {KEY}"),
    error_response(404, 1203, f"no task for {KEY}"),
    error_response(500, 5000, f"boom {KEY}"),
    lambda request: httpx.Response(401, json={"error": {"message": f"bad token {KEY}", "code": "invalid_api_key"}}),
    lambda request: httpx.Response(502, content=f"<html>{KEY}</html>".encode()),
    lambda request: httpx.Response(200, content=f"garbage {KEY}".encode()),
    lambda request: httpx.Response(301, headers={"location": "https://elsewhere.example/"}),
]


def _raise(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.anyio
@pytest.mark.parametrize(
    "handler",
    [
        *ECHOING_HANDLERS,
        _raise(httpx.RemoteProtocolError(f"dropped {KEY}")),
        _raise(httpx.ReadTimeout(f"slow {KEY}")),
        _raise(httpx.ConnectError(f"refused {KEY}")),
    ],
)
async def test_the_key_never_appears_in_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, handler: Handler
) -> None:
    caplog.set_level(logging.DEBUG)
    p = provider(handler)
    assert KEY not in repr(p)
    async with p:
        for call in (p.create_task(make_shot(tmp_path)), p.get_task("1")):
            with pytest.raises(ProviderError) as caught:
                await call
            exc = caught.value
            assert KEY not in str(exc) and KEY not in repr(exc)
            assert all(KEY not in str(arg) for arg in exc.args)
            assert KEY not in str(vars(exc))
            assert exc.__cause__ is None or KEY not in str(exc.__cause__)
    assert KEY not in caplog.text


def test_redact_removes_keys_and_bearer_tokens() -> None:
    text = redact(f"Authorization: Bearer abc.def {KEY} sk-othertoken99", secret=KEY)
    assert KEY not in text and "abc.def" not in text and "sk-othertoken99" not in text


# --- construction and the factory ---------------------------------------------------------------------------------


def test_from_env_needs_a_key_and_says_how_to_go_local(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="--provider local"):
        CometAPIProvider.from_env()
    monkeypatch.setenv("COMETAPI_KEY", KEY)
    monkeypatch.setenv("COMETAPI_BASE_URL", "http://127.0.0.1:8765/")
    p = CometAPIProvider.from_env()
    assert p.base_url == "http://127.0.0.1:8765" and p.name == "cometapi"
    assert KEY not in repr(p)


@pytest.mark.parametrize("url", ["ftp://x", "api.cometapi.com", ""])
def test_a_bad_base_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="COMETAPI_BASE_URL"):
        CometAPIProvider(base_url=url, api_key=KEY)


def test_open_provider_lists_known_providers() -> None:
    with pytest.raises(ConfigError, match="cometapi, kling, local"):
        open_provider("runway")


def test_open_provider_cometapi_without_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="COMETAPI_KEY"):
        open_provider("cometapi")


@pytest.mark.anyio
async def test_open_provider_cometapi_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMETAPI_KEY", KEY)
    async with open_provider("cometapi") as p:
        assert p.name == "cometapi" and p.base_url == "https://api.cometapi.com"


@pytest.mark.anyio
async def test_a_redirect_to_a_cdn_drops_the_key(tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("authorization")
        if request.url.host == "api.test":
            return httpx.Response(302, headers={"location": "https://cdn.kling.example/v.mp4"})
        return httpx.Response(200, content=VIDEO)

    async with provider(handler) as p:
        result = await p.download(f"{BASE}/files/v.mp4", tmp_path / "v.mp4")
    assert result.bytes == len(VIDEO)
    assert seen == {"api.test": f"Bearer {KEY}", "cdn.kling.example": None}


def test_redirects_name_the_target_and_duplicates_say_submitted_before() -> None:
    moved = classify_error(http_status=308, content=b'{"moved": true}', headers={"location": "https://x.example/"})
    assert isinstance(moved, AccountError) and "https://x.example/" in str(moved)
    duplicate = classify_error(http_status=400, content=kling(1201, "external_task_id 'a' is already used"))
    assert isinstance(duplicate, DuplicateExternalIdError) and "submitted before" in str(duplicate)
    assert duplicate.provider_message == "external_task_id 'a' is already used"


def test_the_client_implements_the_provider_protocol() -> None:
    assert isinstance(CometAPIProvider(base_url=BASE, api_key=KEY), Provider)


# --- the pooled transport --------------------------------------------------------------------------------------------


def test_idle_socket_check_sees_the_server_hang_up() -> None:
    import socket

    from orchestrator.providers.http import socket_readable as _socket_readable

    ours, theirs = socket.socketpair()
    try:
        assert _socket_readable(ours) is False  # idle, open: reusable
        theirs.close()
        assert _socket_readable(ours) is True  # the peer hung up: httpcore must drop this connection
    finally:
        ours.close()
    assert _socket_readable(ours) is True  # closed (fileno -1)


@pytest.mark.anyio
async def test_the_default_pool_checks_idle_sockets_cheaply() -> None:
    from orchestrator.providers.http import SocketOnceBackend as _SocketOnceBackend

    async with CometAPIProvider(base_url="https://api.test", api_key="k") as p:
        pool = p._client._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool._network_backend, _SocketOnceBackend)
    async with CometAPIProvider(base_url=BASE, api_key="k") as p:
        pool = p._client._transport.plain._pool  # type: ignore[attr-defined]
        assert isinstance(pool._network_backend, _SocketOnceBackend)


@pytest.mark.anyio
async def test_an_http_api_loads_no_ca_bundle_until_something_speaks_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    used: list[httpx.AsyncHTTPTransport] = []

    async def answer(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        used.append(self)
        return httpx.Response(200, json=envelope(task_data()))

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", answer)
    async with CometAPIProvider(base_url=BASE, api_key="k") as p:
        transport = p._client._transport  # type: ignore[attr-defined]
        await p.get_task("1")
        assert used == [transport.plain] and transport._tls is None
        # The plain pool cannot be talked into TLS without verification: it trusts no certificate at all.
        plain_context: ssl.SSLContext = transport.plain._pool._ssl_context
        assert plain_context.verify_mode is ssl.CERT_REQUIRED and plain_context.check_hostname
        assert plain_context.cert_store_stats()["x509_ca"] == 0
        # A video on an https CDN goes through a fully verifying pool, made on first use.
        await p._client.get("https://cdn.test/v.mp4")
        tls_context: ssl.SSLContext = transport._tls._pool._ssl_context
        assert used[-1] is transport._tls and tls_context.verify_mode is ssl.CERT_REQUIRED
        assert tls_context.cert_store_stats()["x509_ca"] > 0


@pytest.mark.anyio
async def test_proxies_from_the_environment_still_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    async with CometAPIProvider(base_url="https://api.test", api_key="k") as p:
        mounts = p._client._mounts  # type: ignore[attr-defined]
    assert any(transport is not None for transport in mounts.values())


def test_a_task_started_when_the_provider_says_if_our_clocks_agree() -> None:
    from orchestrator.providers.base import Task

    task = Task("1", TaskStatus.SUBMITTED, created_at=100_500)
    assert task.started_on(sent=100.0, received=101.0) == 100.5
    assert task.started_on(sent=500.0, received=501.0) == 500.0  # a clock far off: when we sent it
    assert Task("2", TaskStatus.SUBMITTED).started_on(sent=7.0, received=8.0) == 7.0


def test_advice_names_the_providers_own_settings() -> None:
    from orchestrator.providers.classify import Hints

    hints = Hints(key="KLING_ACCESS_KEY and KLING_SECRET_KEY", base_url="KLING_BASE_URL")
    auth = classify_error(http_status=401, content=kling(1000), hints=hints)
    assert "check KLING_ACCESS_KEY and KLING_SECRET_KEY" in str(auth) and "COMETAPI" not in str(auth)
    moved = classify_error(http_status=404, content=HTML, hints=hints)
    assert "is KLING_BASE_URL right?" in str(moved)


def test_a_long_message_is_scrubbed_before_it_is_cut() -> None:
    error = classify_error(http_status=400, content=kling(1200, "x" * 280 + KEY), secret=KEY)
    assert "sk-test-SECR" not in str(error) and len(error.provider_message or "") <= 300
