"""Settling ``unconfirmed`` renders: ``orchestrator adopt`` and the confirmation behind ``run --resend-unconfirmed``.

A create whose outcome is unknown at a provider that cannot confirm it may have been billed. Nothing sends it again
on its own: the user either attaches the task found in the provider's console (``adopt``) or asks for a resend,
after being shown what it may cost twice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from orchestrator.cli._app import cli, handle_errors, printable
from orchestrator.errors import ConfigError


@cli.command("adopt")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("key")
@click.argument("task_id")
@click.option(
    "--provider",
    type=click.Choice(["local", "cometapi", "kling"]),
    help="Where the task is (default: the spec's provider:, else cometapi).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: output_dir).")
@handle_errors
def adopt_command(spec: Path, key: str, task_id: str, provider: str | None, out: Path | None) -> None:
    """Attach TASK_ID, found in your provider's console, to KEY, an unconfirmed render.

    KEY names the render as `run` and `status` do: a shot's id for its first take (s03), else s03#2, s03/wide or
    s03/wide#2. The task is queried and checked against the render (its external id, where the provider echoes
    it); the next `orchestrator run SPEC` follows it and downloads its video. Nothing is created or billed.
    """
    from orchestrator.adopt import adopt

    adopted = adopt(spec, key, task_id, provider=provider, out=out)
    check = "" if adopted.external_id_checked else " (the provider echoed no external id: checked by your word only)"
    click.echo(
        printable(
            f"attached task {adopted.task_id} ({adopted.status}) to {adopted.named}{check}; "
            f"`orchestrator run {spec}` follows it and downloads its video"
        )
    )


def confirm_resend(spec: Path, *, out: Path | None, only: tuple[str, ...], force: tuple[str, ...], yes: bool) -> None:
    """Show the unconfirmed shots a resend would send again and what each may cost twice; ask, unless ``yes``.

    Not on a terminal, ``--yes`` is required: a script must say so in writing.
    """
    from orchestrator.api import prepare

    prepared = prepare(spec, out=out, only=only or None, force=force or None, resend_unconfirmed=True)
    if not prepared.unconfirmed:
        click.echo("no unconfirmed shots to resend", err=True)
        return
    total = sum(units for _, units in prepared.unconfirmed)
    click.echo(
        f"--resend-unconfirmed sends {_count(len(prepared.unconfirmed))} again; each may be billed twice:", err=True
    )
    for shot, units in prepared.unconfirmed:
        click.echo(printable(f"  {shot.id}: up to {units:g} more units", newlines=False), err=True)
    click.echo(f"  in all, up to {total:g} more units", err=True)
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError("--resend-unconfirmed may bill twice: add --yes to confirm when not on a terminal")
    if not click.confirm("Resend them?", default=False, err=True):
        raise ConfigError("nothing was sent")


def _count(n: int) -> str:
    return f"{n} shot" if n == 1 else f"{n} shots"
