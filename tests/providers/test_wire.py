"""One normaliser for every answer shape (docs/wire.md, "Answers"), through the client and httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.errors import (
    ConcurrencyLimitError,
    ModelNotEnabledError,
    NetworkError,
    ProviderError,
    RateLimitedError,
    ServerError,
    ShotRejectedError,
    TaskNotFoundError,
    TransientError,
    UpstreamSaturatedError,
)
from orchestrator.providers import wire
from orchestrator.providers.base import TaskStatus
from orchestrator.providers.cometapi import CometAPIProvider
from orchestrator.providers.wire import parse_task
from orchestrator.run.options import RetryPolicy
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.spec.shot import ResolvedShot
from tests.helpers import image_ref, write_board

BASE = "http://gateway.test"
KEY = "sk-wire-SECRET-456"
TASK_ID = "861309198188019719"
SATURATED = "当前分组上游负载已饱和，请稍后再试"
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> CometAPIProvider:
    return CometAPIProvider(base_url=BASE, api_key=KEY, transport=httpx.MockTransport(handler))


def answering(status: int, body: Any = None, *, content: bytes | None = None, **headers: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if content is not None:
            return httpx.Response(status, content=content, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def kling_task(status: str = "processing", **extra: Any) -> dict[str, Any]:
    return {"task_id": TASK_ID, "task_status": status, "task_info": {}, "created_at": 1722769557708, **extra}


def kling_envelope(data: Any, *, code: int = 0, message: str = "SUCCEED") -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": "req-k", "data": data}


def gateway_wrapper(status: str, inner: Any, **extra: Any) -> dict[str, Any]:
    data = {"task_id": "task_gw_1", "action": "generate", "status": status, "fail_reason": "", "progress": "40%"}
    data.update(extra)
    data["data"] = inner
    return {"code": "success", "message": "", "data": data}


def shot(tmp_path: Path) -> ResolvedShot:
    boards = tuple(image_ref(write_board(tmp_path / f"{n}.png", (320, 320), (9 * n, 40, 40))) for n in (1, 2))
    return ResolvedShot(id="s", index=0, project="p", model="kling-v1-6", images=boards, prompt="pan")


async def get(handler: Handler) -> Any:
    async with client(handler) as p:
        return await p.get_task("task_gw_1")


# --- the flat Kling envelope --------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("submitted", TaskStatus.SUBMITTED),
        ("processing", TaskStatus.PROCESSING),
        ("succeed", TaskStatus.SUCCEED),
        ("failed", TaskStatus.FAILED),
        ("rendering-in-a-new-way", TaskStatus.PROCESSING),  # unknown: never terminal
    ],
)
async def test_the_kling_envelope_for_each_status(word: str, status: TaskStatus) -> None:
    task = await get(answering(200, kling_envelope(kling_task(word))))
    assert task.status is status and task.raw_status == word
    assert task.task_id == TASK_ID and task.request_id == "req-k" and task.progress is None


@pytest.mark.anyio
async def test_final_unit_deduction_becomes_units_charged() -> None:
    videos = {"videos": [{"id": "v", "url": "https://cdn.test/v.mp4", "duration": "5.1"}]}
    done = await get(
        answering(200, kling_envelope(kling_task("succeed", task_result=videos, final_unit_deduction="3.5")))
    )
    assert done.units_charged == 3.5 and done.videos[0].url == "https://cdn.test/v.mp4"
    running = await get(answering(200, kling_envelope(kling_task("processing"))))
    assert running.units_charged is None
    assert parse_task(kling_task("succeed", final_unit_deduction="lots")).units_charged is None


# --- the gateway's task wrapper -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("NOT_START", TaskStatus.SUBMITTED),
        ("SUBMITTED", TaskStatus.SUBMITTED),
        ("QUEUED", TaskStatus.SUBMITTED),
        ("IN_PROGRESS", TaskStatus.PROCESSING),
        ("SUCCESS", TaskStatus.SUCCEED),
        ("FAILURE", TaskStatus.FAILED),
        ("UNKNOWN", TaskStatus.PROCESSING),
        ("PAUSED_FOR_LUNCH", TaskStatus.PROCESSING),
    ],
)
async def test_the_gateway_wrapper_for_each_status(word: str, status: TaskStatus) -> None:
    task = await get(answering(200, gateway_wrapper(word, None)))
    assert task.status is status and task.raw_status == word
    assert task.task_id == "task_gw_1"  # the gateway's own id: the one it is queried by
    assert task.progress == "40%"


@pytest.mark.anyio
@pytest.mark.parametrize("nesting", ["task", "envelope", "envelope-as-text"])
async def test_the_kling_task_is_found_one_or_two_levels_down(nesting: str) -> None:
    videos = {"videos": [{"id": "v", "url": "https://cdn.test/v.mp4", "duration": "5.1"}]}
    inner_task = kling_task("succeed", task_result=videos, task_info={"external_task_id": "p-s-1"})
    inner_task["final_unit_deduction"] = "2"
    inner: Any = {"task": inner_task, "envelope": kling_envelope(inner_task)}.get(nesting)
    if nesting == "envelope-as-text":
        inner = json.dumps(kling_envelope(inner_task))
    task = await get(answering(200, gateway_wrapper("SUCCESS", inner, progress="100%")))
    assert task.status is TaskStatus.SUCCEED and task.raw_status == "SUCCESS"
    assert task.external_task_id == "p-s-1" and task.videos[0].duration == "5.1"
    assert task.units_charged == 2.0 and task.progress == "100%"
    assert task.created_at == 1722769557708


@pytest.mark.anyio
async def test_fail_reason_is_the_message_when_the_kling_task_has_none() -> None:
    bare = await get(answering(200, gateway_wrapper("FAILURE", None, fail_reason="upstream refused the images")))
    assert bare.status is TaskStatus.FAILED and bare.status_message == "upstream refused the images"
    own = kling_task("failed", task_status_msg="Failure to pass the risk control system")
    told = await get(answering(200, gateway_wrapper("FAILURE", own, fail_reason="task failed")))
    assert told.status_message == "Failure to pass the risk control system"


@pytest.mark.anyio
async def test_a_terminal_word_wins_over_a_running_one() -> None:
    # The gateway gave up on a task upstream still calls running: it is over (and refunded).
    gave_up = await get(answering(200, gateway_wrapper("FAILURE", kling_task("processing"), fail_reason="timeout")))
    assert gave_up.status is TaskStatus.FAILED and gave_up.raw_status == "FAILURE"
    # Upstream finished before the gateway's poller noticed: the videos are there.
    ahead = await get(answering(200, gateway_wrapper("IN_PROGRESS", kling_task("succeed"))))
    assert ahead.status is TaskStatus.SUCCEED and ahead.raw_status == "succeed"
    # An inner word we do not know leaves the gateway's word in charge.
    odd = await get(answering(200, gateway_wrapper("QUEUED", kling_task("warming_up"))))
    assert odd.status is TaskStatus.SUBMITTED and odd.raw_status == "QUEUED"


@pytest.mark.anyio
async def test_the_gateway_wrapper_on_create_too(tmp_path: Path) -> None:
    body = gateway_wrapper("SUBMITTED", kling_envelope(kling_task("submitted")), progress="0%")
    async with client(answering(200, body)) as p:
        task = await p.create_task(shot(tmp_path))
    assert task.task_id == "task_gw_1" and task.status is TaskStatus.SUBMITTED
    assert task.external_task_id == external_task_id(shot(tmp_path))


@pytest.mark.anyio
async def test_a_wrapper_without_any_task_id_is_not_a_task() -> None:
    body = {"code": "success", "message": "", "data": {"status": "SUCCESS", "data": None}}
    with pytest.raises(ServerError, match="no task"):
        await get(answering(200, body))


# --- the gateway's string-code errors -----------------------------------------------------------------------------


def string_error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "data": None}


@pytest.mark.anyio
async def test_task_not_exist_on_a_query_is_task_not_found() -> None:
    with pytest.raises(TaskNotFoundError) as caught:
        await get(answering(400, string_error("task_not_exist", "task_not_exist")))
    assert caught.value.task_id == "task_gw_1" and caught.value.http_status == 400


@pytest.mark.anyio
async def test_a_string_code_is_an_error_even_with_http_200() -> None:
    with pytest.raises(TaskNotFoundError):
        await get(answering(200, string_error("task_not_exist", "")))


@pytest.mark.anyio
async def test_fail_to_fetch_task_is_transient() -> None:
    with pytest.raises(ServerError, match="could not fetch the task"):
        await get(answering(500, string_error("fail_to_fetch_task", "upstream timeout")))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("http_status", "kling_code", "expected"),
    [
        (429, 1303, ConcurrencyLimitError),
        (400, 1301, ShotRejectedError),
        (429, 1302, RateLimitedError),
        (500, 5000, ServerError),
    ],
)
async def test_a_kling_error_inside_the_message_is_classified_on_its_kling_code(
    tmp_path: Path, http_status: int, kling_code: int, expected: type[ProviderError]
) -> None:
    upstream = json.dumps({"code": kling_code, "message": "upstream said so", "request_id": "req-up"})
    async with client(answering(http_status, string_error("task_failed", upstream))) as p:
        with pytest.raises(ProviderError) as caught:
            await p.create_task(shot(tmp_path))
    assert type(caught.value) is expected
    assert caught.value.code == kling_code and caught.value.request_id == "req-up"
    assert caught.value.provider_message == "upstream said so"


@pytest.mark.anyio
async def test_a_string_code_without_kling_json_falls_back_on_the_http_status(tmp_path: Path) -> None:
    async with client(answering(400, string_error("task_failed", "bad image_list"))) as p:
        with pytest.raises(ShotRejectedError, match="bad image_list"):
            await p.create_task(shot(tmp_path))


# --- the gateway's {"error": {...}} and its 429 and 503 -----------------------------------------------------------


def gateway_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "comet_api_error", "param": "", "code": code}}


@pytest.mark.anyio
async def test_model_not_found_says_the_model_is_not_enabled_for_the_group(tmp_path: Path) -> None:
    message = "no available channel for group default and model kling-v2-5-turbo (distributor)"
    async with client(answering(503, gateway_error("model_not_found", message))) as p:
        with pytest.raises(ModelNotEnabledError) as caught:
            await p.create_task(shot(tmp_path))
    error = caught.value
    assert not isinstance(error, TransientError)  # no retry: the run stops
    assert "not enabled for your key's group" in str(error) and "\n" not in str(error)
    assert "kling-v2-5-turbo" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        gateway_error("", SATURATED),
        string_error("", SATURATED),
        {"message": SATURATED},
    ],
)
async def test_a_saturated_gateway_backs_off_like_1303_for_at_least_five_seconds(body: dict[str, Any]) -> None:
    with pytest.raises(UpstreamSaturatedError) as caught:
        await get(answering(429, body))
    assert isinstance(caught.value, ConcurrencyLimitError)
    assert RetryPolicy().floor_for(caught.value) == 5.0  # the policy's floor: a test switch can make it instant
    assert not caught.value.may_have_reached_provider


@pytest.mark.anyio
async def test_a_saturated_gateway_honours_a_longer_retry_after() -> None:
    with pytest.raises(UpstreamSaturatedError) as caught:
        await get(answering(429, gateway_error("", SATURATED), **{"Retry-After": "12"}))
    assert caught.value.retry_after == 12.0


@pytest.mark.anyio
async def test_the_gateways_own_rate_limit_stays_a_rate_limit() -> None:
    with pytest.raises(RateLimitedError) as caught:
        await get(answering(429, gateway_error("rate_limit_exceeded", "too many requests")))
    assert not isinstance(caught.value, ConcurrencyLimitError)


# --- HTML, empty bodies and creates whose outcome is unknown ------------------------------------------------------

HTML = b"<html><head><title>524: A timeout occurred</title></head><body>cloudflare</body></html>"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "handler",
    [
        answering(524, content=HTML, **{"content-type": "text/html"}),
        answering(504, content=HTML),
        answering(502, content=b""),
        answering(500, gateway_error("", "upstream error")),
        answering(503, kling_envelope(None, code=5001, message="maintenance")),
    ],
    ids=["524-html", "504-html", "502-empty", "500-gateway", "503-kling"],
)
async def test_a_create_answered_5xx_may_have_reached_the_provider(tmp_path: Path, handler: Handler) -> None:
    async with client(handler) as p:
        with pytest.raises(ServerError) as caught:
            await p.create_task(shot(tmp_path))
    assert caught.value.may_have_reached_provider


@pytest.mark.anyio
async def test_a_create_dropped_after_sending_may_have_reached_the_provider(tmp_path: Path) -> None:
    def dropped(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    async with client(dropped) as p:
        with pytest.raises(NetworkError) as caught:
            await p.create_task(shot(tmp_path))
    assert caught.value.may_have_reached_provider and "may have reached" in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize("content", [b"", b"<html>ok</html>", b"[1, 2]", b'"SUCCEED"'])
async def test_a_2xx_that_is_no_task_is_a_server_error(content: bytes) -> None:
    with pytest.raises(ServerError):
        await get(answering(200, content=content))


# --- list pages ---------------------------------------------------------------------------------------------------


def listed(task_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {**kling_task(status, **extra), "task_id": task_id}


@pytest.mark.anyio
async def test_a_list_page_reparses_only_the_tasks_that_changed_since_the_last_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pages = [
        [listed("a", "processing"), listed("b", "processing"), {"no": "task"}],
        [listed("a", "processing"), listed("b", "succeed", updated_at=1722769562708), listed("c", "submitted")],
        [listed("c", "submitted"), "junk", listed("a", "processing")],
    ]
    parsed: list[object] = []
    counting = wire.parse_task

    def parse(data: object, *, request_id: str | None = None) -> Any:
        parsed.append(data.get("task_id") if isinstance(data, dict) else data)
        return counting(data, request_id=request_id)

    monkeypatch.setattr(wire, "parse_task", parse)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=kling_envelope(pages.pop(0)))

    async with client(handler) as p:
        first = await p.list_tasks(page_size=3)
        second = await p.list_tasks(page_size=3)
        third = await p.list_tasks(page_size=3)
    # The first page is read whole; then only "b" (its status changed) and "c" (new) are read again, and an item
    # that is no task is skipped each time it comes.
    assert parsed == ["a", "b", None, "b", "c", "junk"]
    assert [(t.task_id, t.status) for t in second] == [
        ("a", TaskStatus.PROCESSING),
        ("b", TaskStatus.SUCCEED),
        ("c", TaskStatus.SUBMITTED),
    ]
    assert second[0] is first[0] and third[1] is first[0] and third[0] is second[2]
    assert [t.task_id for t in first] == ["a", "b"] and second[1].updated_at == 1722769562708
