"""Benchmark: `orchestrator plan` of a 10,000-shot spec beside its store, and `validate` of a 50,000-shot spec.

    .venv/bin/python bench/plan_bench.py [--plan-shots 10000] [--validate-shots 50000] [--runs 3] [--keep DIR]

Goals: `plan` at most 1.5 s of CPU, `validate` at most 5 s of wall time, each for the whole process (interpreter
start-up and imports included, as a user runs them: the package byte-compiled first, as an installed one is). Both
specs are `validate_bench.py`'s (20 boards, reused).

For `plan`, the output folder holds a render store (`renders.db`, and its `manifest.json` snapshot) in which every
shot succeeded and its output (a small file) is on disk with its recorded hash, as a run leaves it: the plan does its
real work (fingerprints, the store read, every output checked) and finds every shot unchanged. The store is made as
a folder of the version-1 days becomes one: a version-1 manifest, migrated on opening. CPU is the child's user +
system time (`os.wait4`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validate_bench import make_boards, make_spec  # the same specs, one generator

PLAN_GOAL_CPU = 1.5
VALIDATE_GOAL_WALL = 5.0
OUTPUT_BYTES = 4096  # a stand-in for each video: the plan hashes what is on disk, so the size sets that cost


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float
    returncode: int
    stdout: str
    stderr: str


def time_command(*args: str) -> Timing:
    """Run ``orchestrator ARGS`` in a child; its wall time and its own CPU (user + system), read by ``wait4``."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], stdout=out, stderr=err)
        _pid, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return Timing(wall, usage.ru_utime + usage.ru_stime, child.returncode, stdout, stderr)


def compile_package() -> Path:
    """Byte-compile the orchestrator package the children will import, as an installed one is.

    Without it, where bytecode is not written (``PYTHONDONTWRITEBYTECODE``, a read-only tree) every child compiles
    each of its modules from source again: about 0.1 s that no installed copy spends.
    """
    import compileall

    import orchestrator

    folder = Path(orchestrator.__file__).resolve().parent
    if not compileall.compile_dir(folder, quiet=1):
        raise SystemExit(f"could not byte-compile {folder}")
    return folder


def write_store(spec: Path) -> int:
    """The spec's output folder with a store in which every shot succeeded, its output on disk: shots written."""
    from orchestrator.plan.plan import manifest_path_for
    from orchestrator.spec.fingerprint import request_record
    from orchestrator.spec.load import load_project
    from orchestrator.store.database import DATABASE_NAME, RenderStore
    from orchestrator.store.manifest import SUCCEEDED, Manifest, Output, ShotRecord, now_iso, save_manifest

    project = load_project(spec)
    path = manifest_path_for(project)
    folder = path.parent
    manifest = Manifest(project=project.project, spec_path=str(spec), tool_version="bench")
    for shot in project.shots:
        data = hashlib.sha256(shot.id.encode()).digest() * (OUTPUT_BYTES // 32)
        relative = f"{shot.id}/{shot.id}.mp4"
        (folder / shot.id).mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
        output = Output(path=relative, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
        stamp = now_iso()
        manifest.shots[shot.id] = ShotRecord(
            status=SUCCEEDED,
            fingerprint=shot.fingerprint,
            external_task_id=shot.external_task_id,
            task_id=f"task-{shot.id}",
            attempts=1,
            request=request_record(shot),
            outputs=[output],
            created_at=stamp,
            updated_at=stamp,
            finished_at=stamp,
        )
    save_manifest(manifest, path)
    store = RenderStore.open(folder, project=project.project, stamp_run=False)  # migrated, as a first run does
    store.close()
    assert (folder / DATABASE_NAME).is_file()
    return len(manifest.shots)


def bench_plan(root: Path, *, shots: int, runs: int) -> float | None:
    folder = root / "plan"
    boards = make_boards(folder / "boards", 20)
    spec = folder / "project.yaml"
    make_spec(spec, shots=shots, boards=boards)
    written = write_store(spec)
    print(f"plan: {spec} ({shots} shots, a store of {written} succeeded shots, outputs on disk)")
    cpus = []
    for run in range(runs):
        timing = time_command("plan", str(spec))
        if timing.returncode != 0:
            print(timing.stderr[-2000:], file=sys.stderr)
            print(f"plan failed with exit code {timing.returncode}", file=sys.stderr)
            return None
        cpus.append(timing.cpu)
        summary = timing.stdout.strip().splitlines()[-1]
        print(f"  run {run + 1}: {timing.cpu:.2f} s CPU, {timing.wall:.2f} s wall  {summary}")
    return min(cpus)


def bench_validate(root: Path, *, shots: int, runs: int) -> float | None:
    folder = root / "validate"
    boards = make_boards(folder / "boards", 20)
    spec = folder / "project.yaml"
    make_spec(spec, shots=shots, boards=boards)
    print(f"validate: {spec} ({spec.stat().st_size / 1e6:.1f} MB, {shots} shots)")
    walls = []
    for run in range(runs):
        timing = time_command("validate", str(spec))
        if timing.returncode != 0:
            print(timing.stderr[-2000:], file=sys.stderr)
            print(f"validate failed with exit code {timing.returncode}", file=sys.stderr)
            return None
        walls.append(timing.wall)
        print(f"  run {run + 1}: {timing.wall:.2f} s wall, {timing.cpu:.2f} s CPU  {timing.stdout.strip()}")
    return min(walls)


def verdict(name: str, best: float | None, goal: float, unit: str) -> bool:
    if best is None:
        return False
    within = best <= goal
    print(f"{name}: best {best:.2f} s {unit} ({'within' if within else 'OVER'} the {goal:g} s goal)")
    return within


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-shots", type=int, default=10_000)
    parser.add_argument("--validate-shots", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("plan", "validate"), help="run one of the two benchmarks")
    parser.add_argument("--keep", type=Path, help="write the specs here instead of a temporary directory")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(f"code: {compile_package()} (byte-compiled)")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        ok = True
        if args.only in (None, "plan"):
            best = bench_plan(root, shots=args.plan_shots, runs=args.runs)
            ok = verdict("plan", best, PLAN_GOAL_CPU, "CPU") and ok
        if args.only in (None, "validate"):
            best = bench_validate(root, shots=args.validate_shots, runs=args.runs)
            ok = verdict("validate", best, VALIDATE_GOAL_WALL, "wall") and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
