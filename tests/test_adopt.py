"""``adopt``: a task found in the provider's console settles an unconfirmed shot, after every check."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from orchestrator.adopt import aadopt
from orchestrator.api import arun_project
from orchestrator.errors import ConfigError, ManifestError, ServerError
from orchestrator.providers import open_provider
from orchestrator.providers.base import Provider
from orchestrator.providers.local import LocalSimulator, SimulatorOptions
from orchestrator.run.options import RetryPolicy
from orchestrator.run.polling import PollPolicy
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.spec.shot import ResolvedProject, ResolvedShot
from orchestrator.store import RenderRecord, load_state
from orchestrator.store.manifest import PROCESSING, SUBMITTED, SUCCEEDED, UNCONFIRMED, load_manifest
from tests.fake_provider import GATEWAY, FakeProvider, make_shot, run, statuses
from tests.helpers import write_board


def project_of(tmp_path: Path, *shots: ResolvedShot) -> ResolvedProject:
    return ResolvedProject(
        path=tmp_path / "project.yaml",
        sha256="",
        version=1,
        project="demo",
        model="kling-v1-6",
        output_dir=tmp_path / "out",
        shots=shots,
    )


async def unconfirmed(tmp_path: Path) -> tuple[ResolvedProject, FakeProvider]:
    """Shot a unconfirmed (its create reached the provider, answered 524), shot b done."""
    shots = (make_shot("a"), make_shot("b"))
    provider = FakeProvider(capabilities=GATEWAY, create_then_fail={"a": [ServerError("HTTP 524")]})
    await run(provider, list(shots), tmp_path / "out")
    assert statuses(tmp_path / "out") == {"a": UNCONFIRMED, "b": SUCCEEDED}
    return project_of(tmp_path, *shots), provider


def task_of(provider: FakeProvider, shot_id: str) -> str:
    return next(task.task_id for task in provider.tasks.values() if task.shot_id == shot_id)


@pytest.mark.anyio
async def test_adopted_task_is_followed_by_the_next_run_and_nothing_is_created(tmp_path: Path) -> None:
    project, provider = await unconfirmed(tmp_path)
    adopted = await aadopt(project, "a", task_of(provider, "a"), provider=provider)
    assert adopted.external_id_checked and adopted.shot_id == "a"
    record = load_manifest(tmp_path / "out" / "manifest.json").shots["a"]
    assert record.status == SUBMITTED and record.task_id == adopted.task_id and record.error is None

    await run(provider, list(project.shots), tmp_path / "out")
    assert statuses(tmp_path / "out") == {"a": SUCCEEDED, "b": SUCCEEDED}
    assert provider.create_calls == Counter({external_task_id(shot): 1 for shot in project.shots})


@pytest.mark.anyio
async def test_adopt_refuses_what_would_attach_the_wrong_task(tmp_path: Path) -> None:
    project, provider = await unconfirmed(tmp_path)
    manifest_before = (tmp_path / "out" / "manifest.json").read_bytes()
    store_before = load_state(tmp_path / "out")
    cases = {
        "999999": "knows no task 999999",
        task_of(provider, "b"): "already attached to shot b",
    }
    for task_id, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            await aadopt(project, "a", task_id, provider=provider)
    with pytest.raises(ConfigError, match="b is succeeded with task"):
        await aadopt(project, "b", task_of(provider, "a"), provider=provider)
    with pytest.raises(ConfigError, match="no shot 'zz'"):
        await aadopt(project, "zz", "1", provider=provider)
    # A refused adopt leaves the store and its snapshot as they were.
    assert (tmp_path / "out" / "manifest.json").read_bytes() == manifest_before
    assert load_state(tmp_path / "out") == store_before


@pytest.mark.anyio
async def test_adopt_refuses_a_task_whose_external_id_is_another_renders(tmp_path: Path) -> None:
    project, provider = await unconfirmed(tmp_path)
    stranger = make_shot("c")
    await provider.create_task(stranger)  # made by someone else, not in this folder
    with pytest.raises(ConfigError, match="belongs to another render"):
        await aadopt(project, "a", task_of(provider, "c"), provider=provider)


@pytest.mark.anyio
async def test_adopt_needs_renders_to_attach_to(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no renders here yet"):
        await aadopt(project_of(tmp_path, make_shot("a")), "a", "1", provider=FakeProvider())


@pytest.mark.anyio
async def test_an_unknown_task_right_after_the_create_says_a_gateway_may_not_show_it_yet(tmp_path: Path) -> None:
    project, provider = await unconfirmed(tmp_path)
    with pytest.raises(ConfigError, match="may not show its task yet: try again"):
        await aadopt(project, "a", "999999", provider=provider)

    # Long after the create, "unknown" is just unknown.
    from orchestrator.store.manifest import ManifestStore

    store = ManifestStore.open(tmp_path / "out" / "manifest.json", project="demo")
    store.update("a", submitted_at="2026-01-01T00:00:00.000Z")
    store.close()
    with pytest.raises(ConfigError) as caught:
        await aadopt(project, "a", "999999", provider=provider)
    assert "knows no task 999999" in caught.value.message and "try again" not in caught.value.message


# --- by render key, against the simulator's gateway dialect ---------------------------------------------------------

TAKES_SPEC = """\
version: 1
project: keys
output_dir: out
provider: local
limits: {concurrency: 4, requests_per_second: 100}
shots:
  - {id: s01, images: [b0.png, b1.png], prompt: "dawn", takes: 2}
  - id: s02
    images: [b0.png, b1.png]
    prompt: "dusk"
    variants: {wide: {prompt: "wide dusk"}, pro: {mode: pro}}
