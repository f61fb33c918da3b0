"""CometAPI: Kling multi-image-to-video through the gateway (docs/wire.md, "CometAPI").

Routes under ``/kling`` at ``COMETAPI_BASE_URL``, ``Authorization: Bearer <COMETAPI_KEY>``. The real gateway spreads
creates over several upstream accounts and documents neither a lookup by external id nor a list, so it declares
``Capabilities()``: a create whose outcome is unknown is never sent again on our own. The local simulator's
``cometapi`` dialect is one account that supports both, and is given the capabilities to say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import httpx

from orchestrator.config import ENV_BASE_URL, ENV_KEY, credentials_from_env
from orchestrator.errors import ConfigError
from orchestrator.providers.base import Capabilities
from orchestrator.providers.classify import Hints
from orchestrator.providers.client import Dialect, ProviderClient, SecretAuth
from orchestrator.providers.http import DEFAULT_TIMEOUT
from orchestrator.providers.wire import Base64Cache, ImageChangedError, build_request_body, parse_task

__all__ = [
    "COMETAPI",
    "DEFAULT_TIMEOUT",
    "GATEWAY_CAPABILITIES",
    "ROUTE",
    "SIMULATOR_CAPABILITIES",
    "Base64Cache",
    "BearerToken",
    "CometAPIProvider",
    "ImageChangedError",
    "build_request_body",
    "parse_task",
]

COMETAPI = Dialect(route_prefix="/kling", hints=Hints(key=ENV_KEY, base_url=ENV_BASE_URL))
ROUTE = COMETAPI.route
GATEWAY_CAPABILITIES = Capabilities()
"""The real gateway: no lookup, no list, and an absence would prove nothing (another upstream account may have it)."""
SIMULATOR_CAPABILITIES = Capabilities(find_by_external_id=True, list_tasks=True, absence_is_proof=True)
"""The simulator's ``cometapi`` dialect: one account, with the Kling lookup and list."""


class BearerToken(SecretAuth):
    """``Authorization: Bearer <key>`` on every request (the client sends it to the API's origin only)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self._key}"
        yield request

    def secrets(self) -> Sequence[str]:
        return (self._key,)


class CometAPIProvider(ProviderClient):
    """Kling multi-image-to-video through CometAPI (or anything that speaks its routes, like the local simulator)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        name: str = "cometapi",
        capabilities: Capabilities = GATEWAY_CAPABILITIES,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_connections: int = 100,
    ) -> None:
        if not api_key:
            raise ConfigError(f"provider {name}: the API key is empty (check {ENV_KEY})")
        super().__init__(
            name=name,
            base_url=base_url,
            dialect=COMETAPI,
            auth=BearerToken(api_key),
            capabilities=capabilities,
            transport=transport,
            timeout=timeout,
            max_connections=max_connections,
        )

    @classmethod
    def from_env(cls, **kw: Any) -> Self:
        """A provider for ``COMETAPI_BASE_URL`` (default CometAPI) with ``COMETAPI_KEY``; ``ConfigError`` if unset."""
        credentials = credentials_from_env()
        return cls(base_url=credentials.base_url, api_key=credentials.api_key, **kw)
