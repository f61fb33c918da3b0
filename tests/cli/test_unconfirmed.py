"""Unconfirmed shots from the command line: plan shows them, run names them, adopt attaches a task, and a resend
needs the user's word (``--yes`` off a terminal). Against the simulator's gateway dialect, which cannot confirm."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import orchestrator.providers.local as local
from orchestrator.api import SIMULATOR_STATE_DIR, run_project
from orchestrator.cli import cli
from orchestrator.providers.local import SimulatorOptions
from orchestrator.run.options import RetryPolicy
from orchestrator.store.manifest import SUCCEEDED, UNCONFIRMED, load_manifest
from tests.helpers import write_two_board_spec

QUICK = {"render_time": 0.2, "render_jitter": 0.0, "cheap_video": True, "seed": 2, "not_visible_for": 0.0}


def write_spec(folder: Path, n: int) -> Path:
    return write_two_board_spec(folder, n, project="unconfirmed")


@pytest.fixture
def unconfirmed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spec of two shots whose creates were billed and answered 524 by the gateway: both unconfirmed."""
    spec = write_spec(tmp_path, 2)
    state = tmp_path / "out" / SIMULATOR_STATE_DIR
    options = SimulatorOptions(dialect="gateway", bill_then_524_rate=1.0, state_dir=state, **QUICK)  # type: ignore[arg-type]
    result = run_project(spec, simulator_options=options, retry=RetryPolicy(base=0.01, cap=0.02))
    assert set(result.statuses.values()) == {UNCONFIRMED}
    # From here on the CLI's own local provider: the gateway dialect, quick, remembering the same tasks.
    monkeypatch.setenv("ORCHESTRATOR_SIM_DIALECT", "gateway")
    monkeypatch.setattr(local, "SimulatorOptions", functools.partial(SimulatorOptions, **QUICK))
    return spec


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def task_ids(spec: Path) -> dict[str, str]:
    """What the user reads in the console: the task of each external id (here, the simulator's journal)."""
    from orchestrator.providers.local.persist import JOURNAL_NAME

    out = spec.parent / "out"
    lines = (out / SIMULATOR_STATE_DIR / JOURNAL_NAME).read_text().splitlines()
    by_external = {e["external_task_id"]: e["task_id"] for e in map(json.loads, lines) if e["op"] == "create"}
    manifest = load_manifest(out / "manifest.json")
    return {shot_id: by_external[record.external_task_id or ""] for shot_id, record in manifest.shots.items()}


def test_plan_shows_unconfirmed_shots_at_no_cost(unconfirmed: Path) -> None:
    code, out, _ = invoke("plan", str(unconfirmed))
    assert code == 0
    assert "? shot0" in out and "unconfirmed" in out and "adopt its task, or --resend-unconfirmed" in out
    code, out, _ = invoke("plan", str(unconfirmed), "--json")
    entries = {e["id"]: e for e in json.loads(out)["shots"]}
    assert {e["category"] for e in entries.values()} == {"unconfirmed"} and {e["units"] for e in entries.values()} == {
        0
    }


def test_run_names_unconfirmed_shots_and_exits_1_without_sending(unconfirmed: Path) -> None:
    before = len(task_ids(unconfirmed))
    code, out, _ = invoke("run", str(unconfirmed))
    assert code == 1
    assert "unconfirmed: shot0, shot1" in out
    # A command to copy for each render, by its key.
    assert f"orchestrator adopt {unconfirmed} shot0 TASK_ID; orchestrator adopt {unconfirmed} shot1 TASK_ID" in out
    assert len(task_ids(unconfirmed)) == before


def test_resend_off_a_terminal_needs_yes_and_says_what_it_may_cost(unconfirmed: Path) -> None:
    manifest = (unconfirmed.parent / "out" / "manifest.json").read_bytes()
    code, _, err = invoke("run", str(unconfirmed), "--resend-unconfirmed")
    assert code == 1
    assert "sends 2 shots again; each may be billed twice" in err and "up to 4 more units" in err
    assert "add --yes" in err
    assert (unconfirmed.parent / "out" / "manifest.json").read_bytes() == manifest  # nothing was sent

    code, _, err = invoke("run", str(unconfirmed), "--resend-unconfirmed", "--yes")
    assert code == 0, err
    records = load_manifest(unconfirmed.parent / "out" / "manifest.json").shots.values()
    assert {r.status for r in records} == {SUCCEEDED} and {r.attempts for r in records} == {2}


def test_adopt_attaches_the_task_and_the_next_run_downloads_it(unconfirmed: Path) -> None:
    tasks = task_ids(unconfirmed)
    code, out, err = invoke("adopt", str(unconfirmed), "shot0", tasks["shot0"])
    assert code == 0, err
    assert f"attached task {tasks['shot0']}" in out and "follows it" in out
    code, _, err = invoke("adopt", str(unconfirmed), "shot1", tasks["shot0"])
    assert code == 1 and "already attached to shot shot0" in err
    code, _, err = invoke("adopt", str(unconfirmed), "shot1", "123")
    assert code == 1 and "knows no task 123" in err

    code, out, _ = invoke("run", str(unconfirmed))
    assert code == 1 and "unconfirmed: shot1" in out  # shot1 is still the user's to settle
    manifest = load_manifest(unconfirmed.parent / "out" / "manifest.json")
    assert manifest.shots["shot0"].status == SUCCEEDED and manifest.shots["shot0"].task_id == tasks["shot0"]
    assert len(task_ids(unconfirmed)) == 2  # nothing created