"""
QUICK = {"render_time": 0.2, "render_jitter": 0.0, "cheap_video": True, "seed": 3, "not_visible_for": 0.0}
QUICK_RUN = {
    "retry": RetryPolicy(base=0.01, cap=0.02, concurrency_floor=0.0, saturation_floor=0.0),
    "poll": PollPolicy(initial_estimate=0.2, min_interval=0.02, max_interval=0.1, deadline=20.0),
}


def takes_spec(tmp_path: Path) -> Path:
    for k in range(2):
        write_board(tmp_path / f"b{k}.png", (400, 300), (60 * k, 90, 120))
    spec = tmp_path / "project.yaml"
    spec.write_text(TAKES_SPEC)
    return spec


@asynccontextmanager
async def gateway() -> AsyncIterator[tuple[Provider, LocalSimulator]]:
    """The gateway dialect, billing every create and then answering 524 until told otherwise."""
    options = SimulatorOptions(dialect="gateway", bill_then_524_rate=1.0, **QUICK)  # type: ignore[arg-type]
    async with open_provider("local", simulator_options=options) as provider:
        simulator: LocalSimulator = provider.simulator  # type: ignore[attr-defined]
        yield provider, simulator


def task_of_render(simulator: LocalSimulator, render: RenderRecord) -> str:
    """What the user finds in the console: the task carrying the render's external id."""
    return next(t.task_id for t in simulator.state.all_tasks() if t.external_task_id == render.external_task_id)


def render_of(out: Path, shot_id: str, *, take: int = 1, variant: str | None = None) -> RenderRecord:
    return next(r for r in load_state(out).renders_of(shot_id)[::-1] if (r.take, r.variant) == (take, variant))


@pytest.mark.anyio
async def test_a_take_is_adopted_by_its_key_and_the_next_run_downloads_exactly_that_take(tmp_path: Path) -> None:
    spec, out = takes_spec(tmp_path), tmp_path / "out"
    async with gateway() as (provider, simulator):
        first = await arun_project(spec, provider=provider, **QUICK_RUN)
        assert first.statuses == dict.fromkeys(["s01", "s01#2", "s02/wide", "s02/pro"], UNCONFIRMED)
        simulator.configure(bill_then_524_rate=0.0)
        current_before = load_state(out).shot("s01")
        second = render_of(out, "s01", take=2)
        # The reason kept with the take names its key in the command to copy.
        assert second.error is not None and "orchestrator adopt SPEC s01#2 TASK_ID" in second.error

        adopted = await aadopt(spec, "s01#2", task_of_render(simulator, second), provider=provider)
        assert (adopted.key, adopted.shot_id, adopted.named) == ("s01#2", "s01", "render s01#2")
        assert adopted.external_id_checked
        after = load_state(out)
        assert after.render(second.render_id).status in (SUBMITTED, PROCESSING)  # that row, not the shot's first take
        assert render_of(out, "s01").status == UNCONFIRMED and render_of(out, "s01").task_id is None
        assert after.shot("s01") == current_before  # the shot's current render is as it was
        pro = render_of(out, "s02", variant="pro")
        await aadopt(spec, "s02/pro", task_of_render(simulator, pro), provider=provider)

        again = await arun_project(spec, provider=provider, **QUICK_RUN)
        creates = sum(simulator.stats().submissions.values())
    assert again.statuses == {"s01": UNCONFIRMED, "s01#2": SUCCEEDED, "s02/wide": UNCONFIRMED, "s02/pro": SUCCEEDED}
    assert creates == 4  # the first run's four creates; nothing was sent again
    take2 = render_of(out, "s01", take=2)
    assert take2.task_id == adopted.task_id and (out / take2.outputs[0].path).is_file()
    assert take2.outputs[0].path.endswith(f"{take2.fingerprint[:12]}-t2.mp4")
    assert render_of(out, "s02", variant="pro").outputs[0].path.endswith("-pro.mp4")


@pytest.mark.anyio
async def test_adopt_by_key_refuses_another_takes_task_and_keys_the_spec_lacks(tmp_path: Path) -> None:
    spec, out = takes_spec(tmp_path), tmp_path / "out"
    async with gateway() as (provider, simulator):
        await arun_project(spec, provider=provider, **QUICK_RUN)
        simulator.configure(bill_then_524_rate=0.0)
        first_take = task_of_render(simulator, render_of(out, "s01"))
        wide = task_of_render(simulator, render_of(out, "s02", variant="wide"))
        database = (out / "renders.db").read_bytes()
        snapshot = (out / "manifest.json").read_bytes()
        cases = {
            ("s01#2", first_take): "belongs to shot s01 ",
            ("s02/pro", wide): "belongs to render s02/wide ",
            ("s01#3", first_take): "render s01#3 has never been sent",
            ("s02", wide): r"shot s02 has variants \(wide, pro\): name the render, e.g. s02/wide",
            ("s02/tele", wide): "shot s02 has no variant 'tele' in project.yaml: its variants are wide, pro",
            ("s01/wide", wide): "shot s01 has no variant 'wide' in project.yaml: it has no variants",
            ("s01#x", wide): "'s01#x' is not a render key",
            ("s01#0", wide): "'s01#0' is not a render key",
        }
        for (key, task_id), message in cases.items():
            with pytest.raises(ConfigError, match=message):
                await aadopt(spec, key, task_id, provider=provider)
        # Each refusal left the store byte for byte as it was.
        assert (out / "renders.db").read_bytes() == database
        assert (out / "manifest.json").read_bytes() == snapshot

        await aadopt(spec, "s02/wide", wide, provider=provider)
        with pytest.raises(ConfigError, match="already attached to render s02/wide"):
            await aadopt(spec, "s01#2", wide, provider=provider)
        with pytest.raises(ConfigError, match=r"render s02/wide is (submitted|processing) with task"):
            await aadopt(spec, "s02/wide", first_take, provider=provider)
