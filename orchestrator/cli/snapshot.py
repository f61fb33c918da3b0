"""``orchestrator snapshot``: write a folder's ``manifest.json`` from its render store, on demand.

A run writes the snapshot when it ends; this writes it at any other moment (during a long run, before a commit to
git), from what the database holds. It only reads the store, so it works beside a run that is writing.
"""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli._app import cli, counted, handle_errors, printable
from orchestrator.errors import ConfigError, StoreError
from orchestrator.store.database import DATABASE_NAME, read_database
from orchestrator.store.manifest import MANIFEST_NAME
from orchestrator.store.snapshot import write_snapshot

# Where to look when given no target, as ``status`` and ``report`` do: the current folder, then ./renders.
DEFAULT_FOLDERS = (Path(), Path("renders"))


@cli.command("snapshot")
@click.argument("target", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write it (default: manifest.json in the folder).",
)
@handle_errors
def snapshot_command(target: str | None, output: Path | None) -> None:
    """Write the snapshot (manifest.json) of TARGET's render store: an output folder, its renders.db, or a spec.

    With no TARGET, the folder here, then ./renders. The file is written atomically and the store is only read.
    """
    database = store_of(target)
    state = read_database(database)
    destination = output or database.parent / MANIFEST_NAME
    try:
        write_snapshot(state, destination)
    except OSError as exc:
        raise StoreError(
            f"{destination}: cannot write the snapshot ({exc.strerror or exc})", path=str(destination)
        ) from None
    shots, renders = counted(len(state.shots), "shot"), counted(len(state.renders), "render")
    click.echo(printable(f"wrote {destination}: {shots}, {renders}"))


def store_of(target: str | None) -> Path:
    """The ``renders.db`` a user means: a folder holding one, the file itself, or a spec's output folder."""
    if target is None:
        for folder in DEFAULT_FOLDERS:
            if (folder / DATABASE_NAME).is_file():
                return folder / DATABASE_NAME
        raise ConfigError(f"no {DATABASE_NAME} here nor in ./renders: give an output folder or the spec")
    path = Path(target)
    if not path.exists():
        raise ConfigError(f"{target}: no such file or folder")
    if path.is_dir():
        database = path / DATABASE_NAME
    elif path.name == DATABASE_NAME:
        database = path
    else:
        from orchestrator.spec.load import load_project

        database = load_project(path).output_dir / DATABASE_NAME
    if not database.is_file():
        raise ConfigError(f"{database.parent}: no render store ({DATABASE_NAME}) here: its first run makes one")
    return database
