"""A local run killed mid-flight resumes like a real one: its simulator's tasks live in ``<out>/.simulator/``."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

import orchestrator.providers.local as local
from orchestrator.api import SIMULATOR_STATE_DIR, run_project
from orchestrator.providers.local import SimulatorOptions
from orchestrator.providers.local.persist import JOURNAL_NAME
from orchestrator.store.manifest import SUCCEEDED, has_manifest, load_manifest
from tests.helpers import write_two_board_spec

ROOT = Path(__file__).resolve().parents[2]
# The embedded simulator's defaults (3 s renders of full-size animatics) made quick: 1 s renders, tiny videos.
QUICK = {"render_time": 1.0, "render_jitter": 0.1, "cheap_video": True}


def write_spec(folder: Path, n: int) -> Path:
    return write_two_board_spec(folder, n, project="resume", concurrency=n)


def start_killable_run(spec: Path) -> subprocess.Popen[bytes]:
    # `orchestrator run --provider local`, with the simulator's default options made quick as in-process below.
    script = textwrap.dedent(
        f"""
        import functools, sys
        import orchestrator.providers.local as local
        local.SimulatorOptions = functools.partial(local.SimulatorOptions, **{QUICK!r})
        from orchestrator.cli import main
        sys.argv = ["orchestrator", "run", {str(spec)!r}, "--provider", "local", "--json"]
        main()
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
    )


def wait_for_task_ids(manifest: Path, n: int, *, timeout: float = 30) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if has_manifest(manifest):  # the store, while the run works; manifest.json comes at its end
            ids = {sid: r.task_id for sid, r in load_manifest(manifest).shots.items() if r.task_id}
            if len(ids) == n:
                return ids
        time.sleep(0.05)
    raise AssertionError("the run did not record every task id in time")


def journal_creates(out: Path) -> Counter[str]:
    lines = (out / SIMULATOR_STATE_DIR / JOURNAL_NAME).read_text().splitlines()
    return Counter(e["external_task_id"] for e in map(json.loads, lines) if e["op"] == "create")


@pytest.mark.timeout(90)
def test_a_local_run_killed_after_its_creates_resumes_without_creating_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 3
    spec = write_spec(tmp_path, n)
    out = tmp_path / "out"
    process = start_killable_run(spec)
    try:
        recorded = wait_for_task_ids(out / "manifest.json", n)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert all(r.status != SUCCEEDED for r in load_manifest(out / "manifest.json").shots.values())

    monkeypatch.setattr(local, "SimulatorOptions", functools.partial(SimulatorOptions, **QUICK))
    result = run_project(spec, provider="local")

    assert result.ok, result.failures
    manifest = load_manifest(out / "manifest.json")
    assert {sid: r.task_id for sid, r in manifest.shots.items()} == recorded  # the same tasks, polled to the end
    for record in manifest.shots.values():
        assert record.status == SUCCEEDED and record.error is None
        assert (out / record.outputs[0].path).stat().st_size == record.outputs[0].bytes
    creates = journal_creates(out)
    assert len(creates) == n and set(creates.values()) == {1}  # each external id submitted once across both runs
    assert set(creates) == {r.external_task_id for r in manifest.shots.values()}


FAST = SimulatorOptions(render_time=0.1, render_jitter=0.0, cheap_video=True, seed=3)


def test_explicit_simulator_options_without_a_state_folder_stay_in_memory(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, 1)
    result = run_project(spec, simulator_options=FAST)
    assert result.ok
    assert not (tmp_path / "out" / SIMULATOR_STATE_DIR).exists()


def test_explicit_simulator_options_keep_their_own_state_folder(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, 2)
    elsewhere = tmp_path / "sim-state"
    options = SimulatorOptions(render_time=0.1, cheap_video=True, state_dir=elsewhere)
    assert run_project(spec, simulator_options=options).ok
    assert not (tmp_path / "out" / SIMULATOR_STATE_DIR).exists()
    lines = (elsewhere / JOURNAL_NAME).read_text().splitlines()
    assert sum(1 for line in lines if json.loads(line)["op"] == "create") == 2
