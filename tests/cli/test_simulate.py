"""``orchestrator simulate``: options reach the simulator, the address is announced, remote hosts are refused."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.cli import simulate as simulate_module


@pytest.fixture
def served(monkeypatch):
    calls = []

    def fake_serve_forever(options, *, host, port, allow_remote, on_ready):
        calls.append({"options": options, "host": host, "port": port, "allow_remote": allow_remote})
        on_ready(f"http://{host}:{port}")

    monkeypatch.setattr(simulate_module, "serve_forever", fake_serve_forever)
    return calls


def test_options_reach_the_simulator_and_the_base_url_is_announced(served, tmp_path) -> None:
    args = ["simulate", "--port", "9999", "--render-time", "1.5", "--failure-rate", "0.1", "--rate-1302", "0.2"]
    args += ["--rate-1303", "0.3", "--rate-5xx", "0.05", "--drop-rate", "0.01", "--concurrency-cap", "4"]
    args += ["--seed", "5", "--cheap-video", "--storage", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "COMETAPI_BASE_URL=http://127.0.0.1:9999" in result.output
    [call] = served
    options = call["options"]
    assert (call["host"], call["port"], call["allow_remote"]) == ("127.0.0.1", 9999, False)
    assert (options.render_time, options.failure_rate, options.rate_1302) == (1.5, 0.1, 0.2)
    assert (options.rate_1303, options.rate_5xx, options.drop_rate) == (0.3, 0.05, 0.01)
    assert (options.concurrency_cap, options.seed, options.cheap_video) == (4, 5, True)
    assert options.storage_dir == tmp_path.resolve()


def test_fault_knobs_can_come_from_the_environment(served) -> None:
    result = CliRunner().invoke(cli, ["simulate"], env={"ORCHESTRATOR_SIM_RATE_1302": "0.25"})
    assert result.exit_code == 0, result.output
    assert served[0]["options"].rate_1302 == 0.25


def test_non_loopback_host_is_refused_without_allow_remote() -> None:
    result = CliRunner().invoke(cli, ["simulate", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "--allow-remote" in result.output
    assert "Traceback" not in result.output


def test_out_of_range_rate_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["simulate", "--drop-rate", "1.5"])
    assert result.exit_code == 2


def test_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["simulate", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot listen on 127.0.0.1:")
