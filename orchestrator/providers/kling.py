"""Kling direct: the same multi-image-to-video routes without the ``/kling`` prefix (docs/wire.md, "Kling direct").

Auth is a JWT (HS256, header ``typ: JWT``, claims ``iss`` = access key, ``exp`` = now + 1800 s, ``nbf`` = now - 5 s)
signed with the secret key, sent as ``Authorization: Bearer <jwt>``. The token is cached and signed again 60 s
before it expires; a 401 with code 1003/1004 (not yet valid, expired: a clock that jumped) signs afresh and sends
the call once more. One account answers for everything, so the lookup by external id and the list both exist and
an absence is proof: every create whose outcome is unknown can be confirmed.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from typing import Any, Self

import httpx
import jwt

from orchestrator.config import (
    ENV_KLING_ACCESS_KEY,
    ENV_KLING_BASE_URL,
    ENV_KLING_SECRET_KEY,
    KLING_DEFAULT_BASE_URL,
    kling_credentials_from_env,
)
from orchestrator.errors import ConfigError
from orchestrator.providers.base import Capabilities
from orchestrator.providers.classify import Hints
from orchestrator.providers.client import Dialect, ProviderClient, SecretAuth
from orchestrator.providers.http import DEFAULT_TIMEOUT

__all__ = ["KLING", "KLING_CAPABILITIES", "KlingJWT", "KlingProvider"]

KLING = Dialect(
    route_prefix="",
    hints=Hints(key=f"{ENV_KLING_ACCESS_KEY} and {ENV_KLING_SECRET_KEY}", base_url=ENV_KLING_BASE_URL),
)
KLING_CAPABILITIES = Capabilities(find_by_external_id=True, list_tasks=True, absence_is_proof=True)

TOKEN_LIFETIME = 1800
NOT_BEFORE_SLACK = 5
REFRESH_BEFORE = 60
_STALE_TOKEN_CODES = (1003, 1004)


class KlingJWT(SecretAuth):
    """Signs Kling's JWT, caches it until 60 s before it expires, and on 1003/1004 signs afresh and resends once."""

    def __init__(self, access_key: str, secret_key: str, *, clock: Callable[[], float] = time.time) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._clock = clock
        self._token = ""
        self._expires = 0.0

    def token(self, *, fresh: bool = False) -> str:
        now = self._clock()
        if fresh or not self._token or now >= self._expires - REFRESH_BEFORE:
            self._expires = now + TOKEN_LIFETIME
            claims = {"iss": self._access_key, "exp": int(self._expires), "nbf": int(now) - NOT_BEFORE_SLACK}
            with warnings.catch_warnings():
                # Newer PyJWT warns about HMAC keys under 32 bytes; the key is Kling's to issue, not ours to choose.
                warnings.filterwarnings("ignore", message=".*HMAC key.*")
                self._token = jwt.encode(claims, self._secret_key, algorithm="HS256", headers={"typ": "JWT"})
        return self._token

    def secrets(self) -> Sequence[str]:
        return tuple(value for value in (self._access_key, self._secret_key, self._token) if value)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401:
            response.read()
            if _stale_token(response.content):
                request.headers["Authorization"] = f"Bearer {self.token(fresh=True)}"
                yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        # Written out rather than inherited: httpx's default would read every response body first (a whole video,
        # for a download from the API's origin); only a 401's small body is needed here.
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            if _stale_token(response.content):
                request.headers["Authorization"] = f"Bearer {self.token(fresh=True)}"
                yield request


def _stale_token(content: bytes) -> bool:
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("code") in _STALE_TOKEN_CODES


class KlingProvider(ProviderClient):
    """Kling multi-image-to-video, straight to Kling's API (or to the simulator's ``kling`` dialect)."""

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        base_url: str = KLING_DEFAULT_BASE_URL,
        name: str = "kling",
        capabilities: Capabilities = KLING_CAPABILITIES,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_connections: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not access_key or not secret_key:
            raise ConfigError(f"provider {name}: the key pair is incomplete (check {KLING.hints.key})")
        super().__init__(
            name=name,
            base_url=base_url,
            dialect=KLING,
            auth=KlingJWT(access_key, secret_key, clock=clock),
            capabilities=capabilities,
            transport=transport,
            timeout=timeout,
            max_connections=max_connections,
        )

    @classmethod
    def from_env(cls, **kw: Any) -> Self:
        """A provider for ``KLING_BASE_URL`` with ``KLING_ACCESS_KEY`` and ``KLING_SECRET_KEY``; ``ConfigError`` if
        either key is unset."""
        credentials = kling_credentials_from_env()
        return cls(
            base_url=credentials.base_url,
            access_key=credentials.access_key,
            secret_key=credentials.secret_key,
            **kw,
        )
