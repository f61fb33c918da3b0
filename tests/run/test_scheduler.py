"""The scheduler against a scripted in-memory provider: every edge case of create -> poll -> download, deterministic."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from orchestrator.errors import (
    DownloadError,
    ManifestError,
    NetworkError,
    RateLimitedError,
    ServerError,
    ShotRejectedError,
)
from orchestrator.providers.base import Download, Task
from orchestrator.run.events import NOTICE, SHOT, Event
from orchestrator.run.follow import Follower
from orchestrator.run.polling import PollPolicy
from orchestrator.run.scheduler import TASK_ID_UNKNOWN, RetryPolicy
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.spec.shot import ResolvedShot
from orchestrator.store.manifest import (
    DOWNLOADING,
    FAILED,
    LOCK_NAME,
    PENDING,
    PENDING_REMOTE,
    PROCESSING,
    SUBMITTED,
    SUBMITTING,
    SUCCEEDED,
    UNCONFIRMED,
    ManifestLock,
    load_manifest,
)
from tests.fake_provider import FakeProvider, make_shot, open_store, options, plan_renders, run, scheduler_for, statuses


@pytest.mark.anyio
async def test_happy_path_renders_every_shot_and_records_outputs(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(6)]
    provider = FakeProvider()
    events: list[Event] = []
    await run(provider, shots, tmp_path, events=events)

    manifest = load_manifest(tmp_path / "manifest.json")
    for shot in shots:
        record = manifest.shots[shot.id]
        assert record.status == SUCCEEDED
        assert record.external_task_id == external_task_id(shot)
        assert record.task_id and record.attempts == 1 and record.error is None
        [output] = record.outputs
        assert output.path == f"{shot.id}/{shot.fingerprint[:12]}.mp4"
        data = (tmp_path / output.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == output.sha256 and len(data) == output.bytes
        assert record.request["images"] == [image.identity for image in shot.images]
    assert set(provider.created.values()) == {1}
    assert manifest.finished_at is not None
    path = [e.new for e in events if e.kind == SHOT and e.shot_id == "s0"]
    assert path[:2] == [SUBMITTING, SUBMITTED] and path[-2:] == [DOWNLOADING, SUCCEEDED]
    assert ManifestLock(tmp_path / LOCK_NAME).live_holder() is None  # given back


@pytest.mark.anyio
async def test_external_id_and_task_id_are_on_disk_before_the_next_step(tmp_path: Path) -> None:
    shot = make_shot("s0")
    seen: dict[str, Any] = {}

    def on_disk() -> dict[str, Any]:
        # What another process would read: the store's committed state (its database), not this run's memory.
        record = load_manifest(tmp_path / "manifest.json").shots["s0"]
        return {"status": record.status, "external_task_id": record.external_task_id, "task_id": record.task_id}

    provider = FakeProvider()
    provider.on_create = lambda s: seen.setdefault("create", on_disk())
    provider.on_get = lambda task_id: seen.setdefault("get", on_disk())
    await run(provider, [shot], tmp_path)

    assert seen["create"]["status"] == SUBMITTING
    assert seen["create"]["external_task_id"] == external_task_id(shot)
    assert seen["create"]["task_id"] is None
    assert seen["get"]["status"] == SUBMITTED and seen["get"]["task_id"] == "100000"


@pytest.mark.anyio
async def test_ambiguous_create_is_looked_up_not_sent_again(tmp_path: Path) -> None:
    shots = [make_shot("a"), make_shot("b")]
    provider = FakeProvider(
        create_then_fail={
            "a": [NetworkError("connection dropped after sending", ambiguous=True)],
            "b": [ServerError("HTTP 502 from the gateway")],
        }
    )
    await run(provider, shots, tmp_path)
    assert statuses(tmp_path) == {"a": SUCCEEDED, "b": SUCCEEDED}
    assert provider.create_calls == Counter({external_task_id(shots[0]): 1, external_task_id(shots[1]): 1})
    assert provider.requests["find"] == 2


@pytest.mark.anyio
async def test_duplicate_that_cannot_be_found_is_left_unconfirmed_never_resent(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = FakeProvider(find_works=False, create_then_fail={"a": [NetworkError("timeout", ambiguous=True)]})
    await run(provider, [shot], tmp_path)
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.status == UNCONFIRMED
    assert record.error is not None and TASK_ID_UNKNOWN in record.error and "orchestrator adopt" in record.error
    assert provider.created == Counter({external_task_id(shot): 1})
    assert set(provider.create_calls) == {external_task_id(shot)}  # never a new id

    # The next run looks it up again and still never sends it under another id.
    await run(provider, [shot], tmp_path)
    assert statuses(tmp_path) == {"a": UNCONFIRMED}
    assert provider.create_calls[external_task_id(shot)] == 2 and len(provider.create_calls) == 1


@pytest.mark.anyio
async def test_unambiguous_network_failure_retries_the_create(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = FakeProvider(create_faults={"a": [NetworkError("connection refused", ambiguous=False)]})
    await run(provider, [shot], tmp_path)
    assert statuses(tmp_path) == {"a": SUCCEEDED}
    assert provider.requests["find"] == 0 and provider.create_calls[external_task_id(shot)] == 2


@pytest.mark.anyio
async def test_account_cap_below_concurrency_lowers_target_and_everything_succeeds(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(10)]
    provider = FakeProvider(cap=2, render=0.04)
    scheduler = await run(provider, shots, tmp_path, concurrency=6)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert provider.max_in_flight <= 2
    assert scheduler.slots.decreases >= 1 and scheduler.stats.congestion >= 1
    assert set(provider.created.values()) == {1}


@pytest.mark.anyio
async def test_rate_limit_answers_never_fail_a_shot(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(4)]
    faults = {s.id: [RateLimitedError("requests too fast (1302)", retry_after=0.01) for _ in range(3)] for s in shots}
    provider = FakeProvider(create_faults=faults)
    await run(provider, shots, tmp_path)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}


@pytest.mark.anyio
async def test_failures_stay_with_their_shot(tmp_path: Path) -> None:
    shots = [make_shot("ok1"), make_shot("bad-task"), make_shot("rejected"), make_shot("ok2")]
    provider = FakeProvider(
        outcomes={"bad-task": ("failed", "content moderation")},
        create_faults={"rejected": [ShotRejectedError("invalid parameters: prompt (1200)", code=1200)]},
    )
    await run(provider, shots, tmp_path)
    manifest = load_manifest(tmp_path / "manifest.json")
    assert {k: v.status for k, v in manifest.shots.items()} == {
        "ok1": SUCCEEDED,
        "bad-task": FAILED,
        "rejected": FAILED,
        "ok2": SUCCEEDED,
    }
    assert manifest.shots["bad-task"].error == "content moderation"
    assert "1200" in (manifest.shots["rejected"].error or "")


@pytest.mark.anyio
async def test_retry_after_failed_task_uses_a_new_attempt_id_and_keeps_history(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = FakeProvider(outcomes={"a": ("failed", "moderation")})
    await run(provider, [shot], tmp_path)
    assert statuses(tmp_path) == {"a": FAILED}

    provider.outcomes.clear()
    await run(provider, [shot], tmp_path)
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.status == SUCCEEDED and record.attempts == 2
    assert record.external_task_id == external_task_id(shot) + "-r2"
    assert record.outputs[0].path == f"a/{shot.fingerprint[:12]}-r2.mp4"
    assert provider.created == Counter({external_task_id(shot): 1, external_task_id(shot) + "-r2": 1})


@pytest.mark.anyio
async def test_changed_shot_keeps_the_previous_render_in_history(tmp_path: Path) -> None:
    old = make_shot("a", prompt="first")
    provider = FakeProvider()
    await run(provider, [old], tmp_path)
    new = make_shot("a", prompt="second")
    await run(provider, [new], tmp_path)
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.fingerprint == new.fingerprint and record.attempts == 1
    assert [h.fingerprint for h in record.history] == [old.fingerprint]
    assert (tmp_path / record.history[0].outputs[0].path).exists()
    assert (tmp_path / record.outputs[0].path).exists()


@pytest.mark.anyio
async def test_account_error_stops_submitting_and_records_in_flight_work(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(8)]
    events: list[Event] = []
    provider = FakeProvider(account_error_after=3, render=0.1)
    scheduler = await run(provider, shots, tmp_path, concurrency=4, events=events)
    assert scheduler.abort_reason is not None and "1102" in scheduler.abort_reason
    states = statuses(tmp_path)
    assert list(states.values()).count(SUCCEEDED) == 3
    assert len(provider.tasks) == 3 and provider.requests["create"] == 4  # one refused, then no more tries
    assert all(s in (SUCCEEDED, PENDING) for s in states.values())
    assert any("stopped submitting" in e.detail for e in events)


@pytest.mark.anyio
async def test_resume_polls_recorded_tasks_and_looks_up_submitting_ones(tmp_path: Path) -> None:
    shots = [make_shot("polled"), make_shot("found"), make_shot("lost")]
    provider = FakeProvider()
    # Earlier run: "polled" got its task id; "found" crashed after the create reached the provider;
    # "lost" crashed before its create left.
    polled = await provider.create_task(shots[0])
    await provider.create_task(shots[1])
    provider.requests.clear()
    provider.create_calls.clear()
    store = open_store(tmp_path)
    store.update("polled", status=PROCESSING, fingerprint=shots[0].fingerprint, attempts=1, task_id=polled.task_id)
    store.update("polled", external_task_id=external_task_id(shots[0]))
    for shot in shots[1:]:
        store.update(
            shot.id,
            status=SUBMITTING,
            fingerprint=shot.fingerprint,
            attempts=1,
            external_task_id=external_task_id(shot),
        )
    store.close()

    await run(provider, shots, tmp_path)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert provider.create_calls == Counter({external_task_id(shots[2]): 1})
    assert provider.requests["find"] == 2
    assert set(provider.created.values()) == {1}


@pytest.mark.anyio
async def test_deadline_leaves_the_shot_pending_remote_and_a_later_run_finishes_it(tmp_path: Path) -> None:
    shot = make_shot("slow")
    provider = FakeProvider(renders={"slow": 0.6})
    poll = PollPolicy(initial_estimate=0.05, probe_start=0.02, min_interval=0.01, max_interval=0.05, deadline=0.2)
    await run(provider, [shot], tmp_path, poll=poll)
    record = load_manifest(tmp_path / "manifest.json").shots["slow"]
    assert record.status == PENDING_REMOTE and record.task_id == "100000"
    assert "run again" in (record.error or "")

    await anyio.sleep(0.5)
    # Even with the same short deadline: a picked-up task gets a full deadline from now.
    await run(provider, [shot], tmp_path, poll=poll)
    assert statuses(tmp_path) == {"slow": SUCCEEDED}
    assert provider.requests["create"] == 1


@pytest.mark.anyio
async def test_download_failure_never_fails_the_task_and_resumes_without_a_new_create(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = FakeProvider(download_faults={"a": [DownloadError("connection reset") for _ in range(5)]})
    await run(provider, [shot], tmp_path)
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.status == DOWNLOADING and "download failed" in (record.error or "")

    await run(provider, [shot], tmp_path)
    assert statuses(tmp_path) == {"a": SUCCEEDED}
    assert provider.requests["create"] == 1


@pytest.mark.anyio
async def test_interrupt_records_submitted_tasks_and_the_next_run_finishes_without_duplicates(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(6)]
    provider = FakeProvider(render=0.3)
    store = open_store(tmp_path)
    scheduler = scheduler_for(provider, store, options=options(concurrency=3))
    submitted = anyio.Event()

    def listener(event: Event) -> None:
        if event.new == SUBMITTED:
            submitted.set()

    scheduler.bus.add(listener)
    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run, plan_renders(store, shots, scheduler.provider))
        await submitted.wait()
        scheduler.interrupt()
    store.close(finished=False)
    assert time.monotonic() - started < 0.3  # did not wait for renders to finish
    states = statuses(tmp_path)
    assert SUCCEEDED not in states.values()
    assert all(s in (SUBMITTED, PROCESSING, SUBMITTING, PENDING) for s in states.values())  # PENDING: on deck

    await run(provider, shots, tmp_path)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert set(provider.created.values()) == {1}


@pytest.mark.anyio
async def test_second_interrupt_stops_at_once_and_stays_resumable(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(3)]
    provider = FakeProvider(render=0.3)
    store = open_store(tmp_path)
    scheduler = scheduler_for(provider, store, options=options(concurrency=3, interrupt_grace=30))
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run, plan_renders(store, shots, scheduler.provider))
        await anyio.sleep(0.02)
        scheduler.interrupt()
        scheduler.interrupt()
    store.close(finished=False)
    await run(provider, shots, tmp_path)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert set(provider.created.values()) == {1}


@pytest.mark.anyio
async def test_task_unknown_to_the_provider_fails_after_a_few_polls(tmp_path: Path) -> None:
    shot = make_shot("a")
    store = open_store(tmp_path)
    store.update("a", status=SUBMITTED, fingerprint=shot.fingerprint, attempts=1, task_id="999")
    store.close()
    provider = FakeProvider()
    await run(provider, [shot], tmp_path)
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.status == FAILED and "999" in (record.error or "")
    assert provider.requests["get"] == 3 and provider.requests["create"] == 0


@pytest.mark.anyio
async def test_polls_stay_few_once_render_time_is_known(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(12)]
    provider = FakeProvider(render=0.15)
    scheduler = await run(provider, shots, tmp_path, concurrency=4)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    # The first wave scouts; later waves should need about two polls each.
    assert scheduler.stats.polls / len(shots) <= 4
    assert scheduler.stats.render_seconds and abs(scheduler.stats.render_seconds[-1] - 0.15) < 0.02


@pytest.mark.anyio
async def test_a_manifest_that_cannot_be_written_stops_the_run_with_a_manifest_error(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(3)]
    store = open_store(tmp_path)
    renders = store._store
    real_write = renders._write_transaction
    writes = [0]

    def failing(*changes: Any) -> None:
        # The store's one write path: a transaction on the database. A full disk fails it as SQLite would.
        writes[0] += 1
        if writes[0] > 2:
            raise sqlite3.OperationalError("database or disk is full")
        real_write(*changes)

    renders._write_transaction = failing  # type: ignore[method-assign]
    scheduler = scheduler_for(FakeProvider(), store, options=options())
    with pytest.raises(ManifestError, match=r"renders\.db: cannot write the store \(database or disk is full\)"):
        await scheduler.run(plan_renders(store, shots, scheduler.provider))


@pytest.mark.anyio
async def test_changed_shot_keeps_an_unfinished_paid_task_in_history(tmp_path: Path) -> None:
    old = make_shot("a", prompt="first")
    store = open_store(tmp_path)
    store.update(
        "a",
        status=PROCESSING,
        fingerprint=old.fingerprint,
        attempts=1,
        task_id="77",
        external_task_id=external_task_id(old),
    )
    store.close()
    await run(FakeProvider(), [make_shot("a", prompt="second")], tmp_path)
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.status == SUCCEEDED
    assert [(h.task_id, h.external_task_id) for h in record.history] == [("77", external_task_id(old))]


@pytest.mark.anyio
async def test_a_lookup_that_never_answers_leaves_the_shot_submitting_and_frees_its_slot(tmp_path: Path) -> None:
    stuck, other = make_shot("stuck"), make_shot("other")
    store = open_store(tmp_path)
    store.update(
        "stuck", status=SUBMITTING, fingerprint=stuck.fingerprint, attempts=1, external_task_id=external_task_id(stuck)
    )
    store.close()
    provider = FakeProvider(find_faults=[ServerError("HTTP 503") for _ in range(6)])
    await run(provider, [stuck, other], tmp_path, concurrency=1)
    manifest = load_manifest(tmp_path / "manifest.json")
    assert manifest.shots["stuck"].status == SUBMITTING
    assert "could not look up" in (manifest.shots["stuck"].error or "")
    assert manifest.shots["other"].status == SUCCEEDED
    assert provider.create_calls == Counter({external_task_id(other): 1})


@pytest.mark.anyio
async def test_a_deleted_video_is_fetched_again_from_its_paid_task_unless_forced(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = FakeProvider()
    await run(provider, [shot], tmp_path)
    video = tmp_path / load_manifest(tmp_path / "manifest.json").shots["a"].outputs[0].path
    video.unlink()

    await run(provider, [shot], tmp_path)
    assert video.exists() and provider.requests["create"] == 1

    store = open_store(tmp_path)
    scheduler = scheduler_for(provider, store, options=options())
    await scheduler.run(plan_renders(store, [shot], scheduler.provider, fresh={"a"}))
    store.close()
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert provider.requests["create"] == 2 and record.attempts == 2 and len(record.history) == 1


# --- what goes first in a burst -------------------------------------------------------------------------------------


@dataclass
class SlowCreates(FakeProvider):
    """Creates of the shots in ``slow`` take ``create_seconds``; every call's start and end is logged."""

    slow: frozenset[str] = frozenset()
    create_seconds: float = 0.3
    log: list[tuple[str, str, float]] = field(default_factory=list)

    async def create_task(self, shot: ResolvedShot, *, external_task_id: str | None = None) -> Task:
        if shot.id in self.slow:
            await anyio.sleep(self.create_seconds)
        task = await super().create_task(shot, external_task_id=external_task_id)
        self.log.append(("created", shot.id, time.monotonic()))
        return task

    async def download(self, url: str, dest: Path, *, max_bytes: int = 1 << 20) -> Download:
        self.log.append(("download", url.rsplit("/", 1)[-1], time.monotonic()))
        return await super().download(url, dest, max_bytes=max_bytes)


