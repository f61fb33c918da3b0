"""``orchestrator simulate``: options reach the simulator, the address is announced, remote hosts are refused."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.cli import simulate as simulate_module
from orchestrator.providers.local import LocalSimulator


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


def test_dialect_and_gateway_knobs_reach_the_simulator(served) -> None:
    args = ["simulate", "--dialect", "gateway", "--upstream-accounts", "5", "--not-visible-for", "1.5"]
    args += ["--bill-then-524-rate", "0.2", "--gateway-inner", "task", "--disable-model", "kling-v2-1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    options = served[0]["options"]
    assert (options.dialect, options.upstream_accounts, options.not_visible_for) == ("gateway", 5, 1.5)
    assert (options.bill_then_524_rate, options.gateway_inner) == (0.2, "task")
    assert options.disabled_models == frozenset({"kling-v2-1"})
    assert "gateway dialect" in result.output and "5 upstream accounts" in result.output


def test_dialect_can_come_from_the_environment_and_kling_announces_its_key_pair(served) -> None:
    result = CliRunner().invoke(cli, ["simulate"], env={"ORCHESTRATOR_SIM_DIALECT": "kling"})
    assert result.exit_code == 0, result.output
    options = served[0]["options"]
    assert options.dialect == "kling"
    assert options.kling_keys == {LocalSimulator.LOCAL_ACCESS_KEY: LocalSimulator.LOCAL_SECRET_KEY}
    assert "kling dialect" in result.output
    assert LocalSimulator.LOCAL_ACCESS_KEY in result.output and LocalSimulator.LOCAL_SECRET_KEY in result.output


def test_a_secret_key_of_your_own_is_not_printed(served) -> None:
    env = {"ORCHESTRATOR_SIM_SECRET_KEY": "my-own-secret-value-of-32-bytes-or-more"}
    result = CliRunner().invoke(cli, ["simulate", "--dialect", "kling", "--access-key", "ak-1"], env=env)
    assert result.exit_code == 0, result.output
    assert served[0]["options"].kling_keys == {"ak-1": "my-own-secret-value-of-32-bytes-or-more"}
    assert "my-own-secret-value-of-32-bytes-or-more" not in result.output and "ak-1" in result.output


def test_unknown_dialect_is_a_usage_error() -> None:
    assert CliRunner().invoke(cli, ["simulate", "--dialect", "openai"]).exit_code == 2
