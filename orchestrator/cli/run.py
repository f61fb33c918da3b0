"""``orchestrator run SPEC``: render what changed, within the account's limits, resumable at any moment."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli._app import EXIT_INTERRUPTED, FiniteFloatRange, cli, counted, handle_errors
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from orchestrator.api import Prepared

# The names --provider accepts. Spelled out here rather than read from orchestrator.providers, which imports the
# HTTP client: `orchestrator run --help` must stay instant.
PROVIDER_NAMES = (
    "local",
    "cometapi",
    "kling",
)
# The spec's own bound too (schemas/project.schema.json, limits.requests_per_second): CometAPI publishes no per-key
# request limit, so the cap is ours, high enough for 10,000-shot productions and low enough to catch a typo.
MAX_RPS = 1000.0


@cli.command("run")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option(
    "--provider",
    type=click.Choice(PROVIDER_NAMES),
    help="Where to render (default: the spec's provider:, else cometapi).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: output_dir).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Tasks in flight at the provider.")
@click.option(
    "--rps",
    type=FiniteFloatRange(min=0, min_open=True, max=MAX_RPS),
    help=f"Cap on HTTP requests per second (at most {MAX_RPS:g}).",
)
@click.option("--only", multiple=True, metavar="GLOB", help="Only shots whose id matches (repeatable).")
@click.option("--force", multiple=True, metavar="GLOB", help="Render matching shots again even if unchanged.")
@click.option("--max-cost", type=FiniteFloatRange(min=0), help="Refuse to start if the run costs more units.")
@click.option("--dry-run", is_flag=True, help="Show what would be rendered and what it costs; send nothing.")
@click.option(
    "--poll-each-task",
    is_flag=True,
    help="Poll each task on its own instead of following them all through the provider's task list.",
)
@click.option(
    "--resend-unconfirmed",
    is_flag=True,
    help="Send unconfirmed shots again (each may be billed twice): shows them and their cost, and asks.",
)
@click.option("--yes", is_flag=True, help="With --resend-unconfirmed: do not ask (required when not on a terminal).")
@click.option(
    "--budget",
    "budget_url",
    metavar="URL",
    help="Share the account's slots and the studio's spend with other runs through this Redis "
    "(redis://host:port/db; default: $ORCHESTRATOR_BUDGET_URL, else the spec's budget:).",
)
@click.option(
    "--budget-slots",
    type=click.IntRange(min=1),
    help="With a budget: the account's tasks in flight, shared by every run (--concurrency stays this run's own).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line on stdout.")
@handle_errors
def run_command(
    spec: Path,
    provider: str | None,
    out: Path | None,
    concurrency: int | None,
    rps: float | None,
    only: tuple[str, ...],
    force: tuple[str, ...],
    max_cost: float | None,
    dry_run: bool,
    poll_each_task: bool,
    resend_unconfirmed: bool,
    yes: bool,
    budget_url: str | None,
    budget_slots: int | None,
    as_json: bool,
) -> None:
    """Render SPEC's new, changed and unfinished shots; skip the rest.

    Safe to stop at any moment (Ctrl-C, a crash, kill -9): run the same command again to resume. No task is ever
    submitted twice and no finished render is lost. Exit status: 0 all rendered, 1 some failed, 130 interrupted.
    """
    # Imported here, not at the top: they bring the scheduler and the HTTP client, which `run --help` does not need.
    import anyio
    from rich.console import Console

    from orchestrator.api import arun_project
    from orchestrator.cli.progress import JsonView, LiveView, PlainView, View, print_summary
    from orchestrator.run.polling import PollPolicy

    if dry_run:
        _dry_run(spec, out=out, only=only, force=force, max_cost=max_cost, as_json=as_json)
        return
    if resend_unconfirmed:
        from orchestrator.cli.unconfirmed import confirm_resend

        confirm_resend(spec, out=out, only=only, force=force, yes=yes)
    console = Console(stderr=as_json)
    view: View = JsonView(sys.stdout) if as_json else (LiveView(console) if console.is_terminal else PlainView(console))
    try:
        result = anyio.run(
            partial(
                arun_project,
                spec,
                provider=provider,
                out=out,
                concurrency=concurrency,
                rps=rps,
                only=only or None,
                force=force or None,
                max_cost=max_cost,
                resend_unconfirmed=resend_unconfirmed,
                poll=PollPolicy(batch=False) if poll_each_task else None,
                listeners=[view],
                handle_signals=True,
                budget_url=budget_url,
                budget_slots=budget_slots,
            )
        )
    except KeyboardInterrupt:
        # Ctrl-C before the run had started (while loading): nothing was sent.
        view.close()
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        view.close()
    print_summary(result, Console(stderr=True) if as_json else console, spec=str(spec))
    sys.exit(result.exit_code)


def _dry_run(
    spec: Path,
    *,
    out: Path | None,
    only: tuple[str, ...],
    force: tuple[str, ...],
    max_cost: float | None,
    as_json: bool,
) -> None:
    from rich.console import Console

    from orchestrator.api import prepare
    from orchestrator.cli.progress import render_noun
    from orchestrator.plan.plan import units_label

    prepared = prepare(spec, out=out, only=only or None, force=force or None)
    over = max_cost is not None and prepared.cost > max_cost
    if as_json:
        payload = {
            "dry_run": True,
            "to_render": [entry.key for entry in prepared.entries],
            "skipped": list(prepared.skipped),
            "not_selected": prepared.not_selected,
            "cost": prepared.cost,
            "max_cost": max_cost,
        }
        click.echo(json.dumps(payload))
    else:
        console = Console(highlight=False, soft_wrap=True)
        _render_plan(prepared, console)
        left_out = f", {prepared.not_selected} not selected by --only" if prepared.not_selected else ""
        noun = render_noun(entry.key for entry in prepared.entries)
        console.print(
            f"would render {counted(len(prepared.entries), noun)} for {units_label(prepared.cost)}; "
            f"{len(prepared.skipped)} unchanged skipped{left_out}; nothing was sent",
            highlight=False,
        )
    if over:
        raise ConfigError(f"this run would cost {prepared.cost:g} units, more than --max-cost {max_cost:g}")


def _render_plan(prepared: Prepared, console: Console) -> None:
    """The dry run's table: only the shots this run selects (``--only``), so its totals are this run's."""
    from orchestrator.cli.plan import render_plan

    render_plan(prepared.selection, prepared.pricing, console)
