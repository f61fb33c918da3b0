"""Settings read from the environment, in this one place.

Which variables each provider reads, and why, is in docs/providers.md; the wire each one speaks is in docs/wire.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from orchestrator.errors import ConfigError

DEFAULT_BASE_URL = "https://api.cometapi.com"
ENV_KEY = "COMETAPI_KEY"
ENV_BASE_URL = "COMETAPI_BASE_URL"

KLING_DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
ENV_KLING_ACCESS_KEY = "KLING_ACCESS_KEY"
ENV_KLING_SECRET_KEY = "KLING_SECRET_KEY"
ENV_KLING_BASE_URL = "KLING_BASE_URL"

ENV_SIM_DIALECT = "ORCHESTRATOR_SIM_DIALECT"
DEFAULT_SIM_DIALECT = "cometapi"


@dataclass(frozen=True, repr=False)
class Credentials:
    """Where to reach CometAPI and with which key. ``repr`` never shows the key."""

    base_url: str
    api_key: str

    def __repr__(self) -> str:
        return f"Credentials(base_url={self.base_url!r}, api_key=<hidden>)"


@dataclass(frozen=True, repr=False)
class KlingCredentials:
    """Where to reach Kling directly and with which key pair. ``repr`` never shows either key."""

    base_url: str
    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return f"KlingCredentials(base_url={self.base_url!r}, access_key=<hidden>, secret_key=<hidden>)"


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


def kling_credentials_from_env() -> KlingCredentials:
    """``KLING_ACCESS_KEY`` and ``KLING_SECRET_KEY`` (both needed), ``KLING_BASE_URL`` (default Singapore)."""
    access_key = os.environ.get(ENV_KLING_ACCESS_KEY, "").strip()
    secret_key = os.environ.get(ENV_KLING_SECRET_KEY, "").strip()
    missing = [
        name for name, value in ((ENV_KLING_ACCESS_KEY, access_key), (ENV_KLING_SECRET_KEY, secret_key)) if not value
    ]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: export the key pair from the "
            "Kling console's API keys to render with --provider kling, or use --provider local to render offline"
        )
    base_url = (os.environ.get(ENV_KLING_BASE_URL) or KLING_DEFAULT_BASE_URL).rstrip("/")
    return KlingCredentials(base_url=base_url, access_key=access_key, secret_key=secret_key)


def sim_dialect_from_env() -> str:
    """Which provider the local simulator imitates when nothing else says: ``ORCHESTRATOR_SIM_DIALECT``."""
    return os.environ.get(ENV_SIM_DIALECT, "").strip().lower() or DEFAULT_SIM_DIALECT
