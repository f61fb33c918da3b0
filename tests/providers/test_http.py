"""The HTTP machinery: the speed-ups that reach into httpx's private attributes must still be in effect.

``check_idle_sockets_cheaply`` swaps the pool's network backend through httpx's and httpcore's private attributes,
and ``SocketOnce`` relies on httpcore asking idle connections ``is_readable``. An upgrade that moves either leaves the
client working but slower, silently: these tests fail instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from orchestrator.providers import http
from orchestrator.providers.cometapi import CometAPIProvider
from orchestrator.providers.local import LocalSimulator, SimulatorOptions


@pytest.fixture
def simulator() -> Iterator[LocalSimulator]:
    with LocalSimulator(SimulatorOptions(render_time=0.1, cheap_video=True, seed=1)) as sim:
        yield sim


def test_the_default_transport_still_has_a_pool_with_a_backend_to_wrap() -> None:
    assert http.check_idle_sockets_cheaply(httpx.AsyncHTTPTransport()) is True
    assert http.check_idle_sockets_cheaply(httpx.MockTransport(lambda r: httpx.Response(200))) is False


@pytest.mark.anyio
async def test_idle_pooled_connections_are_checked_through_the_cached_socket(
    simulator: LocalSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[bool] = []
    original = http.socket_readable

    def counting(sock: object) -> bool:
        checks.append(result := original(sock))  # type: ignore[arg-type]
        return result

    monkeypatch.setattr(http, "socket_readable", counting)
    async with CometAPIProvider(base_url=simulator.base_url, api_key=LocalSimulator.LOCAL_API_KEY) as provider:
        for _ in range(3):
            await provider.list_tasks(page_size=1)  # over loopback, one keep-alive connection reused
    # httpcore asked the idle connection before each reuse, and the answer came from SocketOnce: still open.
    assert len(checks) >= 2 and not any(checks)


def test_a_base_url_names_the_setting_to_fix() -> None:
    with pytest.raises(Exception, match="check KLING_BASE_URL"):
        http.checked_base_url("nope", setting="KLING_BASE_URL", key_setting="KLING_ACCESS_KEY")
    assert http.checked_base_url(" https://x.test/ ", setting="S", key_setting="K") == "https://x.test"
