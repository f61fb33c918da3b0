"""``orchestrator plan``, ``diff``, ``report`` and ``status``: looking before and after a run, never sending anything.

``render_plan`` is also what ``orchestrator run --dry-run`` prints.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click
from rich.console import COLOR_SYSTEMS, Console
from rich.style import Style
from rich.text import Text

from orchestrator.cli._app import (
    EXIT_FAILED,
    EXIT_OK,
    cli,
    counted,
    exit_on_errors,
    handle_errors,
    printable,
    refuse_missing,
)
from orchestrator.cli.collector import paused_collector, skip_collection_at_exit
from orchestrator.plan.diff import (
    ADDED,
    CHANGED,
    DELETE,
    INSERT,
    REMOVED,
    DiffResult,
    ShotDiff,
    WordOp,
    default_spec_loader,
    diff_paths,
    diff_to_json,
    split_revision,
)
from orchestrator.plan.plan import (
    FAILED_BEFORE,
    LEGEND,
    MARKS,
    NEW,
    UNCHANGED,
    UNCONFIRMED_BEFORE,
    Plan,
    PlanEntry,
    manifest_path_for,
    plan_project,
    plan_to_json,
    summary_line,
    units_label,
)
from orchestrator.plan.pricing import Pricing, project_pricing

# ``report`` and ``status`` import what they need when they run: ``plan``, the command run on the biggest
# productions, imports neither the HTML report nor rich's tables.
if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.report.status import StatusSummary
    from orchestrator.review.decisions import Decisions

P = ParamSpec("P")
R = TypeVar("R")

EXIT_WORK_TO_DO = 2  # plan --detailed-exitcode
EXIT_DIFFERENT = 1  # diff, like diff(1)
EXIT_DIFF_TROUBLE = 2

STYLES = {
    NEW: "green",
    CHANGED: "yellow",
    UNCHANGED: "dim",
    FAILED_BEFORE: "red",
    UNCONFIRMED_BEFORE: "bold magenta",
    REMOVED: "magenta",
    ADDED: "green",
}


def _console() -> Console:
    # highlight=False: rich must not colour numbers and paths inside user text by guesswork.
    return Console(highlight=False, soft_wrap=True)


# --- plan -------------------------------------------------------------------------------------------------------


def render_plan(plan: Plan, pricing: Pricing, console: Console) -> None:
    """Print a plan: one line per render (mark, shot with variant and take, what and why, units), after a shot of
    more than one render a line summing it up, then the legend and the summary line."""
    width = max((len(entry.label) for entry in plan.entries), default=0)
    lines: list[Line] = []
    entries = plan.entries
    start = 0  # where the current shot's renders begin (a shot's entries are next to each other)
    for i, entry in enumerate(entries):
        lines.append(_plan_line(entry, pricing, width))
        if i + 1 < len(entries) and entries[i + 1].shot_id == entry.shot_id:
            continue
        if i > start and entry.shot is not None:
            summary = shot_summary(entries[start : i + 1], pricing)
            lines.append(Line("dim", ((f"  {printable(summary, newlines=False)}", ""),)))
        start = i + 1
    write_lines(console, lines)
    console.print()
    legend = Text("legend: ", style="dim")
    for i, (category, meaning) in enumerate(LEGEND.items()):
        legend.append("   " if i else "")
        legend.append(f"{MARKS[category]} {meaning}", style=STYLES.get(category, ""))
    console.print(legend)
    console.print(Text(summary_line(plan, pricing), style="bold"))


@dataclass(frozen=True)
class Line:
    """One line of output: pieces of terminal-safe text, each with a style on top of the line's own."""

    style: str
    pieces: tuple[tuple[str, str], ...]

    def text(self) -> Text:
        line = Text(style=self.style)
        for piece, style in self.pieces:
            line.append(piece, style=style)
        return line


def write_lines(console: Console, lines: Sequence[Line]) -> None:
    """Print ``lines`` as ``console.print(line.text())`` would, line by line, but in one write.

    rich lays out each printed renderable (segments, wrapping, styles): on a 10,000-shot plan that was half of the
    command's CPU, for lines that need none of it. Each style's escape codes are rendered by rich once; a line with
    a tab (rich expands those) and consoles that record or emulate (Jupyter, legacy Windows) go through rich itself.
    """
    if console.record or console.is_jupyter or console.legacy_windows:
        for line in lines:
            console.print(line.text())
        return
    codes = _StyleCodes(console)
    chunks: list[str] = []
    for line in lines:
        if any("\t" in piece for piece, _ in line.pieces):
            _flush(console, chunks)
            console.print(line.text())
            continue
        for piece, style in line.pieces:
            prefix, suffix = codes.get(line.style, style)
            chunks.append(f"{prefix}{piece}{suffix}" if prefix else piece)
        chunks.append("\n")
    _flush(console, chunks)


