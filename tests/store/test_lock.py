"""The folder lock (orchestrator.store.lock): one run per output folder through flock, whatever starts at once."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import ManifestError, ManifestLockedError
from orchestrator.plan.plan import running_run
from orchestrator.providers.local import LocalSimulator, SimulatorOptions
from orchestrator.store import load_state
from orchestrator.store.manifest import LOCK_NAME, SUCCEEDED, ManifestLock, ManifestStore, load_manifest
from tests.helpers import write_two_board_spec

ROOT = Path(__file__).resolve().parents[2]
HELD_BY = re.compile(r"another run is using this output folder \(held by pid (\d+) on ")


def test_a_second_open_is_refused_naming_the_holder_and_the_lock_is_given_back(tmp_path: Path) -> None:
    store = ManifestStore.open(tmp_path / "manifest.json", project="p")
    with pytest.raises(ManifestLockedError, match=f"held by pid {os.getpid()} on {socket.gethostname()}"):
        ManifestStore.open(tmp_path / "manifest.json", project="p")
    store.close()
    # The file stays (deleting it by path is the race this lock exists to avoid); emptied, so no pid outlives the run.
    assert (tmp_path / LOCK_NAME).read_text() == ""
    assert running_run(tmp_path) is None
    ManifestStore.open(tmp_path / "manifest.json", project="p").close()


@pytest.mark.parametrize("content", ["stale", "", "{half"])
def test_a_lock_file_nobody_holds_is_taken_whatever_it_says(tmp_path: Path, content: str) -> None:
    if content == "stale":  # what a run killed with -9 leaves: its details, and no kernel lock
        content = json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "started_at": "2020-01-01T00:00:00Z"})
    (tmp_path / LOCK_NAME).write_text(content)
    lock = ManifestLock(tmp_path / LOCK_NAME)
    lock.acquire()
    assert lock.held
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock.held


def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path: Path) -> None:
    holder = hold_lock_in_a_process(tmp_path)
    try:
        running = running_run(tmp_path)
        assert running is not None and running.pid == holder.pid  # judged by trying the lock, not from /proc
        with pytest.raises(ManifestLockedError, match=f"held by pid {holder.pid} "):
            ManifestLock(tmp_path / LOCK_NAME).acquire()
    finally:
        kill_9(holder)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid  # kill -9 left its details behind
    assert running_run(tmp_path) is None
    lock = ManifestLock(tmp_path / LOCK_NAME)
    lock.acquire()
    lock.release()


def test_a_reader_trying_the_lock_for_an_instant_does_not_turn_a_run_away(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("")
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # what ``live_holder`` does, stretched to 50 ms
    threading.Timer(0.05, os.close, [fd]).start()
    lock = ManifestLock(tmp_path / LOCK_NAME)
    lock.acquire()
    lock.release()


def test_looking_for_a_holder_creates_nothing(tmp_path: Path) -> None:
    assert running_run(tmp_path) is None
    assert not (tmp_path / LOCK_NAME).exists()


def test_readers_read_while_a_run_holds_the_folder(tmp_path: Path) -> None:
    store = ManifestStore.open(tmp_path / "manifest.json", project="p")
    try:
        store.update("a", status=SUCCEEDED, fingerprint="f")
        store.save()
        assert load_manifest(tmp_path).shots["a"].status == SUCCEEDED
        assert load_state(tmp_path).current("a") is not None
    finally:
        store.close()


def test_a_symlink_in_place_of_the_lock_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("mine")
    (tmp_path / LOCK_NAME).symlink_to(target)
    with pytest.raises(ManifestError, match=r"\.lock: cannot open the folder's lock file"):
        ManifestLock(tmp_path / LOCK_NAME).acquire()
    assert target.read_text() == "mine"


# --- several real runs started at once -----------------------------------------------------------------------------


@pytest.fixture
def simulator() -> Iterator[LocalSimulator]:
    with LocalSimulator(SimulatorOptions(render_time=1.0, render_jitter=0.0, cheap_video=True, seed=1)) as sim:
        yield sim


# ``orchestrator run SPEC --provider cometapi``, started when the test says go: each process has done its imports by
# then, so that the runs reach the folder together rather than one after the other has finished.
RUN_AT_THE_SIGNAL = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import orchestrator.api, orchestrator.store.database
    from orchestrator.cli import main
    go, spec = Path(sys.argv[1]), sys.argv[2]
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.0005)
    sys.argv = ["orchestrator", "run", spec, "--provider", "cometapi"]
    main()
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lock_file", ["stale", "empty", "live"])
def test_of_runs_started_at_once_exactly_one_proceeds(
    tmp_path: Path, simulator: LocalSimulator, lock_file: str
) -> None:
    n, runs = 3, 3
    spec = write_two_board_spec(tmp_path, n, project="race", concurrency=n)
    out, go = tmp_path / "out", tmp_path / "go"
    out.mkdir()
    holder = None
    if lock_file == "stale":
        stale = {"pid": dead_pid(), "host": socket.gethostname(), "started_at": "2020-01-01T00:00:00Z"}
        (out / LOCK_NAME).write_text(json.dumps(stale))
    elif lock_file == "empty":
        (out / LOCK_NAME).write_text("")
    else:
        holder = hold_lock_in_a_process(out)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "COMETAPI_BASE_URL": simulator.base_url,
        "COMETAPI_KEY": "test-key-not-secret",
    }
    command = [sys.executable, "-c", RUN_AT_THE_SIGNAL, str(go), str(spec)]
    try:
        processes = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(runs)
        ]
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        go.touch()
        streams = [process.communicate(timeout=90) for process in processes]
        results = [(p.pid, p.returncode, err) for p, (_, err) in zip(processes, streams, strict=True)]
    finally:
        if holder is not None:
            kill_9(holder)
    proceeded = [pid for pid, code, _ in results if code == 0]
    refused = [(code, err) for _, code, err in results if code != 0]
    expected_holder = holder.pid if holder is not None else proceeded[0]
    assert len(proceeded) == (0 if holder is not None else 1), [
        (*result, out[-300:]) for result, (out, _) in zip(results, streams, strict=True)
    ]
    for code, err in refused:
        assert code == 1 and "Traceback" not in err
        lines = [line for line in err.splitlines() if "another run is using" in line]
        assert len(lines) == 1, err
        named = HELD_BY.search(lines[0])
        assert named is not None and int(named.group(1)) == expected_holder, err
    stats = simulator.stats()
    if holder is not None:
        assert stats.creates_attempted == 0  # nobody sent anything into a folder someone else holds
        return
    # The one that proceeded rendered each shot once: one create per external id, none refused as a duplicate.
    assert stats.creates_accepted == n and stats.duplicates_refused == 0
    assert sorted(stats.submissions.values()) == [1] * n
    state = load_state(out)
    assert [len(state.renders_of(f"shot{i}")) for i in range(n)] == [1] * n
    assert {load_manifest(out).shots[f"shot{i}"].status for i in range(n)} == {SUCCEEDED}


OPEN_AT_THE_SIGNAL = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from orchestrator.errors import ManifestLockedError
    from orchestrator.store.manifest import ManifestStore
    import orchestrator.store.database  # imported before the signal, so that every open starts at once
    go, out = Path(sys.argv[1]), Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.0005)
    try:
        store = ManifestStore.open(out / "manifest.json", project="race")
    except ManifestLockedError as exc:
        print(exc, flush=True)
        sys.exit(1)
    print("proceeded", flush=True)
    time.sleep(1.0)
    store.close()
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lock_file", ["stale", "empty"])
def test_of_stores_opened_at_the_same_instant_exactly_one_is_opened(tmp_path: Path, lock_file: str) -> None:
    out, go = tmp_path / "out", tmp_path / "go"
    out.mkdir()
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "started_at": "2020-01-01T00:00:00Z"}
    (out / LOCK_NAME).write_text(json.dumps(stale) if lock_file == "stale" else "")
    command = [sys.executable, "-c", OPEN_AT_THE_SIGNAL, str(go), str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(5)]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    go.touch()  # all of them at once, next to the lock file nobody holds (the old pid file let 2 or 3 in)
    outputs = [process.communicate(timeout=30)[0] for process in processes]
    assert sorted(process.returncode for process in processes) == [0, 1, 1, 1, 1], outputs
    winner = next(p.pid for p in processes if p.returncode == 0)
    for text in (o for p, o in zip(processes, outputs, strict=True) if p.returncode == 1):
        named = HELD_BY.search(text)
        assert named is not None and int(named.group(1)) == winner, text


# --- helpers --------------------------------------------------------------------------------------------------------


def hold_lock_in_a_process(folder: Path) -> subprocess.Popen[str]:
    """A process that takes ``folder``'s lock and holds it until killed."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from orchestrator.store.manifest import ManifestLock
        ManifestLock(Path({str(folder / LOCK_NAME)!r})).acquire()
        print("held", flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def kill_9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    if process.stdout is not None:
        process.stdout.close()


def dead_pid() -> int:
    """A pid that was alive a moment ago and is gone now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
