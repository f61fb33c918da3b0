"""The render store: the truth of an output folder, one SQLite database beside the videos (``renders.db``).

Every render ever made of every shot is kept, with the shot's current one marked; ``manifest.json`` is its
human-readable snapshot; a folder with a version-1 manifest is migrated once, on first open. See docs/store.md.

    store = RenderStore.open(out_dir, project="pilot")   # takes the folder's lock
    render = store.new_render("s01", fingerprint=fp, request=request)
    store.update_render(render.render_id, status=QUEUED, external_task_id=ext)
    store.commit_now()                                   # on disk before the create leaves
    ...
    await store.commit()                                 # a group commit, shared with other shots
    store.close()                                        # commits, writes manifest.json, releases the lock

Readers (``diff``, ``report``, ``status``) take ``load_state(folder_or_snapshot)``: the same ``FolderState``.
"""

from __future__ import annotations

from orchestrator.store.database import APPLICATION_ID, DATABASE_NAME, RenderStore, load_state, read_database
from orchestrator.store.migrate import V1_KEPT_NAME, state_from_v1
from orchestrator.store.records import (
    DEFAULT_TAKE,
    STORE_VERSION,
    UPDATABLE_FIELDS,
    FolderFacts,
    FolderState,
    OutputFile,
    RenderRecord,
    ShotRow,
    canonical_request,
    output_stem,
)
from orchestrator.store.snapshot import SNAPSHOT_VERSION, read_snapshot, snapshot_text, write_snapshot

__all__ = [
    "APPLICATION_ID",
    "DATABASE_NAME",
    "DEFAULT_TAKE",
    "SNAPSHOT_VERSION",
    "STORE_VERSION",
    "UPDATABLE_FIELDS",
    "V1_KEPT_NAME",
    "FolderFacts",
    "FolderState",
    "OutputFile",
    "RenderRecord",
    "RenderStore",
    "ShotRow",
    "canonical_request",
    "load_state",
    "output_stem",
    "read_database",
    "read_snapshot",
    "snapshot_text",
    "state_from_v1",
    "write_snapshot",
]
