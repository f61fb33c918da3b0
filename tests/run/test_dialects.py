"""Whole runs against the simulator in each provider dialect (``cometapi``, ``kling``, ``gateway``): the real client,
the real scheduler, faults and crashes; never a request billed twice, every shot done or unconfirmed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from orchestrator.adopt import aadopt
from orchestrator.api import SIMULATOR_STATE_DIR, arun_project
from orchestrator.providers import open_provider
from orchestrator.providers.base import Provider
from orchestrator.providers.local import LocalSimulator, SimulatorOptions
from orchestrator.run.options import RetryPolicy
from orchestrator.run.polling import PollPolicy
from orchestrator.store.manifest import SUCCEEDED, UNCONFIRMED, load_manifest
from tests.helpers import write_two_board_spec

ROOT = Path(__file__).resolve().parents[2]
DIALECTS = ("cometapi", "kling", "gateway")
QUICK = {"render_time": 0.3, "render_jitter": 0.1, "cheap_video": True, "seed": 5, "not_visible_for": 0.2}
RETRY = RetryPolicy(base=0.01, cap=0.05, concurrency_floor=0.0, saturation_floor=0.0)
POLL = PollPolicy(initial_estimate=0.3, min_interval=0.02, max_interval=0.2, deadline=30.0)


def write_spec(folder: Path, n: int, *, concurrency: int = 4) -> Path:
    return write_two_board_spec(folder, n, project="dialects", concurrency=concurrency)


@asynccontextmanager
async def local(dialect: str, **options: object) -> AsyncIterator[Provider]:
    settings: dict[str, object] = {**QUICK, **options}
    async with open_provider("local", simulator_options=SimulatorOptions(dialect=dialect, **settings)) as provider:
        yield provider


def simulator_of(provider: Provider) -> LocalSimulator:
    simulator: LocalSimulator = provider.simulator  # type: ignore[attr-defined]
    return simulator


def assert_never_billed_twice(simulator: LocalSimulator) -> None:
    stats = simulator.stats()
    assert set(stats.submissions.values()) <= {1}, stats.submissions
    assert stats.billed_twice == []


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_run_renders_every_shot_and_records_what_was_charged(tmp_path: Path, dialect: str) -> None:
    spec = write_spec(tmp_path, 4)
    async with local(dialect) as provider:
        result = await arun_project(spec, provider=provider, retry=RETRY, poll=POLL)
        assert_never_billed_twice(simulator_of(provider))
    assert result.ok, result.failures
    manifest = load_manifest(tmp_path / "out" / "manifest.json")
    assert {r.status for r in manifest.shots.values()} == {SUCCEEDED}
    assert {r.charged for r in manifest.shots.values()} == {2.0}  # kling-v1-6 std 5 s, as the provider said
    assert all(manifest.salt in r.external_task_id for r in manifest.shots.values() if r.external_task_id)


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_faults_never_bill_twice_and_leave_every_shot_done_or_unconfirmed(tmp_path: Path, dialect: str) -> None:
    spec = write_spec(tmp_path, 12, concurrency=4)
    faults = {"rate_1302": 0.15, "rate_5xx": 0.1, "drop_rate": 0.05, "drop_after_create_rate": 0.15}
    async with local(dialect, **faults) as provider:
        result = await arun_project(spec, provider=provider, retry=RETRY, poll=POLL)
        assert_never_billed_twice(simulator_of(provider))
    statuses = set(result.statuses.values())
    if dialect == "gateway":
        # No lookup, no list: a create whose answer was lost stays unconfirmed, never resent.
        assert statuses <= {SUCCEEDED, UNCONFIRMED} and UNCONFIRMED in statuses
        assert result.exit_code == 1 and set(result.unconfirmed) == {
            s for s, status in result.statuses.items() if status == UNCONFIRMED
        }
    else:
        # Kling direct and the seed contract confirm every unknown create: everything renders.
        assert statuses == {SUCCEEDED}, result.failures


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", ["cometapi", "kling"])
async def test_tasks_are_followed_through_the_list_unless_told_to_poll_each(tmp_path: Path, dialect: str) -> None:
    spec = write_spec(tmp_path, 3)
    prefix = "/kling" if dialect == "cometapi" else ""
    list_route = f"GET {prefix}/v1/videos/multi-image2video"
    task_route = f"{list_route}/{{id}}"
    async with local(dialect) as provider:
        assert (await arun_project(spec, provider=provider, retry=RETRY, poll=POLL)).ok
        listed = dict(simulator_of(provider).stats().requests)
        assert listed.get(list_route, 0) > 0 and listed.get(task_route, 0) == 0
        each = replace(POLL, batch=False)
        assert (await arun_project(spec, provider=provider, out=tmp_path / "b", retry=RETRY, poll=each)).ok
        polled = dict(simulator_of(provider).stats().requests)
        assert polled.get(list_route, 0) == listed[list_route] and polled.get(task_route, 0) > 0


@pytest.mark.anyio
async def test_gateway_524_after_billing_is_unconfirmed_then_adopted_without_a_second_bill(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, 2)
    async with local("gateway", bill_then_524_rate=1.0) as provider:
        result = await arun_project(spec, provider=provider, retry=RETRY, poll=POLL)
        assert set(result.statuses.values()) == {UNCONFIRMED}
        simulator = simulator_of(provider)
        simulator.configure(bill_then_524_rate=0.0)
        manifest = load_manifest(tmp_path / "out" / "manifest.json")
        await anyio.sleep(QUICK["not_visible_for"] + 0.1)  # the gateway's table shows a task a moment after its create
        # What the user finds in the console: the task of each external id.
        for shot_id, record in manifest.shots.items():
            tasks = simulator.state.all_tasks()
            task_id = next(t.task_id for t in tasks if t.external_task_id == record.external_task_id)
            await aadopt(spec, shot_id, task_id, provider=provider)
        again = await arun_project(spec, provider=provider, retry=RETRY, poll=POLL)
        assert again.ok, again.failures
        assert_never_billed_twice(simulator)
        assert sum(simulator.stats().submissions.values()) == 2


@pytest.mark.anyio
async def test_gateway_resend_is_the_users_word_and_may_bill_twice(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, 1)
    async with local("gateway", bill_then_524_rate=1.0) as provider:
        await arun_project(spec, provider=provider, retry=RETRY, poll=POLL)
        simulator = simulator_of(provider)
        simulator.configure(bill_then_524_rate=0.0)
        result = await arun_project(spec, provider=provider, retry=RETRY, poll=POLL, resend_unconfirmed=True)
        assert result.ok
        # Two renders paid for: the one nobody saw and the resend (a new attempt, so a new external id).
        assert len(simulator.stats().submissions) == 2
    record = load_manifest(tmp_path / "out" / "manifest.json").shots["shot0"]
    assert record.attempts == 2 and record.history[0].external_task_id != record.external_task_id


def run_script(spec: Path) -> list[str]:
    """``orchestrator run SPEC --provider local --json`` with the simulator's defaults made quick."""
    code = textwrap.dedent(
        f"""
        import functools, sys
        import orchestrator.providers.local as local
        local.SimulatorOptions = functools.partial(local.SimulatorOptions, **{QUICK!r})
        from orchestrator.cli import main
        sys.argv = ["orchestrator", "run", {str(spec)!r}, "--provider", "local", "--json"]
        main()
        """
    )
    return [sys.executable, "-c", code]


