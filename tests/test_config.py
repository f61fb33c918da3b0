from __future__ import annotations

import pytest

from orchestrator.config import DEFAULT_BASE_URL, credentials_from_env
from orchestrator.errors import ConfigError


def test_missing_key_says_how_to_render_offline() -> None:
    with pytest.raises(ConfigError, match="--provider local"):
        credentials_from_env()


def test_credentials_never_show_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMETAPI_KEY", "sk-test-SECRET-123")
    credentials = credentials_from_env()
    assert credentials.api_key == "sk-test-SECRET-123"
    assert "SECRET" not in repr(credentials)
    assert credentials.base_url == DEFAULT_BASE_URL


def test_base_url_from_environment_loses_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMETAPI_KEY", "k")
    monkeypatch.setenv("COMETAPI_BASE_URL", "http://127.0.0.1:8765/")
    assert credentials_from_env().base_url == "http://127.0.0.1:8765"


def test_kling_needs_both_keys_and_names_the_missing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.config import kling_credentials_from_env

    with pytest.raises(ConfigError, match="KLING_ACCESS_KEY and KLING_SECRET_KEY are not set") as caught:
        kling_credentials_from_env()
    assert "--provider local" in str(caught.value) and "\n" not in str(caught.value)
    monkeypatch.setenv("KLING_ACCESS_KEY", "ak")
    with pytest.raises(ConfigError, match=r"^KLING_SECRET_KEY is not set"):
        kling_credentials_from_env()


def test_kling_base_url_defaults_to_singapore(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.config import KLING_DEFAULT_BASE_URL, kling_credentials_from_env

    monkeypatch.setenv("KLING_ACCESS_KEY", "ak")
    monkeypatch.setenv("KLING_SECRET_KEY", "sk")
    assert kling_credentials_from_env().base_url == KLING_DEFAULT_BASE_URL == "https://api-singapore.klingai.com"
    monkeypatch.setenv("KLING_BASE_URL", "http://127.0.0.1:9000/")
    assert kling_credentials_from_env().base_url == "http://127.0.0.1:9000"


def test_the_simulators_dialect_defaults_to_cometapi(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.config import sim_dialect_from_env

    monkeypatch.delenv("ORCHESTRATOR_SIM_DIALECT", raising=False)
    assert sim_dialect_from_env() == "cometapi"
    monkeypatch.setenv("ORCHESTRATOR_SIM_DIALECT", " Kling ")
    assert sim_dialect_from_env() == "kling"
