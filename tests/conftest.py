"""Shared fixtures. Every test runs with a clean environment: no real key, no real base URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.spec import images


@pytest.fixture(autouse=True)
def _isolate_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Tests never reach beyond loopback: make sure no real credentials or endpoints leak in from the shell.
    monkeypatch.delenv("COMETAPI_KEY", raising=False)
    monkeypatch.delenv("COMETAPI_BASE_URL", raising=False)
    yield


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _fresh_image_cache() -> None:
    # The image cache is per process, keyed by (path, size, mtime): start every test without what others read.
    images.clear_cache()