def journal_creates(out: Path) -> list[str]:
    from orchestrator.providers.local.persist import JOURNAL_NAME

    lines = (out / SIMULATOR_STATE_DIR / JOURNAL_NAME).read_text().splitlines()
    return [e["external_task_id"] for e in map(json.loads, lines) if e["op"] == "create"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_sigkill_mid_run_then_resume_bills_nothing_twice(tmp_path: Path, dialect: str) -> None:
    spec = write_spec(tmp_path, 6, concurrency=3)
    out = tmp_path / "out"
    env = {**os.environ, "ORCHESTRATOR_SIM_DIALECT": dialect}
    process = subprocess.Popen(
        run_script(spec), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if json.loads(line).get("new") == "submitted":
                break
        time.sleep(0.05)  # somewhere among the next creates
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL

    resumed = subprocess.run(run_script(spec), cwd=ROOT, env=env, capture_output=True, text=True, timeout=80)
    manifest = load_manifest(out / "manifest.json")
    statuses = {r.status for r in manifest.shots.values()}
    creates = journal_creates(out)
    assert len(creates) == len(set(creates)), creates  # no external id created twice, across both runs
    if dialect == "gateway":
        assert statuses <= {SUCCEEDED, UNCONFIRMED}, resumed.stderr
    else:
        assert statuses == {SUCCEEDED}, resumed.stderr
        assert resumed.returncode == 0


@pytest.mark.anyio
async def test_a_model_the_gateway_has_no_channel_for_stops_the_run_with_one_line(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, 3)
    async with local("gateway", disabled_models=frozenset({"kling-v1-6"})) as provider:
        result = await arun_project(spec, provider=provider, retry=RETRY, poll=POLL)
        assert simulator_of(provider).stats().submissions == {}
    assert result.aborted is not None and "not enabled" in result.aborted and "kling-v1-6" in result.aborted
    assert "\n" not in result.aborted and result.exit_code == 1
    # Nothing was created: every shot may be sent once the model is enabled (none is failed or unconfirmed).
    assert set(result.statuses.values()) == {"pending"}
