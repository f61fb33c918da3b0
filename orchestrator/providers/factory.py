"""Opening a provider by name: ``cometapi`` (the real service) or ``local`` (the embedded simulator on loopback).

The local provider is the very same ``CometAPIProvider`` pointed at a ``LocalSimulator`` running in its own thread,
so everything offline (demo, tests, CI, benchmarks) exercises the real client code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from orchestrator.errors import ConfigError
from orchestrator.providers.base import Provider
from orchestrator.providers.cometapi import CometAPIProvider

if TYPE_CHECKING:
    from orchestrator.providers.local import LocalSimulator, SimulatorOptions

PROVIDERS: tuple[str, ...] = ("cometapi", "local")


class LocalProvider(CometAPIProvider):
    """The CometAPI client talking to an embedded simulator; ``simulator`` gives its counters (``stats()``)."""

    def __init__(self, *, simulator: LocalSimulator, **kw: Any) -> None:
        super().__init__(**kw)
        self.simulator = simulator


def open_provider(
    name: str,
    *,
    simulator_options: SimulatorOptions | None = None,
    state_dir: Path | None = None,
) -> AbstractAsyncContextManager[Provider]:
    """``async with open_provider("local") as provider: ...``. Unknown names raise ``ConfigError``.

    ``cometapi`` reads ``COMETAPI_KEY`` and ``COMETAPI_BASE_URL`` (a missing key is a ``ConfigError``, raised at
    once). ``local`` starts a simulator on an ephemeral 127.0.0.1 port and stops it on exit. Without
    ``simulator_options``, a ``state_dir`` makes that simulator remember its tasks there, so an interrupted run
    resumes against the same tasks; explicit ``simulator_options`` are used as given (``state_dir`` is ignored).
    """
    if name not in PROVIDERS:
        known = ", ".join(PROVIDERS)
        raise ConfigError(f"unknown provider {name!r}: use one of {known}")
    if name == "local":
        return _open_local(simulator_options, state_dir=state_dir)
    return _entered(CometAPIProvider.from_env())


@asynccontextmanager
async def _entered(provider: CometAPIProvider) -> AsyncIterator[Provider]:
    async with provider:
        yield provider


@asynccontextmanager
async def _open_local(options: SimulatorOptions | None, *, state_dir: Path | None) -> AsyncIterator[Provider]:
    from orchestrator.providers.local import LocalSimulator, SimulatorOptions

    simulator = LocalSimulator(options or SimulatorOptions(state_dir=state_dir))
    # Starting waits for the server thread to bind its port: do it off the event loop.
    await anyio.to_thread.run_sync(simulator.__enter__)
    try:
        provider = LocalProvider(
            simulator=simulator,
            base_url=simulator.base_url,
            api_key=LocalSimulator.LOCAL_API_KEY,
            name="local",
        )
        async with provider:
            yield provider
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(simulator.__exit__, None, None, None)
