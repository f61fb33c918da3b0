"""``orchestrator export``, ``reel`` and ``conform``: handing the cut to editorial and reading it back.

The work is in ``orchestrator.editorial``; this layer parses options, shows a progress bar on a terminal and prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli._app import EXIT_FAILED, cli, counted, exit_on_errors, handle_errors, printable
from orchestrator.editorial.cut import Cut, build_cut
from orchestrator.errors import ConfigError
from orchestrator.spec.shot import ResolvedProject
from orchestrator.store import FolderState, load_state

if TYPE_CHECKING:
    from orchestrator.review.decisions import Decisions

FORMAT_NAMES = ("otio", "xml", "fcpxml", "edl", "aaf")


def _load(spec: Path, out: Path | None) -> tuple[Cut, FolderState, ResolvedProject, Decisions]:
    import orchestrator
    from orchestrator.review.decisions import decisions_path, load_decisions

    project = orchestrator.load_project(spec)
    folder = (out or project.output_dir).absolute()
    state = load_state(folder) if folder.exists() else _empty_state(project.project)
    decisions = load_decisions(decisions_path(project.path))
    return build_cut(project, state, output_dir=folder, decisions=decisions), state, project, decisions


def _empty_state(project: str) -> FolderState:
    # Nothing rendered yet: every shot holds its board, and the cut still has its length.
    from orchestrator.store import FolderFacts

    return FolderState(facts=FolderFacts(project=project))


def _rate(value: float) -> float:
    if not 1 <= value <= 240:
        raise ConfigError(f"--rate {value:g}: give a frame rate between 1 and 240")
    return value


rate_option = click.option(
    "--rate", type=float, default=24.0, show_default=True, help="Timeline frame rate (frames per second)."
)
out_option = click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: the spec's)."
)


@cli.command("export")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
@click.option("--format", "fmt", type=click.Choice(FORMAT_NAMES), help="Format (default: from the file's extension).")
@rate_option
@out_option
@click.option(
    "--changed-since",
    metavar="SNAPSHOT_OR_REV",
    help="Only shots whose select changed since an earlier manifest.json or a git revision of it; others are gaps.",
)
@handle_errors
def export_command(
    spec: Path, output: Path, fmt: str | None, rate: float, out: Path | None, changed_since: str | None
) -> None:
    """Write the cut as a timeline: .otio, FCP7 .xml (Premiere, Resolve), .fcpxml (Final Cut), .edl, .aaf (Avid)."""
    from orchestrator.editorial.export import export_cut
    from orchestrator.editorial.since import changed_shots, earlier

    cut, state, project, decisions = _load(spec, out)
    only = None
    name = None
    if changed_since is not None:
        then = earlier(changed_since, spec=project.path, output_dir=cut.output_dir, state=state, decisions=decisions)
        only = changed_shots(project, cut, then)
        name = f"{cut.project} (changed since {changed_since})"
    result = export_cut(cut, output, fmt=fmt, rate=_rate(rate), only=only, name=name)
    held = sum(1 for shot in cut.shots if shot.held and (only is None or shot.shot_id in only))
    parts = [counted(result.clips, "clip")]
    if result.gaps:
        parts.append(f"{counted(result.gaps, 'unchanged shot')} as gaps")
    if held:
        parts.append(f"{held} held board{'s' if held != 1 else ''}")
    seconds = result.frames / result.rate
    click.echo(printable(f"wrote {output} ({result.format}: {', '.join(parts)}, {seconds:.1f} s at {rate:g} fps)"))


@cli.command("reel")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="MP4 to write.")
@rate_option
@click.option("--height", type=click.IntRange(64, 4320), default=720, show_default=True, help="Picture height.")
@out_option
@handle_errors
def reel_command(spec: Path, output: Path, rate: float, height: int, out: Path | None) -> None:
    """Render the cut to one H.264 MP4: a slate, then every shot with a burn-in (id, take, status, timecode)."""
    from orchestrator.editorial.reel import render_reel

    cut, *_ = _load(spec, out)
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("reel", total=None)

            def advance(done: int, total: int) -> None:
                if done % 12 == 0 or done == total:
                    bar.update(task, completed=done, total=total)

            result = render_reel(cut, output, rate=_rate(rate), height=height, progress=advance)
    else:
        result = render_reel(cut, output, rate=_rate(rate), height=height)
    click.echo(
        printable(
            f"wrote {output} ({counted(len(cut.shots), 'shot')}, {result.frames} frames, "
            f"{result.seconds:.1f} s at {rate:g} fps, {result.width}x{result.height})"
        )
    )


@cli.command("conform")
@click.argument("spec", type=click.Path(path_type=Path))
@click.argument("edit", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@rate_option
@out_option
@exit_on_errors(EXIT_FAILED, json_flag="as_json")
def conform_command(spec: Path, edit: Path, as_json: bool, rate: float, out: Path | None) -> None:
    """What editorial did in EDIT (.otio, .xml, .fcpxml, .edl) against the spec: moved, removed, trimmed, added,
    another take. Changes nothing on disk."""
    from orchestrator.editorial.conform import conform, conform_to_json

    cut, state, *_ = _load(spec, out)
    result = conform(cut, edit, state=state, rate=_rate(rate))
    if as_json:
        click.echo(json.dumps(conform_to_json(result), indent=2, ensure_ascii=False))
        return
    marks = {"moved": "~", "removed": "-", "trimmed": "<>", "different-take": "*", "added": "+"}
    for change in result.changes:
        who = change.shot_id or change.clip
        click.echo(printable(f"{marks[change.kind]:>2} {who}  {change.detail}", newlines=False))
    counts = ", ".join(f"{n} {kind}" for kind, n in result.counts().items() if n)
    click.echo(f"{counts or 'no changes'}; {counted(len(result.unchanged), 'shot')} as handed over")