@pytest.mark.anyio
async def test_a_download_waits_while_a_create_is_under_way(tmp_path: Path) -> None:
    # s0 renders at once; s1's create takes 0.3 s. s0's video is safe at the provider: its download goes after.
    provider = SlowCreates(render=0.01, slow=frozenset({"s1"}))
    await run(provider, [make_shot("s0"), make_shot("s1")], tmp_path, concurrency=2)
    order = [(kind, shot) for kind, shot, _ in provider.log]
    assert order.index(("created", "s1")) < order.index(("download", "s0"))
    assert statuses(tmp_path) == {"s0": SUCCEEDED, "s1": SUCCEEDED}


@pytest.mark.anyio
async def test_a_download_waits_for_creates_only_so_long(tmp_path: Path) -> None:
    provider = SlowCreates(render=0.01, slow=frozenset({"s1"}), create_seconds=1.0)
    await run(provider, [make_shot("s0"), make_shot("s1")], tmp_path, concurrency=2, download_defer=0.05)
    order = [(kind, shot) for kind, shot, _ in provider.log]
    assert order.index(("download", "s0")) < order.index(("created", "s1"))


@pytest.mark.anyio
async def test_creates_do_not_queue_behind_busy_api_calls(tmp_path: Path) -> None:
    created = anyio.Event()
    provider = FakeProvider(render=0.01, on_create=lambda shot: created.set())
    store = open_store(tmp_path)
    scheduler = scheduler_for(provider, store, options=options(max_api_calls=1))
    try:
        async with anyio.create_task_group() as group:
            await scheduler.gate.api_calls.acquire_on_behalf_of("test")  # every poll's turn is taken
            group.start_soon(scheduler.run, plan_renders(store, [make_shot("s0")], scheduler.provider))
            with anyio.fail_after(5):
                await created.wait()
            await anyio.sleep(0.05)  # time for polls to have gone, were they not waiting
            assert provider.requests["get"] == 0  # the create went; the polls still wait
            scheduler.gate.api_calls.release_on_behalf_of("test")
    finally:
        store.close()
    assert statuses(tmp_path) == {"s0": SUCCEEDED}


