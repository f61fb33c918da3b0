"""The command line: a thin layer over the library. Each command lives in its own module here,
imported on first use (see ``_app.COMMAND_MODULES``)."""

from __future__ import annotations

from orchestrator.cli._app import cli, main

__all__ = ["cli", "main"]
