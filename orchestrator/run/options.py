"""How a run is shaped besides its shots: retry backoff, concurrency and request limits, polling, giving up.

Frozen value objects with their defaults, passed down from the API to the scheduler (``orchestrator.run.scheduler``).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.budget.config import BudgetConfig
from orchestrator.errors import ConcurrencyLimitError, ProviderError, UpstreamSaturatedError
from orchestrator.run.polling import DEFAULT_POLL_POLICY, PollPolicy


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for calls that failed transiently. ``base``/``cap`` in seconds; set ``base=0`` in tests for speed."""

    base: float = 1.0
    cap: float = 60.0
    concurrency_floor: float = 1.0  # 1303: the first delay is at least a second (docs/wire.md)
    # A gateway whose upstream accounts are all busy (HTTP 429 without a Kling code) has already tried every one of
    # them: wait at least this long (docs/wire.md).
    saturation_floor: float = 5.0
    lookup_attempts: int = 6
    download_attempts: int = 5
    not_found_attempts: int = 3
    # Seconds after a create during which "no such task" means "not visible yet": a gateway's own table of tasks
    # lags behind its creates (CometAPI answers task_not_exist). Polled again, never a reason to create again.
    not_visible_grace: float = 120.0

    def floor_for(self, exc: ProviderError) -> float:
        """The least delay before retrying after ``exc``, whatever the backoff says (the provider's hint aside)."""
        if isinstance(exc, UpstreamSaturatedError):
            return max(self.saturation_floor, self.concurrency_floor)
        if isinstance(exc, ConcurrencyLimitError):
            return self.concurrency_floor
        return 0.0


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes a run besides the shots. ``requests_per_second`` of ``None`` means no cap."""

    concurrency: int = 4
    requests_per_second: float | None = 2.0
    poll: PollPolicy = DEFAULT_POLL_POLICY
    retry: RetryPolicy = DEFAULT_RETRY_POLICY
    congestion_cooldown: float = 1.0
    interrupt_grace: float = 15.0
    # At most this many API calls (create, poll, lookup) and downloads at once. Bursts (a wave of tasks ending
    # together) queue here instead of opening ever more connections: httpx's pool scans every connection on each
    # request, so a request costs more CPU the more connections there are (on loopback, 8 at once get through
    # more calls per second than 16).
    max_api_calls: int = 8
    max_downloads: int = 4
    # Creates have their own few connections: each one starts a render (the slot is idle until it is sent), so
    # they never queue behind a burst of polls.
    max_creates: int = 4
    # A download waits (at most this long) while creates are under way: a create starts a render, a download only
    # saves one that is safe at the provider, so in a burst the creates go first.
    download_defer: float = 2.0
    # Shots waiting for a slot that record "submitting" ahead of time (see Scheduler._submit_new in
    # orchestrator.run.scheduler).
    on_deck: int = 8
    # Every request refused before it was sent (closed port, wrong base URL, no network) and no answer in between:
    # before the provider has answered once in this run the endpoint is most likely wrong, so the run gives up
    # after a few quick tries; once it has answered, an outage is waited out much longer (tasks in flight are paid
    # for and keep rendering meanwhile). Giving up stops the run like an account error; every shot stays resumable.
    unreachable_at_start: float = 3.0
    unreachable_after: float = 300.0
    seed: int | None = None
    # The studio's budget shared through Redis by every run on the account (docs/budget.md), or None: then only
    # ``concurrency`` bounds this run. With one, ``concurrency`` stays this run's own ceiling below the shared one.
    budget: BudgetConfig | None = None
