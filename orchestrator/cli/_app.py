"""The root ``orchestrator`` command group and the one place errors become messages and exit codes."""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

import click

from orchestrator import __version__
from orchestrator.errors import OrchestratorError, Problem, SpecError

P = ParamSpec("P")
R = TypeVar("R")

# C0/C1 control characters (ESC starts terminal escape sequences: colours, window titles, hyperlinks, cursor moves)
# and bidi overrides ("Trojan source"). Text from providers, manifests and specs must not drive the terminal.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` safe for the terminal: control characters shown as ``\\x1b``-style escapes (and newlines too with
    ``newlines=False``, for one-line fields such as table cells and ids)."""
    if text.isascii() and text.isprintable():
        return text  # no control character, no bidi override, no newline: the usual case, and a big table's
    if not newlines:
        text = text.replace("\r", "\\r").replace("\n", "\\n")
    return _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def counted(count: int, noun: str) -> str:
    """``1 shot``, ``0 shots``, ``3 shots``: the noun in the singular only for one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Lazy(NamedTuple):
    """Where a command is defined, and its one-line help for ``orchestrator --help``."""

    module: str
    summary: str


# Each command, imported on first use, so `orchestrator validate` does not pay for the simulator's video stack (PyAV,
# numpy, Starlette) or the HTTP client: start-up time counts on 10,000-shot specs. The one-line help lives here, not
# only in the command's docstring, so `orchestrator --help` lists every command without importing any of them.
COMMAND_MODULES: dict[str, Lazy] = {
    "validate": Lazy("orchestrator.cli.validate", "Check specs: schema, images, templates, provider rules."),
    "schema": Lazy("orchestrator.cli.validate", "Print the JSON Schema of project specs."),
    "plan": Lazy("orchestrator.cli.plan", "Show what a run would render, why, and what it costs."),
    "run": Lazy("orchestrator.cli.run", "Render a spec's new, changed and unfinished shots."),
    "diff": Lazy("orchestrator.cli.plan", "Compare two specs, manifests or git revisions of a spec."),
    "report": Lazy("orchestrator.cli.plan", "Write an HTML contact sheet of a manifest."),
    "status": Lazy("orchestrator.cli.plan", "Shots per status, failures and units spent."),
    "takes": Lazy("orchestrator.cli.review", "List each shot's takes, its select and review status."),
    "select": Lazy("orchestrator.cli.review", "Make one take of a shot its select."),
    "approve": Lazy("orchestrator.cli.review", "Approve a shot's select."),
    "retake": Lazy("orchestrator.cli.review", "Send a shot back for one more take, with a note."),
    "hold": Lazy("orchestrator.cli.review", "Put a shot on hold."),
    "review": Lazy("orchestrator.cli.review", "Serve the review page on loopback: takes side by side, decisions."),
    "snapshot": Lazy("orchestrator.cli.snapshot", "Write a folder's manifest.json from its render store."),
    "simulate": Lazy("orchestrator.cli.simulate", "Run the Kling-compatible simulator on loopback."),
    "adopt": Lazy("orchestrator.cli.unconfirmed", "Attach a task found at the provider to an unconfirmed render."),
    "export": Lazy("orchestrator.cli.editorial", "Write the cut as a timeline: otio, FCP7 XML, FCPXML, EDL, AAF."),
    "reel": Lazy("orchestrator.cli.editorial", "Render the cut to one MP4 with a slate and burn-ins."),
    "conform": Lazy("orchestrator.cli.editorial", "Read an editor's timeline back: moved, trimmed, removed, added."),
    "budget": Lazy("orchestrator.cli.budget", "Show the studio's shared budget: slots, cooldown, spend."),
}


class LazyGroup(click.Group):
    """A group whose commands register themselves when their module is first imported."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        # The table's order (the order of a day's work), then any command registered some other way.
        return [*COMMAND_MODULES, *sorted(set(super().list_commands(ctx)) - set(COMMAND_MODULES))]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(COMMAND_MODULES[cmd_name].module)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table, importing no command module (click's own asks each command)."""
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            lazy = COMMAND_MODULES.get(name)
            if lazy is not None:
                rows.append((name, lazy.summary))
            elif (command := self.commands.get(name)) is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orchestrator")
def cli() -> None:
    """Render storyboards into video with Kling, from versioned YAML specs."""


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf``, which its comparisons would let through."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def exit_on_errors(code: int, *, json_flag: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator: our errors become one line per problem on stderr and exit ``code``; never a traceback.

    ``json_flag`` names the command's ``--json`` parameter: when it is set, the problems are one JSON document on
    stdout instead (``{"ok": false, "problems": [...]}``, each problem as ``validate --json`` gives it), same exit.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except OrchestratorError as exc:
                if json_flag is not None and kwargs.get(json_flag):
                    click.echo(json.dumps({"ok": False, "problems": problems_json(exc)}, indent=2))
                else:
                    for line in problem_lines(exc):
                        click.echo(line, err=True)
                sys.exit(code)

        return wrapper

    return decorate


def problem_lines(exc: OrchestratorError) -> list[str]:
    """One terminal-safe line per problem: ``FILE:LINE:COL: ...`` for a spec, ``error: ...`` for anything else."""
    if isinstance(exc, SpecError):
        return [printable(problem.format(), newlines=False) for problem in exc.problems]
    return [f"error: {printable(exc.message)}"]


def problems_json(exc: OrchestratorError) -> list[dict[str, object]]:
    """The problems as ``validate --json`` lists them; an error that is not at a spec line has no line or column."""
    if isinstance(exc, SpecError):
        return [problem.to_json() for problem in exc.problems]
    path = getattr(exc, "path", None)
    return [{"file": path, "line": None, "column": None, "shot": None, "severity": "error", "message": exc.message}]


def refuse_missing(*targets: str | Path | None) -> None:
    """Each input that does not exist is one problem, worded as ``validate`` words it: ``FILE:1:1: no such file``.

    For commands whose argument is not always a spec (a manifest, a folder, ``SPEC@REV``); the others get the same
    line from loading the spec.
    """
    missing = [str(target) for target in targets if target is not None and not Path(target).exists()]
    if missing:
        raise SpecError([Problem(name, 1, 1, "no such file") for name in missing])


handle_errors = exit_on_errors(EXIT_FAILED)
"""The usual handler: exit 1 on any of our errors."""


DEBUG_VARIABLE = "ORCHESTRATOR_DEBUG"


def main() -> None:
    try:
        cli(prog_name="orchestrator")
    except Exception as exc:
        # The last net: input nobody foresaw (a hand-edited manifest with odd types, say) or a bug. One line and
        # exit 1, as for every other error; the traceback is there for whoever sets ORCHESTRATOR_DEBUG=1.
        if os.environ.get(DEBUG_VARIABLE):
            raise
        click.echo(
            f"error: unexpected {type(exc).__name__}: {printable(str(exc))} (a bug or an unforeseen input; "
            f"run with {DEBUG_VARIABLE}=1 for the details)",
            err=True,
        )
        sys.exit(EXIT_FAILED)
