"""One run's side of the shared budget: the leases it holds, and Redis going away and coming back.

``BudgetSession`` wraps ``SharedBudget`` for the sending gate. It remembers the leases this run holds (so one call
refreshes them all, and they are taken back after an outage), and it never lets Redis being away cost a task:

- ``admit`` waits: while Redis is away it says so once (``notice``), waits for it with backoff, then replays what
  could not be told meanwhile (binds, releases), refreshes every lease held, says it answers again, and admits;
- ``bind``, ``refresh``, ``release`` and ``cool_down`` never raise ``BudgetUnavailableError``: what they could not
  tell Redis is kept and told once it answers (a release lost would leave a slot taken for ``lease_ttl`` and the
  spend uncounted; replayed, it counts once, the scripts being idempotent);
- ``unknown`` stops refreshing a create whose outcome is unknown: its lease stays until it expires (the task may
  exist), unless the create is found later (``bind``) or proven absent (``release(key, charged=0)``).

Admission order in the gate: this run's own slot first (``AdaptiveSlots``, ``--concurrency``), then the shared
one, so a run never holds shared slots it cannot use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import anyio

from orchestrator.budget.shared import Admission, Outcome, SharedBudget
from orchestrator.errors import BudgetUnavailableError

Notice = Callable[[str], None]


class BudgetSession:
    """The gate's seam on the shared budget, for one run. ``notice`` gets the one-line messages for the user."""

    def __init__(self, budget: SharedBudget, *, notice: Notice, backoff_base: float = 0.5, backoff_cap: float = 30.0):
        self.budget = budget
        self._notice = notice
        self._backoff = (backoff_base, backoff_cap)
        self.held: dict[str, float] = {}  # lease key -> units reserved, for every lease this run refreshes
        self._binds: dict[str, tuple[str, float]] = {}  # told to nobody yet: old key -> (task id, units)
        self._releases: dict[str, float] = {}  # told to nobody yet: key -> units charged
        self._cooldown = 0.0  # the longest cooldown asked for while Redis was away
        self._recovery = anyio.Lock()
        self.away = False  # Redis is unreachable: new shots wait, tasks in flight are followed
        self.outages = 0

    async def admit(self, key: str, *, units: float) -> Admission:
        """A shared slot for the create of ``key``, waiting while the budget is full, cooling down or away.
        Answers ``ADMITTED``, or ``OVER_CAP`` (then stop submitting with ``admission.exhausted(units)``)."""
        while True:
            await self._recover()
            try:
                admission = await self.budget.acquire(key, units=units)
            except BudgetUnavailableError as exc:
                self._went_away(exc)
                continue
            if admission.outcome is Outcome.ADMITTED:
                self.held[key] = units
            return admission

    async def bind(self, key: str, task_id: str) -> None:
        """The create of ``key`` answered with ``task_id``: the lease follows the task."""
        units = self.held.pop(key, 0.0)
        self.held[task_id] = units
        try:
            await self.budget.bind(key, task_id, units=units)
        except BudgetUnavailableError as exc:
            self._binds[key] = (task_id, units)
            self._went_away(exc)

    async def adopt(self, task_ids: Iterable[str], *, units: float = 0.0) -> None:
        """Tasks in flight from an earlier run of this project (resumed): their leases are this run's to refresh,
        taken again if they had lapsed (the provider counts those tasks whatever Redis says)."""
        for task_id in task_ids:
            self.held.setdefault(task_id, units)
        await self.refresh()

    async def refresh(self) -> None:
        """Every lease this run holds lives another ``lease_ttl``: call it from the polling loop, once a round.
        While Redis is away it asks once whether it is back (never waits), and catches up if so."""
        if self.away:
            await self.catch_up()
            return
        if not self.held:
            return
        try:
            await self.budget.refresh(self.held)
        except BudgetUnavailableError as exc:
            self._went_away(exc)

    def unknown(self, key: str) -> None:
        """The create of ``key`` may or may not have made a task: stop refreshing its lease, which then stays
        until it expires, holding the slot the task may take."""
        self.held.pop(key, None)

    async def release(self, key: str, *, charged: float) -> None:
        """The task of ``key`` ended (``charged`` units; 0 when it failed or was never created)."""
        self.held.pop(key, None)
        try:
            await self.budget.release(key, charged=charged)
        except BudgetUnavailableError as exc:
            self._releases[key] = charged
            self._went_away(exc)

    async def cool_down(self, seconds: float) -> None:
        """A 1302/1303/429 seen by this run: every run sharing the budget waits ``seconds``."""
        try:
            await self.budget.cool_down(seconds)
        except BudgetUnavailableError as exc:
            self._cooldown = max(self._cooldown, seconds)
            self._went_away(exc)

    async def catch_up(self) -> bool:
        """If Redis is back, tell it what it missed now (without waiting for it otherwise): for the polling loop,
        and for the end of a run, whose last releases must not wait for an admission that never comes. True when
        nothing is left untold."""
        if not self.away:
            return True
        if self._recovery.locked() or not await self.budget.reachable():
            return False
        await self._recover()
        return not self.away

    # ---- Redis away -----------------------------------------------------------------------------------------

    def _went_away(self, exc: BudgetUnavailableError) -> None:
        if not self.away:
            self.away = True
            self.outages += 1
            self._notice(exc.message)

    async def _recover(self) -> None:
        """Once Redis answers again: what it missed, then the leases held; one task does it, the others wait."""
        if not self.away:
            return
        async with self._recovery:
            while self.away:
                base, cap = self._backoff
                await self.budget.wait_reachable(base=base, cap=cap)
                try:
                    await self._replay()
                except BudgetUnavailableError:
                    continue  # gone again at once: wait again
                self.away = False
                self._notice(f"the shared budget at {self.budget.config.display_url} answers again: admitting")

    async def _replay(self) -> None:
        for key, (task_id, units) in list(self._binds.items()):
            await self.budget.bind(key, task_id, units=units)
            del self._binds[key]
        for key, charged in list(self._releases.items()):
            await self.budget.release(key, charged=charged)
            del self._releases[key]
        if self._cooldown:
            await self.budget.cool_down(self._cooldown)
            self._cooldown = 0.0
        if self.held:
            await self.budget.refresh(self.held)