@pytest.mark.anyio
async def test_the_timeline_records_each_step_of_a_shot(tmp_path: Path) -> None:
    scheduler = await run(FakeProvider(render=0.05), [make_shot("s0")], tmp_path)
    marks = scheduler.stats.timeline["s0"]
    steps = ["slot", "sent", "answered", "detected", "released", "downloaded"]
    assert [marks[step] for step in steps] == sorted(marks[step] for step in steps)
    assert marks["provider_ended"] - marks["provider_created"] == pytest.approx(0.05, abs=0.002)
    assert marks["released"] - marks["detected"] < 0.001  # the slot is free the moment the end is seen


@pytest.mark.anyio
async def test_many_tasks_waiting_for_a_first_render_time_get_more_scouts(tmp_path: Path) -> None:
    polled: list[tuple[float, str]] = []
    provider = FakeProvider(render=0.3, on_get=lambda task_id: polled.append((time.time(), task_id)))
    shots = [make_shot(f"s{i:02d}") for i in range(32)]
    await run(provider, shots, tmp_path, concurrency=32)
    first_end = min(task.created + task.render for task in provider.tasks.values())
    # The other tasks' first polls are due at the first estimate (0.3 s: the render time here), so they land within
    # a few ms of the first end, on either side: a poll that close to it is the first regular poll, not a scout.
    scouts = {task_id for at, task_id in polled if at < first_end - 0.03}
    # One per 8 tasks waiting: 4 here, and never more (FAST_POLL has 2 at least). Fewer when a loaded machine spreads
    # the creates out so that fewer tasks are waiting at once; test_a_low_request_budget... pins the exact counts.
    assert 2 <= len(scouts) <= 4


