"""bench/run_bench.py's arithmetic: the oracle lower bound and the breakdown of a run (not the run itself: slow)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_bench", ROOT / "bench" / "run_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_oracle_is_greedy_list_scheduling_in_arrival_order(bench: ModuleType) -> None:
    assert bench.oracle_makespan([1.0] * 4, slots=2) == 2.0
    # Each task takes the slot that frees first: B (0.9) gets the third, A (1.1) the fourth.
    assert bench.oracle_makespan([1.1, 0.9, 1.0, 1.0], slots=2) == pytest.approx(2.1)
    assert bench.oracle_makespan([1.1, 0.9, 0.9, 1.1], slots=2) == pytest.approx(2.2)
    assert bench.oracle_makespan([], slots=3) == 0.0


def test_breakdown_accounts_for_every_slot_second(bench: ModuleType) -> None:
    def shot(slot: float, render: float) -> dict[str, float]:
        return {
            "slot": slot,
            "sent": slot + 0.01,
            "provider_created": slot + 0.02,
            "provider_ended": slot + 0.02 + render,
            "detected": slot + 0.05 + render,
            "released": slot + 0.05 + render,
            "answered": slot + 0.03,
            "downloaded": slot + 0.1 + render,
        }

    timeline = {"a": shot(0.1, 1.0), "b": shot(0.1, 0.9), "c": shot(1.0, 1.0)}
    figures = {"timeline": timeline, "started": 0.0, "makespan": 2.15}
    lines = bench.breakdown(figures, argparse.Namespace(concurrency=2))
    assert "start-up 0.10" in lines[0] and "slots in use 1.95" in lines[0] and "tail 0.05" in lines[0]
    # 2 slots x 1.95 s = 3.9 slot-seconds: 2.9 of render, 0.02 x 3 before it, 0.03 x 3 lag, the rest (0.85) idle.
    assert "3.9 = slot->sent 0.0 + sent->render start 0.0 + render 2.9" in lines[1]
    assert "render end->detected 0.1" in lines[1] and "idle 0.8" in lines[1]


def test_the_naive_baseline_finds_the_kling_task_in_every_dialects_answer(bench: ModuleType) -> None:
    task = {"task_id": "1", "task_status": "succeed"}
    assert bench._naive_task({"code": 0, "data": task}) == task
    assert bench._naive_task({"code": "success", "data": {"status": "SUCCESS", "data": task}}) == task
    wrapped = {"code": "success", "data": {"status": "SUCCESS", "data": {"code": 0, "data": task}}}
    assert bench._naive_task(wrapped) == task


def test_each_dialect_is_benchmarked_with_the_client_the_factory_would_give(bench: ModuleType) -> None:
    caps = {d: bench.client_for(d, "http://127.0.0.1:9").capabilities for d in ("cometapi", "kling", "gateway")}
    assert caps["gateway"].can_confirm is False and caps["kling"].absence_is_proof is True
    assert caps["cometapi"].list_tasks is True


def test_the_bench_client_uses_the_simulators_own_keys(bench: ModuleType) -> None:
    from orchestrator.providers.local import LocalSimulator

    assert bench.LOCAL_API_KEY == LocalSimulator.LOCAL_API_KEY
    assert (bench.LOCAL_ACCESS_KEY, bench.LOCAL_SECRET_KEY) == (
        LocalSimulator.LOCAL_ACCESS_KEY,
        LocalSimulator.LOCAL_SECRET_KEY,
    )


@pytest.fixture(scope="module")
def scale_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_bench", ROOT / "bench" / "scale_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _scale_figures(scale_bench: ModuleType, **changes: object) -> object:
    figures = {
        "n": 10_000,
        "concurrency": 200,
        "render": 5.0,
        "succeeded": 10_000,
        "makespan": 262.5,
        "client_cpu_seconds": 35.0,
        "peak_rss_mb": 120.0,
        "written_bytes": 180_000_000,
        "video_bytes": 32_000_000,
        "store_files_bytes": 26_000_000,
        "requests": 23_000,
        "duplicates": 0,
    }
    return scale_bench.ScaleFigures(**{**figures, **changes})


def test_the_scale_bench_judges_each_target_from_its_own_figures(scale_bench: ModuleType) -> None:
    figures = _scale_figures(scale_bench)
    # ideal = ceil(10,000 / 200) waves x 5 s; the videos are the client's writes too, but not the store's.
    assert figures.ideal == 250.0 and figures.makespan_over_ideal == pytest.approx(1.05)  # type: ignore[attr-defined]
    assert figures.store_written_mb == pytest.approx(148.0)  # type: ignore[attr-defined]
    assert figures.cpu_ms_per_shot == pytest.approx(3.5) and figures.requests_per_shot == 2.3  # type: ignore[attr-defined]
    assert all(figures.verdicts().values())  # type: ignore[attr-defined]
    # 10,001 shots need a 51st wave: the ideal rounds up.
    assert _scale_figures(scale_bench, n=10_001).ideal == 255.0  # type: ignore[attr-defined]
    over = _scale_figures(scale_bench, written_bytes=240_000_000, duplicates=1, makespan=280.0, succeeded=9_999)
    verdicts = over.verdicts()  # type: ignore[attr-defined]
    assert [name for name, ok in verdicts.items() if not ok] == [
        "store written",
        "makespan",
        "no duplicates",
        "all succeeded",
    ]
    assert "OVER" in "\n".join(over.lines())  # type: ignore[attr-defined]
