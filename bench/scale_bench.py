"""Benchmark: a 10,000-shot production against the local simulator, in its cheapest video mode.

    .venv/bin/python bench/scale_bench.py                          # 10,000 shots, concurrency 200, 5 s renders
    .venv/bin/python bench/scale_bench.py --n 1000 --render 1      # a smoke run
    .venv/bin/python bench/scale_bench.py --n 2000 --profile p.out # cProfile of the client (pstats file)

The client (our scheduler, through ``arun_project``) runs in a child process against a simulator in this one, as
``run_bench.py`` does, at ``--rps`` (default 1,000). It prints, against the targets of the scale issue:

- store bytes written for the whole run: what the client passed to write(2) (``wchar`` in /proc/self/io: the
  database's log, its checkpoints and the ``manifest.json`` snapshot), less the videos it wrote (goal <= 200 MB;
  the JSON manifest of before the store wrote 9.8 GB); with, for reference, the size the store's files end at;
- client CPU per shot (goal <= 4 ms) and peak RSS of the client (VmHWM, goal <= 150 MB);
- makespan / ideal, ideal = ceil(N / C) x render (goal <= 1.10 at 5 s renders);
- requests per shot as the simulator counted them, and duplicate submissions (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import _cpu_seconds, _peak_rss_mb, client_for, make_project  # one project and client, two benches

ROOT = Path(__file__).resolve().parent.parent
GOAL_STORE_MB = 200.0
GOAL_CPU_MS_PER_SHOT = 4.0
GOAL_PEAK_RSS_MB = 150.0
GOAL_MAKESPAN_OVER_IDEAL = 1.10
STORE_FILES = ("renders.db", "manifest.json")  # the database, its -wal, and the snapshot


@dataclass(frozen=True)
class ScaleFigures:
    """One run's figures; the arithmetic of the report, kept apart from the run so that a test can check it."""

    n: int
    concurrency: int
    render: float
    succeeded: int
    makespan: float
    client_cpu_seconds: float
    peak_rss_mb: float
    written_bytes: int  # everything the client passed to write(2)
    video_bytes: int  # of which the videos
    store_files_bytes: int  # renders.db + -wal + manifest.json at the end
    requests: int  # API requests the simulator counted
    duplicates: int
    commits: int = 0  # store transactions
    routes: tuple[tuple[str, int], ...] = ()  # requests by route, as the simulator counted them

    @property
    def ideal(self) -> float:
        return math.ceil(self.n / self.concurrency) * self.render

    @property
    def makespan_over_ideal(self) -> float:
        return self.makespan / self.ideal

    @property
    def store_written_mb(self) -> float:
        return max(0, self.written_bytes - self.video_bytes) / 1e6

    @property
    def cpu_ms_per_shot(self) -> float:
        return 1000 * self.client_cpu_seconds / self.n

    @property
    def requests_per_shot(self) -> float:
        return self.requests / self.n

    def verdicts(self) -> dict[str, bool]:
        return {
            "store written": self.store_written_mb <= GOAL_STORE_MB,
            "CPU per shot": self.cpu_ms_per_shot <= GOAL_CPU_MS_PER_SHOT,
            "peak RSS": self.peak_rss_mb <= GOAL_PEAK_RSS_MB,
            "makespan": self.makespan_over_ideal <= GOAL_MAKESPAN_OVER_IDEAL,
            "no duplicates": self.duplicates == 0,
            "all succeeded": self.succeeded == self.n,
        }

    def lines(self) -> list[str]:
        def mark(name: str) -> str:
            return "ok" if self.verdicts()[name] else "OVER"

        return [
            f"N={self.n} concurrency={self.concurrency} render={self.render:g} s  succeeded {self.succeeded}  "
            f"duplicates {self.duplicates} ({mark('no duplicates')})",
            f"  store written {self.store_written_mb:7.1f} MB (goal <= {GOAL_STORE_MB:g}; {mark('store written')})  "
            f"store files at the end {self.store_files_bytes / 1e6:.1f} MB  videos {self.video_bytes / 1e6:.1f} MB",
            f"  client CPU {self.client_cpu_seconds:6.1f} s = {self.cpu_ms_per_shot:5.2f} ms/shot "
            f"(goal <= {GOAL_CPU_MS_PER_SHOT:g}; {mark('CPU per shot')})  peak RSS {self.peak_rss_mb:6.1f} MB "
            f"(goal <= {GOAL_PEAK_RSS_MB:g}; {mark('peak RSS')})",
            f"  makespan {self.makespan:7.2f} s = {self.makespan_over_ideal:5.3f} x ideal ({self.ideal:g} s; goal <= "
            f"{GOAL_MAKESPAN_OVER_IDEAL:g}; {mark('makespan')})  requests/shot {self.requests_per_shot:5.2f}",
            f"  store transactions {self.commits:,}  requests by route: "
            + ", ".join(f"{route} {count:,}" for route, count in self.routes),
        ]


