"""Benchmark: the scheduler against the local simulator, next to a naive baseline, in the same run.

    .venv/bin/python bench/run_bench.py            # N=200, concurrency 50, render 1 s +/-5 %
    .venv/bin/python bench/run_bench.py --verbose  # plus where the time goes (see ``breakdown``)
    .venv/bin/python bench/run_bench.py --n 60 --jitter 0.25 --dump figures.json
    .venv/bin/python bench/run_bench.py --dialect gateway   # the simulator as CometAPI really is (or kling, all)

``--dialect`` picks which provider the simulator imitates (``cometapi``, the seed contract with a list and a lookup;
``kling``, Kling direct with JWTs; ``gateway``, CometAPI's new-api gateway, with wrapped answers, no list, no lookup
and a table that shows a task a moment after its create) and the client that goes with it; ``all`` runs each.

For each of ``orchestrator`` (our scheduler, default polling policy) and ``naive`` (asyncio.gather + a semaphore +
polling every ``--naive-interval`` seconds, written here only) it starts a fresh simulator in cheap-video mode, runs
the client in a child process (so peak RSS is the client's own), and prints:

- makespan / ideal, with ideal = ceil(N / C) x render time (goal <= 1.05), and makespan / oracle, with oracle the
  makespan of a zero-overhead greedy scheduler given the render times the simulator actually drew (with jitter no
  scheduler can beat it; ideal assumes every render takes exactly the mean);
- HTTP requests per shot, as counted by the simulator (create + polls + lookups + download; goal <= 4);
- median detection lag: from the moment the simulator marks a task done to the moment the client notices, as a
  fraction of the render time (goal <= 5 %);
- peak RSS of the client process; for ours also manifest writes and the time they took;
- CPU seconds of the client process and of the simulator (this process, which does nothing else meanwhile).

``--verbose`` adds the per-shot timeline of ours (slot taken, create sent, render start and end at the provider,
end detected, slot released, video on disk) folded into: start-up, the window in which slots are held (its
slot-seconds split into waiting to send, the create's trip, render, detection lag, detected -> released, idle) and
the tail after the last slot is released.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import heapq
import io
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_project(n: int, work: Path) -> Any:
    from PIL import Image

    from orchestrator.spec.fingerprint import fingerprint
    from orchestrator.spec.shot import ImageRef, Limits, ResolvedProject, ResolvedShot

    boards: list[ImageRef] = []
    for k, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]):
        buffer = io.BytesIO()
        Image.new("RGB", (480, 320), colour).save(buffer, format="PNG")
        data = buffer.getvalue()
        path = work / f"board{k}.png"
        path.write_bytes(data)
        boards.append(
            ImageRef(
                source="path",
                ref=path.name,
                path=path,
                sha256=hashlib.sha256(data).hexdigest(),
                width=480,
                height=320,
                format="PNG",
                bytes=len(data),
            )
        )
    shots = []
    for i in range(n):
        shot = ResolvedShot(
            id=f"b{i:03d}",
            index=i,
            project="bench",
            model="kling-v1-6",
            images=(boards[i % 4], boards[(i + 1) % 4]),
            prompt=f"bench shot {i}: a slow pan",
        )
        shots.append(ResolvedShot(**{**shot.__dict__, "fingerprint": fingerprint(shot)}))
    return ResolvedProject(
        path=work / "bench.yaml",
        sha256="0" * 64,
        version=1,
        project="bench",
        model="kling-v1-6",
        output_dir=work / "out",
        shots=tuple(shots),
        limits=Limits(concurrency=50, requests_per_second=1000.0),
    )


# --- the two clients (run in a child process) ----------------------------------------------------------------------


async def run_ours(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from orchestrator.api import arun_project
    from orchestrator.run.events import SHOT, Event
    from orchestrator.run.polling import PollPolicy

    project = make_project(args.n, work)
    lags: list[float] = []
    done_at: list[float] = []

    phases: dict[str, dict[str, float]] = {}

    def listen(event: Event) -> None:
        if event.kind == SHOT and event.shot_id is not None and event.new is not None:
            phases.setdefault(event.shot_id, {}).setdefault(event.new, event.at)
        if event.kind == SHOT and event.new == "downloading" and "provider_updated_at" in event.data:
            lags.append(event.at - int(event.data["provider_updated_at"]) / 1000)  # type: ignore[call-overload]
        if event.kind == SHOT and event.new == "succeeded":
            done_at.append(event.at)

    started = time.time()
    async with client_for(args.dialect, args.base_url) as provider:
        result = await arun_project(
            project,
            provider=provider,
            concurrency=args.concurrency,
            rps=args.rps,
            listeners=[listen],
            poll=PollPolicy(**json.loads(args.poll)) if args.poll else None,
        )
    assert result.stats is not None
    return {
        "ok": result.ok,
        "succeeded": sum(1 for s in result.statuses.values() if s == "succeeded"),
        "makespan": max(done_at) - started if done_at else math.nan,
        "lags": lags,
        "client_requests": result.stats.requests,
        "manifest_writes": result.stats.manifest_writes,
        "manifest_write_seconds": result.stats.manifest_write_seconds,
        "phases": _phase_medians(phases),
        "started": started,
        "timeline": result.stats.timeline,
        # What the provider itself took (its created_at -> updated_at): above --render when the simulator's own
        # video encoding falls behind on a busy machine, which no client can make up for.
        "provider_render_mean": statistics.mean(result.stats.render_seconds) if result.stats.render_seconds else 0,
    }


# The simulator's keys (``LocalSimulator.LOCAL_*``, checked by tests/test_bench.py), written out so that the client's
# process never imports the simulator (PyAV, numpy, Starlette): its peak RSS is the client's own.
LOCAL_API_KEY = "local-simulator-key"
LOCAL_ACCESS_KEY = "local-access-key"
LOCAL_SECRET_KEY = "local-secret-key-for-hs256-signing"


def client_for(dialect: str, base_url: str) -> Any:
    """The client the factory would give for a simulator of ``dialect`` at ``base_url`` (which runs elsewhere)."""
    from orchestrator.providers.cometapi import GATEWAY_CAPABILITIES, SIMULATOR_CAPABILITIES, CometAPIProvider
    from orchestrator.providers.kling import KlingProvider

    if dialect == "kling":
        return KlingProvider(base_url=base_url, name="local", access_key=LOCAL_ACCESS_KEY, secret_key=LOCAL_SECRET_KEY)
    capabilities = GATEWAY_CAPABILITIES if dialect == "gateway" else SIMULATOR_CAPABILITIES
    return CometAPIProvider(base_url=base_url, api_key=LOCAL_API_KEY, name="local", capabilities=capabilities)


def _phase_medians(phases: dict[str, dict[str, float]]) -> dict[str, float]:
    """Median seconds of each step: create (submitting -> submitted), wait (submitted -> downloading), download."""
    steps = {
        "create": ("submitting", "submitted"),
        "wait": ("submitted", "downloading"),
        "download": ("downloading", "succeeded"),
    }
    out: dict[str, float] = {}
    for name, (a, b) in steps.items():
        values = [p[b] - p[a] for p in phases.values() if a in p and b in p]
        if values:
            out[name] = round(statistics.median(values), 3)
    return out


async def run_naive(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """What one writes first: a semaphore, gather, fixed sleeps. No adaptivity, no manifest."""
    import httpx

    from orchestrator.providers.cometapi import build_request_body

    project = make_project(args.n, work)
    route = f"{args.base_url}{'' if args.dialect == 'kling' else '/kling'}/v1/videos/multi-image2video"
    headers = {"Authorization": f"Bearer {_naive_token(args.dialect)}"}
    semaphore = asyncio.Semaphore(args.concurrency)
    lags: list[float] = []
    done_at: list[float] = []
    out = work / "naive"
    out.mkdir()

    async def one(client: httpx.AsyncClient, shot: Any) -> None:
        body = build_request_body(shot)
        async with semaphore:
            while True:
                answer = await client.post(route, json=body, headers=headers)
                if answer.status_code == 200:
                    break
                await asyncio.sleep(1.0)
            task_id = answer.json()["data"]["task_id"]
            while True:
                await asyncio.sleep(args.naive_interval)
                answer = await client.get(f"{route}/{task_id}", headers=headers)
                if answer.status_code != 200:
                    continue  # the gateway's "task_not_exist" right after a create: ask again
                data = _naive_task(answer.json())
                if data["task_status"] in ("succeed", "failed"):
                    lags.append(time.time() - data["updated_at"] / 1000)
                    break
        if data["task_status"] == "succeed":
            video = await client.get(data["task_result"]["videos"][0]["url"], headers=headers)
            (out / f"{shot.id}.mp4").write_bytes(video.content)
            done_at.append(time.time())

    started = time.time()
    limits = httpx.Limits(max_connections=args.concurrency + 10)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(one(client, shot) for shot in project.shots))
    return {
        "ok": len(done_at) == args.n,
        "succeeded": len(done_at),
        "makespan": max(done_at) - started if done_at else math.nan,
        "lags": lags,
    }


def _peak_rss_mb(usage: resource.struct_rusage) -> float:
    """This process's own peak RSS. Linux keeps ``ru_maxrss`` across exec, so a child started by a large parent
    would report the parent's size; the kernel's high-water mark of this address space (VmHWM) starts afresh."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return usage.ru_maxrss / 1024


