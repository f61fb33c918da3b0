"""When to ask the provider about a task: as few times as possible, soon after it is done.

Render times of one run are alike (same model, mode and duration), so the run learns them as tasks finish. The
estimator keeps the render times observed so far, from the provider's own ``created_at``/``updated_at`` (exact, no
polling lag in them) or, when those are missing, from our own clock. A task's polls then go:

1. **no observation yet** ("scouting"): the few oldest tasks in flight are scouts and poll on a geometric schedule
   (``probe_start * probe_ratio**k``), each scout shifted by a fraction of a step, so that together they sample the
   time line finely and the first finish is seen soon. The more tasks wait for that first finish, the more it is
   worth: one scout per ``tasks_per_scout`` tasks in flight (at least ``scouts``, at most ``max_scouts``). Every
   other task waits for the first observation (or polls at ``initial_estimate`` if none comes).
2. **with observations**: the first poll at a low quantile of the observed render times, then polls every
   ``tail_fraction`` of the median render time until past the slowest observation (plus a margin), then backoff:
   each wait a quarter of the task's age, capped at ``max_interval``.

Every wait is at least ``min_interval`` after the previous poll; ``jitter`` spreads the backoff polls. A task still
running after ``deadline`` seconds is left ``pending-remote`` for a later run.

When the provider lists tasks (``batch``; see ``orchestrator.run.watcher``), one request answers for every task in
flight, so the tail polls can be much denser for the same number of requests: ``batch_tail_fraction`` of the median
render time, at least ``batch_min_interval`` apart.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class PollPolicy:
    """Polling knobs. Times in seconds. The defaults suit the real API (renders of one to several minutes)."""

    initial_estimate: float = 60.0
    probe_start: float = 0.5
    probe_ratio: float = 1.3
    scouts: int = 3
    tasks_per_scout: int = 8
    max_scouts: int = 8
    first_quantile: float = 0.3
    tail_fraction: float = 0.04
    spread_margin: float = 0.15
    backoff_fraction: float = 0.25
    min_interval: float = 0.05
    max_interval: float = 60.0
    jitter: float = 0.1
    deadline: float = 3600.0
    window: int = 64
    batch: bool = True
    batch_tail_fraction: float = 0.015
    batch_min_interval: float = 0.01


DEFAULT_POLL_POLICY = PollPolicy()
# Finishes that wake every waiting task to recompute its polls (see ``PollPlanner.observe``).
_WAKE_ON_OBSERVATIONS = 3


class RenderTimes:
    """The render times seen so far in this run (the latest ``window`` of them), sorted for quantiles."""

    def __init__(self, *, window: int = 64) -> None:
        self._recent: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []
        # Each list round asks up to three quantiles for every task in flight, and the times change only when a
        # task ends: the answers are kept until then.
        self._quantiles: dict[float, float] = {}

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds <= 0:
            return
        if len(self._recent) == self._recent.maxlen:
            oldest = self._recent[0]
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._recent.append(seconds)
        bisect.insort(self._sorted, seconds)
        self._quantiles.clear()

    def quantile(self, q: float) -> float:
        known = self._quantiles.get(q)
        if known is None:
            known = self._quantiles[q] = self._compute(q)
        return known

    def _compute(self, q: float) -> float:
        if not self._sorted:
            raise ValueError("no render times observed yet")
        position = min(max(q, 0.0), 1.0) * (len(self._sorted) - 1)
        low = math.floor(position)
        high = min(low + 1, len(self._sorted) - 1)
        return self._sorted[low] + (self._sorted[high] - self._sorted[low]) * (position - low)


def next_poll_at(
    *,
    created: float,
    last_poll: float | None,
    times: RenderTimes,
    scout_rank: int | None,
    policy: PollPolicy,
    rng: random.Random,
    scout_count: int | None = None,
    batched: bool = False,
) -> float:
    """The time (same clock as ``created``) of a task's next poll, given what the run knows now.

    ``scout_rank`` is the task's rank among scouts (0-based) while nothing has been observed, else ``None``;
    ``scout_count`` how many scouts there are (default ``policy.scouts``; see ``scout_count``). ``batched``: the
    poll is one of the watcher's rounds, which answer for every task at once (the denser ``batch_*`` tail).
    """
    previous = last_poll if last_poll is not None else created
    if len(times):
        at = _informed(
            created=created,
            previous=previous,
            polled=last_poll is not None,
            times=times,
            policy=policy,
            rng=rng,
            batched=batched,
        )
    elif scout_rank is not None:
        count = scout_count if scout_count is not None else policy.scouts
        at = _probe(created=created, previous=previous, rank=scout_rank, count=count, policy=policy)
    elif last_poll is None or previous < created + policy.initial_estimate:
        at = created + policy.initial_estimate
    else:
        at = _backoff(created=created, previous=previous, policy=policy, rng=rng)
    gap = policy.batch_min_interval if batched else policy.min_interval
    return max(at, previous + gap) if last_poll is not None else at


def _informed(
    *,
    created: float,
    previous: float,
    polled: bool,
    times: RenderTimes,
    policy: PollPolicy,
    rng: random.Random,
    batched: bool,
) -> float:
    first = created + times.quantile(policy.first_quantile)
    if not polled or previous < first:
        return first
    median = times.quantile(0.5)
    dense_until = created + times.quantile(1.0) * (1 + policy.spread_margin)
    if previous < dense_until:
        if batched:
            return previous + max(policy.batch_min_interval, policy.batch_tail_fraction * median)
        return previous + max(policy.min_interval, policy.tail_fraction * median)
    return _backoff(created=created, previous=previous, policy=policy, rng=rng)


def scout_count(waiting: int, policy: PollPolicy) -> int:
    """How many scouts while ``waiting`` tasks in flight have no render time to go by."""
    wanted = math.ceil(waiting / max(1, policy.tasks_per_scout))
    return max(policy.scouts, min(policy.max_scouts, wanted))


def _probe(*, created: float, previous: float, rank: int, count: int, policy: PollPolicy) -> float:
    phase = (rank % max(1, count)) / max(1, count)
    age = max(previous - created, 0.0)
    # Smallest k with probe_start * ratio**(k + phase) > age.
    ratio = policy.probe_ratio
    k = 0 if age <= 0 else max(0, math.floor(math.log(age / policy.probe_start, ratio) - phase) + 1)
    at = float(created + policy.probe_start * ratio ** (k + phase))
    while at <= previous:
        k += 1
        at = float(created + policy.probe_start * ratio ** (k + phase))
    return min(at, previous + policy.max_interval)


def _backoff(*, created: float, previous: float, policy: PollPolicy, rng: random.Random) -> float:
    # Only backoff polls are jittered: they are the ones that would otherwise fall in step across many tasks; the
    # informed polls are already spread by each task's own creation time.
    age = max(previous - created, policy.min_interval)
    wait = min(policy.max_interval, max(policy.min_interval, policy.backoff_fraction * age))
    if policy.jitter > 0:
        wait *= rng.uniform(1 - policy.jitter / 2, 1 + policy.jitter / 2)
    return previous + wait


class PollPlanner:
    """A run's poll schedule: the render times it has learnt, and the tasks still waiting for a first one (oldest
    first; the first few are the scouts). The scheduler tells it what happens and asks it when to poll next; a
    ``True`` answer from ``started``, ``ended`` or ``observe`` means waiting tasks should recompute their polls."""

    def __init__(self, policy: PollPolicy, *, requests_per_second: float | None, rng: random.Random) -> None:
        self.policy = policy
        self.times = RenderTimes(window=policy.window)
        self._rps = requests_per_second
        self._rng = rng
        self._unobserved: dict[str, None] = {}  # tasks followed while no render time is known, oldest first
        self._observed = 0

    def started(self, key: str) -> bool:
        """A task is followed from now on. True when it made one more scout (a waiting task becomes it)."""
        if len(self.times):
            return False
        before = self.scouts()
        self._unobserved[key] = None
        return self.scouts() > before

    def ended(self, key: str) -> bool:
        """A task is no longer followed. True when it was waiting for a first render time: the scouts may change
        (the next in line takes a leaving scout's place)."""
        return self._unobserved.pop(key, 0) is None

    def observe(self, seconds: float) -> bool:
        """A task's render time. True for the first few: past those the estimate barely moves and each task picks
        it up at its next poll anyway (waking all of them on every finish cost thousands of wake-ups a run)."""
        self.times.add(seconds)
        self._unobserved.clear()
        self._observed += 1
        return self._observed <= _WAKE_ON_OBSERVATIONS

    def scouts(self) -> int:
        """Scouts for the tasks waiting on a first render time: more when many wait, within the request budget
        (a scout polls several times a second early on; at a few requests per second the default few must do)."""
        policy = self.policy
        rps = self._rps
        most = policy.max_scouts if rps is None else min(policy.max_scouts, max(policy.scouts, int(rps / 4)))
        return min(most, scout_count(len(self._unobserved), policy))

    def next_poll(self, key: str, *, created: float, last_poll: float | None, batched: bool = False) -> float:
        """When to poll the task of ``key`` next (see ``next_poll_at``)."""
        rank: int | None = None
        scouts = self.policy.scouts
        if not len(self.times):
            order = list(self._unobserved)
            scouts = self.scouts()
            position = order.index(key) if key in self._unobserved else len(order)
            rank = position if position < scouts else None
        return next_poll_at(
            created=created,
            last_poll=last_poll,
            times=self.times,
            scout_rank=rank,
            scout_count=scouts,
            policy=self.policy,
            rng=self._rng,
            batched=batched,
        )

    def overdue_after(self) -> float:
        """Seconds after its creation at which a task still reported running is worth asking about on its own:
        twice the slowest render seen (or than the first estimate, before any)."""
        return 2 * (self.times.quantile(1.0) if len(self.times) else self.policy.initial_estimate)
