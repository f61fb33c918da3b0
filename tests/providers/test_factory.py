"""Opening providers by name, and the local one by the dialect its simulator speaks."""

from __future__ import annotations

import pytest

from orchestrator.errors import ConfigError
from orchestrator.providers.base import Capabilities
from orchestrator.providers.cometapi import CometAPIProvider
from orchestrator.providers.factory import PROVIDERS, LocalProvider, open_provider
from orchestrator.providers.kling import KlingJWT, KlingProvider
from orchestrator.providers.local import LocalSimulator, SimulatorOptions

FAST = {"render_time": 0.1, "cheap_video": True, "seed": 1}
ALL = Capabilities(find_by_external_id=True, list_tasks=True, absence_is_proof=True)


def test_kling_is_a_provider_name() -> None:
    assert PROVIDERS == ("cometapi", "kling", "local")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("dialect", "client", "capabilities"),
    [("cometapi", CometAPIProvider, ALL), ("gateway", CometAPIProvider, Capabilities()), ("kling", KlingProvider, ALL)],
)
async def test_the_local_client_follows_the_simulators_dialect(
    dialect: str, client: type, capabilities: Capabilities
) -> None:
    async with open_provider("local", simulator_options=SimulatorOptions(dialect=dialect, **FAST)) as provider:  # type: ignore[arg-type]
        assert isinstance(provider, LocalProvider) and isinstance(provider, client)
        assert provider.capabilities == capabilities and provider.name == "local"
        assert provider.route == (
            "/v1/videos/multi-image2video" if dialect == "kling" else "/kling/v1/videos/multi-image2video"
        )
        if dialect == "kling":
            auth = provider._auth
            assert isinstance(auth, KlingJWT) and LocalSimulator.LOCAL_SECRET_KEY in auth.secrets()
            assert LocalSimulator.LOCAL_ACCESS_KEY in auth.secrets()


@pytest.mark.anyio
@pytest.mark.parametrize(("env", "capabilities"), [(None, ALL), ("gateway", Capabilities()), ("COMETAPI", ALL)])
async def test_without_options_the_dialect_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: str | None, capabilities: Capabilities
) -> None:
    if env is None:
        monkeypatch.delenv("ORCHESTRATOR_SIM_DIALECT", raising=False)
    else:
        monkeypatch.setenv("ORCHESTRATOR_SIM_DIALECT", env)
    async with open_provider("local") as provider:
        assert isinstance(provider, LocalProvider)
        assert provider.simulator.options.dialect == (env or "cometapi").lower()
        assert provider.capabilities == capabilities


def test_an_unknown_dialect_in_the_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_SIM_DIALECT", "runway")
    with pytest.raises(ConfigError, match="dialect 'runway' is unknown"):
        from orchestrator.config import sim_dialect_from_env

        SimulatorOptions(dialect=sim_dialect_from_env())


@pytest.mark.anyio
async def test_open_provider_kling_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", "ak")
    monkeypatch.setenv("KLING_SECRET_KEY", "sk-kling-secret-key-long-enough-000")
    async with open_provider("kling") as provider:
        assert isinstance(provider, KlingProvider)
        assert provider.name == "kling" and provider.base_url == "https://api-singapore.klingai.com"
        assert provider.capabilities == ALL