def _flush(console: Console, chunks: list[str]) -> None:
    if chunks:
        console.file.write("".join(chunks))
        console.file.flush()
        chunks.clear()


class _StyleCodes:
    """The escape codes around text in a line's style combined with a piece's, as rich renders them on ``console``
    (none without colour: a pipe, a file, ``TERM=dumb``; no colours under ``NO_COLOR``)."""

    def __init__(self, console: Console) -> None:
        self._system = COLOR_SYSTEMS.get(console.color_system or "")
        self._no_color = console.no_color
        self._codes: dict[tuple[str, str], tuple[str, str]] = {}

    def get(self, line_style: str, piece_style: str) -> tuple[str, str]:
        key = (line_style, piece_style)
        found = self._codes.get(key)
        if found is None:
            found = self._codes[key] = self._render(
                Style.parse(line_style or "none") + Style.parse(piece_style or "none")
            )
        return found

    def _render(self, style: Style) -> tuple[str, str]:
        if self._system is None or not style:
            return "", ""
        if self._no_color:
            style = style.without_color
        prefix, _, suffix = style.render("\0", color_system=self._system).partition("\0")
        return prefix, suffix


def _plan_line(entry: PlanEntry, pricing: Pricing, width: int) -> Line:
    style = STYLES.get(entry.category, "")
    pieces = [
        (f"{MARKS[entry.category]} ", style),
        (printable(entry.label, newlines=False).ljust(width), style),
        (f"  {printable(_plan_detail(entry), newlines=False)}", ""),
    ]
    if entry.needs_render:
        pieces.append((f"  {units_label(entry.units(pricing))}", "cyan"))
    return Line(style, tuple(pieces))


def shot_summary(entries: Sequence[PlanEntry], pricing: Pricing) -> str:
    """``s03: 6 renders (2 variants x 3 takes): 4 to render, 2 unchanged - est. 8 units``."""
    first = entries[0]
    variants = len({entry.variant for entry in entries if entry.variant is not None})
    takes = max(entry.takes for entry in entries)
    shape = []
    if variants:
        shape.append(counted(variants, "variant"))
    if takes > 1:
        shape.append(counted(takes, "take"))
    retakes = sum(1 for entry in entries if entry.retake)
    if retakes:
        shape.append(counted(retakes, "retake"))
    work = sum(1 for entry in entries if entry.needs_render or entry.forced)
    units = sum(entry.units(pricing) for entry in entries)
    return (
        f"{first.shot_id}: {counted(len(entries), 'render')} ({' x '.join(shape)}): {work} to render, "
        f"{len(entries) - work} as they are - est. {units_label(units)}"
    )


def _plan_detail(entry: PlanEntry) -> str:
    detail = _category_detail(entry)
    return f"{detail} ({entry.note})" if entry.note else detail


def _category_detail(entry: PlanEntry) -> str:
    if entry.category == CHANGED:
        # No field changes to name: a new fingerprint version, or a shot forced with --force (the reason says which).
        return "changed: " + ", ".join(c.describe() for c in entry.changes) if entry.changes else entry.reason
    if entry.category == FAILED_BEFORE:
        return entry.reason if entry.running_in else f"failed before, will retry: {entry.reason}"
    if entry.category == UNCONFIRMED_BEFORE:
        return f"unconfirmed ({entry.reason}): adopt its task, or --resend-unconfirmed"
    if entry.category == REMOVED:
        return "removed from the spec (outputs kept)"
    return entry.category


