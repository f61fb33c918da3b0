"""Opening a provider by name: ``cometapi`` and ``kling`` (the real services) or ``local`` (the embedded simulator).

The local provider is the very same client pointed at a ``LocalSimulator`` running in its own thread, so everything
offline (demo, tests, CI, benchmarks) exercises the real client code. Which client depends on the dialect the
simulator speaks (``SimulatorOptions.dialect``, else ``ORCHESTRATOR_SIM_DIALECT``; see docs/wire.md, "Dialects"):

- ``cometapi``: the CometAPI client, with the lookup and the list (the simulator is one account that has both);
- ``gateway``: the CometAPI client with the real gateway's ``Capabilities()``;
- ``kling``: the Kling client, signing its JWTs with the simulator's key pair.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from orchestrator.config import sim_dialect_from_env
from orchestrator.errors import ConfigError
from orchestrator.providers.base import Provider
from orchestrator.providers.client import ProviderClient
from orchestrator.providers.cometapi import GATEWAY_CAPABILITIES, SIMULATOR_CAPABILITIES, CometAPIProvider
from orchestrator.providers.kling import KlingProvider

if TYPE_CHECKING:
    from orchestrator.providers.local import LocalSimulator, SimulatorOptions

PROVIDERS: tuple[str, ...] = ("cometapi", "kling", "local")


class LocalProvider(ProviderClient):
    """A client talking to an embedded simulator; ``simulator`` gives its counters (``stats()``)."""

    def __init__(self, *, simulator: LocalSimulator, **kw: Any) -> None:
        super().__init__(**kw)
        self.simulator = simulator


class LocalCometAPIProvider(LocalProvider, CometAPIProvider):
    """The CometAPI client against the simulator's ``cometapi`` or ``gateway`` dialect."""


class LocalKlingProvider(LocalProvider, KlingProvider):
    """The Kling client against the simulator's ``kling`` dialect."""


def open_provider(
    name: str,
    *,
    simulator_options: SimulatorOptions | None = None,
    state_dir: Path | None = None,
) -> AbstractAsyncContextManager[Provider]:
    """``async with open_provider("local") as provider: ...``. Unknown names raise ``ConfigError``.

    ``cometapi`` reads ``COMETAPI_KEY`` and ``COMETAPI_BASE_URL``; ``kling`` reads ``KLING_ACCESS_KEY``,
    ``KLING_SECRET_KEY`` and ``KLING_BASE_URL`` (a missing key is a ``ConfigError``, raised at once). ``local``
    starts a simulator on an ephemeral 127.0.0.1 port and stops it on exit. Without ``simulator_options``, a
    ``state_dir`` makes that simulator remember its tasks there, so an interrupted run resumes against the same
    tasks, and ``ORCHESTRATOR_SIM_DIALECT`` picks its dialect; explicit ``simulator_options`` are used as given
    (``state_dir`` is ignored).
    """
    if name not in PROVIDERS:
        known = ", ".join(PROVIDERS)
        raise ConfigError(f"unknown provider {name!r}: use one of {known}")
    if name == "local":
        return _open_local(simulator_options, state_dir=state_dir)
    if name == "kling":
        return _entered(KlingProvider.from_env())
    return _entered(CometAPIProvider.from_env())


@asynccontextmanager
async def _entered(provider: ProviderClient) -> AsyncIterator[Provider]:
    async with provider:
        yield provider


@asynccontextmanager
async def _open_local(options: SimulatorOptions | None, *, state_dir: Path | None) -> AsyncIterator[Provider]:
    from orchestrator.providers.local import LocalSimulator, SimulatorOptions

    simulator = LocalSimulator(options or SimulatorOptions(state_dir=state_dir, dialect=sim_dialect_from_env()))
    # Starting waits for the server thread to bind its port: do it off the event loop.
    await anyio.to_thread.run_sync(simulator.__enter__)
    try:
        async with local_client(simulator) as provider:
            yield provider
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(simulator.__exit__, None, None, None)


def local_client(simulator: LocalSimulator) -> LocalProvider:
    """The client for a running simulator, chosen by the dialect it speaks."""
    from orchestrator.providers.local import LocalSimulator

    dialect = simulator.options.dialect
    if dialect == "kling":
        return LocalKlingProvider(
            simulator=simulator,
            base_url=simulator.base_url,
            access_key=LocalSimulator.LOCAL_ACCESS_KEY,
            secret_key=LocalSimulator.LOCAL_SECRET_KEY,
            name="local",
        )
    capabilities = GATEWAY_CAPABILITIES if dialect == "gateway" else SIMULATOR_CAPABILITIES
    return LocalCometAPIProvider(
        simulator=simulator,
        base_url=simulator.base_url,
        api_key=LocalSimulator.LOCAL_API_KEY,
        name="local",
        capabilities=capabilities,
    )
