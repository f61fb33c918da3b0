"""bench/store_bench.py works (on a few renders; the benchmark itself is not run here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("store_bench", ROOT / "bench" / "store_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts bytes through /proc/self/io (Linux)")
def test_the_bench_runs_every_change_and_counts_what_it_wrote(bench: ModuleType, tmp_path: Path) -> None:
    figures = bench.measure(renders=30, concurrency=10, directory=tmp_path)
    assert figures.changes == 30 * 6
    assert figures.bytes_written > 0
    assert 0 < figures.commits < 30 * 4  # group commits: fewer transactions than durable changes
    assert "KiB/change" in figures.line()
