"""The CometAPI client against the local simulator over loopback: the issue's "done when", end to end."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import av
import pytest
from PIL import Image

from orchestrator.errors import (
    AccountError,
    ConcurrencyLimitError,
    ConfigError,
    DuplicateExternalIdError,
    NetworkError,
    ServerError,
    TaskNotFoundError,
)
from orchestrator.providers.base import Task, TaskStatus
from orchestrator.providers.cometapi import CometAPIProvider
from orchestrator.providers.factory import LocalProvider, open_provider
from orchestrator.providers.local import LocalSimulator, SimulatorOptions
from orchestrator.run.options import RetryPolicy
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.spec.shot import ImageRef, ResolvedShot
from tests.helpers import image_ref

OPTIONS = SimulatorOptions(render_time=0.3, render_jitter=0.0, cheap_video=True, seed=1)


def board(folder: Path, name: str, color: tuple[int, int, int]) -> ImageRef:
    path = folder / name
    image = Image.new("RGB", (480, 320), color)
    image.paste((255, 255, 255), (40, 40, 200, 120))  # something for the pan to move over
    image.save(path, format="PNG")
    return image_ref(path)


def demo_shot(folder: Path, *, shot_id: str = "opening", **overrides: Any) -> ResolvedShot:
    boards = (board(folder, "b1.png", (180, 40, 40)), board(folder, "b2.png", (40, 40, 180)))
    fields: dict[str, Any] = {
        "id": shot_id,
        "index": 0,
        "project": "demo",
        "model": "kling-v1-6",
        "images": boards,
        "prompt": "the camera drifts over the harbour at dawn",
    }
    fields.update(overrides)
    return ResolvedShot(**fields)


@pytest.fixture
def simulator() -> Iterator[LocalSimulator]:
    with LocalSimulator(OPTIONS) as sim:
        yield sim


@pytest.fixture
async def client(simulator: LocalSimulator) -> AsyncIterator[CometAPIProvider]:
    async with CometAPIProvider(base_url=simulator.base_url, api_key=LocalSimulator.LOCAL_API_KEY) as provider:
        yield provider


async def wait_until_finished(provider: CometAPIProvider, task_id: str) -> Task:
    with anyio.fail_after(30):
        while True:
            task = await provider.get_task(task_id)
            if task.status.finished:
                return task
            await anyio.sleep(0.1)


def assert_playable_mp4(path: Path) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frame = next(container.decode(video=0))
        assert frame.width > 0 and frame.height > 0


@pytest.mark.anyio
async def test_done_when_create_poll_download_with_env_pointing_at_the_simulator(
    simulator: LocalSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "done when": the cometapi provider, configured only through the environment, renders a shot.
    monkeypatch.setenv("COMETAPI_BASE_URL", simulator.base_url)
    monkeypatch.setenv("COMETAPI_KEY", LocalSimulator.LOCAL_API_KEY)
    shot = demo_shot(tmp_path)
    async with CometAPIProvider.from_env() as provider:
        created = await provider.create_task(shot)
        assert created.status in (TaskStatus.SUBMITTED, TaskStatus.PROCESSING)
        assert created.external_task_id == external_task_id(shot)
        done = await wait_until_finished(provider, created.task_id)
        assert done.status is TaskStatus.SUCCEED, done.status_message
        assert done.videos and done.videos[0].duration.startswith("5")
        dest = tmp_path / "out" / shot.id / f"{shot.fingerprint[:12] or 'take'}.mp4"
        result = await provider.download(done.videos[0].url, dest)
    assert result.path == dest and dest.stat().st_size == result.bytes
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == result.sha256
    assert_playable_mp4(dest)
    assert simulator.stats().submissions == {external_task_id(shot): 1}


@pytest.mark.anyio
async def test_find_task_by_external_id(client: CometAPIProvider, tmp_path: Path) -> None:
    shot = demo_shot(tmp_path)
    created = await client.create_task(shot)
    found = await client.find_task(external_task_id(shot))
    assert found is not None and found.task_id == created.task_id
    assert await client.find_task("demo-nothing-000000000000") is None


@pytest.mark.anyio
async def test_a_duplicate_create_is_refused_and_never_billed_twice(
    client: CometAPIProvider, simulator: LocalSimulator, tmp_path: Path
) -> None:
    shot = demo_shot(tmp_path)
    await client.create_task(shot)
    with pytest.raises(DuplicateExternalIdError):
        await client.create_task(shot)
    stats = simulator.stats()
    assert stats.submissions == {external_task_id(shot): 1} and stats.duplicates_refused == 1


@pytest.mark.anyio
async def test_list_tasks_newest_first(client: CometAPIProvider, tmp_path: Path) -> None:
    first = await client.create_task(demo_shot(tmp_path))
    second = await client.create_task(demo_shot(tmp_path, shot_id="second"))
    assert [t.task_id for t in await client.list_tasks(page_size=5)] == [second.task_id, first.task_id]
    assert [t.task_id for t in await client.list_tasks(page_size=1)] == [second.task_id]


@pytest.mark.anyio
async def test_unknown_task_id_is_not_found(client: CometAPIProvider) -> None:
    with pytest.raises(TaskNotFoundError):
        await client.get_task("123456789")


@pytest.mark.anyio
async def test_over_the_concurrency_cap_is_a_retryable_1303(tmp_path: Path) -> None:
    options = SimulatorOptions(render_time=5.0, cheap_video=True, seed=1, concurrency_cap=1)
    async with open_provider("local", simulator_options=options) as provider:
        await provider.create_task(demo_shot(tmp_path, shot_id="one"))
        with pytest.raises(ConcurrencyLimitError) as caught:
            await provider.create_task(demo_shot(tmp_path, shot_id="two"))
    assert caught.value.code == 1303 and RetryPolicy().floor_for(caught.value) == 1.0


@pytest.mark.anyio
async def test_a_wrong_key_is_an_account_error(tmp_path: Path) -> None:
    options = SimulatorOptions(render_time=0.1, cheap_video=True, api_keys=frozenset({"the-right-key"}))
    with LocalSimulator(options) as sim:
        async with CometAPIProvider(base_url=sim.base_url, api_key="sk-wrong-key-123") as provider:
            with pytest.raises(AccountError, match="COMETAPI_KEY") as caught:
                await provider.create_task(demo_shot(tmp_path))
    assert "sk-wrong-key-123" not in str(caught.value)


@pytest.mark.anyio
async def test_open_provider_local_runs_the_simulator_for_the_duration(tmp_path: Path) -> None:
    async with open_provider("local", simulator_options=OPTIONS) as provider:
        assert isinstance(provider, LocalProvider) and provider.name == "local"
        assert provider.base_url.startswith("http://127.0.0.1:")
        task = await provider.create_task(demo_shot(tmp_path))
        done = await wait_until_finished(provider, task.task_id)
        assert done.status is TaskStatus.SUCCEED
        assert provider.simulator.stats().creates_accepted == 1
        simulator = provider.simulator
    with pytest.raises(ConfigError, match="not running"):
        simulator.stats()


@pytest.mark.anyio
async def test_an_ambiguous_create_is_found_by_external_id_afterwards(tmp_path: Path) -> None:
    # The server records the task but the answer is lost: the client must say "ambiguous", and the lookup finds it.
    options = SimulatorOptions(render_time=0.3, cheap_video=True, seed=1, drop_after_create_rate=1.0)
    shot = demo_shot(tmp_path)
    async with open_provider("local", simulator_options=options) as provider:
        with pytest.raises(NetworkError) as caught:
            await provider.create_task(shot)
        assert caught.value.ambiguous is True
        found = await provider.find_task(external_task_id(shot))
        assert found is not None and found.external_task_id == external_task_id(shot)
        assert isinstance(provider, LocalProvider)
        assert provider.simulator.stats().submissions == {external_task_id(shot): 1}


@pytest.mark.anyio
async def test_server_faults_are_transient(tmp_path: Path) -> None:
    options = SimulatorOptions(render_time=0.3, cheap_video=True, seed=1, rate_5xx=1.0)
    async with open_provider("local", simulator_options=options) as provider:
        with pytest.raises(ServerError) as caught:
            await provider.get_task("1")
    assert caught.value.code in (5000, 5001, 5002)
