"""Following tasks through list rounds (orchestrator.run.watcher) in the scheduler, against a provider that lists."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from orchestrator.errors import AccountError, ServerError, ShotRejectedError
from orchestrator.providers.base import MAX_LIST_PAGE, Capabilities, ListsTasks, Task, TaskStatus
from orchestrator.run.events import NOTICE, Event
from orchestrator.run.watcher import TaskWatcher
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.store.manifest import PENDING, PENDING_REMOTE, PROCESSING, SUBMITTED, SUBMITTING, SUCCEEDED
from tests.fake_provider import (
    FAST_POLL,
    FakeProvider,
    make_shot,
    open_store,
    options,
    plan_renders,
    run,
    scheduler_for,
    statuses,
)


@dataclass
class ListingProvider(FakeProvider):
    """The fake provider plus the task list: newest first, ``hidden`` tasks left out, scripted ``list_faults``."""

    list_faults: list[BaseException] = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)  # external ids the list never shows
    others: int = 0  # newer tasks of other clients of the account, ahead of ours in every list
    stale: bool = False  # the list shows every task as still processing, whatever its own status
    page_sizes: list[int] = field(default_factory=list)
    capabilities: Capabilities = field(
        default_factory=lambda: Capabilities(find_by_external_id=True, list_tasks=True, absence_is_proof=True)
    )
    listed: anyio.Event | None = None  # set once a list call answered

    async def list_tasks(self, *, page_size: int) -> list[Task]:
        self.requests["list"] += 1
        self.page_sizes.append(page_size)
        await anyio.lowlevel.checkpoint()
        if self.list_faults:
            raise self.list_faults.pop(0)
        newest_first = [t for t in reversed(self.tasks.values()) if t.external_task_id not in self.hidden]
        if self.listed is not None:
            self.listed.set()
        theirs = [Task(f"other-{n}", TaskStatus.PROCESSING) for n in range(self.others)]
        ours = [self._view(t) for t in newest_first]
        if self.stale:
            ours = [Task(t.task_id, TaskStatus.PROCESSING, external_task_id=t.external_task_id) for t in ours]
        return [*theirs, *ours][:page_size]


def test_the_fake_lists_like_a_provider() -> None:
    assert isinstance(ListingProvider(), ListsTasks)
    assert not isinstance(FakeProvider(), ListsTasks)


@pytest.mark.anyio
async def test_tasks_in_flight_are_followed_with_list_rounds_not_one_poll_each(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(12)]
    provider = ListingProvider(render=0.15)
    scheduler = await run(provider, shots, tmp_path / "listed", concurrency=6)
    assert set(statuses(tmp_path / "listed").values()) == {SUCCEEDED}
    assert provider.requests["get"] == 0
    assert scheduler.stats.lists == provider.requests["list"] and scheduler.stats.polls == 0
    assert scheduler.watcher.enabled and scheduler.watcher.rounds == provider.requests["list"]
    # The same run polling task by task: each round answered for every task in flight, so far fewer requests.
    alone = ListingProvider(render=0.15)
    await run(alone, shots, tmp_path / "alone", concurrency=6, poll=replace(FAST_POLL, batch=False))
    assert 0 < provider.requests["list"] < alone.requests["get"]


@pytest.mark.anyio
async def test_a_round_reports_a_task_as_processing(tmp_path: Path) -> None:
    provider = ListingProvider(render=0.3)
    events: list[Event] = []
    await run(provider, [make_shot("a")], tmp_path, events=events)
    assert [e.new for e in events if e.shot_id == "a"][:3] == [SUBMITTING, SUBMITTED, PROCESSING]


@pytest.mark.anyio
async def test_pages_reach_back_to_the_oldest_task_followed(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(10)]
    provider = ListingProvider(render=0.1)
    await run(provider, shots, tmp_path, concurrency=5)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert provider.requests["get"] == 0  # no task ever fell off a page
    assert all(5 <= size <= MAX_LIST_PAGE for size in provider.page_sizes), provider.page_sizes


@pytest.mark.anyio
async def test_a_page_that_falls_short_is_doubled_before_a_task_is_polled_on_its_own(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(3)]
    provider = ListingProvider(render=0.1, others=15)  # more than the slack: ours are off the first page
    await run(provider, shots, tmp_path)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert provider.requests["get"] == 0
    assert max(provider.page_sizes) >= 2 * min(provider.page_sizes)

    crowded = ListingProvider(render=0.1, others=MAX_LIST_PAGE)  # ours never make it onto the longest page
    await run(crowded, shots, tmp_path / "crowded")
    assert set(statuses(tmp_path / "crowded").values()) == {SUCCEEDED}
    assert crowded.requests["get"] >= len(shots)


@pytest.mark.anyio
async def test_a_list_that_lags_behind_is_caught_by_asking_an_overdue_task_directly(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(3)]
    provider = ListingProvider(render=0.05, stale=True)
    # FAST_POLL: overdue after 2 x 0.3 s (no render time seen); the list showed them running ~0.5 s after their end.
    scheduler = await run(provider, shots, tmp_path)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert not scheduler.watcher.enabled and "still showed" in (scheduler.watcher.why_off or "")
    assert provider.requests["get"] >= 1


@dataclass
class EndsWhenAsked(ListingProvider):
    """A list that is right: the tasks run until the moment they are asked about directly, and end then."""

    ended: dict[str, float] = field(default_factory=dict)

    async def list_tasks(self, *, page_size: int) -> list[Task]:
        tasks = await super().list_tasks(page_size=page_size)
        return [t if t.task_id in self.ended else replace(t, status=TaskStatus.PROCESSING, videos=()) for t in tasks]

    async def get_task(self, task_id: str) -> Task:
        task = await super().get_task(task_id)
        ended = self.ended.setdefault(task_id, time.time())
        return replace(task, updated_at=int(ended * 1000))


@pytest.mark.anyio
async def test_a_task_that_ends_between_a_round_and_the_direct_question_is_no_sign_of_lag(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(3)]
    provider = EndsWhenAsked(render=0.05)
    scheduler = await run(provider, shots, tmp_path)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert scheduler.watcher.enabled and scheduler.watcher.why_off is None  # the list was right: keep listing


@pytest.mark.anyio
async def test_rounds_held_back_by_the_rate_cap_do_not_make_the_list_look_lagging(tmp_path: Path) -> None:
    # 16 creates at 20 requests/s queue for 0.8 s in the bucket, and every round and ask waits behind them: tasks end
    # "late" by the clock of their flights, and the round that would show them done has not set out yet. Judged from
    # the clock, they were overdue and the list lagging; judged from when rounds set out, the list is right.
    shots = [make_shot(f"s{i}") for i in range(16)]
    provider = ListingProvider(render=0.2)
    scheduler = await run(provider, shots, tmp_path, concurrency=16, requests_per_second=20)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert scheduler.watcher.enabled and scheduler.watcher.why_off is None
    assert provider.requests["get"] < len(shots) // 2  # not every task polled on its own


@pytest.mark.anyio
async def test_a_list_that_shows_none_of_our_tasks_is_given_up(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(4)]
    provider = ListingProvider(render=0.1, hidden={external_task_id(shot) for shot in shots})  # an empty list
    scheduler = await run(provider, shots, tmp_path, concurrency=2)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert provider.requests["list"] == 3  # three blind rounds, not one per new task
    assert "shows none of this run's tasks" in (scheduler.watcher.why_off or "")


@pytest.mark.anyio
async def test_a_provider_that_does_not_list_is_polled_task_by_task(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(4)]
    provider = ListingProvider(render=0.1, list_faults=[ShotRejectedError("no such route (HTTP 404)")])
    events: list[Event] = []
    scheduler = await run(provider, shots, tmp_path, events=events)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    [notice] = [e.detail for e in events if e.kind == NOTICE]
    assert notice == "the provider does not list tasks (no such route (HTTP 404)); polling each task on its own"
    assert provider.requests["list"] == 1 and provider.requests["get"] >= len(shots)
    assert not scheduler.watcher.enabled and "does not list" in (scheduler.watcher.why_off or "")


@pytest.mark.anyio
async def test_transient_list_errors_before_it_ever_listed_give_up_listing(tmp_path: Path) -> None:
    # A route the gateway does not have often answers 5xx or an HTML page: two tries, then per-task polls.
    provider = ListingProvider(render=0.1, list_faults=[ServerError("HTTP 502"), ServerError("HTTP 502")])
    scheduler = await run(provider, [make_shot("a"), make_shot("b")], tmp_path)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert provider.requests["list"] == 2 and provider.requests["get"] >= 2
    assert not scheduler.watcher.enabled


@pytest.mark.anyio
async def test_transient_list_errors_after_it_listed_are_retried(tmp_path: Path) -> None:
    provider = ListingProvider(render=0.2)
    shots = [make_shot(f"s{i}") for i in range(4)]

    def fail_later(_task_id: str) -> None:
        raise AssertionError("no task should be polled on its own")

    provider.on_get = fail_later
    provider.listed = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: run(provider, shots, tmp_path))
        await provider.listed.wait()
        provider.list_faults.extend([ServerError("HTTP 503"), ServerError("HTTP 503"), ServerError("HTTP 503")])
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert not provider.list_faults  # all three were met, and retried


@pytest.mark.anyio
async def test_a_task_the_list_does_not_show_is_polled_on_its_own(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(3)]
    provider = ListingProvider(render=0.1, hidden={external_task_id(shots[1])})
    polled: list[str] = []
    provider.on_get = polled.append
    scheduler = await run(provider, shots, tmp_path)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert set(polled) == {provider.by_external[external_task_id(shots[1])].task_id}
    assert scheduler.watcher.enabled  # the others were still followed by the list


@pytest.mark.anyio
async def test_an_account_error_on_the_list_stops_listing_and_polls_decide(tmp_path: Path) -> None:
    provider = ListingProvider(render=0.1, list_faults=[AccountError("authentication failed (1000)", code=1000)])
    scheduler = await run(provider, [make_shot("a")], tmp_path)
    assert statuses(tmp_path) == {"a": SUCCEEDED}  # the task's own poll worked
    assert not scheduler.watcher.enabled


@pytest.mark.anyio
async def test_a_task_past_its_deadline_while_watched_is_left_pending_remote(tmp_path: Path) -> None:
    provider = ListingProvider(render=5.0)
    poll = replace(FAST_POLL, deadline=0.2)
    await run(provider, [make_shot("slow")], tmp_path, poll=poll)
    assert statuses(tmp_path) == {"slow": PENDING_REMOTE}
    assert provider.requests["get"] == 0


@pytest.mark.anyio
async def test_interrupt_while_watching_stops_at_once(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(3)]
    provider = ListingProvider(render=5.0)
    store = open_store(tmp_path)
    scheduler = scheduler_for(provider, store, options=options(concurrency=3))
    provider.listed = anyio.Event()
    with anyio.fail_after(3):
        async with anyio.create_task_group() as group:
            group.start_soon(scheduler.run, plan_renders(store, shots, scheduler.provider))
            await provider.listed.wait()
            scheduler.interrupt()
    store.close(finished=False)
    assert set(statuses(tmp_path).values()) <= {SUBMITTED, PROCESSING, SUBMITTING, PENDING}


@pytest.mark.anyio
async def test_batching_can_be_turned_off(tmp_path: Path) -> None:
    provider = ListingProvider(render=0.1)
    poll = replace(FAST_POLL, batch=False)
    scheduler = await run(provider, [make_shot("a"), make_shot("b")], tmp_path, poll=poll)
    assert set(statuses(tmp_path).values()) == {SUCCEEDED}
    assert provider.requests["list"] == 0 and provider.requests["get"] >= 2
    assert not scheduler.watcher.enabled


def test_a_watcher_turned_off_hands_every_task_back() -> None:
    async def never(_size: int) -> list[Task]:
        raise AssertionError("unused")

    watcher = TaskWatcher(
        fetch=never, schedule=lambda w: 0.0, on_seen=lambda w, t: None, retry_delay=lambda e, n: 0.0, min_gap=0.01,
        enabled=False,
    )  # fmt: skip
    watch = watcher.watch("1", seq=watcher.created(), key=None)
    assert watch.alone and watch.settled


@pytest.mark.anyio
async def test_a_doubled_page_is_halved_again_once_half_of_it_has_long_been_enough() -> None:
    sizes: list[int] = []
    ours = [Task(f"t{n}", TaskStatus.PROCESSING) for n in range(3)]

    async def fetch(page_size: int) -> list[Task]:
        sizes.append(page_size)
        await anyio.lowlevel.checkpoint()
        # First a page crowded by other clients' tasks (ours fell off it), then ours on top, the rest the others'.
        top = [] if len(sizes) == 1 else ours
        others = [Task(f"other-{n}", TaskStatus.PROCESSING) for n in range(page_size - len(top))]
        if len(sizes) == 40:
            scope.cancel()
        return [*top, *others]

    watcher = TaskWatcher(
        fetch=fetch, schedule=lambda w: 0.0, on_seen=lambda w, t: None, retry_delay=lambda e, n: 0.0, min_gap=0.0,
    )  # fmt: skip
    for task in ours:
        watcher.watch(task.task_id, seq=watcher.created(), key=None)
    await anyio.sleep(0.001)  # the watches are older than the first round
    with anyio.CancelScope() as scope:
        await watcher.run()
    first = sizes[0]
    assert sizes[1] == 2 * first  # the crowded page fell short: twice as long from then on
    # 20 full rounds with every task followed in the first half of the page: as long as our own tasks need again.
    assert sizes[1:21] == [2 * first] * 20 and sizes[21:] == [first] * (len(sizes) - 21)
