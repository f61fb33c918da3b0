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
