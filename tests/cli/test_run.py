"""``orchestrator run``: output modes, exit codes, lock and corrupt manifest, and real processes killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from orchestrator.cli import cli
from orchestrator.providers.local import LocalSimulator, SimulatorOptions
from orchestrator.store.manifest import LOCK_NAME, SUCCEEDED, UNCONFIRMED, ManifestLock, load_manifest

ROOT = Path(__file__).resolve().parents[2]


def write_spec(folder: Path, n: int, *, concurrency: int = 3) -> Path:
    for k in range(2):
        Image.new("RGB", (400, 300), (60 * k, 90, 120)).save(folder / f"b{k}.png")
    shots = "".join(
        f"  - id: shot{i}\n    images: [b{i % 2}.png, b{(i + 1) % 2}.png]\n    prompt: 'slow pan {i}'\n"
        for i in range(n)
    )
    spec = folder / "project.yaml"
    spec.write_text(
        "version: 1\nproject: clitest\noutput_dir: out\n"
        f"limits: {{concurrency: {concurrency}, requests_per_second: 100}}\nshots:\n{shots}"
    )
    return spec


@pytest.fixture
def simulator() -> Iterator[LocalSimulator]:
    options = SimulatorOptions(render_time=0.3, render_jitter=0.1, cheap_video=True, seed=1)
    with LocalSimulator(options) as sim:
        yield sim


@pytest.fixture
def remote_env(simulator: LocalSimulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"COMETAPI_BASE_URL": simulator.base_url, "COMETAPI_KEY": "test-key-not-secret"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_run_prints_settings_plain_lines_and_a_summary(
    tmp_path: Path, simulator: LocalSimulator, remote_env: dict[str, str]
) -> None:
    spec = write_spec(tmp_path, 3)
    code, out, _err = invoke(str(spec), "--provider", "cometapi")
    assert code == 0, out
    assert f"provider cometapi at {simulator.base_url}" in out
    assert "3 tasks in flight, 100 requests/s" in out and str(tmp_path / "out") in out
    assert "shot0: submitting -> submitted" in out
    assert "3 shots to render, 0 unchanged, cost 6 units" in out
    assert "3 of 3 shots rendered" in out
    assert "test-key-not-secret" not in out
    manifest = load_manifest(tmp_path / "out" / "manifest.json")
    assert {r.status for r in manifest.shots.values()} == {SUCCEEDED}


def test_json_mode_writes_one_event_per_line(tmp_path: Path, remote_env: dict[str, str]) -> None:
    spec = write_spec(tmp_path, 2)
    code, out, err = invoke(str(spec), "--provider", "cometapi", "--json", "--out", str(tmp_path / "elsewhere"))
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "run-started" and events[-1]["event"] == "run-finished"
    assert events[0]["out"] == str(tmp_path / "elsewhere")
    assert {e["new"] for e in events if e["event"] == "shot"} >= {"submitting", "submitted", "succeeded"}
    assert "rendered" in err  # the human summary goes to stderr in JSON mode


def test_cometapi_which_cannot_list_is_polled_task_by_task(
    tmp_path: Path, simulator: LocalSimulator, remote_env: dict[str, str]
) -> None:
    # The real gateway documents no list route: its capabilities say so, and the run never asks.
    list_route, task_route = "GET /kling/v1/videos/multi-image2video", "GET /kling/v1/videos/multi-image2video/{id}"
    code, _, err = invoke(str(write_spec(tmp_path, 2)), "--provider", "cometapi", "--out", str(tmp_path / "a"))
    assert code == 0, err
    requests = dict(simulator.stats().requests)
    assert requests.get(list_route, 0) == 0 and requests.get(task_route, 0) > 0


def test_dry_run_sends_nothing(tmp_path: Path, simulator: LocalSimulator, remote_env: dict[str, str]) -> None:
    spec = write_spec(tmp_path, 3)
    code, out, _ = invoke(str(spec), "--provider", "cometapi", "--dry-run")
    assert code == 0 and "would render 3 shots for 6 units; 0 unchanged skipped; nothing was sent" in out
    assert simulator.stats().creates_attempted == 0
    assert not (tmp_path / "out").exists()
    code, out, err = invoke(str(spec), "--dry-run", "--max-cost", "1")
    assert code == 1 and "more than --max-cost 1" in err


def test_rps_goes_up_to_1000_and_no_further(tmp_path: Path, remote_env: dict[str, str]) -> None:
    spec = write_spec(tmp_path, 2)
    code, _out, err = invoke(str(spec), "--provider", "cometapi", "--dry-run", "--rps", "1000")
    assert code == 0, err
    code, _out, err = invoke(str(spec), "--provider", "cometapi", "--dry-run", "--rps", "1000.5")
    assert code == 2 and "--rps" in err and "1000" in err


def test_dry_run_with_only_shows_and_totals_the_selected_shots(tmp_path: Path, remote_env: dict[str, str]) -> None:
    spec = write_spec(tmp_path, 3)
    code, out, err = invoke(str(spec), "--only", "shot1", "--dry-run")
    assert code == 0, err
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("+")] == [["+", "shot1"]]
    assert "1 new - est. 2 units\n" in out
    assert "would render 1 shot for 2 units; 0 unchanged skipped, 2 not selected by --only; nothing was sent" in out


def test_a_pattern_matching_no_shot_is_an_error_before_anything_starts(
    tmp_path: Path, simulator: LocalSimulator, remote_env: dict[str, str]
) -> None:
    spec = write_spec(tmp_path, 3)
    code, out, err = invoke(str(spec), "--provider", "cometapi", "--only", "zz*")
    assert code == 1 and out == ""
    assert err == ("error: --only 'zz*' matches no shot in the spec (3 shots: shot0, shot1, shot2); nothing was sent\n")
    code, _, err = invoke(str(spec), "--provider", "cometapi", "--only", "shot[01]", "--force", "shot2")
    assert code == 1 and "--force 'shot2' matches no shot that --only selects (2 shots: shot0, shot1)" in err
    code, _, err = invoke(str(spec), "--dry-run", "--force", "nope")
    assert code == 1 and "--force 'nope' matches no shot in the spec" in err
    assert simulator.stats().creates_attempted == 0
    assert not (tmp_path / "out").exists()  # no manifest, no lock, no simulator state


def test_one_shot_is_singular(tmp_path: Path, remote_env: dict[str, str]) -> None:
    spec = write_spec(tmp_path, 1)
    spec.write_text(spec.read_text() + "pricing: {kling-v1-6: {std_5s: 1}}\n")
    code, out, err = invoke(str(spec), "--provider", "cometapi")
    assert code == 0, err
    assert "1 shot to render, 0 unchanged, cost 1 unit" in out and "1 of 1 shot rendered" in out


def test_failed_shots_exit_1_with_a_reason_table(
    tmp_path: Path, simulator: LocalSimulator, remote_env: dict[str, str]
) -> None:
    simulator.configure(failure_rate=1.0, failure_message="content moderation")
    spec = write_spec(tmp_path, 2)
    code, out, _ = invoke(str(spec), "--provider", "cometapi")
    assert code == 1
    assert "not rendered" in out and "content moderation" in out


def test_lock_contention_is_a_clear_error(tmp_path: Path, remote_env: dict[str, str]) -> None:
    spec = write_spec(tmp_path, 1)
    (tmp_path / "out").mkdir()
    lock = ManifestLock(tmp_path / "out" / LOCK_NAME)
    lock.acquire()  # a live run holds the folder
    try:
        code, _, err = invoke(str(spec), "--provider", "cometapi")
    finally:
        lock.release()
    assert code == 1
    assert "another run is using this output folder (held by" in err and f"pid {os.getpid()}" in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_corrupt_manifest_is_named_and_left_untouched(tmp_path: Path, remote_env: dict[str, str]) -> None:
    spec = write_spec(tmp_path, 1)
    (tmp_path / "out").mkdir()
    manifest = tmp_path / "out" / "manifest.json"
    manifest.write_text("{ not json")
    code, _, err = invoke(str(spec), "--provider", "cometapi")
    assert code == 1 and str(manifest) in err and "corrupt" in err
    assert manifest.read_text() == "{ not json"


def test_missing_key_is_a_config_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, 1)
    code, _, err = invoke(str(spec), "--provider", "cometapi")
    assert code == 1 and "COMETAPI_KEY" in err


# --- real processes ------------------------------------------------------------------------------------------------


def start_run(spec: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(spec), "--provider", "cometapi", "--json"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(process: subprocess.Popen[str], state: str, *, count: int = 1, timeout: float = 30) -> None:
    assert process.stdout is not None
    seen = 0
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        if json.loads(line).get("new") == state:
            seen += 1
            if seen >= count:
                return
        assert time.monotonic() < deadline, f"no {state} event in time"
    raise AssertionError(f"run ended before {count} {state} event(s)")


def assert_every_shot_rendered_once(folder: Path, simulator: LocalSimulator, n: int) -> None:
    manifest = load_manifest(folder / "out" / "manifest.json")
    assert len(manifest.shots) == n
    for record in manifest.shots.values():
        assert record.status == SUCCEEDED
        assert (folder / "out" / record.outputs[0].path).stat().st_size == record.outputs[0].bytes
    submissions = simulator.stats().submissions
    assert len(submissions) == n and set(submissions.values()) == {1}


def test_sigkill_mid_run_then_resume_bills_each_shot_once(
    tmp_path: Path, simulator: LocalSimulator, remote_env: dict[str, str]
) -> None:
    simulator.configure(render_time=1.0)
    spec = write_spec(tmp_path, 6, concurrency=3)
    process = start_run(spec, remote_env)
    try:
        wait_for(process, "submitted", count=2)
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    simulator.configure(render_time=0.3)

    code, out, err = invoke(str(spec), "--provider", "cometapi")
    err = out + err
    # CometAPI cannot confirm a create the kill cut off: such a shot is unconfirmed, never sent a second time.
    manifest = load_manifest(tmp_path / "out" / "manifest.json")
    unconfirmed = {sid for sid, r in manifest.shots.items() if r.status == UNCONFIRMED}
    assert {r.status for r in manifest.shots.values()} <= {SUCCEEDED, UNCONFIRMED}
    assert code == (1 if unconfirmed else 0), err
    assert all(f"{sid}" in err for sid in unconfirmed) and (not unconfirmed or "adopt" in err)
    submissions = simulator.stats().submissions
    assert set(submissions.values()) == {1} and len(submissions) >= 6 - len(unconfirmed)


def test_sigint_exits_130_and_the_next_run_resumes_cleanly(
    tmp_path: Path, simulator: LocalSimulator, remote_env: dict[str, str]
) -> None:
    simulator.configure(render_time=1.0)
    spec = write_spec(tmp_path, 5, concurrency=3)
    process = start_run(spec, remote_env)
    try:
        wait_for(process, "submitted")
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert time.monotonic() - started < 10
    assert "run the same command again to resume" in err
    assert ManifestLock(tmp_path / "out" / LOCK_NAME).live_holder() is None
    simulator.configure(render_time=0.3)

    code, _, err = invoke(str(spec), "--provider", "cometapi")
    assert code == 0, err
    assert_every_shot_rendered_once(tmp_path, simulator, 5)
