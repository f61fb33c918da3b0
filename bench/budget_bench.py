"""Three `orchestrator run` processes of three projects on one account that allows 4 tasks in flight: with the shared
budget (4 slots through Redis) and without it (each run keeps its own count of 4).

    python bench/budget_bench.py [--shots 8] [--render 2]

Prints, for each mode: makespan against the ideal (ceil(N/4) x render time), requests the runs sent, the 1303
refusals the simulator answered, the most tasks it saw in flight, and whether any task was created twice.
Needs `redis-server` on PATH and the `studio` extra.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.budget.servers import SIMULATOR_RENDER_TIME, RedisServer, simulator_process
from tests.budget.test_runs import PROJECTS, finished, sim_stats, start
from tests.helpers import write_two_board_spec

SLOTS = 4


def measure(folder: Path, *, shots: int, budget: bool) -> dict[str, float]:
    specs = [write_two_board_spec(folder / name, shots, project=name, concurrency=SLOTS) for name in PROJECTS]
    redis = RedisServer(folder)
    redis.start()
    try:
        with simulator_process(slots=SLOTS) as url:
            runs = [finished(p) for p in [start(spec, url, redis.url if budget else None) for spec in specs]]
            stats = sim_stats(url)
    finally:
        redis.stop()
    makespan = max(run["ended"] for run in runs) - min(run["started"] for run in runs)
    return {
        "makespan": makespan,
        "requests": sum(run["requests"] for run in runs),
        "refused_1303": stats["faults"].get("1303", 0),
        "max_in_flight": stats["max_in_flight"],
        "duplicates": max(stats["submissions"].values()) - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=4, help="shots per project (default 4)")
    args = parser.parse_args()
    ideal = math.ceil(len(PROJECTS) * args.shots / SLOTS) * SIMULATOR_RENDER_TIME
    for budget in (True, False):
        with tempfile.TemporaryDirectory() as folder:
            figures = measure(Path(folder), shots=args.shots, budget=budget)
        label = "shared budget" if budget else "no budget    "
        print(
            f"{label}: makespan {figures['makespan']:.2f} s ({figures['makespan'] / ideal:.2f} x ideal {ideal:g} s), "
            f"{figures['requests']:.0f} requests, {figures['refused_1303']:.0f} x 1303, "
            f"max {figures['max_in_flight']:.0f} in flight, {figures['duplicates']:.0f} duplicates"
        )


if __name__ == "__main__":
    main()
