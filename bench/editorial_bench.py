"""Editorial timings: export of a 1,000-shot timeline, and reel encoding speed against a plain ffmpeg concat.

    PYTHONPATH=. python bench/editorial_bench.py [--shots 1000] [--reel-shots 12] [--reel-only]

The 1,000-shot store is synthetic: one real 2 fps clip (made with the simulator's animatic renderer) hard-linked
into every shot's folder, a ``FolderState`` built in memory. The reel is timed on ``--reel-shots`` of those clips
at 24 fps, 360 px high, against ``ffmpeg -f concat`` re-encoding the same clips to H.264 (when ffmpeg is on PATH).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from orchestrator.editorial.cut import Cut, CutShot
from orchestrator.editorial.export import FORMATS, export_cut
from orchestrator.editorial.reel import render_reel
from orchestrator.providers.local.animatic import render_animatic


def _board() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (640, 360), (30, 90, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


def synthetic_cut(folder: Path, shots: int) -> Cut:
    clip = folder / "source.mp4"
    render_animatic([_board(), _board()], duration=5, aspect_ratio="16:9", dest=clip, fps=24, cheap=False)
    cut_shots = []
    for index in range(shots):
        shot_id = f"s{index:04d}"
        media = folder / shot_id / "0123456789ab.mp4"
        media.parent.mkdir()
        os.link(clip, media)
        cut_shots.append(
            CutShot(
                shot_id=shot_id,
                media=media,
                board=None,
                spec_duration=5,
                aspect_ratio="16:9",
                take=1,
                variant=None,
                fingerprint=f"{index:064x}",
                task_id=str(10**17 + index),
                prompt=f"shot {index}",
                cost=2.0,
            )
        )
    return Cut(project="bench", spec_path=folder / "project.yaml", output_dir=folder, shots=tuple(cut_shots))


def time_exports(cut: Cut, folder: Path) -> None:
    for name in FORMATS:
        started = time.perf_counter()
        export_cut(cut, folder / f"cut.{name}")
        elapsed = time.perf_counter() - started
        size = (folder / f"cut.{name}").stat().st_size
        print(f"export {len(cut.shots)} shots as {name:7} {elapsed:6.2f} s  {size / 1e6:6.1f} MB")


def time_reel(cut: Cut, folder: Path, count: int) -> None:
    small = Cut(cut.project, cut.spec_path, cut.output_dir, cut.shots[:count])
    started = time.perf_counter()
    result = render_reel(small, folder / "reel.mp4", height=360)
    elapsed = time.perf_counter() - started
    print(f"reel   {count} shots, {result.frames} frames at 360p: {elapsed:.2f} s, {result.frames / elapsed:.0f} fps")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("ffmpeg not on PATH: no comparison")
        return
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{shot.media}'\n" for shot in small.shots))
    command = [ffmpeg, "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing)]
    command += ["-vf", "scale=-2:360", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", str(folder / "c.mp4")]
    started = time.perf_counter()
    subprocess.run(command, check=True, timeout=600)
    elapsed = time.perf_counter() - started
    frames = result.frames - result.slate_frames
    print(f"ffmpeg concat of the same clips (no slate, no burn-in): {elapsed:.2f} s, {frames / elapsed:.0f} fps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--reel-shots", type=int, default=12)
    parser.add_argument("--reel-only", action="store_true", help="time the reel and ffmpeg only, not the exports")
    args = parser.parse_args()
    shots = max(args.reel_shots, 1) if args.reel_only else args.shots
    with tempfile.TemporaryDirectory(prefix="editorial-bench-") as name:
        folder = Path(name)
        started = time.perf_counter()
        cut = synthetic_cut(folder, shots)
        print(f"synthetic store of {shots} shots: {time.perf_counter() - started:.2f} s")
        if not args.reel_only:
            time_exports(cut, folder)
        time_reel(cut, folder, args.reel_shots)


if __name__ == "__main__":
    main()
