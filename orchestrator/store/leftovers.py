"""What a process killed mid-write leaves in an output folder, and clearing it (under the folder's lock only)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from orchestrator.store.manifest import MANIFEST_NAME

DOWNLOAD_PART = re.compile(r"\..+\.[0-9a-f]{12}\.part")  # a download on its way (``providers.http.download``)


def clear_leftovers(directory: Path, *, building_prefix: str) -> None:
    """Remove what a process killed mid-write left: a database being built, a snapshot's temporary file, the
    ``.part`` files of downloads (anywhere under the folder, beside the videos they were becoming).

    Called under the folder's lock only: no other run can be writing any of them. Only names this tool makes are
    touched, and symlinked folders are not followed.
    """
    if not directory.is_dir():
        return
    for pattern in (f"{building_prefix}.*", f".{MANIFEST_NAME}.*.tmp"):
        for leftover in directory.glob(pattern):
            remove_database(leftover)
    for part in _download_parts(directory):
        with contextlib.suppress(OSError):
            part.unlink()


def _download_parts(directory: Path) -> Iterator[Path]:
    """The temp files of downloads under ``directory``: ``.<video name>.<12 hex>.part`` (see ``providers.http``)."""
    for folder, _subfolders, names in os.walk(directory):
        for name in names:
            if DOWNLOAD_PART.fullmatch(name):
                yield Path(folder, name)


def remove_database(path: Path) -> None:
    """``path`` and SQLite's files beside it (journal, WAL, shared memory), whatever of them exists."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