class _PlanCommand(click.Command):
    """With ``--detailed-exitcode``, 2 means "work to do": a usage error must then exit 1, not click's usual 2."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        detailed = "--detailed-exitcode" in args  # checked first: parsing consumes ``args``
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            if detailed:
                exc.exit_code = 1  # type: ignore[misc]  # click reads it from the instance too
            raise


@cli.command("plan", cls=_PlanCommand)
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: the spec's).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 0 when there is nothing to do, 2 when there is work, 1 on error."
)
@click.option("--price", "prices", multiple=True, metavar="KEY=VALUE", help="Override a pricing number (repeatable).")
@exit_on_errors(EXIT_FAILED, json_flag="as_json")
def plan_command(spec: Path, out: Path | None, as_json: bool, detailed_exitcode: bool, prices: tuple[str, ...]) -> None:
    """Show what a run would render, why, and what it would cost. Sends nothing."""
    skip_collection_at_exit()
    with paused_collector():  # a big spec's values, built once and freed together: nothing for it to find
        has_work = _plan(spec, out=out, as_json=as_json, prices=prices)
    if detailed_exitcode and has_work:
        sys.exit(EXIT_WORK_TO_DO)


def _plan(spec: Path, *, out: Path | None, as_json: bool, prices: tuple[str, ...]) -> bool:
    """Print the plan; whether it has work to do."""
    project = default_spec_loader()(spec)
    pricing = project_pricing(spec=project.pricing, flags=prices)
    plan = plan_project(project, out=out)
    if as_json:
        data: dict[str, Any] = {
            "project": project.project,
            "manifest": str(manifest_path_for(project, out=out)),
            **plan_to_json(plan, pricing),
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        render_plan(plan, pricing, _console())
    return plan.has_work


# --- diff -------------------------------------------------------------------------------------------------------


# Like ``handle_errors``, but exit 2 on trouble: for ``diff``, 1 already means "different".
_diff_errors = exit_on_errors(EXIT_DIFF_TROUBLE, json_flag="as_json")


def render_diff(result: DiffResult, console: Console) -> None:
    """Header, one block per added, removed or changed shot (with word diffs of prompts), then the counts."""
    console.print(Text(printable(f"--- {result.a.label} ({result.a.kind})", newlines=False), style="red"))
    console.print(Text(printable(f"+++ {result.b.label} ({result.b.kind})", newlines=False), style="green"))
    if result.a.project != result.b.project:
        projects = printable(f"project: {result.a.project} -> {result.b.project}", newlines=False)
        console.print(Text(projects, style="yellow"))
    for shot in result.shots:
        if shot.kind != UNCHANGED:
            _print_shot_diff(shot, console)
    for change in result.decisions:
        line = Text(f"@ {printable(change.shot_id, newlines=False)}  decision: ", style="cyan")
        console.print(line.append(printable(change.describe(), newlines=False), style=""))
    counts = result.counts()
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    if result.decisions:
        summary += f", {counted(len(result.decisions), 'decision')} changed"
    console.print(Text(summary, style="bold"))


def _print_shot_diff(shot: ShotDiff, console: Console) -> None:
    marks = {ADDED: "+", REMOVED: "-", CHANGED: "~"}
    style = STYLES.get(shot.kind, "")
    line = Text(f"{marks[shot.kind]} {printable(shot.shot_id, newlines=False)}", style=style)
    line.append(f"  {shot.kind}")
    if shot.kind == CHANGED:
        described = ", ".join(c.describe() for c in shot.changes) if shot.changes else "fingerprint"
        line.append(": " + printable(described, newlines=False))
    console.print(line)
    for name, ops in (shot.word_diffs or {}).items():
        console.print(Text(f"    {name}: ").append_text(word_diff_text(ops)))


def word_diff_text(ops: tuple[WordOp, ...]) -> Text:
    """The word diff with wdiff markers (readable without colour) and colour on top."""
    text = Text()
    for op in ops:
        words = printable(op.text, newlines=False)
        if op.op == DELETE:
            text.append(f"[-{words}-]", style="red")
        elif op.op == INSERT:
            text.append(f"{{+{words}+}}", style="green")
        else:
            text.append(words)
    return text


@cli.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@_diff_errors
def diff_command(a: str, b: str, as_json: bool) -> None:
    """Compare two versions: each of A and B is a spec, a manifest, or SPEC@REV (a git revision).

    Exit 0 when they are the same, 1 when they differ, 2 on error (like diff).
    """
    refuse_missing(*(side for side in (a, b) if split_revision(side) is None))
    result = diff_paths(a, b)
    if as_json:
        click.echo(json.dumps(diff_to_json(result), indent=2, ensure_ascii=False))
    else:
        render_diff(result, _console())
    sys.exit(EXIT_OK if result.equal else EXIT_DIFFERENT)


# --- report and status ------------------------------------------------------------------------------------------


def _decisions_beside(spec: Path | None, recorded: str) -> Decisions | None:
    """The review's decisions file beside the spec (given, else the one the folder's runs used), if there is one."""
    from orchestrator.review.decisions import decisions_path, load_decisions

    if spec is None and not recorded:
        return None
    path = decisions_path(spec if spec is not None else Path(recorded))
    return load_decisions(path) if path.exists() else None


@cli.command("report")
@click.argument("target", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML (default: report.html beside the manifest).",
)
@click.option(
    "--embed",
    is_flag=True,
    help="Inline the videos in the page (one file to send; large), instead of linking the files beside it.",
)
@handle_errors
def report_command(target: str | None, output: Path | None, embed: bool) -> None:
    """Write an HTML contact sheet of a manifest, a page beside the renders (TARGET: a manifest, folder or spec).

    The page links the videos relative to itself: it plays them where it is written, beside the shot folders.
    With --embed the videos are inside the page, which can then be sent alone.
    """
    from orchestrator.report.html import write_report
    from orchestrator.report.status import locate_manifest

    refuse_missing(target)
    located = locate_manifest(target, load_spec=default_spec_loader)
    destination = output or located.path.parent / "report.html"
    data = write_report(
        located.manifest,
        manifest_dir=located.path.parent,
        output=destination,
        spec_dir=located.spec_dir,
        embed=embed,
        state=located.state,
        decisions=_decisions_beside(located.spec, located.manifest.spec_path),
    )
    warning = data.embed_warning()
    if warning:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"wrote {destination} ({counted(len(data.shots), 'shot')}{', videos embedded' if embed else ''})")


@cli.command("status")
@click.argument("target", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@exit_on_errors(EXIT_FAILED, json_flag="as_json")
def status_command(target: str | None, as_json: bool) -> None:
    """Shots per status, shots needing attention with their reasons, units estimated and charged.

    TARGET: a manifest, its folder, or a spec.
    """
    from orchestrator.report.status import locate_manifest, summarize

    refuse_missing(target)
    located = locate_manifest(target, load_spec=default_spec_loader)
    summary = summarize(located.manifest, state=located.state)
    if as_json:
        click.echo(json.dumps(status_to_json(summary), indent=2, ensure_ascii=False))
    else:
        render_status(summary, _console())


def status_to_json(summary: StatusSummary) -> dict[str, Any]:
    """``units`` is the estimate (kept under its old name too); ``uncharged`` the shots with no charged figure yet."""
    return {
        "project": summary.project,
        "shots": summary.total,
        "counts": summary.counts,
        "problems": [{"id": p.shot_id, "status": p.status, "reason": p.reason} for p in summary.problems],
        "units": summary.units,
        "units_estimated": summary.units,
        "units_charged": summary.charged,
        "uncharged": list(summary.uncharged),
        "takes": [
            {"id": t.shot_id, "key": t.key, "take": t.render.take, "variant": t.render.variant, "status": t.status}
            for t in summary.takes
        ],
    }


SHOWN_UNCHARGED = 5  # shot ids named on the units line; the rest are counted


def units_line(summary: StatusSummary) -> str:
    """``est. 9 units, charged 7 units (no charged figure yet for 1 shot: s3)``."""
    line = f"est. {units_label(summary.units)}, charged {units_label(summary.charged)}"
    waiting = summary.uncharged
    if not waiting:
        return line
    named = ", ".join(waiting[:SHOWN_UNCHARGED])
    more = f" and {len(waiting) - SHOWN_UNCHARGED} more" if len(waiting) > SHOWN_UNCHARGED else ""
    return f"{line} (no charged figure yet for {len(waiting)} shot{'s' if len(waiting) != 1 else ''}: {named}{more})"


def _takes_table(summary: StatusSummary) -> Table:
    """Per shot with more than one take: each take (``wide#2``) and where it stands."""
    from rich.table import Table

    table = Table(title="takes", title_justify="left")
    table.add_column("shot")
    table.add_column("takes", overflow="fold")
    by_shot: dict[str, list[str]] = {}
    for take in summary.takes:
        by_shot.setdefault(take.shot_id, []).append(f"{take.name} {take.status}")
    for shot_id, described in by_shot.items():
        table.add_row(*(Text(printable(cell, newlines=False)) for cell in (shot_id, ", ".join(described))))
    return table


def render_status(summary: StatusSummary, console: Console) -> None:
    from rich.table import Table

    # Text, not str: a str title is rich markup, and a project named "[/bold]" would crash the table.
    title = Text(printable(f"{summary.project}: {counted(summary.total, 'shot')}", newlines=False))
    table = Table(title=title, title_justify="left")
    table.add_column("status")
    table.add_column("shots", justify="right")
    for status, count in summary.counts.items():
        if count:
            table.add_row(Text(status), str(count))
    console.print(table)
    if summary.takes:
        console.print(_takes_table(summary))
    if summary.problems:
        problems = Table(title="needs attention", title_justify="left")
        problems.add_column("shot")
        problems.add_column("status")
        problems.add_column("reason", overflow="fold")
        for problem in summary.problems:
            cells = (problem.shot_id, problem.status, problem.reason)
            problems.add_row(*(Text(printable(str(cell), newlines=False)) for cell in cells))
        console.print(problems)
    console.print(Text(printable(units_line(summary), newlines=False), style="bold"))
