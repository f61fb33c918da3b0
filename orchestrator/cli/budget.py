"""``orchestrator budget``: the studio's shared budget as every run sees it (docs/budget.md)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import click

from orchestrator.cli._app import EXIT_FAILED, cli, counted, exit_on_errors, printable
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.budget.config import BudgetConfig
    from orchestrator.budget.shared import BudgetState


@cli.command("budget")
@click.option(
    "--budget",
    "budget_url",
    metavar="URL",
    help="The Redis holding the budget (default: $ORCHESTRATOR_BUDGET_URL).",
)
@click.option("--prefix", metavar="PREFIX", help="The budget's key prefix, if runs were given one.")
@click.option("--json", "as_json", is_flag=True, help="The state as one JSON document.")
@exit_on_errors(EXIT_FAILED, json_flag="as_json")
def budget_command(budget_url: str | None, prefix: str | None, as_json: bool) -> None:
    """Show the shared budget: slots in use by project and host, the cooldown, units spent today against the cap,
    and leases about to expire (their run may be dead, or a create's outcome unknown)."""
    import anyio

    config = _config(budget_url, prefix)
    state = anyio.run(_read_state, config)
    if as_json:
        click.echo(json.dumps({"ok": True, "url": config.display_url, **state.to_json()}, indent=2))
    else:
        for line in describe(state, config):
            click.echo(line)


def _config(budget_url: str | None, prefix: str | None) -> BudgetConfig:
    from orchestrator.budget.config import DEFAULT_PREFIX, URL_VARIABLE, BudgetConfig, import_redis

    url = budget_url or os.environ.get(URL_VARIABLE)
    if not url:
        raise ConfigError(f"no budget to show: pass --budget redis://host:port/db or set {URL_VARIABLE}")
    import_redis()
    # Reading needs no slot count: the one shown is the one the runs last gave.
    return BudgetConfig(url=url, slots=1, prefix=prefix or DEFAULT_PREFIX)


async def _read_state(config: BudgetConfig) -> BudgetState:
    from orchestrator.budget.shared import SharedBudget

    async with SharedBudget.connect(config, project="") as budget:
        return await budget.state()


def describe(state: BudgetState, config: BudgetConfig) -> list[str]:
    """The state as lines for the terminal."""
    slots = "?" if state.slots is None else str(state.slots)
    lines = [f"budget at {config.display_url} (prefix {config.prefix})", f"slots: {state.in_use} of {slots} in use"]
    for (project, host), count in sorted(state.by_owner().items()):
        lines.append(f"  {printable(project, newlines=False)} on {printable(host, newlines=False)}: {count}")
    lines.append(f"cooldown: {state.cooldown:.1f} s left" if state.cooldown else "cooldown: none")
    reserved = f", {state.reserved:g} reserved in flight" if state.reserved else ""
    cap = "no cap" if state.cap is None else f"cap {state.cap:g} ({max(0.0, state.left or 0.0):g} left)"
    lines.append(f"spent today ({state.day} UTC): {state.spent:g} units{reserved}; {cap}")
    expiring = state.expiring()
    if expiring:
        lines.append(
            f"{counted(len(expiring), 'lease')} about to expire (unrefreshed for over half of {state.lease_ttl:g} s):"
        )
        for lease in expiring:
            lines.append(
                f"  {printable(lease.key, newlines=False)}  {printable(lease.project, newlines=False)} on "
                f"{printable(lease.host, newlines=False)}, expires in {max(0.0, lease.expires_in):.0f} s"
            )
    return lines
