"""The simulator's memory: options, tasks, per-key accounting, fault dice and counters.

Everything here is plain Python guarded by one lock, so the HTTP handlers (on the server's event loop), render
workers (threads) and ``LocalSimulator.stats()`` (the caller's thread) can all touch it. A task's status is not
stored: it is computed from the monotonic clock whenever someone asks, which keeps the state machine trivially
consistent and deterministic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.providers.local.persist import StateStore
    from orchestrator.providers.local.validation import CreateRequest

DEFAULT_FAILURE_MESSAGE = "Failure to pass the risk control system"
DIALECTS: tuple[str, ...] = ("cometapi", "kling", "gateway")
GATEWAY_INNER_FORMS: tuple[str, ...] = ("envelope", "task")
# The kling dialect's default key pair (``LocalSimulator.LOCAL_ACCESS_KEY`` / ``LOCAL_SECRET_KEY`` repeat them).
LOCAL_ACCESS_KEY = "local-access-key"
LOCAL_SECRET_KEY = "local-secret-key-for-hs256-signing"
MIN_SECRET_BYTES = 32
# Units charged per finished task, by (mode, duration): Kling's card for kling-v1-6 on this route (docs/wire.md,
# "Limits"). The simulator charges every model by it.
RATE_CARD: dict[tuple[str, int], float] = {("std", 5): 2.0, ("std", 10): 4.0, ("pro", 5): 3.5, ("pro", 10): 7.0}


def units_for(mode: str, duration: int) -> float:
    """Units a successful task of this mode and duration costs (longer durations scale from the 5 s price)."""
    five = RATE_CARD.get((mode, 5), RATE_CARD[("std", 5)])
    return RATE_CARD.get((mode, duration), five * duration / 5)


def format_units(units: float) -> str:
    """Units as the wire writes ``final_unit_deduction``: a string, no trailing zeros ("2", "3.5")."""
    return f"{units:g}"


@dataclass(frozen=True)
class SimulatorOptions:
    """How the simulator behaves. Every rate is a probability per request (or per create) in 0..1."""

    render_time: float = 3.0  # mean seconds from submit to succeed
    render_jitter: float = 0.25  # relative jitter (uniform +/-), deterministic with seed
    processing_after: float = 0.2  # fraction of render_time before status goes submitted -> processing
    failure_rate: float = 0.0  # tasks that end `failed`
    failure_message: str = DEFAULT_FAILURE_MESSAGE
    rate_1302: float = 0.0  # requests answered 429 + 1302
    rate_1303: float = 0.0  # creates answered 429 + 1303 (in addition to the cap)
    rate_5xx: float = 0.0  # requests answered 500/503/504 + 5000/5001/5002
    drop_rate: float = 0.0  # requests whose connection is dropped with no answer
    drop_after_create_rate: float = 0.0  # creates that ARE recorded but whose answer is dropped (ambiguous create)
    concurrency_cap: int | None = None  # tasks in flight per key; over it create answers 429 + 1303
    account_exhausted_after: int | None = None  # after N successful creates per key, create answers 429 + 1102
    seed: int | None = None
    cheap_video: bool = False  # tiny frames, few fps: for benchmarks
    caption: bool = True  # burn the shot's external id into the animatic
    fps: int = 24
    storage_dir: Path | None = None  # where videos are written (a temp dir if None)
    state_dir: Path | None = None  # remember tasks and videos here across restarts (None: in memory only)
    api_keys: frozenset[str] | None = None  # accepted keys; None = any non-empty bearer token
    # Which provider the simulator imitates (docs/simulator.md): "cometapi" (the Kling contract under /kling, as the
    # seed page writes it), "kling" (Kling direct: /v1 routes, JWT auth) or "gateway" (CometAPI as it really is: a
    # new-api gateway over several upstream accounts, query answers wrapped, no list, no lookup).
    dialect: str = "cometapi"
    upstream_accounts: int = 3  # gateway: creates spread over this many upstream accounts
    not_visible_for: float = 0.5  # gateway: seconds after a create during which a query answers task_not_exist
    bill_then_524_rate: float = 0.0  # gateway: creates that are billed but answered 524 with an HTML page
    gateway_inner: str = "envelope"  # gateway: a query's data.data is the whole Kling envelope, or "task" only
    disabled_models: frozenset[str] = frozenset()  # gateway: models with no channel (create answers 503)
    # kling: accepted key pairs, access key -> secret key (None: LOCAL_ACCESS_KEY -> LOCAL_SECRET_KEY)
    kling_keys: Mapping[str, str] | None = None

    RATES: ClassVar[tuple[str, ...]] = (
        "failure_rate",
        "rate_1302",
        "rate_1303",
        "rate_5xx",
        "drop_rate",
        "drop_after_create_rate",
        "processing_after",
        "bill_then_524_rate",
    )

    def __post_init__(self) -> None:
        for name in self.RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"simulator option {name} must be between 0 and 1, not {value}")
        if self.render_time < 0 or not 0.0 <= self.render_jitter <= 1.0:
            raise ConfigError("simulator render_time must be >= 0 and render_jitter between 0 and 1")
        if self.dialect not in DIALECTS:
            raise ConfigError(f"simulator dialect {self.dialect!r} is unknown: use one of {', '.join(DIALECTS)}")
        if self.gateway_inner not in GATEWAY_INNER_FORMS:
            raise ConfigError(f"simulator gateway_inner must be one of {', '.join(GATEWAY_INNER_FORMS)}")
        # HS256 wants a key of at least 32 bytes (PyJWT warns below that; Kling's own secrets are 32 characters).
        if self.kling_keys is not None and any(len(s.encode()) < MIN_SECRET_BYTES for s in self.kling_keys.values()):
            raise ConfigError(f"simulator kling secret keys must be at least {MIN_SECRET_BYTES} bytes long")
        if self.upstream_accounts < 1 or self.not_visible_for < 0:
            raise ConfigError("simulator upstream_accounts must be >= 1 and not_visible_for >= 0")
        if self.fps < 1:
            raise ConfigError("simulator fps must be at least 1")
        if self.state_dir is not None and self.storage_dir is not None:
            raise ConfigError("give the simulator a state folder or a video storage folder, not both")
        for name in ("concurrency_cap", "account_exhausted_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"simulator option {name} must be >= 0")


# Options that may be changed at runtime (admin route / ``configure``), with the JSON types they accept.
_TUNABLE: dict[str, tuple[type, ...]] = {
    "render_time": (int, float),
    "render_jitter": (int, float),
    "processing_after": (int, float),
    "failure_rate": (int, float),
    "failure_message": (str,),
    "rate_1302": (int, float),
    "rate_1303": (int, float),
    "rate_5xx": (int, float),
    "drop_rate": (int, float),
    "drop_after_create_rate": (int, float),
    "concurrency_cap": (int, type(None)),
    "account_exhausted_after": (int, type(None)),
    "seed": (int, type(None)),
    "cheap_video": (bool,),
    "caption": (bool,),
    "fps": (int,),
    "not_visible_for": (int, float),
    "bill_then_524_rate": (int, float),
    "gateway_inner": (str,),
}
_FLOATS = {name for name, kinds in _TUNABLE.items() if float in kinds}


def public_options(options: SimulatorOptions) -> dict[str, Any]:
    """The tunable options as JSON (never the accepted keys or paths)."""
    return {name: getattr(options, name) for name in _TUNABLE}


def updated_options(options: SimulatorOptions, changes: dict[str, Any]) -> SimulatorOptions:
    """``options`` with ``changes`` applied, after checking names and types (a ``ConfigError`` names the problem)."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        kinds = _TUNABLE.get(name)
        if kinds is None:
            raise ConfigError(f"unknown simulator option {name!r}; known: {', '.join(sorted(_TUNABLE))}")
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ConfigError(f"simulator option {name} has the wrong type ({type(value).__name__})")
        clean[name] = float(cast(float, value)) if name in _FLOATS else value
    return dataclasses.replace(options, **clean)


