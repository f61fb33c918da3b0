"""The reachability bookkeeping on its own: refusals before any answer, answers ending an outage, giving up once."""

from __future__ import annotations

import pytest

from orchestrator.errors import NetworkError, ServerError
from orchestrator.run.reachability import Reachability, Unreachable


def refused() -> NetworkError:
    return NetworkError("could not reach the provider: connection refused", ambiguous=False)


class Recorder:
    def __init__(self) -> None:
        self.notices: list[str] = []
        self.reasons: list[str] = []


def make(recorder: Recorder, *, at_start: float = 0.0, after: float = 300.0) -> Reachability:
    return Reachability(
        endpoint="http://127.0.0.1:9",
        at_start=at_start,
        after=after,
        notify=recorder.notices.append,
        on_give_up=recorder.reasons.append,
    )


async def fail(exc: Exception) -> None:
    raise exc


async def answer() -> str:
    return "ok"


@pytest.mark.anyio
async def test_refused_from_the_start_gives_up_once_with_a_hint_about_the_base_url() -> None:
    recorder = Recorder()
    reach = make(recorder, at_start=0.0)
    for _ in range(2):
        with pytest.raises(NetworkError):
            await reach.call(fail(refused()))
    assert reach.gave_up.is_set()
    assert reach.unreachable == "cannot reach http://127.0.0.1:9 (connection refused); run again to resume"
    assert len(recorder.reasons) == 1 and "COMETAPI_BASE_URL" in recorder.reasons[0]
    with pytest.raises(Unreachable):
        reach.check()


@pytest.mark.anyio
async def test_any_answer_even_an_error_ends_an_outage_and_lengthens_the_limit() -> None:
    recorder = Recorder()
    reach = make(recorder, at_start=0.0, after=300.0)
    with pytest.raises(ServerError):
        await reach.call(fail(ServerError("server error")))
    assert await reach.call(answer()) == "ok"
    with pytest.raises(NetworkError):
        await reach.call(fail(refused()))
    # Once the provider has answered, an outage is waited out for ``after`` seconds, not ``at_start``.
    reach.check()
    assert reach.unreachable is None and not recorder.reasons


@pytest.mark.anyio
async def test_an_ambiguous_network_error_is_not_a_refusal() -> None:
    recorder = Recorder()
    reach = make(recorder, at_start=0.0)
    with pytest.raises(NetworkError):
        await reach.call(fail(NetworkError("connection lost after sending", ambiguous=True)))
    reach.check()
    assert reach.retry_delay(NetworkError("lost", ambiguous=True), 5.0) == 5.0


@pytest.mark.anyio
async def test_retry_delay_during_an_outage_ends_when_the_run_would_give_up_and_is_noticed_once() -> None:
    recorder = Recorder()
    reach = make(recorder, at_start=60.0)
    with pytest.raises(NetworkError):
        await reach.call(fail(refused()))
    delay = reach.retry_delay(refused(), 3600.0)
    assert 0.0 < delay <= 60.0
    assert reach.retry_delay(refused(), 1.0) == 1.0
    assert recorder.notices == [f"cannot reach http://127.0.0.1:9 (connection refused); retrying in {delay:.1f} s"]
