"""The studio's shared budget: tasks in flight, a cooldown and a daily spend, shared by every run through Redis.

``SharedBudget`` is the seam the sending gate calls; each call is one round trip to one Lua script
(``orchestrator.budget.scripts``), atomic across machines. The model and every key are in docs/budget.md.

    budget = SharedBudget.connect(config, project="trailer")
    admission = await budget.acquire(external_id, units=estimate)   # waits while full or cooling down
    ...the create is sent...
    await budget.bind(external_id, task_id, units=estimate)          # when its answer arrives
    await budget.refresh(task_ids)                                   # whoever polls the tasks
    await budget.release(task_id, charged=units)                     # when the task ends

A create whose outcome is unknown keeps its lease, unrefreshed, until it expires: the task may exist. Redis going
away makes every call raise ``BudgetUnavailableError``; ``wait_reachable`` waits for it to answer again.
"""

from __future__ import annotations

import math
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio

from orchestrator.budget import scripts
from orchestrator.budget.config import BudgetConfig, import_redis
from orchestrator.errors import BudgetError, BudgetExhaustedError, BudgetUnavailableError
from orchestrator.run.limits import backoff_delay

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
# A lease is "about to expire" in ``orchestrator budget`` once it went unrefreshed for half its time to live.
EXPIRING_FRACTION = 0.5


class Outcome(StrEnum):
    """What an admission answered."""

    ADMITTED = "admitted"
    FULL = "full"  # every slot is taken: ask again later
    COOLING = "cooling"  # a run was told "too many": nobody is admitted for ``retry_after`` seconds
    OVER_CAP = "over_cap"  # this create would pass the studio's spend cap: stop submitting


@dataclass(frozen=True)
class Admission:
    """The answer to one ``admit``. ``in_use``: slots taken, this one included when admitted."""

    outcome: Outcome
    in_use: int
    slots: int
    retry_after: float = 0.0  # COOLING: seconds until the cooldown ends
    left: float | None = None  # OVER_CAP: units left under the cap (may be below the create's estimate, or < 0)
    cap: float | None = None

    @property
    def admitted(self) -> bool:
        return self.outcome is Outcome.ADMITTED

    def exhausted(self, units: float) -> BudgetExhaustedError:
        """The one line a run stops submitting with, for an ``OVER_CAP`` answer to a create of ``units``."""
        left = max(0.0, self.left or 0.0)
        cap = self.cap or 0.0
        return BudgetExhaustedError(
            f"the studio's spend cap of {cap:g} units for today is reached: {left:g} left, the next shot needs "
            f"{units:g}; tasks in flight finish. Raise budget.units_cap and run again to resume",
            cap=cap,
            left=left,
        )


@dataclass(frozen=True)
class LeaseInfo:
    """One slot taken: by which task (external id until the create's answer, then the task id), project, host."""

    key: str
    project: str
    host: str
    units: float  # reserved: the estimate until the task is charged
    expires_in: float  # seconds until it lapses unless refreshed
    held_for: float  # seconds since the slot was taken


@dataclass(frozen=True)
class BudgetState:
    """The shared state, as ``orchestrator budget`` shows it."""

    day: str  # the UTC day the spend counts for
    slots: int | None  # the slot count last given by a run (None before any run)
    cap: float | None
    spent: float
    cooldown: float  # seconds
    lease_ttl: float
    leases: tuple[LeaseInfo, ...] = field(default_factory=tuple)

    @property
    def in_use(self) -> int:
        return len(self.leases)

    @property
    def reserved(self) -> float:
        return sum(lease.units for lease in self.leases)

    @property
    def left(self) -> float | None:
        return None if self.cap is None else self.cap - self.spent - self.reserved

    def by_owner(self) -> dict[tuple[str, str], int]:
        """Slots in use per (project, host)."""
        return dict(Counter((lease.project, lease.host) for lease in self.leases))

    def expiring(self) -> tuple[LeaseInfo, ...]:
        """Leases unrefreshed for over half their time to live: their run may be dead, or its outcome unknown."""
        return tuple(lease for lease in self.leases if lease.expires_in < self.lease_ttl * EXPIRING_FRACTION)

    def to_json(self) -> dict[str, object]:
        return {
            "day": self.day,
            "slots": self.slots,
            "in_use": self.in_use,
            "by_owner": [
                {"project": project, "host": host, "slots": count}
                for (project, host), count in sorted(self.by_owner().items())
            ],
            "cooldown": self.cooldown,
            "spent": self.spent,
            "reserved": self.reserved,
            "cap": self.cap,
            "left": self.left,
            "lease_ttl": self.lease_ttl,
            "leases": [asdict(lease) for lease in self.leases],
            "expiring": [lease.key for lease in self.expiring()],
        }


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