@dataclass(frozen=True)
class SimulatorStats:
    """A snapshot of the counters, for tests and benchmarks to prove what the simulator saw.

    ``submissions`` counts accepted creates per external_task_id (anything above 1 would be a double charge);
    ``max_in_flight`` is the high-water mark of tasks in flight for any one key, ``in_flight`` the current total.
    """

    creates_attempted: int
    creates_accepted: int
    duplicates_refused: int
    submissions: dict[str, int]
    in_flight: int
    max_in_flight: int
    requests: dict[str, int]  # by route, e.g. "POST /kling/v1/videos/multi-image2video"
    faults: dict[str, int]  # by kind: drop, drop_after_create, 1302, 1303, 1102, 5xx, task_failed
    tasks: dict[str, int]  # by current status
    renders_completed: int

    # Billing, per account (an upstream account under the gateway dialect, else the key's label): creates billed,
    # units charged for tasks that succeeded, and creates billed again for an external id already billed elsewhere.
    billed: dict[str, int] = field(default_factory=dict)
    units_charged: dict[str, float] = field(default_factory=dict)
    duplicate_bills: int = 0
    billed_twice: list[str] = field(default_factory=list)  # external ids billed on more than one account
    in_flight_by_account: dict[str, int] = field(default_factory=dict)
    dialect: str = "cometapi"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SimTask:
    """One task as the simulator remembers it. Status is derived from the clock (see ``status_at``)."""

    task_id: str
    key_id: str
    external_task_id: str | None
    created_mono: float
    created_ms: int
    render_time: float
    processing_after: float
    fails: bool
    failure_message: str
    duration: int
    mode: str = "std"
    account: str = ""  # the account that holds (and bills) the task; "" means the key's own (key_id)
    render: Future[None] | None = None
    rendered_mono: float | None = None  # set by the render worker when the file is in place

    def __post_init__(self) -> None:
        self.account = self.account or self.key_id

    @property
    def units(self) -> float:
        return units_for(self.mode, self.duration)

    def status_at(self, now: float) -> tuple[str, str, float]:
        """(status, status message, monotonic time the status began) at ``now``.

        ``succeed`` needs both the render time elapsed and the file written; a render that raised ends ``failed``.
        """
        elapsed = now - self.created_mono
        processing_at = self.created_mono + self.processing_after * self.render_time
        deadline = self.created_mono + self.render_time
        if elapsed < self.processing_after * self.render_time:
            return "submitted", "", self.created_mono
        if elapsed < self.render_time:
            return "processing", "", processing_at
        if self.fails:
            return "failed", self.failure_message, deadline
        if self.render is not None and self.render.done() and self.rendered_mono is not None:
            return "succeed", "", max(deadline, self.rendered_mono)
        if self.render is not None and self.render.done():
            return "failed", f"render failed: {self.render.exception()}", deadline
        return "processing", "", processing_at


