"""The poll schedule: scouts before anything is known, then polls clustered around the learnt render time."""

from __future__ import annotations

import itertools
import random

import pytest

from orchestrator.run.polling import PollPolicy, RenderTimes, next_poll_at

POLICY = PollPolicy(initial_estimate=60, probe_start=1.0, probe_ratio=1.3, scouts=3, min_interval=0.05, jitter=0.1)


def schedule(times: RenderTimes, *, rank: int | None, until: float, policy: PollPolicy = POLICY) -> list[float]:
    rng = random.Random(0)
    polls: list[float] = []
    last: float | None = None
    while True:
        at = next_poll_at(created=0.0, last_poll=last, times=times, scout_rank=rank, policy=policy, rng=rng)
        if at > until:
            return polls
        polls.append(at)
        last = at


def test_render_times_quantiles_over_a_window() -> None:
    times = RenderTimes(window=4)
    for value in (10, 20, 30, 40, 50):
        times.add(value)
    times.add(-1)  # ignored
    assert len(times) == 4 and times.quantile(0) == 20 and times.quantile(1) == 50
    assert times.quantile(0.5) == 35


def test_render_time_quantiles_follow_each_new_time() -> None:
    times = RenderTimes(window=3)
    for value in (10, 20, 30):
        times.add(value)
    assert times.quantile(0.5) == 20 and times.quantile(1) == 30  # asked again each round: kept until a time comes
    times.add(70)  # 10 leaves the window
    assert times.quantile(0.5) == 30 and times.quantile(1) == 70 and times.quantile(0) == 20
    times.add(float("nan"))  # ignored, and changes nothing
    assert times.quantile(0.5) == 30


def test_scouts_probe_geometrically_with_shifted_phases() -> None:
    empty = RenderTimes()
    first = schedule(empty, rank=0, until=10)
    second = schedule(empty, rank=1, until=10)
    assert first[0] == 1.0 and abs(first[1] - 1.3) < 1e-9
    assert 1.0 < second[0] < 1.3
    merged = sorted(first + second + schedule(empty, rank=2, until=10))
    steps = [b / a for a, b in itertools.pairwise(merged)]
    assert max(steps) < 1.1  # together the scouts sample every ~9 %


def test_non_scouts_wait_for_an_estimate() -> None:
    assert schedule(RenderTimes(), rank=None, until=59) == []


def test_informed_polls_cluster_around_the_render_time_then_back_off() -> None:
    times = RenderTimes()
    for value in (95, 100, 105):
        times.add(value)
    polls = schedule(times, rank=None, until=300)
    assert 95 <= polls[0] <= 100
    dense = [p for p in polls if p <= 105 * 1.15]
    assert all(b - a <= 0.04 * 100 + 1e-9 for a, b in itertools.pairwise(dense))
    late = [p for p in polls if p > 130]
    assert late and len(late) < 10  # backoff: a quarter of the age each time, capped


def test_batched_tail_polls_are_denser() -> None:
    times = RenderTimes()
    for value in (95, 100, 105):
        times.add(value)
    rng = random.Random(0)
    alone = next_poll_at(created=0, last_poll=100, times=times, scout_rank=None, policy=POLICY, rng=rng)
    batched = next_poll_at(created=0, last_poll=100, times=times, scout_rank=None, policy=POLICY, rng=rng, batched=True)
    assert alone == 100 + POLICY.tail_fraction * 100
    assert batched == 100 + POLICY.batch_tail_fraction * 100 < alone


def test_min_interval_is_respected() -> None:
    times = RenderTimes()
    times.add(0.01)
    polls = schedule(times, rank=None, until=1)
    assert all(b - a >= POLICY.min_interval - 1e-9 for a, b in itertools.pairwise(polls))


def test_more_scouts_when_more_tasks_wait_for_a_first_render_time() -> None:
    from orchestrator.run.polling import scout_count

    policy = PollPolicy(scouts=3, tasks_per_scout=8, max_scouts=8)
    assert [scout_count(n, policy) for n in (0, 3, 24, 25, 50, 500)] == [3, 3, 3, 4, 7, 8]


def test_more_scouts_sample_the_time_line_more_finely() -> None:
    empty = RenderTimes()

    def merged(count: int) -> list[float]:
        polls: list[float] = []
        for rank in range(count):
            rng = random.Random(0)
            last: float | None = None
            while (
                at := next_poll_at(
                    created=0.0, last_poll=last, times=empty, scout_rank=rank, scout_count=count, policy=POLICY, rng=rng
                )
            ) <= 10:
                polls.append(at)
                last = at
        return sorted(polls)

    def widest_step(polls: list[float]) -> float:
        return max(b / a for a, b in itertools.pairwise(polls))

    assert widest_step(merged(8)) < 1.04 < widest_step(merged(3)) < 1.1


def test_a_low_request_budget_keeps_the_default_scouts() -> None:
    from orchestrator.run.polling import PollPlanner

    def scouts(rps: float | None) -> int:
        planner = PollPlanner(PollPolicy(scouts=2), requests_per_second=rps, rng=random.Random(0))
        for i in range(50):
            planner.started(f"s{i}")
        return planner.scouts()

    assert (scouts(None), scouts(1000.0), scouts(20.0), scouts(2.0)) == (7, 7, 5, 2)


def test_the_planner_says_when_waiting_tasks_should_recompute() -> None:
    from orchestrator.run.polling import PollPlanner

    planner = PollPlanner(PollPolicy(scouts=2, tasks_per_scout=8), requests_per_second=None, rng=random.Random(0))
    # Two scouts up to 16 tasks waiting, a third from the 17th (one per 8).
    assert [planner.started(f"s{i}") for i in range(17)] == [False] * 16 + [True]
    assert planner.ended("s0") and not planner.ended("nobody")
    assert planner.next_poll("s1", created=0.0, last_poll=None) == pytest.approx(planner.policy.probe_start)
    assert [planner.observe(1.0) for _ in range(4)] == [True, True, True, False]  # the first few finishes only
    assert not planner.started("late")  # once a render time is known there are no scouts
    assert planner.overdue_after() == 2.0