@pytest.mark.anyio
async def test_finishes_after_the_first_few_do_not_wake_every_waiting_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    computed = Counter[str]()
    original = Follower._next_poll

    def counting(self: Follower, flight: Any, last_poll: float | None, *, batched: bool = False) -> float:
        computed[flight.render.key] += 1
        return original(self, flight, last_poll, batched=batched)

    monkeypatch.setattr(Follower, "_next_poll", counting)
    provider = FakeProvider(render=0.1)
    scheduler = await run(provider, [make_shot(f"s{i:02d}") for i in range(60)], tmp_path, concurrency=30)
    # A poll time is computed before each poll, once as each task starts, and on wake-ups: only the first three
    # finishes wake the (at most 30) others. Waking them on all 60 finishes made it about 400.
    assert sum(computed.values()) <= scheduler.stats.polls + 60 + 3 * 30


# --- a provider that cannot be reached, a task the provider forgot --------------------------------------------------


@dataclass
class Refusing(FakeProvider):
    """Refuses every connection (``NetworkError(ambiguous=False)``) between ``refuse_from`` and ``refuse_until``."""

    refuse_from: float = 0.0
    refuse_until: float = float("inf")
    refused: int = 0

    def _connect(self) -> None:
        if self.refuse_from <= time.time() < self.refuse_until:
            self.refused += 1
            raise NetworkError("could not reach the provider: connection refused", ambiguous=False)

    async def create_task(self, shot: ResolvedShot, *, external_task_id: str | None = None) -> Task:
        self._connect()
        return await super().create_task(shot, external_task_id=external_task_id)

    async def get_task(self, task_id: str) -> Task:
        self._connect()
        return await super().get_task(task_id)

    async def find_task(self, external_task_id: str) -> Task | None:
        self._connect()
        return await super().find_task(external_task_id)


