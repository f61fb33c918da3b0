"""Creates whose outcome is unknown: confirmed where the provider can, ``unconfirmed`` (never resent) where it cannot;
``queued`` shots, the grace window for a gateway's lagging table, charged units, progress and the event stream."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from orchestrator.errors import NetworkError, RateLimitedError, ServerError, TaskNotFoundError
from orchestrator.providers.base import Capabilities, Task
from orchestrator.run.events import PROGRESS, SHOT, Event
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.spec.shot import ResolvedShot
from orchestrator.store.manifest import (
    FAILED,
    PENDING,
    QUEUED,
    SUBMITTED,
    SUBMITTING,
    SUCCEEDED,
    UNCONFIRMED,
    epoch_seconds,
    load_manifest,
)
from tests.fake_provider import GATEWAY, FakeProvider, make_shot, open_store, plan_renders, run, scheduler_for, statuses


@pytest.mark.anyio
async def test_gateway_create_with_unknown_outcome_is_left_unconfirmed_and_never_resent(tmp_path: Path) -> None:
    shots = [make_shot("a"), make_shot("b"), make_shot("c")]
    provider = FakeProvider(
        capabilities=GATEWAY,
        create_then_fail={
            "a": [NetworkError("connection dropped after sending", ambiguous=True)],
            "b": [ServerError("HTTP 524 with a web page")],
        },
    )
    await run(provider, shots, tmp_path)

    assert statuses(tmp_path) == {"a": UNCONFIRMED, "b": UNCONFIRMED, "c": SUCCEEDED}
    assert provider.requests["find"] == 0  # a gateway cannot confirm: it is not asked
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.external_task_id == external_task_id(shots[0]) and record.task_id is None
    assert record.error is not None
    assert "orchestrator adopt SPEC a TASK_ID" in record.error and "--resend-unconfirmed" in record.error

    # Rerunning never sends them again on its own.
    await run(provider, shots, tmp_path)
    assert statuses(tmp_path) == {"a": UNCONFIRMED, "b": UNCONFIRMED, "c": SUCCEEDED}
    assert provider.create_calls == Counter({external_task_id(s): 1 for s in shots})


@pytest.mark.anyio
async def test_definite_refusals_at_a_gateway_are_retried_not_unconfirmed(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = FakeProvider(
        capabilities=GATEWAY,
        create_faults={"a": [RateLimitedError("429"), NetworkError("connection refused", ambiguous=False)]},
    )
    await run(provider, [shot], tmp_path)
    assert statuses(tmp_path) == {"a": SUCCEEDED}
    assert provider.created == Counter({external_task_id(shot): 1})


@pytest.mark.anyio
async def test_resend_sends_an_unconfirmed_shot_again_as_a_new_attempt(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = FakeProvider(capabilities=GATEWAY, create_then_fail={"a": [ServerError("HTTP 504")]})
    await run(provider, [shot], tmp_path)
    assert statuses(tmp_path) == {"a": UNCONFIRMED}

    store = open_store(tmp_path)
    from tests.fake_provider import options

    scheduler = scheduler_for(provider, store, options=options())
    try:
        await scheduler.run(plan_renders(store, [shot], scheduler.provider, resend={"a"}))
    finally:
        store.close()
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.status == SUCCEEDED and record.attempts == 2
    assert record.external_task_id == external_task_id(shot, attempt=2)
    # The unconfirmed attempt stays in the history with its external id, for the accounts.
    assert [render.external_task_id for render in record.history] == [external_task_id(shot)]


@pytest.mark.anyio
async def test_provider_that_proves_absence_creates_again_after_an_unknown_outcome(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = FakeProvider(create_faults={"a": [NetworkError("read timed out", ambiguous=True)]})
    await run(provider, [shot], tmp_path)
    # Kling direct: the lookup said "no such task", which is proof; the create is sent again under the same id.
    assert statuses(tmp_path) == {"a": SUCCEEDED}
    assert provider.requests["find"] == 1 and provider.create_calls == Counter({external_task_id(shot): 2})


@pytest.mark.anyio
async def test_lookup_that_finds_nothing_proves_nothing_through_a_confirming_gateway(tmp_path: Path) -> None:
    shot = make_shot("a")
    caps = replace(GATEWAY, find_by_external_id=True)  # a lookup exists, but over one upstream account only
    provider = FakeProvider(
        capabilities=caps, find_works=False, create_then_fail={"a": [NetworkError("dropped", ambiguous=True)]}
    )
    await run(provider, [shot], tmp_path)
    assert statuses(tmp_path) == {"a": UNCONFIRMED}
    assert provider.requests["find"] == 1 and provider.create_calls == Counter({external_task_id(shot): 1})


@pytest.mark.anyio
async def test_crash_while_submitting_at_a_gateway_resumes_unconfirmed(tmp_path: Path) -> None:
    shot = make_shot("a")
    store = open_store(tmp_path)
    store.update("a", status=SUBMITTING, fingerprint=shot.fingerprint, attempts=1, external_task_id="x-1")
    store.close()
    provider = FakeProvider(capabilities=GATEWAY)
    await run(provider, [shot], tmp_path)
    record = load_manifest(tmp_path / "manifest.json").shots["a"]
    assert record.status == UNCONFIRMED and provider.requests["create"] == 0
    assert record.external_task_id == "x-1"


@pytest.mark.anyio
async def test_crash_while_queued_at_a_gateway_sends_it_once_under_the_same_id(tmp_path: Path) -> None:
    shot = make_shot("a")
    store = open_store(tmp_path)
    store.update("a", status=QUEUED, fingerprint=shot.fingerprint, attempts=1, external_task_id=external_task_id(shot))
    store.close()
    provider = FakeProvider(capabilities=GATEWAY)
    await run(provider, [shot], tmp_path)
    assert statuses(tmp_path) == {"a": SUCCEEDED}
    assert provider.create_calls == Counter({external_task_id(shot): 1})


@pytest.mark.anyio
async def test_waiting_shots_are_queued_and_submitted_at_is_the_creates_time(tmp_path: Path) -> None:
    shots = [make_shot(f"s{i}") for i in range(3)]
    sent: dict[str, float] = {}
    provider = FakeProvider(render=0.1, on_create=lambda shot: sent.setdefault(shot.id, time.time()))
    events: list[Event] = []
    await run(provider, shots, tmp_path, events=events, concurrency=1)

    path = [e.new for e in events if e.kind == SHOT and e.shot_id == "s2"]
    assert path[:3] == [QUEUED, SUBMITTING, SUBMITTED]
    record = load_manifest(tmp_path / "manifest.json").shots["s2"]
    submitted = epoch_seconds(record.submitted_at)
    assert submitted is not None and abs(submitted - sent["s2"]) < 0.05  # not when it started waiting


@dataclass
class Listing(FakeProvider):
    """Lists its tasks, so a run follows them through list rounds (where ``processing`` is noted without a write)."""

    capabilities: Capabilities = field(default_factory=lambda: Capabilities(list_tasks=True, absence_is_proof=True))

    async def list_tasks(self, *, page_size: int) -> list[Task]:
        self.requests["list"] += 1
        return [self._view(task) for task in reversed(self.tasks.values())][:page_size]


@pytest.mark.anyio
@pytest.mark.parametrize("provider_class", [FakeProvider, Listing])
async def test_every_transition_names_the_state_before(tmp_path: Path, provider_class: type[FakeProvider]) -> None:
    shots = [make_shot(f"s{i}") for i in range(5)]
    provider = provider_class(render=0.1)
    events: list[Event] = []
    await run(provider, shots, tmp_path, events=events, concurrency=2)
    assert any(e.new == "processing" for e in events)
    for shot in shots:
        moves = [(e.old, e.new) for e in events if e.kind == SHOT and e.shot_id == shot.id]
        assert moves and all(old != new for old, new in moves), moves
        for (_, before), (old, _) in itertools.pairwise(moves):
            assert old == before, moves


@dataclass
class LaggingTable(FakeProvider):
    """A gateway whose own table shows a task only ``lag`` seconds after its create."""

    lag: float = 0.2
    seen_missing: int = 0
    created_at: dict[str, float] = field(default_factory=dict)

    async def create_task(self, shot: ResolvedShot, *, external_task_id: str | None = None) -> Task:
        task = await super().create_task(shot, external_task_id=external_task_id)
        self.created_at[task.task_id] = time.time()
        return task

    async def get_task(self, task_id: str) -> Task:
        if time.time() - self.created_at.get(task_id, 0.0) < self.lag:
            self.seen_missing += 1
            raise TaskNotFoundError("task_not_exist")
        return await super().get_task(task_id)


@pytest.mark.anyio
async def test_task_not_visible_right_after_create_is_polled_again_never_recreated(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = LaggingTable(capabilities=GATEWAY, render=0.05, lag=0.3)
    await run(provider, [shot], tmp_path)
    assert statuses(tmp_path) == {"a": SUCCEEDED}
    assert provider.seen_missing >= 3  # more than not_found_attempts: inside the window they do not count
    assert provider.create_calls == Counter({external_task_id(shot): 1})


@dataclass
class Charging(FakeProvider):
    """Reports progress while running and ``final_unit_deduction`` once done."""

    async def get_task(self, task_id: str) -> Task:
        task = await super().get_task(task_id)
        if task.status.finished:
            charged = 0.0 if task.status.value == "failed" else 2.0
            return replace(task, units_charged=charged, raw_status="SUCCESS")
        return replace(task, progress="40%", raw_status="IN_PROGRESS")


@pytest.mark.anyio
async def test_charged_units_progress_and_the_providers_status_word_are_kept(tmp_path: Path) -> None:
    shots = [make_shot("a"), make_shot("b")]
    provider = Charging(render=0.15, outcomes={"b": ("failed", "risk control")})
    events: list[Event] = []
    await run(provider, shots, tmp_path, events=events)
    manifest = load_manifest(tmp_path / "manifest.json")
    assert manifest.shots["a"].status == SUCCEEDED and manifest.shots["a"].charged == 2.0
    assert manifest.shots["a"].provider_status == "SUCCESS"
    assert manifest.shots["b"].status == FAILED and manifest.shots["b"].charged == 0.0
    assert manifest.shots["b"].error == "risk control"
    progress = [e for e in events if e.kind == PROGRESS and e.shot_id == "a"]
    assert [e.data["progress"] for e in progress] == ["40%"]  # once per change, not once per poll


@pytest.mark.anyio
async def test_interrupted_while_retrying_a_definite_refusal_is_left_pending(tmp_path: Path) -> None:
    shot = make_shot("a")
    provider = FakeProvider(capabilities=GATEWAY, create_faults={"a": [RateLimitedError("429")] * 50})
    store = open_store(tmp_path)
    from orchestrator.run.scheduler import RetryPolicy
    from tests.fake_provider import options

    scheduler = scheduler_for(provider, store, options=options(retry=RetryPolicy(base=0.05, cap=0.05)))
    provider.on_create = lambda _shot: scheduler.interrupt() if provider.requests["create"] >= 2 else None
    try:
        await scheduler.run(plan_renders(store, [shot], scheduler.provider))
    finally:
        store.close()
    # Every try was refused before anything was created: the next run may send it, at a gateway too.
    assert statuses(tmp_path) == {"a": PENDING}


def test_external_ids_carry_the_folders_salt_which_a_resume_reuses(tmp_path: Path) -> None:
    first = open_store(tmp_path / "one")
    salt = first.manifest.salt
    first.close()
    again = open_store(tmp_path / "one")
    other = open_store(tmp_path / "two")
    assert len(salt) == 6 and again.manifest.salt == salt and other.manifest.salt != salt
    again.close()
    other.close()
    shot = make_shot("a")
    assert external_task_id(shot, salt=salt).endswith(f"-{salt}") and len(external_task_id(shot, salt=salt)) <= 64
    long = make_shot("s" * 60, project="p" * 48)
    assert len(external_task_id(long, salt=salt, attempt=12)) <= 64 and salt in external_task_id(long, salt=salt)
