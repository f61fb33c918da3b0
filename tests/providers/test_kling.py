"""The Kling direct client: routes without the /kling prefix, the JWT (checked with PyJWT), its refresh and retry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from orchestrator.config import KLING_DEFAULT_BASE_URL
from orchestrator.errors import AccountError, ConfigError
from orchestrator.providers.base import Capabilities, Provider, TaskStatus
from orchestrator.providers.cometapi import CometAPIProvider
from orchestrator.providers.factory import open_provider
from orchestrator.providers.kling import KlingJWT, KlingProvider
from orchestrator.spec.shot import ResolvedShot
from tests.helpers import image_ref, write_board

BASE = "http://kling.test"
ACCESS = "AK-test-access-0001"
SECRET = "SK-test-secret-for-signing-hs256-0002"  # 32 bytes or more, as Kling issues them
ROUTE = "/v1/videos/multi-image2video"
Handler = Callable[[httpx.Request], httpx.Response]


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def task_answer(status: str = "submitted") -> dict[str, Any]:
    data = {"task_id": "900001", "task_status": status, "task_info": {}, "created_at": 1, "updated_at": 1}
    return {"code": 0, "message": "SUCCEED", "request_id": "r", "data": data}


def provider(handler: Handler, clock: Clock | None = None) -> KlingProvider:
    return KlingProvider(
        base_url=BASE,
        access_key=ACCESS,
        secret_key=SECRET,
        transport=httpx.MockTransport(handler),
        clock=clock or Clock(),
    )


def token_of(request: httpx.Request) -> str:
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


def shot(tmp_path: Path) -> ResolvedShot:
    boards = tuple(image_ref(write_board(tmp_path / f"{n}.png", (320, 320), (40, 9 * n, 40))) for n in (1, 2))
    return ResolvedShot(id="s", index=0, project="p", model="kling-v1-6", images=boards, prompt="pan")


@pytest.mark.anyio
async def test_routes_have_no_kling_prefix_and_the_jwt_is_as_kling_documents(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    clock = Clock()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET" and request.url.path == ROUTE:
            return httpx.Response(200, json={**task_answer(), "data": [task_answer()["data"]]})
        return httpx.Response(200, json=task_answer())

    async with provider(handler, clock) as p:
        created = await p.create_task(shot(tmp_path))
        await p.get_task(created.task_id)
        await p.list_tasks(page_size=3)
    assert [(r.method, r.url.path) for r in seen] == [("POST", ROUTE), ("GET", f"{ROUTE}/900001"), ("GET", ROUTE)]
    assert seen[0].headers["content-type"] == "application/json"
    token = token_of(seen[0])
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False})
    assert claims == {"iss": ACCESS, "exp": int(clock.now) + 1800, "nbf": int(clock.now) - 5}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another secret, just as long as it", algorithms=["HS256"], options={"verify_exp": False})


@pytest.mark.anyio
async def test_the_token_is_cached_and_signed_again_a_minute_before_it_expires() -> None:
    tokens: list[str] = []
    clock = Clock()

    def handler(request: httpx.Request) -> httpx.Response:
        tokens.append(token_of(request))
        return httpx.Response(200, json=task_answer())

    async with provider(handler, clock) as p:
        await p.get_task("1")
        clock.now += 1800 - 61
        await p.get_task("1")
        clock.now += 2  # now inside the last minute
        await p.get_task("1")
    assert tokens[0] == tokens[1] != tokens[2]
    claims = jwt.decode(tokens[2], SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False})
    assert claims["exp"] == int(clock.now) + 1800


@pytest.mark.anyio
@pytest.mark.parametrize("code", [1003, 1004])
async def test_a_stale_token_is_signed_afresh_and_the_call_sent_once_more(code: int) -> None:
    tokens: list[str] = []
    clock = Clock()

    def handler(request: httpx.Request) -> httpx.Response:
        tokens.append(token_of(request))
        if len(tokens) == 1:
            clock.now += 1  # a fresh signature differs from the rejected one
            return httpx.Response(401, json={"code": code, "message": "token expired", "request_id": "r"})
        return httpx.Response(200, json=task_answer("processing"))

    async with provider(handler, clock) as p:
        task = await p.get_task("900001")
    assert task.status is TaskStatus.PROCESSING
    assert len(tokens) == 2 and tokens[0] != tokens[1]


@pytest.mark.anyio
async def test_the_retry_happens_once_only_and_other_auth_errors_not_at_all() -> None:
    calls: list[int] = []

    def always_stale(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(401, json={"code": 1004, "message": "token expired"})

    async with provider(always_stale) as p:
        with pytest.raises(AccountError, match="KLING_ACCESS_KEY and KLING_SECRET_KEY"):
            await p.get_task("1")
    assert len(calls) == 2

    calls.clear()

    def wrong_key(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(401, json={"code": 1000, "message": "auth failed"})

    async with provider(wrong_key) as p:
        with pytest.raises(AccountError, match="authentication failed: check KLING_ACCESS_KEY"):
            await p.get_task("1")
    assert len(calls) == 1


@pytest.mark.anyio
async def test_the_token_goes_to_the_api_origin_only(tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("authorization")
        return httpx.Response(200, content=b"\x00video")

    async with provider(handler) as p:
        await p.download("https://cdn.klingai.test/v.mp4", tmp_path / "a.mp4")
        await p.download(f"{BASE}/files/v.mp4", tmp_path / "b.mp4")
    assert seen["cdn.klingai.test"] is None
    assert (seen["kling.test"] or "").startswith("Bearer ey")


def test_capabilities_are_declared_as_data() -> None:
    kling = KlingProvider(access_key=ACCESS, secret_key=SECRET)
    assert kling.capabilities == Capabilities(find_by_external_id=True, list_tasks=True, absence_is_proof=True)
    assert kling.base_url == KLING_DEFAULT_BASE_URL and isinstance(kling, Provider)
    gateway = CometAPIProvider(base_url="https://api.cometapi.com", api_key="sk-x")
    assert gateway.capabilities == Capabilities() and not gateway.capabilities.can_confirm


def test_from_env_reads_both_keys_and_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("KLING_SECRET_KEY", SECRET)
    assert KlingProvider.from_env().base_url == "https://api-singapore.klingai.com"
    monkeypatch.setenv("KLING_BASE_URL", "http://127.0.0.1:8766/")
    p = KlingProvider.from_env()
    assert p.base_url == "http://127.0.0.1:8766" and p.name == "kling"
    assert ACCESS not in repr(p) and SECRET not in repr(p)


@pytest.mark.parametrize("missing", ["KLING_ACCESS_KEY", "KLING_SECRET_KEY"])
def test_a_missing_key_is_one_helpful_line(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("KLING_SECRET_KEY", SECRET)
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError) as caught:
        open_provider("kling")
    message = str(caught.value)
    assert missing in message and "--provider local" in message and "\n" not in message
    assert ACCESS not in message and SECRET not in message


@pytest.mark.parametrize("url", ["ftp://x", "api-singapore.klingai.com"])
def test_a_bad_base_url_names_the_kling_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="KLING_BASE_URL"):
        KlingProvider(base_url=url, access_key=ACCESS, secret_key=SECRET)


@pytest.mark.anyio
async def test_a_download_from_the_api_origin_is_streamed_not_read_by_the_auth(tmp_path: Path) -> None:
    # httpx's default auth flow would read every answer whole before the size cap could refuse it.
    async def endless() -> Any:
        for _ in range(1000):
            yield b"\x00" * 1024

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    from orchestrator.errors import DownloadError

    async with provider(handler) as p:
        with pytest.raises(DownloadError, match="larger than"):
            await p.download(f"{BASE}/v.mp4", tmp_path / "v.mp4", max_bytes=10_000)


def test_the_auth_lists_every_secret_it_holds() -> None:
    auth = KlingJWT(ACCESS, SECRET, clock=Clock())
    token = auth.token()
    assert set(auth.secrets()) == {ACCESS, SECRET, token}
    assert ACCESS not in repr(auth) and SECRET not in repr(auth) and token not in repr(auth)
    assert json.loads(jwt.utils.base64url_decode(token.split(".")[1]))["iss"] == ACCESS


def test_a_short_secret_key_signs_without_a_warning() -> None:
    # Newer PyJWT warns below 32 bytes (the suite turns warnings into errors); the key is not ours to lengthen.
    token = KlingJWT(ACCESS, "short-secret", clock=Clock()).token()
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