def _naive_token(dialect: str) -> str:
    if dialect != "kling":
        return LOCAL_API_KEY
    import jwt

    now = int(time.time())
    claims = {"iss": LOCAL_ACCESS_KEY, "exp": now + 1800, "nbf": now - 5}
    return jwt.encode(claims, LOCAL_SECRET_KEY, algorithm="HS256", headers={"typ": "JWT"})


def _naive_task(body: dict[str, Any]) -> dict[str, Any]:
    """The Kling task in a query's answer: flat, or one or two levels down the gateway's wrapper."""
    data: dict[str, Any] = body["data"]
    while "task_status" not in data and isinstance(data.get("data"), dict):
        data = data["data"]
    return data


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        runner = run_ours if args.child == "orchestrator" else run_naive
        figures = asyncio.run(runner(args, Path(tmp)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["peak_rss_mb"] = _peak_rss_mb(usage)
    figures["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(figures))


# --- the parent: simulator, children, table ------------------------------------------------------------------------


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    from orchestrator.providers.local import LocalSimulator, SimulatorOptions

    options = SimulatorOptions(
        render_time=args.render, render_jitter=args.jitter, cheap_video=True, seed=args.seed, dialect=args.dialect
    )
    with LocalSimulator(options) as simulator:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            mode,
            "--base-url",
            simulator.base_url,
            *("--dialect", args.dialect),
            *("--n", str(args.n), "--concurrency", str(args.concurrency), "--rps", str(args.rps)),
            *("--naive-interval", str(args.naive_interval)),
            *(("--poll", args.poll) if args.poll else ()),
        ]
        # The simulator is this process's only work while the child runs: its CPU time is the simulator's.
        before = _cpu_seconds()
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        simulator_cpu = _cpu_seconds() - before
        if done.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        stats = simulator.stats()
        tasks = sorted(simulator.state.all_tasks(), key=lambda t: t.created_mono)
    figures["simulator_cpu_seconds"] = simulator_cpu
    figures["drawn_renders"] = [t.render_time for t in tasks]
    figures["oracle"] = oracle_makespan(figures["drawn_renders"], slots=args.concurrency)
    api_requests = sum(n for route, n in stats.requests.items() if not route.endswith(("/_sim/stats", "/_sim/config")))
    figures["requests_per_shot"] = api_requests / args.n
    figures["duplicates"] = sum(count - 1 for count in stats.submissions.values() if count > 1)
    figures["sim_max_in_flight"] = stats.max_in_flight
    figures["routes"] = stats.requests
    return figures


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def oracle_makespan(renders: list[float], *, slots: int) -> float:
    """The makespan of a zero-overhead greedy scheduler: each task starts the instant a slot frees, in the order
    the simulator received them, and takes exactly the render time the simulator drew for it."""
    free = [0.0] * slots
    for seconds in renders:
        start = heapq.heappop(free)
        heapq.heappush(free, start + seconds)
    return max(free) if renders else 0.0


def report(mode: str, figures: dict[str, Any], args: argparse.Namespace) -> str:
    ideal = math.ceil(args.n / args.concurrency) * args.render
    lag = statistics.median(figures["lags"]) / args.render if figures["lags"] else math.nan
    # The first wave finishes before anything is known about render times; the rest shows the steady state.
    later = figures["lags"][args.concurrency :]
    steady = statistics.median(later) / args.render if later else math.nan
    extra = ""
    if "manifest_writes" in figures:
        extra = f"  manifest writes {figures['manifest_writes']} ({figures['manifest_write_seconds']:.2f} s)"
    return (
        f"{mode:13} ok={figures['ok']!s:5} makespan {figures['makespan']:6.2f} s = {figures['makespan'] / ideal:5.3f} "
        f"x ideal = {figures['makespan'] / figures['oracle']:5.3f} x oracle ({figures['oracle']:.2f} s)  "
        f"requests/shot {figures['requests_per_shot']:5.2f}  median lag {lag * 100:5.1f} % "
        f"of render (after the first wave {steady * 100:4.1f} %)  "
        f"p90 lag {_p90(figures['lags']) / args.render * 100:5.1f} %  peak RSS "
        f"{figures['peak_rss_mb']:6.1f} MB  max in flight {figures['sim_max_in_flight']}  "
        f"duplicates {figures['duplicates']}{extra}  CPU client {figures['cpu_seconds']:.1f} s, "
        f"simulator {figures['simulator_cpu_seconds']:.1f} s"
    )


def breakdown(figures: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """Where the makespan goes: start-up, the window in which slots are held, and the tail after the last slot.

    Inside the window, C x window slot-seconds are either held by a task (split into before the render, the
    render itself, detection lag and detected -> released) or idle (no shot to start, or a hand-over under way).
    """
    timeline: dict[str, dict[str, float]] = figures["timeline"]
    marks = [m for m in timeline.values() if {"slot", "released", "provider_created", "provider_ended"} <= m.keys()]
    if not marks:
        return ["    (no timeline)"]
    started = figures["started"]
    first_slot = min(m["slot"] for m in marks)
    last_release = max(m["released"] for m in marks)
    last_done = max(m.get("downloaded", 0.0) for m in timeline.values())
    window = last_release - first_slot
    spans = {
        "slot->sent": [m["sent"] - m["slot"] for m in marks],
        "sent->render start": [m["provider_created"] - m["sent"] for m in marks],
        "render": [m["provider_ended"] - m["provider_created"] for m in marks],
        "render end->detected": [m["detected"] - m["provider_ended"] for m in marks],
        "detected->released": [m["released"] - m["detected"] for m in marks],
    }
    held = sum(sum(v) for v in spans.values())
    idle = args.concurrency * window - held
    lines = [
        f"    makespan {figures['makespan']:.2f} s = start-up {first_slot - started:.2f} (run start -> first slot) "
        f"+ slots in use {window:.2f} + tail {last_done - last_release:.2f} (last slot released -> last video)",
        f"    slot-seconds in that window: {args.concurrency * window:.1f} = "
        + " + ".join(f"{name} {sum(v):.1f}" for name, v in spans.items())
        + f" + idle {idle:.1f}",
        "    per shot median / p90 (s): "
        + ", ".join(f"{name} {statistics.median(v):.3f}/{_p90(v):.3f}" for name, v in spans.items()),
    ]
    answered = [m["answered"] - m["sent"] for m in marks if "answered" in m]
    downloads = [m["downloaded"] - m["detected"] for m in marks if "downloaded" in m]
    lines.append(
        f"    create round trip median {statistics.median(answered):.3f} s (p90 {_p90(answered):.3f}); "
        f"detected -> video on disk median {statistics.median(downloads):.3f} s (p90 {_p90(downloads):.3f})"
    )
    return lines


def _p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))] if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--render", type=float, default=1.0, help="mean render time, seconds")
    # +/-5 %: "about a second", out of lockstep. At +/-10 % the slowest of four renders in a row alone puts the
    # best possible makespan near 1.06 x ideal, above the 1.05 goal (see ``oracle_makespan``).
    parser.add_argument("--jitter", type=float, default=0.05, help="relative render-time jitter (uniform +/-)")
    parser.add_argument("--rps", type=float, default=1000.0)
    parser.add_argument("--naive-interval", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dialect", choices=["cometapi", "kling", "gateway", "all"], default="cometapi")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--poll", help='PollPolicy overrides as JSON, e.g. {"tail_fraction": 0.03}')
    parser.add_argument("--dump", type=Path, help="write every figure (timelines included) as JSON to this file")
    parser.add_argument("--only", choices=["orchestrator", "naive"])
    parser.add_argument("--child", choices=["orchestrator", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    ideal = math.ceil(args.n / args.concurrency) * args.render
    print(
        f"N={args.n} concurrency={args.concurrency} render={args.render:g} s +/-{args.jitter:.0%} "
        f"ideal={ideal:g} s; naive polls every {args.naive_interval:g} s"
    )
    dumped: dict[str, Any] = {}
    dialects = ["cometapi", "kling", "gateway"] if args.dialect == "all" else [args.dialect]
    for dialect in dialects:
        if len(dialects) > 1:
            print(f"dialect {dialect}:", flush=True)
        run_dialect(argparse.Namespace(**{**vars(args), "dialect": dialect}), dumped.setdefault(dialect, {}))
    if args.dump:
        args.dump.write_text(json.dumps(dumped))


def run_dialect(args: argparse.Namespace, dumped: dict[str, Any]) -> None:
    for mode in [args.only] if args.only else ["orchestrator", "naive"]:
        figures = dumped[mode] = measure(mode, args)
        print(report(mode, figures, args), flush=True)
        if args.verbose:
            extra = f"provider render mean {figures['provider_render_mean']:.3f} s" if mode == "orchestrator" else ""
            print("   ", figures["routes"], figures.get("phases", ""), extra, flush=True)
            if mode == "orchestrator":
                print("\n".join(breakdown(figures, args)), flush=True)


if __name__ == "__main__":
    main()
