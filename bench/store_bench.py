"""Benchmark: what the render store writes and costs per state change, for 1,000 and 10,000 renders.

    .venv/bin/python bench/store_bench.py                      # 1,000 and 10,000 renders, concurrency 200
    .venv/bin/python bench/store_bench.py --renders 500 --concurrency 50 --dir /var/tmp

Each render goes through the six state changes of a run (queued with its external id, submitting, submitted with
its task id, processing, downloading, succeeded with its output), ``--concurrency`` renders at a time as anyio
tasks. The durable changes await the store's group commit, the two informative ones (processing, downloading)
ride on the next, as the run does today. The store is opened and filled first (not measured), then the run is:

- bytes written: what the process passed to write(2) meanwhile (``wchar`` in /proc/self/io: the log, the
  checkpoints into the database, fsyncs are not bytes), per state change and in total; and how much renders.db and
  its -wal grew;
- CPU seconds (this process, the store's worker thread included) per state change;
- transactions committed, so the changes per transaction.

For comparison, today's JSON manifest wrote 9.8 GB for a 10,000-shot run (1,743 rewrites of a ~10 MB file).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.lowlevel

from orchestrator.store import DATABASE_NAME, OutputFile, RenderStore
from orchestrator.store.manifest import DOWNLOADING, PROCESSING, QUEUED, SUBMITTED, SUBMITTING, SUCCEEDED, now_iso

CHANGES_PER_RENDER = 6


@dataclass(frozen=True)
class Figures:
    renders: int
    changes: int
    bytes_written: int
    files_growth: int
    cpu_seconds: float
    wall_seconds: float
    commits: int

    @property
    def bytes_per_change(self) -> float:
        return self.bytes_written / self.changes

    @property
    def cpu_ms_per_change(self) -> float:
        return 1000 * self.cpu_seconds / self.changes

    def line(self) -> str:
        return (
            f"{self.renders:>7,} renders  {self.changes:>7,} changes  written {self.bytes_written / 1e6:8.1f} MB "
            f"({self.bytes_per_change / 1024:5.1f} KiB/change; files grew {self.files_growth / 1e6:6.1f} MB)  "
            f"CPU {self.cpu_ms_per_change:6.3f} ms/change  {self.commits:>6,} commits "
            f"({self.changes / max(1, self.commits):5.1f} changes each)  wall {self.wall_seconds:6.2f} s"
        )


def request(index: int) -> dict[str, object]:
    """A request record as the run keeps it (images by hash)."""
    return {
        "model": "kling-v1-6",
        "mode": "std",
        "duration": 5,
        "cfg_scale": 0.5,
        "aspect_ratio": "16:9",
        "prompt": f"Hero{index % 50} walks past house {index}, 35mm film, soft dawn light",
        "negative_prompt": "blurry, text, watermark",
        "images": [f"sha256:{index:064x}", f"sha256:{index + 1:064x}"],
        "static_mask": None,
        "dynamic_masks": [],
        "image_refs": [f"boards/b{index % 20:02d}.png", f"boards/b{(index + 7) % 20:02d}.png"],
        "callback_url": None,
    }


def written_so_far() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar line")


def files_size(out: Path) -> int:
    return sum(p.stat().st_size for p in out.glob(f"{DATABASE_NAME}*"))


async def run_render(store: RenderStore, render_id: int, index: int) -> None:
    """One render's six state changes, durable where the run makes them so."""
    shot_id = store.render(render_id).shot_id
    store.update_render(render_id, status=QUEUED, attempt=1, external_task_id=f"bench-{shot_id}-salt")
    await store.commit()
    store.update_render(render_id, status=SUBMITTING, submitted_at=now_iso())
    await store.commit()
    store.update_render(render_id, status=SUBMITTED, task_id=f"8613091981880{index:06d}")
    await store.commit()
    store.update_render(render_id, status=PROCESSING, provider_status="processing")  # informative: no commit
    await anyio.lowlevel.checkpoint()
    store.update_render(render_id, status=DOWNLOADING)  # informative: no commit
    await anyio.lowlevel.checkpoint()
    output = OutputFile(path=f"{shot_id}/{index:012x}.mp4", sha256=f"{index:064x}", bytes=1_000_000 + index)
    store.update_render(render_id, status=SUCCEEDED, outputs=[output], cost=2.0, charged=2.0, finished_at=now_iso())
    await store.commit()


async def run_all(store: RenderStore, render_ids: list[int], concurrency: int) -> None:
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(index: int, render_id: int) -> None:
        async with limiter:
            await run_render(store, render_id, index)

    async with anyio.create_task_group() as group:
        for index, render_id in enumerate(render_ids):
            group.start_soon(one, index, render_id)


def measure(*, renders: int, concurrency: int, directory: Path | None = None) -> Figures:
    with tempfile.TemporaryDirectory(prefix="store-bench-", dir=directory) as tmp:
        out = Path(tmp) / "out"
        store = RenderStore.open(out, project="bench", provider="local")
        ids = [
            store.new_render(f"s{i:05d}", fingerprint=f"{i:064x}", request=request(i)).render_id for i in range(renders)
        ]
        store.close(write_snapshot=False)  # filled and checkpointed: the run starts from a folder at rest
        store = RenderStore.open(out, project="bench", provider="local")
        size, written, cpu, wall = files_size(out), written_so_far(), time.process_time(), time.perf_counter()
        anyio.run(run_all, store, ids, concurrency)
        figures = Figures(
            renders=renders,
            changes=renders * CHANGES_PER_RENDER,
            bytes_written=written_so_far() - written,
            files_growth=files_size(out) - size,
            cpu_seconds=time.process_time() - cpu,
            wall_seconds=time.perf_counter() - wall,
            commits=store.commits,
        )
        store.release()
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None, help="where to make the folders (default: the temp dir)")
    args = parser.parse_args(argv)
    for renders in args.renders:
        print(measure(renders=renders, concurrency=args.concurrency, directory=args.dir).line(), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB; today's JSON manifest: 9.8 GB written for a 10,000-shot run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
