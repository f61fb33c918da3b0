"""The command line: a thin layer over the library. Each command lives in its own module here."""

from __future__ import annotations

from orchestrator.cli._app import cli, main

# Importing the command modules registers their commands on ``cli``.
from orchestrator.cli import plan, run, simulate, validate  # noqa: F401  isort: skip

__all__ = ["cli", "main"]