@dataclass
class _KeyAccount:
    tasks: dict[str, SimTask] = field(default_factory=dict)
    by_external: dict[str, SimTask] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    accepted: int = 0
    max_in_flight: int = 0


class Refusal(Exception):
    """A create refused for an account or capacity reason: (HTTP status, business code, message)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def key_id(api_key: str) -> str:
    """A stable label for an API key that never reveals it (the key itself is never stored in counters)."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


class SimulatorState:
    """Tasks per key, fault dice and counters. Thread-safe; every public method takes the lock."""

    def __init__(
        self,
        options: SimulatorOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        store: StateStore | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.options = options
        self.store = store
        self._last_id = store.last_task_id if store is not None else 0
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._rng = random.Random(self.options.seed)
        self._accounts: dict[str, _KeyAccount] = {}
        # Never below an id already handed out (before a reset, or by an earlier run of a persistent simulator).
        self._next_id = max(self._last_id, 860_000_000_000_000_000 + self._rng.randrange(10**14))
        self._attempted = 0
        self._accepted = 0
        self._duplicates = 0
        self._submissions: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._renders = 0
        self._billed: Counter[str] = Counter()
        self._billed_on: dict[str, set[str]] = {}  # external id -> accounts that billed it
        self._duplicate_bills = 0

    def reset(self) -> None:
        """Forget every task and counter (files already written stay on disk)."""
        with self._lock:
            self._reset_locked()
        if self.store is not None:
            self.store.record_reset()

    def restore(self, tasks: list[SimTask]) -> None:
        """Take back tasks remembered by an earlier run: ids, external ids, submissions, bills and in-flight slots."""
        with self._lock:
            for task in tasks:
                account = self._accounts.setdefault(task.account, _KeyAccount())
                account.tasks[task.task_id] = task
                account.active.add(task.task_id)
                self._record_locked(account, task)
            now = self._clock()
            for account in self._accounts.values():
                self._prune_locked(account, now)
                account.max_in_flight = max(account.max_in_flight, len(account.active))

    def _record_locked(self, account: _KeyAccount, task: SimTask) -> None:
        """Count an accepted (so billed) task on its account."""
        external = task.external_task_id
        if external is not None:
            account.by_external[external] = task
            self._submissions[external] += 1
            billed_on = self._billed_on.setdefault(external, set())
            if billed_on:
                self._duplicate_bills += 1  # the same external id, billed again on another account
            billed_on.add(task.account)
        account.accepted += 1
        self._accepted += 1
        self._billed[task.account] += 1

    def configure(self, changes: dict[str, Any]) -> SimulatorOptions:
        with self._lock:
            self.options = updated_options(self.options, changes)
            if "seed" in changes:
                self._rng = random.Random(self.options.seed)
            return self.options

    def now(self) -> float:
        return self._clock()

    # -- fault dice -------------------------------------------------------------------------------------------

    def count_request(self, route: str) -> None:
        with self._lock:
            self._requests[route] += 1

    def count_create_attempt(self) -> None:
        with self._lock:
            self._attempted += 1

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def roll(self, kind: str, rate: float) -> bool:
        """One throw of the seeded dice; counts the fault when it lands. Rates of 0 never consume randomness."""
        if rate <= 0:
            return False
        with self._lock:
            hit = self._rng.random() < rate
            if hit:
                self._faults[kind] += 1
            return hit

    def choose(self, options: tuple[Any, ...]) -> Any:
        with self._lock:
            return self._rng.choice(options)

    # -- tasks ------------------------------------------------------------------------------------------------

    def _account(self, key: str) -> _KeyAccount:
        return self._accounts.setdefault(key_id(key), _KeyAccount())

    def _prune_locked(self, account: _KeyAccount, now: float) -> None:
        finished = {tid for tid in account.active if account.tasks[tid].status_at(now)[0] in ("succeed", "failed")}
        account.active -= finished

    def upstream_accounts(self) -> tuple[str, ...]:
        """The gateway's upstream account labels (``upstream-1`` ...)."""
        return tuple(f"upstream-{n}" for n in range(1, self.options.upstream_accounts + 1))

    def create(
        self,
        *,
        api_key: str,
        external_task_id: str | None,
        duration: int,
        mode: str = "std",
        request: CreateRequest | None = None,
    ) -> SimTask:
        """Record a new task, or raise ``Refusal`` (duplicate external id, account used up, over the cap).

        Under the gateway dialect the task goes to one of the upstream accounts (see ``_create_on_gateway_locked``).
        With a state store and the ``request``, the task is also journaled before this returns (so before the
        client can learn its id).
        """
        with self._lock:
            if self.options.dialect == "gateway":
                task = self._create_on_gateway_locked(api_key, external_task_id, duration, mode)
            else:
                task = self._create_locked(key_id(api_key), api_key, external_task_id, duration, mode)
        if self.store is not None and request is not None:
            self.store.record_create(task, request)
        return task

    def _create_locked(
        self, label: str, api_key: str, external_task_id: str | None, duration: int, mode: str
    ) -> SimTask:
        account = self._accounts.setdefault(label, _KeyAccount())
        if external_task_id is not None and external_task_id in account.by_external:
            self._duplicates += 1
            raise Refusal(400, 1201, f"external_task_id {external_task_id!r} is already used by another task")
        self._check_capacity_locked(account)
        task = self._new_task_locked(api_key, external_task_id, duration, mode, label)
        account.tasks[task.task_id] = task
        account.active.add(task.task_id)
        self._record_locked(account, task)
        account.max_in_flight = max(account.max_in_flight, len(account.active))
        return task

    def _create_on_gateway_locked(
        self, api_key: str, external_task_id: str | None, duration: int, mode: str
    ) -> SimTask:
        """Try the upstream accounts as a new-api gateway does: a seeded random first pick, then the others in turn.

        A 429 refusal (cap, 1303, 1102) moves on to the next account; any other refusal (a duplicate external id on
        the account tried) is final. When every account answered 429, the last refusal is raised: the gateway
        answers it as a saturated pool. ``external_task_id`` is unique per upstream account only, so a resend that
        lands on another account is created, and billed, again.
        """
        labels = self.upstream_accounts()
        first = self._rng.randrange(len(labels))
        last: Refusal | None = None
        for label in labels[first:] + labels[:first]:
            try:
                return self._create_locked(label, api_key, external_task_id, duration, mode)
            except Refusal as refusal:
                if refusal.status != 429:
                    raise
                last = refusal
        assert last is not None
        self._faults["saturated"] += 1
        raise last

    def _check_capacity_locked(self, account: _KeyAccount) -> None:
        options = self.options
        if options.account_exhausted_after is not None and account.accepted >= options.account_exhausted_after:
            self._faults["1102"] += 1
            raise Refusal(429, 1102, "account resource pack is used up: please top up")
        self._prune_locked(account, self._clock())
        if options.concurrency_cap is not None and len(account.active) >= options.concurrency_cap:
            self._faults["1303"] += 1
            raise Refusal(429, 1303, "parallel task over resource pack limit")
        if options.rate_1303 > 0 and self._rng.random() < options.rate_1303:
            self._faults["1303"] += 1
            raise Refusal(429, 1303, "parallel task over resource pack limit")

    def _new_task_locked(
        self, api_key: str, external_task_id: str | None, duration: int, mode: str, account: str
    ) -> SimTask:
        options = self.options
        jitter = self._rng.uniform(-options.render_jitter, options.render_jitter) if options.render_jitter else 0.0
        fails = options.failure_rate > 0 and self._rng.random() < options.failure_rate
        if fails:
            self._faults["task_failed"] += 1
        self._next_id += 1 + self._rng.randrange(1000)
        self._last_id = self._next_id
        return SimTask(
            task_id=str(self._next_id),
            key_id=key_id(api_key),
            external_task_id=external_task_id,
            created_mono=self._clock(),
            created_ms=int(time.time() * 1000),
            render_time=max(0.0, options.render_time * (1.0 + jitter)),
            processing_after=options.processing_after,
            fails=fails,
            failure_message=options.failure_message,
            duration=duration,
            mode=mode,
            account=account,
        )

    def mark_rendered(self, task: SimTask) -> None:
        if self.store is not None:
            self.store.record_rendered(task.task_id)  # journaled before anyone is told the video exists
        with self._lock:
            task.rendered_mono = self._clock()
            self._renders += 1

    def get(self, *, api_key: str, task_id: str) -> SimTask | None:
        """The key's task with this id, whichever account holds it (a gateway key's tasks span its upstreams)."""
        owner = key_id(api_key)
        with self._lock:
            for account in self._accounts.values():
                task = account.tasks.get(task_id)
                if task is not None and task.key_id == owner:
                    return task
            return None

    def find(self, *, api_key: str, external_task_id: str) -> SimTask | None:
        with self._lock:
            return self._account(api_key).by_external.get(external_task_id)

    def page(self, *, api_key: str, page_num: int, page_size: int) -> list[SimTask]:
        """Tasks newest first, as Kling lists them."""
        with self._lock:
            tasks = sorted(self._account(api_key).tasks.values(), key=lambda t: t.created_mono, reverse=True)
        start = (page_num - 1) * page_size
        return tasks[start : start + page_size]

    def stats(self) -> SimulatorStats:
        with self._lock:
            now = self._clock()
            statuses: Counter[str] = Counter()
            units: dict[str, float] = {}
            for label, account in self._accounts.items():
                self._prune_locked(account, now)
                for task in account.tasks.values():
                    status = task.status_at(now)[0]
                    statuses[status] += 1
                    if status == "succeed":
                        units[label] = units.get(label, 0.0) + task.units
            return SimulatorStats(
                creates_attempted=self._attempted,
                creates_accepted=self._accepted,
                duplicates_refused=self._duplicates,
                submissions=dict(self._submissions),
                in_flight=sum(len(a.active) for a in self._accounts.values()),
                max_in_flight=max((a.max_in_flight for a in self._accounts.values()), default=0),
                requests=dict(self._requests),
                faults=dict(self._faults),
                tasks=dict(statuses),
                renders_completed=self._renders,
                billed=dict(self._billed),
                units_charged=dict(units),
                duplicate_bills=self._duplicate_bills,
                billed_twice=sorted(e for e, accounts in self._billed_on.items() if len(accounts) > 1),
                in_flight_by_account={label: len(a.active) for label, a in self._accounts.items()},
                dialect=self.options.dialect,
            )

    def all_tasks(self) -> Iterator[SimTask]:
        with self._lock:
            tasks = [t for a in self._accounts.values() for t in a.tasks.values()]
        yield from tasks
