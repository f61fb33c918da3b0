"""LocalSimulator's lifecycle: ports, hosts, storage, restart, and what a stopped simulator says."""

from __future__ import annotations

import socket

import httpx
import pytest

from orchestrator.errors import ConfigError
from orchestrator.providers.local import LocalSimulator, SimulatorOptions


def test_starts_on_a_free_loopback_port_and_stops_cleanly() -> None:
    with LocalSimulator() as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        storage = sim.storage_dir
        assert httpx.get(f"{sim.base_url}/_sim/stats").json()["code"] == 0
    assert not storage.exists()  # its own temporary directory is removed
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{sim.base_url}/_sim/stats")
    with pytest.raises(ConfigError):
        sim.stats()


def test_given_storage_is_kept(tmp_path) -> None:
    storage = tmp_path / "videos"
    with LocalSimulator(SimulatorOptions(storage_dir=storage)) as sim:
        assert sim.storage_dir == storage
    assert storage.is_dir()


def test_unusable_storage_is_a_config_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot use"):
        LocalSimulator(SimulatorOptions(storage_dir=blocker / "videos")).start()


def test_port_in_use_is_a_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="cannot listen"):
            LocalSimulator(port=busy.getsockname()[1]).start()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_non_loopback_hosts_are_refused(host) -> None:
    with pytest.raises(ConfigError, match="allow-remote"):
        LocalSimulator(host=host)


def test_configure_rejects_unknown_knobs_and_keeps_changes_after_stop() -> None:
    sim = LocalSimulator(SimulatorOptions(cheap_video=True))
    with sim:
        with pytest.raises(ConfigError):
            sim.configure(warp_speed=True)
        sim.configure(rate_5xx=0.5)
    assert sim.options.rate_5xx == 0.5
