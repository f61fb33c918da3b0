"""Task state over time, per-key accounting and option changes, driven by a fake clock."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from orchestrator.errors import ConfigError
from orchestrator.providers.local.state import Refusal, SimulatorOptions, SimulatorState, key_id


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _state(**options):
    clock = Clock()
    options.setdefault("render_jitter", 0.0)
    return SimulatorState(SimulatorOptions(**options), clock=clock), clock


def _rendered(state, task):
    future: Future[None] = Future()
    future.set_result(None)
    task.render = future
    state.mark_rendered(task)


def test_status_moves_submitted_processing_succeed_with_time() -> None:
    state, clock = _state(render_time=10.0, processing_after=0.2)
    task = state.create(api_key="k", external_task_id=None, duration=5)
    _rendered(state, task)
    seen = []
    for t in (0.0, 1.9, 2.0, 9.9, 10.0, 50.0):
        clock.now = 100.0 + t
        seen.append(task.status_at(clock.now)[0])
    assert seen == ["submitted", "submitted", "processing", "processing", "succeed", "succeed"]
    assert task.status_at(110.0)[2] == 110.0  # succeed began at the render deadline


def test_succeed_waits_for_the_file_even_after_the_render_time() -> None:
    state, clock = _state(render_time=1.0)
    task = state.create(api_key="k", external_task_id=None, duration=5)
    pending: Future[None] = Future()
    task.render = pending
    assert task.status_at(105.0)[0] == "processing"
    clock.now = 107.0
    pending.set_result(None)
    state.mark_rendered(task)
    status, _, since = task.status_at(108.0)
    assert (status, since) == ("succeed", 107.0)


def test_a_render_that_raised_ends_failed() -> None:
    state, _ = _state(render_time=1.0)
    task = state.create(api_key="k", external_task_id=None, duration=5)
    broken: Future[None] = Future()
    broken.set_exception(RuntimeError("disk full"))
    task.render = broken
    status, message, _ = task.status_at(102.0)
    assert status == "failed" and "disk full" in message


def test_jitter_is_deterministic_with_a_seed_and_within_bounds() -> None:
    times = []
    for _ in range(2):
        state, _ = _state(render_time=10.0, render_jitter=0.5, seed=3)
        times.append([state.create(api_key="k", external_task_id=None, duration=5).render_time for _ in range(20)])
    assert times[0] == times[1]
    assert all(5.0 <= t <= 15.0 for t in times[0])
    assert len(set(times[0])) > 1


def test_task_ids_are_unique_strings_of_digits() -> None:
    state, _ = _state()
    ids = [state.create(api_key="k", external_task_id=None, duration=5).task_id for _ in range(50)]
    assert len(set(ids)) == 50 and all(i.isdigit() for i in ids)


def test_slot_is_held_until_the_task_ends_not_until_create_returns() -> None:
    state, clock = _state(render_time=5.0, concurrency_cap=1, failure_rate=1.0)
    state.create(api_key="k", external_task_id=None, duration=5)
    with pytest.raises(Refusal) as refused:
        state.create(api_key="k", external_task_id=None, duration=5)
    assert (refused.value.status, refused.value.code) == (429, 1303)
    state.create(api_key="other", external_task_id=None, duration=5)  # the cap is per key
    clock.now += 5.0  # the first task has now failed, which frees its slot
    state.create(api_key="k", external_task_id=None, duration=5)
    stats = state.stats()
    assert stats.max_in_flight == 1
    assert stats.in_flight == 1  # "other" ended at the same moment


def test_stats_never_show_the_key() -> None:
    state, _ = _state()
    state.create(api_key="sk-secret-123", external_task_id="e", duration=5)
    assert "sk-secret-123" not in repr(state.stats().to_json())
    assert "sk-secret" not in key_id("sk-secret-123")


def test_configure_changes_future_tasks_and_checks_names_and_types() -> None:
    state, _ = _state(render_time=1.0)
    state.configure({"render_time": 4, "concurrency_cap": None})
    assert state.options.render_time == 4.0
    assert state.create(api_key="k", external_task_id=None, duration=5).render_time == 4.0
    for bad in ({"nope": 1}, {"fps": True}, {"failure_rate": 1.5}, {"caption": 1}):
        with pytest.raises(ConfigError):
            state.configure(bad)


@pytest.mark.parametrize(
    "options", [{"failure_rate": -0.1}, {"drop_rate": 2}, {"render_time": -1}, {"fps": 0}, {"concurrency_cap": -1}]
)
def test_options_out_of_range_are_config_errors(options) -> None:
    with pytest.raises(ConfigError):
        SimulatorOptions(**options)
