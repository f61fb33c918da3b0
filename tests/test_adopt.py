"""``adopt``: a task found in the provider's console settles an unconfirmed shot, after every check."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from orchestrator.adopt import aadopt
from orchestrator.errors import ConfigError, ManifestError, ServerError
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.spec.shot import ResolvedProject, ResolvedShot
from orchestrator.store import load_state
from orchestrator.store.manifest import SUBMITTED, SUCCEEDED, UNCONFIRMED, load_manifest
from tests.fake_provider import GATEWAY, FakeProvider, make_shot, run, statuses


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
