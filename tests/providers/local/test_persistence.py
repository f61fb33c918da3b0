"""A simulator with a state folder remembers its tasks, external ids, slots and videos across a stop and start."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.cli import simulate as simulate_module
from orchestrator.errors import ConfigError
from orchestrator.providers.local import LocalSimulator, SimulatorOptions
from orchestrator.providers.local.persist import JOURNAL_NAME, MARKER_NAME, StateStore

CREATE = "/kling/v1/videos/multi-image2video"


@pytest.fixture
def start(tmp_path: Path, make_sim: Callable[..., LocalSimulator]) -> Callable[..., LocalSimulator]:
    """Start simulators on ``tmp_path/state`` (cheap, fast renders unless told); all are stopped afterwards."""

    def make(**options: Any) -> LocalSimulator:
        options.setdefault("state_dir", tmp_path / "state")
        options.setdefault("render_time", 0.3)
        options.setdefault("render_jitter", 0.0)
        return make_sim(**options)

    return make


def create(client: httpx.Client, body: dict[str, Any]) -> str:
    task_id: str = client.post(CREATE, json=body).json()["data"]["task_id"]
    return task_id


def wait_status(client: httpx.Client, task_id: str, wanted: str, *, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data: dict[str, Any] = client.get(f"{CREATE}/{task_id}").json()["data"]
        if data["task_status"] == wanted or time.monotonic() > deadline:
            assert data["task_status"] == wanted, data
            return data
        time.sleep(0.05)


def test_a_task_survives_a_restart_by_id_and_external_id_and_its_video_is_served(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
) -> None:
    first = start(render_time=1.0)
    with make_client(first) as client:
        created = client.post(CREATE, json=make_body(external_task_id="p-s1-abc")).json()["data"]
    first.stop()  # before the render time has passed: the task is still processing

    second = start()
    with make_client(second) as client:
        by_external = client.get(CREATE, params={"external_task_id": "p-s1-abc"}).json()["data"]
        assert by_external["task_id"] == created["task_id"]
        assert by_external["created_at"] == created["created_at"]
        done = wait_status(client, created["task_id"], "succeed")
        video = client.get(done["task_result"]["videos"][0]["url"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert second.stats().submissions == {"p-s1-abc": 1}


def test_a_rendered_task_comes_back_succeeded_without_rendering_again(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
) -> None:
    first = start(render_time=0.05)
    with make_client(first) as client:
        task_id = create(client, make_body(external_task_id="done"))
        wait_status(client, task_id, "succeed")
    first.stop()

    second = start()
    with make_client(second) as client:
        assert client.get(f"{CREATE}/{task_id}").json()["data"]["task_status"] == "succeed"
    assert second.stats().renders_completed == 0


def test_a_video_lost_after_the_render_time_is_rendered_again(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    first = start(render_time=0.05)
    with make_client(first) as client:
        task_id = create(client, make_body(external_task_id="lost"))
        wait_status(client, task_id, "succeed")
    first.stop()
    (tmp_path / "state" / "videos" / f"{task_id}.mp4").unlink()

    second = start()
    with make_client(second) as client:
        wait_status(client, task_id, "succeed")
        assert client.get(f"/_sim/videos/{task_id}.mp4").status_code == 200
    assert second.stats().renders_completed == 1


def test_a_duplicate_external_id_is_still_refused_after_a_restart(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
) -> None:
    first = start()
    with make_client(first) as client:
        assert client.post(CREATE, json=make_body(external_task_id="once")).json()["code"] == 0
    first.stop()

    second = start()
    with make_client(second) as client:
        again = client.post(CREATE, json=make_body(external_task_id="once"))
    assert again.status_code == 400 and again.json()["code"] == 1201
    assert second.stats().submissions == {"once": 1}
    # External ids are per key: another key may use the same one.
    with make_client(second, key="another-key") as other:
        assert other.post(CREATE, json=make_body(external_task_id="once")).json()["code"] == 0


def test_tasks_in_flight_still_hold_their_slots_after_a_restart(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
) -> None:
    first = start(render_time=5.0, concurrency_cap=2)
    with make_client(first) as client:
        for n in range(2):
            assert client.post(CREATE, json=make_body(external_task_id=f"slot{n}")).json()["code"] == 0
    first.stop()

    second = start(render_time=5.0, concurrency_cap=2)
    assert second.stats().in_flight == 2
    with make_client(second) as client:
        over = client.post(CREATE, json=make_body(external_task_id="slot2"))
    assert over.status_code == 429 and over.json()["code"] == 1303


def test_task_ids_are_never_reused_after_a_restart_with_the_same_seed(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
) -> None:
    first = start()
    with make_client(first) as client:
        old = {create(client, make_body(external_task_id=f"a{n}")) for n in range(3)}
    first.stop()

    second = start()
    with make_client(second) as client:
        new = {create(client, make_body(external_task_id=f"b{n}")) for n in range(3)}
        listed = client.get(CREATE, params={"pageSize": 10}).json()["data"]
    assert not old & new
    assert min(int(t) for t in new) > max(int(t) for t in old)
    assert len(listed) == 6


def test_a_failed_task_stays_failed_with_its_message(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
) -> None:
    first = start(failure_rate=1.0, failure_message="risk control")
    with make_client(first) as client:
        task_id = create(client, make_body(external_task_id="bad"))
    first.stop()

    second = start()
    with make_client(second) as client:
        data = wait_status(client, task_id, "failed")
    assert data["task_status_msg"] == "risk control"


def test_reset_is_remembered_too(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
) -> None:
    first = start()
    with make_client(first) as client:
        client.post(CREATE, json=make_body(external_task_id="gone"))
        client.post("/_sim/reset")
    first.stop()

    second = start()
    with make_client(second) as client:
        assert client.get(CREATE, params={"external_task_id": "gone"}).status_code == 404
        assert client.post(CREATE, json=make_body(external_task_id="gone")).json()["code"] == 0


def test_the_journal_never_holds_the_api_key(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    sim = start()
    with make_client(sim, key="sk-very-secret-key") as client:
        client.post(CREATE, json=make_body(external_task_id="k"))
    sim.stop()
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert b"sk-very-secret-key" not in path.read_bytes(), path


def test_a_line_cut_short_by_a_crash_is_dropped(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    first = start()
    with make_client(first) as client:
        client.post(CREATE, json=make_body(external_task_id="kept"))
    first.stop()
    with open(tmp_path / "state" / JOURNAL_NAME, "ab") as journal:
        journal.write(b'{"op":"create","task_id":"9')

    second = start()
    with make_client(second) as client:
        assert client.get(CREATE, params={"external_task_id": "kept"}).json()["code"] == 0
        client.post(CREATE, json=make_body(external_task_id="after"))
    second.stop()
    lines = (tmp_path / "state" / JOURNAL_NAME).read_bytes().splitlines()
    assert all(json.loads(line) for line in lines)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"notes.txt": "mine"}, "is not a simulator state folder"),
        ({MARKER_NAME: '{"format": "something-else"}'}, "is not a simulator state marker"),
        ({MARKER_NAME: '{"format": "orchestrator-simulator-state", "version": 99}'}, "state version 99"),
        (
            {MARKER_NAME: '{"format": "orchestrator-simulator-state", "version": 1}', JOURNAL_NAME: "{oops\n"},
            "line 1: not a simulator journal record",
        ),
        (
            {
                MARKER_NAME: '{"format": "orchestrator-simulator-state", "version": 1}',
                JOURNAL_NAME: '{"op":"create","task_id":"12","boards":[{"sha256":"../../etc/passwd"}]}\n',
            },
            "line 1",
        ),
        (
            {
                MARKER_NAME: '{"format": "orchestrator-simulator-state", "version": 1}',
                JOURNAL_NAME: "[" * 100_000 + "]" * 100_000 + "\n",
            },
            "line 1",
        ),
        ({MARKER_NAME: "[" * 100_000 + "]" * 100_000}, "is not a simulator state marker"),
    ],
)
def test_a_foreign_or_corrupt_folder_is_a_config_error_naming_it(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        LocalSimulator(SimulatorOptions(state_dir=folder)).start()
    assert str(folder) in caught.value.message


def test_a_folder_in_use_by_a_running_simulator_is_refused(
    start: Callable[..., LocalSimulator], tmp_path: Path
) -> None:
    start()
    with pytest.raises(ConfigError, match="in use by another simulator"):
        StateStore(tmp_path / "state")


def test_state_and_storage_folders_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        SimulatorOptions(state_dir=tmp_path / "a", storage_dir=tmp_path / "b")


# --- orchestrator simulate --state ---------------------------------------------------------------------------------


def test_simulate_state_reaches_the_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SimulatorOptions] = []

    def fake_serve_forever(options: SimulatorOptions, **_: Any) -> None:
        seen.append(options)

    monkeypatch.setattr(simulate_module, "serve_forever", fake_serve_forever)
    result = CliRunner().invoke(cli, ["simulate", "--port", "0", "--state", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert seen[0].state_dir == (tmp_path / "s").resolve() and seen[0].storage_dir is None


def test_simulate_refuses_a_foreign_state_folder_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "photos.txt").write_text("not the simulator's")
    result = CliRunner().invoke(cli, ["simulate", "--port", "0", "--state", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not a simulator state folder" in result.stderr and "Traceback" not in result.output


def test_simulate_refuses_state_with_storage(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "--state", str(tmp_path / "a"), "--storage", str(tmp_path / "b")])
    assert result.exit_code == 1 and "not both" in result.stderr


def test_temp_files_of_a_crash_are_cleared_on_start(start: Callable[..., LocalSimulator], tmp_path: Path) -> None:
    start().stop()
    leftovers = [tmp_path / "state" / "videos" / ".12.mp4.x1.tmp.mp4", tmp_path / "state" / "boards" / ".ab.x2.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    start()
    assert not any(path.exists() for path in leftovers)


def test_stopping_does_not_wait_for_a_long_render_which_is_redone_on_the_next_start(
    start: Callable[..., LocalSimulator],
    make_client: Callable[..., httpx.Client],
    make_body: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    first = start(cheap_video=False, render_time=0.0)  # a full-size animatic takes seconds to encode
    with make_client(first) as client:
        task_id = create(client, make_body(external_task_id="long"))
    time.sleep(0.3)  # the render is under way
    began = time.monotonic()
    first.stop()
    assert time.monotonic() - began < 1.5
    assert not (tmp_path / "state" / "videos" / f"{task_id}.mp4").exists()

    second = start(render_time=0.0)
    with make_client(second) as client:
        wait_status(client, task_id, "succeed")
