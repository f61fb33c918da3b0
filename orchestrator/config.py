"""Settings read from the environment, in this one place."""

from __future__ import annotations

import os
from dataclasses import dataclass

from orchestrator.errors import ConfigError

DEFAULT_BASE_URL = "https://api.cometapi.com"
ENV_KEY = "COMETAPI_KEY"
ENV_BASE_URL = "COMETAPI_BASE_URL"


@dataclass(frozen=True, repr=False)
class Credentials:
    """Where to reach CometAPI and with which key. ``repr`` never shows the key."""

    base_url: str
    api_key: str

    def __repr__(self) -> str:
        return f"Credentials(base_url={self.base_url!r}, api_key=<hidden>)"


def base_url_from_env() -> str:
    return (os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")


def credentials_from_env() -> Credentials:
    key = os.environ.get(ENV_KEY, "").strip()
    if not key:
        raise ConfigError(
            f"{ENV_KEY} is not set: export your CometAPI key to render for real, "
            "or use --provider local to render offline with the embedded simulator"
        )
    return Credentials(base_url=base_url_from_env(), api_key=key)