class SharedBudget:
    """A run's handle on the shared budget. ``client`` is a ``redis.asyncio.Redis`` (or fakeredis) opened with
    ``decode_responses=True``; ``connect`` opens one from the config's URL."""

    def __init__(
        self,
        config: BudgetConfig,
        client: Any,
        *,
        project: str,
        host: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.project = project
        self.host = host or socket.gethostname()
        self._client = client
        self._clock = clock
        self._errors = _redis_errors()
        self._ttl_ms = max(1, math.ceil(config.lease_ttl * 1000))
        prefix = "{" + config.prefix + "}"  # a hash tag: every key on one Redis Cluster node, as scripts need
        self._fixed = [f"{prefix}:{name}" for name in ("leases", "project", "host", "units", "since", "cooldown")]
        self._prefix = prefix
        self._admit = client.register_script(scripts.ADMIT)
        self._bind = client.register_script(scripts.BIND)
        self._refresh = client.register_script(scripts.REFRESH)
        self._release = client.register_script(scripts.RELEASE)
        self._cool_down = client.register_script(scripts.COOL_DOWN)
        self._state = client.register_script(scripts.STATE)

    @classmethod
    def connect(cls, config: BudgetConfig, *, project: str, host: str | None = None) -> SharedBudget:
        """A budget on a new client for ``config.url`` (nothing is sent until the first call)."""
        redis = import_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            config.url,
            decode_responses=True,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
            # One quick retry: a connection that died with a restarted Redis is replaced at once; longer outages
            # are the gate's to wait out (wait_reachable), not a call's. Every script may safely run twice.
            retry=Retry(NoBackoff(), 1),
        )
        return cls(config, client, project=project, host=host)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- the seam -----------------------------------------------------------------------------------------

    async def admit(self, key: str, *, units: float) -> Admission:
        """Take a slot for the create of ``key`` (its external id), reserving ``units``, if one is free, no
        cooldown runs and the spend cap allows. Asking again for a lease already held answers admitted."""
        cap = self.config.units_cap
        answer = await self._run(
            self._admit,
            [key, self.project, self.host, _number(units), str(self.config.slots), "" if cap is None else _number(cap)],
            with_ttl=True,
        )
        outcome, in_use, cooling_ms, left = answer
        return Admission(
            outcome=Outcome(outcome),
            in_use=int(in_use),
            slots=self.config.slots,
            retry_after=int(cooling_ms) / 1000,
            left=float(left) if left else None,
            cap=cap,
        )

    async def acquire(self, key: str, *, units: float, sleep: Sleep = anyio.sleep) -> Admission:
        """``admit`` until admitted or over the cap, waiting out cooldowns and full slots (each wait jittered, so
        runs waiting together do not all ask at the same instant). Raises ``BudgetUnavailableError``."""
        while True:
            admission = await self.admit(key, units=units)
            if admission.outcome in (Outcome.ADMITTED, Outcome.OVER_CAP):
                return admission
            wait = admission.retry_after if admission.outcome is Outcome.COOLING else self.config.wait_poll
            await sleep(wait + random.uniform(0, self.config.wait_poll / 2))

    async def bind(self, key: str, task_id: str, *, units: float = 0.0) -> bool:
        """Re-key the lease of ``key`` to ``task_id`` when the create's answer arrives. False when the lease had
        lapsed meanwhile: the task then takes a slot again (it exists), reserving ``units``."""
        moved = await self._run(self._bind, [key, task_id, self.project, self.host, _number(units)], with_ttl=True)
        return bool(int(moved))

    async def refresh(self, keys: Iterable[str]) -> int:
        """Every lease in ``keys`` lives another ``lease_ttl``, in one round trip; leases gone (Redis restarted
        empty, or away longer than the ttl) are taken again. Returns how many were taken again."""
        keys = list(keys)
        if not keys:
            return 0
        args = [self.project, self.host, str(self._ttl_ms), *keys]
        return int(await self._run(self._refresh, args))

    async def release(self, key: str, *, charged: float) -> bool:
        """The task ended: its slot is free and ``charged`` units count as spent today (a failed task: 0). Safe
        to call twice. False when the lease had lapsed already."""
        return bool(int(await self._run(self._release, [key, _number(charged)])))

    async def cool_down(self, seconds: float) -> float:
        """Every run sharing the budget waits ``seconds`` before its next admission (a 1302/1303/429 was seen);
        a longer cooldown already running is kept. Returns the cooldown in force, in seconds."""
        return int(await self._run(self._cool_down, [str(max(1, math.ceil(seconds * 1000)))])) / 1000

    async def cooldown(self) -> float:
        """Seconds left of the shared cooldown (0 when none runs)."""
        return max(0, int(await self._call(self._client.pttl(self._fixed[5])))) / 1000

    async def state(self) -> BudgetState:
        """Slots in use and by whom, the cooldown, today's spend and cap, the leases (expired ones swept)."""
        now, leases, projects, hosts, units, since, cooling, spent, slots, cap = await self._run(self._state, [])
        now_ms = int(now)
        project_of, host_of, units_of, since_of = (_pairs(values) for values in (projects, hosts, units, since))
        expiries = _pairs(leases)
        records = tuple(
            LeaseInfo(
                key=key,
                project=project_of.get(key, "?"),
                host=host_of.get(key, "?"),
                units=float(units_of.get(key, 0) or 0),
                expires_in=(float(expiry) - now_ms) / 1000,
                held_for=(now_ms - float(since_of.get(key, now_ms))) / 1000,
            )
            for key, expiry in expiries.items()
        )
        return BudgetState(
            day=self._day(),
            slots=int(slots) if slots else None,
            cap=float(cap) if cap else None,
            spent=float(spent),
            cooldown=max(0, int(cooling)) / 1000,
            lease_ttl=self.config.lease_ttl,
            leases=records,
        )

    # ---- Redis going away -----------------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raises ``BudgetUnavailableError`` unless Redis answers."""
        await self._call(self._client.ping())

    async def reachable(self) -> bool:
        try:
            await self.ping()
        except BudgetUnavailableError:
            return False
        return True

    async def wait_reachable(self, *, base: float = 0.5, cap: float = 30.0, sleep: Sleep = anyio.sleep) -> int:
        """Wait until Redis answers, asking with exponential backoff and jitter; returns the attempts it took.

        After an outage, the gate refreshes the leases of the tasks it follows before it admits again: leases
        that lapsed meanwhile are taken again, so no slot is counted twice or lost."""
        attempt = 1
        while not await self.reachable():
            await sleep(backoff_delay(attempt, base=base, cap=cap))
            attempt += 1
        return attempt

    # ---- plumbing -------------------------------------------------------------------------------------------

    def _keys(self) -> list[str]:
        day = self._day()
        return [
            *self._fixed,
            f"{self._prefix}:spent:{day}",
            f"{self._prefix}:charged:{day}",
            f"{self._prefix}:slots",
            f"{self._prefix}:cap",
            f"{self._prefix}:retired",
        ]

    def _day(self) -> str:
        return utc_day(self._clock())

    async def _run(self, script: Any, args: Sequence[str], *, with_ttl: bool = False) -> Any:
        return await self._call(script(keys=self._keys(), args=[*args, str(self._ttl_ms)] if with_ttl else args))

    async def _call(self, call: Awaitable[T]) -> T:
        """``call``'s answer; any Redis failure as one of our errors, the URL's password never in the message."""
        unreachable, auth_failed, any_error = self._errors
        where = f"the shared budget at {self.config.display_url}"
        try:
            return await call
        except auth_failed:
            raise BudgetError(f"{where} refused the credentials in its URL") from None
        except unreachable as exc:
            raise BudgetUnavailableError(
                f"{where} cannot be reached ({_reason(exc, self.config.url)}): no new shot is sent until it answers; "
                "tasks in flight are followed meanwhile"
            ) from None
        except any_error as exc:
            raise BudgetError(f"{where} failed: {_reason(exc, self.config.url)}") from None


def _redis_errors() -> tuple[tuple[type[Exception], ...], type[Exception], type[Exception]]:
    """redis-py's (unreachable, authentication failed, any) exception classes; fakeredis raises the same."""
    import_redis()
    import redis.exceptions as errors

    # OSError: a socket failing in a way redis-py does not wrap (a reset mid-read, say).
    return (errors.ConnectionError, errors.TimeoutError, OSError), errors.AuthenticationError, errors.RedisError


def _reason(exc: BaseException, url: str) -> str:
    """The error's own words without anything of the URL's secrets (a password could be echoed in a message)."""
    from urllib.parse import urlsplit

    text = str(exc) or type(exc).__name__
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


def _number(value: float) -> str:
    return repr(float(value))


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    """A flat [k1, v1, k2, v2, ...] reply as a dict."""
    return dict(zip(flat[0::2], flat[1::2], strict=True))
