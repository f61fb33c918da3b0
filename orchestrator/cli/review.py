"""``orchestrator takes``, ``select``, ``approve``, ``retake``, ``hold`` and ``review``: the review's commands.

Every one of them goes through ``orchestrator.review.Review``, as the review app does: a decision made here or on
the page is the same line of ``<spec stem>.review.yaml``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from orchestrator.cli._app import EXIT_INTERRUPTED, cli, counted, handle_errors, printable
from orchestrator.review import Decision, Review, ShotReview, TakeRow

_spec_argument = click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
_shot_argument = click.argument("shot")
_by_option = click.option("--by", help="Who decides (default: $USER).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
_out_option = click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: the spec's)."
)


def _open(spec: Path, out: Path | None = None) -> Review:
    return Review.open(spec, out=out)


# --- takes ------------------------------------------------------------------------------------------------------


@cli.command("takes")
@_spec_argument
@click.argument("shot", required=False)
@_out_option
@click.option("--json", "as_json", is_flag=True, help="Print the takes as JSON.")
@handle_errors
def takes_command(spec: Path, shot: str | None, out: Path | None, as_json: bool) -> None:
    """Each shot's renders (take, variant, status, units), which is selected, and the shot's review status.

    The numbers in the first column are what `select`, `approve` and the review app's keys 1-9 pick.
    """
    review = _open(spec, out)
    shots = review.shots(shot)
    if as_json:
        data = {"project": review.project.project, "decisions": str(review.decisions_file)}
        click.echo(json.dumps({**data, "shots": [s.to_json() for s in shots]}, indent=2, ensure_ascii=False))
        return
    for shot_review in shots:
        for line in shot_lines(shot_review):
            click.echo(line)


def shot_lines(shot: ShotReview) -> list[str]:
    """``s01  approved  (2 takes)``, the decision's note, then one line per take (``*`` marks the select)."""
    head = f"{printable(shot.shot_id, newlines=False)}  {shot.status}  ({counted(len(shot.takes), 'take')})"
    lines = [head]
    decision = shot.decision
    if decision.note or decision.by:
        who = " ".join(part for part in (f"by {decision.by}" if decision.by else "", decision.at) if part)
        text = f"note: {decision.note} ({who})" if decision.note else who
        lines.append(f"    {printable(text, newlines=False)}")
    lines += [take_line(row) for row in shot.takes]
    return lines


def take_line(row: TakeRow) -> str:
    units = "-" if row.cost is None else f"{row.cost:g} units"
    marks = [mark for mark, on in (("selected", row.selected), ("stale: an older request", row.stale)) if on]
    retries = f", {counted(row.attempts, 'attempt')}" if row.attempts > 1 else ""
    cells = [
        f"  {'*' if row.selected else ' '} {row.number:>2}",
        printable(row.ref.label, newlines=False).ljust(14),
        f"{row.status}{retries}".ljust(22),
        units.ljust(10),
        printable(row.video or "", newlines=False),
    ]
    return "  ".join(cells).rstrip() + (f"  [{'; '.join(marks)}]" if marks else "")


# --- deciding ---------------------------------------------------------------------------------------------------


def _echo_decision(decision: Decision, *, as_json: bool) -> None:
    if as_json:
        data: dict[str, Any] = {
            "id": decision.shot_id,
            "status": decision.status,
            "select": None
            if decision.select is None
            else {
                "take": decision.select.take,
                "variant": decision.select.variant,
                "fingerprint": decision.select.fingerprint,
            },
            "retake_take": decision.retake_take,
            "note": decision.note,
            "by": decision.by,
            "at": decision.at,
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    what = f" {decision.select.label}" if decision.select is not None else ""
    more = f", take {decision.retake_take} wanted" if decision.retake_take is not None else ""
    click.echo(printable(f"{decision.shot_id}: {decision.status}{what}{more} (by {decision.by})", newlines=False))


@cli.command("select")
@_spec_argument
@_shot_argument
@click.argument("take", type=click.IntRange(min=1))
@click.option("--note", help="Why this take.")
@_by_option
@_json_option
@handle_errors
def select_command(spec: Path, shot: str, take: int, note: str | None, by: str | None, as_json: bool) -> None:
    """Make take TAKE (as `orchestrator takes` numbers it) the shot's select; it then waits for an approval."""
    _echo_decision(_open(spec).select(shot, take, by=by, note=note), as_json=as_json)


@cli.command("approve")
@_spec_argument
@_shot_argument
@click.argument("take", type=click.IntRange(min=1), required=False)
@click.option("--note", help="A note to keep with the approval.")
@_by_option
@_json_option
@handle_errors
def approve_command(spec: Path, shot: str, take: int | None, note: str | None, by: str | None, as_json: bool) -> None:
    """Approve the shot's select (or take TAKE, which becomes the select).

    The approval is bound to the request it approved: when the spec changes the shot, it shows as
    `approved (stale)` and the shot is planned again.
    """
    _echo_decision(_open(spec).approve(shot, take, by=by, note=note), as_json=as_json)


@cli.command("retake")
@_spec_argument
@_shot_argument
@click.option("--note", required=True, help="What to change (required).")
@_by_option
@_json_option
@handle_errors
def retake_command(spec: Path, shot: str, note: str, by: str | None, as_json: bool) -> None:
    """Send the shot back: plan and run render one more take of it (the old takes stay)."""
    _echo_decision(_open(spec).retake(shot, note, by=by), as_json=as_json)


@cli.command("hold")
@_spec_argument
@_shot_argument
@click.option("--note", help="Why it waits.")
@_by_option
@_json_option
@handle_errors
def hold_command(spec: Path, shot: str, note: str | None, by: str | None, as_json: bool) -> None:
    """Put the shot on hold: no decision for now."""
    _echo_decision(_open(spec).hold(shot, note, by=by), as_json=as_json)


# --- the app ----------------------------------------------------------------------------------------------------


@cli.command("review")
@_spec_argument
@_out_option
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port (0: any free one).")
@click.option("--no-browser", is_flag=True, help="Print the address only; do not open a browser.")
@handle_errors
def review_command(spec: Path, out: Path | None, port: int, no_browser: bool) -> None:
    """Serve the review page on 127.0.0.1 until Ctrl-C: takes side by side, select, approve, retake, hold.

    The printed address holds a random token; only a browser given it can read or decide.
    """
    from orchestrator.review.server import serve_forever  # Starlette and uvicorn: only for this command

    review = _open(spec, out)

    def ready(url: str) -> None:
        click.echo(f"review of {printable(review.project.project, newlines=False)}: {url}")
        click.echo("decisions go to " + printable(str(review.decisions_file)) + "; Ctrl-C stops")
        if not no_browser:
            import webbrowser

            webbrowser.open(url)

    try:
        serve_forever(review, port=port, on_ready=ready)
    except KeyboardInterrupt:
        click.echo("review stopped", err=True)  # decisions are written as they are made: nothing is lost
        sys.exit(EXIT_INTERRUPTED)
