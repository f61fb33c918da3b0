"""``orchestrator validate`` (check specs, one summary line each) and ``orchestrator schema`` (print the schema)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from orchestrator.cli._app import DEBUG_VARIABLE, EXIT_FAILED, EXIT_OK, cli, handle_errors, printable
from orchestrator.cli.collector import paused_collector, skip_collection_at_exit
from orchestrator.errors import Problem
from orchestrator.spec.load import Validation, check_project, summarize
from orchestrator.spec.schema import schema_text


@cli.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print problems and summaries as one JSON document on stdout.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@handle_errors
def validate(specs: tuple[Path, ...], as_json: bool, strict: bool) -> None:
    """Check SPEC files: schema, images, templates and every rule the provider enforces.

    Prints one summary line per valid spec; otherwise every problem as FILE:LINE:COL: shot <id>: message on
    stderr, and exits 1. Warnings do not fail unless --strict.
    """
    skip_collection_at_exit()
    with paused_collector():  # a big spec's values, built once and freed together: nothing for it to find
        passed = _validate(specs, as_json=as_json, strict=strict)
    sys.exit(EXIT_OK if passed else EXIT_FAILED)


def _validate(specs: tuple[Path, ...], *, as_json: bool, strict: bool) -> bool:
    """Check and report every spec; whether they all passed."""
    results = [_check(spec) for spec in specs]
    passed = all(result.ok(strict=strict) for result in results)
    if as_json:
        document = {"valid": passed, "strict": strict, "specs": [_as_json(r, strict=strict) for r in results]}
        click.echo(json.dumps(document, indent=2))
    else:
        for result in results:
            _report(result, strict=strict)
    return passed


@cli.command()
@handle_errors
def schema() -> None:
    """Print the JSON Schema of project specs (for editors: yaml-language-server, VS Code, ...)."""
    click.echo(schema_text(), nl=False)


def _check(spec: Path) -> Validation:
    """``check_project``, with a net: input nobody foresaw in one spec must not leave the others unchecked."""
    try:
        return check_project(spec)
    except Exception as exc:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        message = (
            f"could not be checked: unexpected {type(exc).__name__}: {exc} (a bug or an unforeseen input; "
            f"run with {DEBUG_VARIABLE}=1 for the details)"
        )
        return Validation(str(spec), None, [Problem(str(spec), 1, 1, message)])


def _report(result: Validation, *, strict: bool) -> None:
    for problem in result.problems:
        click.echo(printable(problem.format(), newlines=False), err=True)
    # The file name comes from the command line, maybe from a glob over someone else's files: escape it as the
    # problem lines do, or a name holding ESC sequences, bidi overrides or a newline would drive the terminal.
    file = printable(result.file, newlines=False)
    if result.project is not None and result.ok(strict=strict):
        click.echo(f"{file}: valid: {summarize(result.project).format()}")
    else:
        errors, warnings = len(result.errors), len(result.warnings)
        failing = errors + (warnings if strict else 0)
        click.echo(f"{file}: invalid: {failing} problem{'s' if failing != 1 else ''}", err=True)


def _as_json(result: Validation, *, strict: bool) -> dict[str, object]:
    summary = summarize(result.project).to_json() if result.project is not None else None
    return {
        "file": result.file,
        "valid": result.ok(strict=strict),
        "errors": len(result.errors),
        "warnings": len(result.warnings),
        "summary": summary,
        "problems": [problem.to_json() for problem in result.problems],
    }
