"""Can the provider be reached? The scheduler's bookkeeping of refused connections, and when to give up.

Every request refused before it was sent (closed port, wrong base URL, no network), with no answer in between, is
part of one outage. Before the provider has answered once in a run the endpoint is most likely wrong, so the run
gives up after ``at_start`` seconds; once it has answered, an outage is waited out for ``after`` seconds (tasks in
flight are paid for and keep rendering meanwhile). Giving up stops the run like an account error: no shot is failed
for it, each stays resumable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from orchestrator.errors import NetworkError, ProviderError

REFUSED_NOTICE_EVERY = 10.0  # seconds between "cannot reach" notices while an outage lasts
_T = TypeVar("_T")


class Unresolved(Exception):
    """A lookup could not get an answer; the shot stays as recorded for the next run."""


class Unreachable(Unresolved):
    """The run gave up reaching the provider; the shot stays as recorded for the next run."""


class Reachability:
    """Tracks answers and refusals of one provider during a run; gives up once an outage lasts too long.

    ``notify`` receives the (throttled) "cannot reach" notices; ``on_give_up`` receives the reason, once, when the
    run gives up, and is expected to stop submissions.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        at_start: float,
        after: float,
        notify: Callable[[str], None],
        on_give_up: Callable[[str], None],
    ) -> None:
        self.endpoint = endpoint
        self.at_start = at_start
        self.after = after
        self._notify = notify
        self._on_give_up = on_give_up
        self.unreachable: str | None = None  # why the run gave up reaching the provider, once it has
        self.gave_up = anyio.Event()
        self._answered = False  # the provider has answered at least once in this run
        self._outage: float | None = None  # (monotonic) first refused request since the last answer
        self._noticed = -math.inf  # (monotonic) the last "cannot reach" notice

    async def call(self, request: Awaitable[_T]) -> _T:
        """One API call, noting whether the provider answered (any answer, even an error) or refused to connect."""
        try:
            result = await request
        except NetworkError as exc:
            if not exc.ambiguous:
                self._refused_now(exc)
            raise
        except ProviderError:
            self._heard_back()
            raise
        self._heard_back()
        return result

    def check(self) -> None:
        """Raise ``Unreachable`` once the run gave up reaching the provider."""
        if self.unreachable is not None:
            raise Unreachable(self.unreachable)

    def retry_delay(self, exc: ProviderError, delay: float) -> float:
        """The backoff ``delay`` before retrying after ``exc``, shortened during an outage so that the last try
        comes right when the run would give up (it ends on time, not a backoff later); notes the outage."""
        if not _refused(exc) or self._outage is None:
            return delay
        delay = min(delay, max(0.0, self._outage + self._limit() - time.monotonic()))
        self._notice_refused(exc, delay)
        return delay

    def _heard_back(self) -> None:
        self._answered = True
        self._outage = None
        self._noticed = -math.inf

    def _refused_now(self, exc: NetworkError) -> None:
        now = time.monotonic()
        if self._outage is None:
            self._outage = now
        if self.unreachable is None and now - self._outage >= self._limit():
            self._give_up(exc, now - self._outage)

    def _limit(self) -> float:
        return self.after if self._answered else self.at_start

    def _notice_refused(self, exc: ProviderError, delay: float) -> None:
        now = time.monotonic()
        if self.unreachable is None and now - self._noticed >= REFUSED_NOTICE_EVERY:
            self._noticed = now
            self._notify(f"cannot reach {self.endpoint} ({_cause(exc)}); retrying in {delay:.1f} s")

    def _give_up(self, exc: NetworkError, seconds: float) -> None:
        where = self.endpoint
        self.unreachable = f"cannot reach {where} ({_cause(exc)}); run again to resume"
        if self._answered:
            why = f"no answer for {seconds:.0f} s"
        else:
            why = "no answer since the run started; check the provider's base URL (COMETAPI_BASE_URL) and the network"
        self._on_give_up(f"cannot reach {where} ({_cause(exc)}): {why}")
        self.gave_up.set()


def _refused(exc: ProviderError) -> bool:
    """A connection refused (or not made) before anything was sent: the provider cannot be reached."""
    return isinstance(exc, NetworkError) and not exc.ambiguous


def _cause(exc: ProviderError) -> str:
    """What went wrong, without the "could not reach the provider" our own message says already."""
    return exc.message.removeprefix("could not reach the provider: ")