def notices(events: list[Event]) -> list[str]:
    return [e.detail for e in events if e.kind == NOTICE]


@pytest.mark.anyio
async def test_an_endpoint_refused_from_the_start_ends_the_run_soon_and_every_shot_stays_pending(
    tmp_path: Path,
) -> None:
    shots = [make_shot(f"s{i}") for i in range(6)]
    provider = Refusing(base_url="http://127.0.0.1:9")
    events: list[Event] = []
    retry = RetryPolicy(base=0.02, cap=1.0)
    started = time.monotonic()
    scheduler = await run(provider, shots, tmp_path, events=events, retry=retry, unreachable_at_start=0.2)

    assert time.monotonic() - started < 2  # ends at the give-up time, not a backoff later
    assert scheduler.abort_reason is not None and "cannot reach http://127.0.0.1:9" in scheduler.abort_reason
    assert "connection refused" in scheduler.abort_reason
    assert any(
        n.startswith("cannot reach http://127.0.0.1:9 (connection refused); retrying in") for n in notices(events)
    )
    manifest = load_manifest(tmp_path / "manifest.json")
    assert {r.status for r in manifest.shots.values()} == {PENDING}  # never failed: nothing was sent
    assert all("127.0.0.1:9" in (r.error or "") for r in manifest.shots.values())
    assert provider.requests["find"] == 0 and not provider.created

    # The endpoint fixed, the next run submits every shot under the same attempt (nothing was created before).
    provider.refuse_until = 0.0
    await run(provider, shots, tmp_path)
    manifest = load_manifest(tmp_path / "manifest.json")
    assert {r.status for r in manifest.shots.values()} == {SUCCEEDED}
    assert {r.attempts for r in manifest.shots.values()} == {1}
    assert set(provider.created.values()) == {1}


