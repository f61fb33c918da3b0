"""The scripted in-memory provider the scheduler tests run against, and the helpers around it."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.lowlevel

from orchestrator.errors import AccountError, ConcurrencyLimitError, DuplicateExternalIdError, TaskNotFoundError
from orchestrator.plan.pricing import Pricing
from orchestrator.plan.work import Render, Wanted, renders_of
from orchestrator.providers.base import Capabilities, Download, Provider, Task, TaskStatus, Video
from orchestrator.run.events import Event, EventBus, Listener
from orchestrator.run.polling import PollPolicy
from orchestrator.run.scheduler import RetryPolicy, RunOptions, Scheduler
from orchestrator.run.writer import StoreWriter
from orchestrator.spec.fingerprint import external_task_id as default_external_id
from orchestrator.spec.shot import ImageRef, ResolvedShot
from orchestrator.store.database import RenderStore
from orchestrator.store.manifest import ManifestStore, load_manifest, manifest_from_state
from orchestrator.store.records import DEFAULT_TAKE
from tests.helpers import hand_shot

FAST_POLL = PollPolicy(
    initial_estimate=0.3,
    probe_start=0.02,
    probe_ratio=1.3,
    scouts=2,
    min_interval=0.005,
    max_interval=0.1,
    deadline=5.0,
)
FAST_RETRY = RetryPolicy(base=0.005, cap=0.02, concurrency_floor=0.0)


def options(**kw: Any) -> RunOptions:
    base: dict[str, Any] = {
        "concurrency": 4,
        "requests_per_second": None,
        "poll": FAST_POLL,
        "retry": FAST_RETRY,
        "congestion_cooldown": 0.02,
        "seed": 1,
    }
    base.update(kw)
    return RunOptions(**base)


def make_shot(shot_id: str, *, prompt: str = "a slow pan", project: str = "demo") -> ResolvedShot:
    images = tuple(
        ImageRef(source="path", ref=f"{n}.png", sha256=hashlib.sha256(f"{shot_id}{n}".encode()).hexdigest())
        for n in range(2)
    )
    return hand_shot(shot_id, images=images, project=project, prompt=prompt)


KLING_LIKE = Capabilities(find_by_external_id=True, absence_is_proof=True)
GATEWAY = Capabilities()


@dataclass
class FakeTask:
    task_id: str
    external_task_id: str
    shot_id: str
    created: float
    render: float
    outcome: str = "succeed"
    message: str = ""


@dataclass
class FakeProvider:
    """A provider with scripted faults. Tasks render for ``render`` seconds of real time."""

    render: float = 0.05
    cap: int | None = None  # account limit on tasks in flight: over it, create answers 1303
    name: str = "fake"
    base_url: str = "http://fake.invalid"
    # By default like Kling direct: a lookup by external id, whose "not found" is proof. ``GATEWAY`` is CometAPI's.
    capabilities: Capabilities = field(default_factory=lambda: KLING_LIKE)
    create_faults: dict[str, list[BaseException]] = field(default_factory=dict)  # raised before creating
    create_then_fail: dict[str, list[BaseException]] = field(default_factory=dict)  # raised after creating
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # shot id -> (status, message)
    download_faults: dict[str, list[BaseException]] = field(default_factory=dict)
    renders: dict[str, float] = field(default_factory=dict)
    find_works: bool = True
    find_faults: list[BaseException] = field(default_factory=list)
    account_error_after: int | None = None
    on_create: Any = None  # called with the shot before each create
    on_get: Any = None  # called with the task id before each poll
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    by_external: dict[str, FakeTask] = field(default_factory=dict)
    create_calls: Counter[str] = field(default_factory=Counter)
    created: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    max_in_flight: int = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def in_flight(self) -> int:
        now = time.time()
        return sum(1 for t in self.tasks.values() if t.created + t.render > now)

    async def create_task(self, shot: ResolvedShot, *, external_task_id: str | None = None) -> Task:
        external = external_task_id or default_external_id(shot)
        self.requests["create"] += 1
        self.create_calls[external] += 1
        if self.on_create is not None:
            self.on_create(shot)
        await anyio.lowlevel.checkpoint()
        faults = self.create_faults.get(shot.id)
        if faults:
            raise faults.pop(0)
        if self.account_error_after is not None and len(self.tasks) >= self.account_error_after:
            raise AccountError("resource pack used up (1102)", code=1102)
        if external in self.by_external:
            raise DuplicateExternalIdError("external_task_id already used (1201)", code=1201)
        if self.cap is not None and self.in_flight() >= self.cap:
            raise ConcurrencyLimitError("parallel task over resource pack limit (1303)", code=1303)
        status, message = self.outcomes.get(shot.id, ("succeed", ""))
        task = FakeTask(
            task_id=str(100000 + len(self.tasks)),
            external_task_id=external,
            shot_id=shot.id,
            created=time.time(),
            render=self.renders.get(shot.id, self.render),
            outcome=status,
            message=message,
        )
        self.tasks[task.task_id] = task
        self.by_external[task.external_task_id] = task
        self.created[task.external_task_id] += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight())
        after = self.create_then_fail.get(shot.id)
        if after:
            raise after.pop(0)
        return self._view(task)

    async def get_task(self, task_id: str) -> Task:
        self.requests["get"] += 1
        if self.on_get is not None:
            self.on_get(task_id)
        await anyio.lowlevel.checkpoint()
        if task_id not in self.tasks:
            raise TaskNotFoundError(f"no task {task_id}")
        return self._view(self.tasks[task_id])

    async def find_task(self, external_task_id: str) -> Task | None:
        self.requests["find"] += 1
        await anyio.lowlevel.checkpoint()
        if self.find_faults:
            raise self.find_faults.pop(0)
        task = self.by_external.get(external_task_id)
        return self._view(task) if (task and self.find_works) else None

    async def download(self, url: str, dest: Path, *, max_bytes: int = 1 << 20) -> Download:
        self.requests["download"] += 1
        await anyio.lowlevel.checkpoint()
        shot_id = url.rsplit("/", 1)[-1]
        faults = self.download_faults.get(shot_id)
        if faults:
            raise faults.pop(0)
        data = f"video of {shot_id}".encode()
        await anyio.Path(dest.parent).mkdir(parents=True, exist_ok=True)
        await anyio.Path(dest).write_bytes(data)
        return Download(path=dest, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))

    def _view(self, task: FakeTask) -> Task:
        now = time.time()
        ms = int(task.created * 1000)
        if now < task.created + task.render * 0.2:
            return Task(task.task_id, TaskStatus.SUBMITTED, external_task_id=task.external_task_id, created_at=ms)
        if now < task.created + task.render:
            return Task(task.task_id, TaskStatus.PROCESSING, external_task_id=task.external_task_id, created_at=ms)
        done = int((task.created + task.render) * 1000)
        if task.outcome == "failed":
            return Task(task.task_id, TaskStatus.FAILED, task.message, task.external_task_id, (), ms, done)
        video = Video(id="v" + task.task_id, url=f"http://fake.invalid/videos/{task.shot_id}", duration="5.1")
        return Task(task.task_id, TaskStatus.SUCCEED, "", task.external_task_id, (video,), ms, done)


def open_store(out: Path, project: str = "demo") -> ManifestStore:
    """The folder's store, with the record API tests seed earlier runs' state through."""
    return ManifestStore.open(out / "manifest.json", project=project)


def plan_renders(
    store: ManifestStore | RenderStore,
    shots: list[ResolvedShot],
    provider: Provider,
    *,
    fresh: Collection[str] = (),
    resend: Collection[str] = (),
) -> tuple[Render, ...]:
    """The renders a run of ``shots`` starts from, decided from the store as the API does (unsalted ids, so tests
    can name them with ``external_task_id(shot)``)."""
    state = _renders(store).state()
    caps = getattr(provider, "capabilities", None) or Capabilities()
    ids = {row.shot_id: row.current_render_id for row in state.shots if row.current_render_id is not None}
    records = manifest_from_state(state).shots
    wanted = [Wanted(shot, DEFAULT_TAKE, records.get(shot.id), ids.get(shot.id)) for shot in shots]
    return renders_of(wanted, absence_is_proof=caps.absence_is_proof, pricing=Pricing(), fresh=fresh, resend=resend)


def scheduler_for(
    provider: Provider,
    store: ManifestStore | RenderStore,
    *,
    listeners: Iterable[Listener] = (),
    options: RunOptions | None = None,
    pricing: Pricing | None = None,
) -> Scheduler:
    """A scheduler writing ``store`` through its event bus's journal, as a run's is."""
    renders = _renders(store)
    bus = EventBus(listeners, journal=StoreWriter(renders))
    return Scheduler(provider=provider, bus=bus, out_dir=renders.directory, options=options, pricing=pricing)


def _renders(store: ManifestStore | RenderStore) -> RenderStore:
    return store.renders if isinstance(store, ManifestStore) else store


async def run(
    provider: FakeProvider,
    shots: list[ResolvedShot],
    out: Path,
    *,
    events: list[Event] | None = None,
    fresh: Collection[str] = (),
    resend: Collection[str] = (),
    **kw: Any,
) -> Scheduler:
    store = open_store(out)
    listeners = [events.append] if events is not None else []
    scheduler = scheduler_for(provider, store, listeners=listeners, options=options(**kw))
    try:
        with anyio.fail_after(20):
            await scheduler.run(plan_renders(store, shots, provider, fresh=fresh, resend=resend))
    finally:
        store.close()
    return scheduler


def statuses(out: Path) -> dict[str, str]:
    return {k: v.status for k, v in load_manifest(out / "manifest.json").shots.items()}