# --- the client (in a child process) -------------------------------------------------------------------------------


def written_so_far() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar line")


async def run_client(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from orchestrator.api import arun_project
    from orchestrator.run.events import SHOT, Event
    from orchestrator.run.polling import PollPolicy

    project = make_project(args.n, work)
    last_done = [0.0]

    def listen(event: Event) -> None:  # as little as can be: the client's CPU is what is measured
        if event.kind == SHOT and event.new == "succeeded":
            last_done[0] = event.at

    started = time.time()
    poll = PollPolicy(**json.loads(args.poll)) if args.poll else None
    async with client_for("cometapi", args.base_url) as provider:
        result = await arun_project(
            project, provider=provider, concurrency=args.concurrency, rps=args.rps, listeners=[listen], poll=poll
        )
    out = project.output_dir
    assert result.stats is not None
    return {
        "commits": result.stats.manifest_writes,
        "succeeded": sum(1 for s in result.statuses.values() if s == "succeeded"),
        "makespan": last_done[0] - started if last_done[0] else math.nan,
        "video_bytes": sum(p.stat().st_size for p in out.rglob("*.mp4")),
        "store_files_bytes": sum(p.stat().st_size for p in out.iterdir() if p.name.startswith(STORE_FILES)),
    }


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="scale-bench-", dir=args.dir) as tmp:
        written = written_so_far()
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        figures = asyncio.run(run_client(args, Path(tmp)))
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        figures["written_bytes"] = written_so_far() - written
        # Taken before the temp folder is deleted: removing 10,000 videos is the bench's housekeeping, not the run's.
        usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["peak_rss_mb"] = _peak_rss_mb(usage)
    figures["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(figures))


# --- the parent: simulator and report ------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> ScaleFigures:
    from orchestrator.providers.local import LocalSimulator, SimulatorOptions

    options = SimulatorOptions(render_time=args.render, render_jitter=args.jitter, cheap_video=True, seed=args.seed)
    with LocalSimulator(options) as simulator:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            *("--child", "--base-url", simulator.base_url),
            *("--n", str(args.n), "--concurrency", str(args.concurrency), "--rps", str(args.rps)),
            *(("--profile", str(args.profile)) if args.profile else ()),
            *(("--poll", args.poll) if args.poll else ()),
            *(("--dir", str(args.dir)) if args.dir else ()),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"the client failed:\n{done.stderr[-3000:]}")
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        stats = simulator.stats()
    requests = sum(n for route, n in stats.requests.items() if not route.endswith(("/_sim/stats", "/_sim/config")))
    return ScaleFigures(
        n=args.n,
        concurrency=args.concurrency,
        render=args.render,
        succeeded=figures["succeeded"],
        makespan=figures["makespan"],
        client_cpu_seconds=figures["cpu_seconds"],
        peak_rss_mb=figures["peak_rss_mb"],
        written_bytes=figures["written_bytes"],
        video_bytes=figures["video_bytes"],
        store_files_bytes=figures["store_files_bytes"],
        requests=requests,
        duplicates=sum(count - 1 for count in stats.submissions.values() if count > 1),
        commits=figures["commits"],
        routes=tuple(sorted(stats.requests.items())),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--render", type=float, default=5.0, help="mean render time, seconds")
    parser.add_argument("--jitter", type=float, default=0.05, help="relative render-time jitter (uniform +/-)")
    parser.add_argument("--rps", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=Path, help="profile the client with cProfile, stats to this file")
    parser.add_argument("--poll", help="PollPolicy overrides as JSON, e.g. '{\"batch_tail_fraction\": 0.03}'")
    parser.add_argument("--dir", type=Path, help="where the client's output folder goes (default: the temp dir)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before: {load}", flush=True)
    before = _cpu_seconds()
    figures = measure(args)
    print("\n".join(figures.lines()))
    print(
        f"simulator CPU {_cpu_seconds() - before:.1f} s; load average after: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    return 0 if all(figures.verdicts().values()) else 1


if __name__ == "__main__":
    sys.exit(main())