@pytest.mark.anyio
async def test_an_outage_after_the_provider_answered_is_waited_out(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = Refusing(render=0.1, refuse_from=float("inf"))
    provider.on_create = lambda _: setattr(provider, "refuse_from", time.time())
    provider.refuse_until = time.time() + 0.5
    events: list[Event] = []
    # The short limit applies only before the first answer: after it, a 0.5 s outage is well within the long one.
    scheduler = await run(provider, [shot], tmp_path, events=events, unreachable_at_start=0.05, unreachable_after=10.0)
    assert scheduler.abort_reason is None
    assert statuses(tmp_path) == {"a": SUCCEEDED}
    assert provider.refused > 1
    assert any(n.startswith("cannot reach http://fake.invalid") for n in notices(events))


@pytest.mark.anyio
async def test_a_long_outage_ends_the_run_with_tasks_in_flight_kept_for_the_next_run(tmp_path: Path) -> None:
    shots = [make_shot("a"), make_shot("b")]
    provider = Refusing(render=0.1, refuse_from=float("inf"))
    # Refused from the second create on (after it is let through): both tasks are in flight, then nothing answers.
    provider.on_create = lambda _: provider.create_calls.total() == 2 and setattr(provider, "refuse_from", time.time())
    scheduler = await run(provider, shots, tmp_path, concurrency=2, unreachable_after=0.3)

    assert scheduler.abort_reason is not None and "cannot reach http://fake.invalid" in scheduler.abort_reason
    manifest = load_manifest(tmp_path / "manifest.json")
    assert {r.status for r in manifest.shots.values()} <= {SUBMITTED, PROCESSING}  # paid for: resumable
    assert all(r.task_id and "fake.invalid" in (r.error or "") for r in manifest.shots.values())

    provider.refuse_until = 0.0
    await run(provider, shots, tmp_path)
    assert statuses(tmp_path) == {"a": SUCCEEDED, "b": SUCCEEDED}
    assert set(provider.created.values()) == {1} and len(provider.created) == 2


def forgotten_success(tmp_path: Path, shot: ResolvedShot) -> None:
    """A shot that succeeded an hour ago under task 999, whose video is gone from disk."""
    store = open_store(tmp_path)
    an_hour_ago = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat().replace("+00:00", "Z")
    store.update(
        shot.id,
        status=SUCCEEDED,
        fingerprint=shot.fingerprint,
        attempts=1,
        task_id="999",
        external_task_id=external_task_id(shot),
        submitted_at=an_hour_ago,
    )
    store.close()


@pytest.mark.anyio
async def test_a_forgotten_task_of_a_lost_video_is_retried_briefly_then_rendered_anew(tmp_path: Path) -> None:
    shot = make_shot("a")
    forgotten_success(tmp_path, shot)
    provider = FakeProvider()
    started = time.monotonic()
    # The real poll policy: its schedule, anchored an hour back, spaces polls a minute apart.
    await run(provider, [shot], tmp_path, poll=PollPolicy(), retry=RetryPolicy(base=0.05, cap=0.1))
    assert time.monotonic() - started < 1.5
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.status == FAILED and provider.requests["get"] == 3 and provider.requests["create"] == 0
    assert record.error is not None and "no longer has task 999" in record.error and "run again" in record.error

    await run(provider, [shot], tmp_path)
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.status == SUCCEEDED and record.attempts == 2
    assert provider.create_calls == Counter({external_task_id(shot, attempt=2): 1})


@pytest.mark.anyio
async def test_a_submitted_task_not_found_fails_and_the_next_run_submits_a_new_attempt(tmp_path: Path) -> None:
    shot = make_shot("a")
    store = open_store(tmp_path)
    store.update("a", status=PROCESSING, fingerprint=shot.fingerprint, attempts=1, task_id="999")
    store.update("a", external_task_id=external_task_id(shot), submitted_at="2020-01-01T00:00:00Z")
    store.close()
    provider = FakeProvider()
    await run(provider, [shot], tmp_path, poll=PollPolicy(), retry=RetryPolicy(base=0.05, cap=0.1))
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.status == FAILED and record.error == (
        "task 999 not found at the provider; run again to submit the shot as a new attempt"
    )
    await run(provider, [shot], tmp_path)
    assert statuses(tmp_path) == {"a": SUCCEEDED}
    assert list(provider.create_calls) == [external_task_id(shot, attempt=2)]
