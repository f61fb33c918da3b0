"""``<out>/renders.db``: the truth of an output folder, an SQLite database (WAL mode) beside the videos.

One row per shot (its place in the spec, which render is current), one per render ever made, its request and its
output files (see docs/store.md for the schema). A run opens the folder with ``RenderStore.open`` under the folder's
lock, changes records in memory through a small write API, and makes the changes durable one of two ways:

- ``commit_now()``: a synchronous commit, on the calling thread, for what must be on disk before the next step (an
  external id before its create leaves, a task id the moment it arrives);
- ``await commit()``: a group commit. It returns once a transaction including every change made before the call is
  on disk; callers that arrive while one is being written share the next. The sqlite work runs in a worker thread.

Either way a commit writes only the rows that changed since the last one, so the bytes written per state change do
not grow with the number of shots or renders. Every transaction is synchronous (``PRAGMA synchronous=FULL``): once a
commit returns, a power cut cannot take it back.

A file that is not our database (another program's, a corrupt one, one from a newer orchestrator) is refused with
one line naming it, before anything is written to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import (
    ForeignStoreError,
    NewerStoreError,
    StoreCorruptError,
    StoreError,
)
from orchestrator.store import migrate, snapshot
from orchestrator.store.leftovers import clear_leftovers, remove_database
from orchestrator.store.manifest import (
    LOCK_NAME,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    PENDING,
    STATUSES,
    ManifestLock,
    fsync_dir,
    new_salt,
    now_iso,
)
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
)

if TYPE_CHECKING:
    import anyio

DATABASE_NAME = "renders.db"
APPLICATION_ID = 0x4F524348  # "ORCH" in the database header: tells our file from any other program's SQLite file
PAGE_SIZE = 1024
_BUILDING_PREFIX = f".{DATABASE_NAME}.new"  # a database being built (new folder, migration), renamed when complete

_STATUS_CHECK = ", ".join(f"'{status}'" for status in STATUSES)
SCHEMA = f"""
CREATE TABLE folder (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    store_version INTEGER NOT NULL,
    project TEXT NOT NULL,
    salt TEXT NOT NULL,
    spec_path TEXT NOT NULL,
    spec_sha256 TEXT NOT NULL,
    spec_version INTEGER NOT NULL,
    provider TEXT NOT NULL,
    tool_version TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE TABLE shots (
    shot_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    current_render_id INTEGER REFERENCES renders (render_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE TABLE renders (
    render_id INTEGER PRIMARY KEY,
    shot_id TEXT NOT NULL REFERENCES shots (shot_id) DEFERRABLE INITIALLY DEFERRED,
    take INTEGER NOT NULL CHECK (take >= 1),
    variant TEXT,
    attempt INTEGER NOT NULL CHECK (attempt >= 0),
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({_STATUS_CHECK})),
    external_task_id TEXT,
    task_id TEXT,
    provider_status TEXT,
    cost REAL,
    charged REAL,
    created_at TEXT,
    updated_at TEXT,
    submitted_at TEXT,
    finished_at TEXT,
    error TEXT
);
CREATE INDEX renders_by_shot ON renders (shot_id, render_id);
CREATE TABLE requests (
    render_id INTEGER PRIMARY KEY REFERENCES renders (render_id) DEFERRABLE INITIALLY DEFERRED,
    request TEXT NOT NULL
);
CREATE TABLE outputs (
    render_id INTEGER NOT NULL REFERENCES renders (render_id) DEFERRABLE INITIALLY DEFERRED,
    position INTEGER NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL CHECK (bytes >= 0),
    PRIMARY KEY (render_id, position)
) WITHOUT ROWID;
"""
_TABLES = frozenset({"folder", "shots", "renders", "requests", "outputs"})

_FACT_COLUMNS = (
    "store_version", "project", "salt", "spec_path", "spec_sha256", "spec_version", "provider", "tool_version",
    "started_at", "finished_at",
)  # fmt: skip
_RENDER_COLUMNS = (
    "render_id", "shot_id", "take", "variant", "attempt", "fingerprint", "status", "external_task_id", "task_id",
    "provider_status", "cost", "charged", "created_at", "updated_at", "submitted_at", "finished_at", "error",
)  # fmt: skip
_FACT_FIELDS = frozenset(_FACT_COLUMNS) - {"store_version", "project"}  # what ``set_facts`` may change

_UPSERT_SHOT = (
    "INSERT INTO shots (shot_id, position, current_render_id) VALUES (?, ?, ?) ON CONFLICT (shot_id) DO UPDATE "
    "SET position = excluded.position, current_render_id = excluded.current_render_id"
)
_UPSERT_RENDER = (
    f"INSERT INTO renders ({', '.join(_RENDER_COLUMNS)}) VALUES ({', '.join('?' * len(_RENDER_COLUMNS))}) "
    "ON CONFLICT (render_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _RENDER_COLUMNS[1:])
)
_UPDATE_FACTS = f"UPDATE folder SET {', '.join(f'{column} = ?' for column in _FACT_COLUMNS)} WHERE id = 1"


class RenderStore:
    """An output folder's store, open for one run: held under the folder's lock, changed in memory, committed.

    Reads (``facts``, ``shot``, ``render``, ``renders_of``, ``current``, ``state``) answer from memory and see every
    change at once, committed or not. Change records only through ``new_render``, ``update_render``,
    ``set_current``, ``place_shots`` and ``set_facts``; each marks what a commit must write.
    """

    def __init__(self, directory: Path, connection: sqlite3.Connection, state: FolderState, lock: ManifestLock) -> None:
        self.directory = directory
        self._connection = connection
        self._lock = lock
        self._facts = state.facts
        self._shots: dict[str, ShotRow] = {row.shot_id: row for row in state.shots}
        # The position a new shot's row gets (last): kept, not recomputed, so that adding a shot costs the same
        # in a 10,000-shot folder as in an empty one.
        self._end_position = max((row.position for row in state.shots), default=-1) + 1
        self._renders: dict[int, RenderRecord] = {render.render_id: render for render in state.renders}
        self._by_shot: dict[str, list[int]] = {}
        for render in state.renders:
            self._by_shot.setdefault(render.shot_id, []).append(render.render_id)
        self._next_render_id = max(self._renders, default=0) + 1
        # What the next commit must write. Guarded by ``_pending`` because a commit takes it from a worker thread.
        self._pending = threading.Lock()
        self._facts_dirty = False
        self._dirty_shots: set[str] = set()
        self._dirty_renders: set[int] = set()
        self._new_requests: set[int] = set()
        self._dirty_outputs: set[int] = set()
        self._version = 0  # changes made so far
        self._written = 0  # changes known to be on disk
        self._writing = threading.Lock()  # one transaction at a time on the connection
        self._commit_lock: anyio.Lock | None = None
        self.commits = 0
        self.commit_seconds = 0.0

    # --- opening and closing ------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        project: str,
        spec_path: str = "",
        spec_sha256: str = "",
        spec_version: int = 1,
        provider: str = "",
        tool_version: str = "",
        stamp_run: bool = True,
    ) -> RenderStore:
        """Take the folder's lock, then open its store: created, or migrated from a version-1 manifest, if need be.

        With ``stamp_run`` (a run), the folder's facts say a run started now, with this spec, provider and tool; a
        command that is not a run (``adopt``) passes ``False`` and changes nothing it does not mean to.

        Raises ``ManifestLockedError`` while another run holds the folder, ``StoreError`` for a store that cannot
        be used (named, left untouched), ``ManifestError`` for an unreadable version-1 manifest.
        """
        lock = ManifestLock(directory / LOCK_NAME)
        lock.acquire()
        connection: sqlite3.Connection | None = None
        try:
            clear_leftovers(directory, building_prefix=_BUILDING_PREFIX)
            created_from = _create_if_missing(directory, project=project)
            connection = _connect(directory / DATABASE_NAME, readonly=False)
            state = _read_state(connection, directory / DATABASE_NAME)
            _check_project(state, project, directory / DATABASE_NAME)
            store = cls(directory, connection, state, lock)
        except BaseException:
            if connection is not None:
                connection.close()
            lock.release()
            raise
        try:
            salt = state.facts.salt or new_salt()  # once per folder; kept, so a resume sends the same ids
            if stamp_run:
                store.set_facts(
                    salt=salt,
                    spec_path=spec_path or state.facts.spec_path,
                    spec_sha256=spec_sha256 or state.facts.spec_sha256,
                    spec_version=spec_version,
                    provider=provider or state.facts.provider,
                    tool_version=tool_version or state.facts.tool_version,
                    started_at=now_iso(),
                    finished_at=None,
                )
            elif salt != state.facts.salt:
                store.set_facts(salt=salt)
            store.commit_now()  # nothing to write when nothing changed
            if created_from is not None:
                store.write_snapshot()  # the version-1 file is kept beside; manifest.json becomes the new snapshot
        except BaseException:
            store.release()
            raise
        return store

    def close(self, *, finished: bool = True, write_snapshot: bool = True) -> None:
        """Commit (with ``finished_at`` when ``finished``), write the snapshot, close the database, release the lock."""
        try:
            if finished:
                self.set_facts(finished_at=now_iso())
            if write_snapshot:
                self.write_snapshot()
            else:
                self.commit_now()
            with self._writing, contextlib.suppress(sqlite3.Error):
                # Fold the log back into the database so the folder is one self-contained file at rest.
                self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._connection.close()
            self._lock.release()

    def release(self) -> None:
        """Close without writing anything more: for a command that changed nothing."""
        self._connection.close()
        self._lock.release()

    def write_snapshot(self, path: Path | None = None) -> Path:
        """Commit, then write ``manifest.json`` (or ``path``) as the snapshot of what is committed."""
        self.commit_now()
        target = path or self.directory / MANIFEST_NAME
        try:
            snapshot.write_snapshot(self.state(), target)
        except OSError as exc:
            raise StoreError(
                f"{target}: cannot write the snapshot ({exc.strerror or exc}); the store itself is intact",
                path=str(target),
            ) from None
        return target

    # --- reading ------------------------------------------------------------------------------------------------

    @property
    def facts(self) -> FolderFacts:
        return self._facts

    @property
    def shot_ids(self) -> tuple[str, ...]:
        return tuple(row.shot_id for row in sorted(self._shots.values(), key=lambda row: row.position))

    def shot(self, shot_id: str) -> ShotRow | None:
        return self._shots.get(shot_id)

    def render(self, render_id: int) -> RenderRecord:
        return self._renders[render_id]

    def renders_of(self, shot_id: str) -> tuple[RenderRecord, ...]:
        """Every render of the shot, oldest first."""
        return tuple(self._renders[render_id] for render_id in self._by_shot.get(shot_id, ()))

    def current(self, shot_id: str) -> RenderRecord | None:
        row = self._shots.get(shot_id)
        if row is None or row.current_render_id is None:
            return None
        return self._renders[row.current_render_id]

    def state(self) -> FolderState:
        """Everything, as the immutable value a snapshot or ``read_database`` gives."""
        shots = tuple(sorted(self._shots.values(), key=lambda row: row.position))
        renders = tuple(self._renders[render_id] for render_id in sorted(self._renders))
        return FolderState(facts=self._facts, shots=shots, renders=renders)

    # --- changing -----------------------------------------------------------------------------------------------

    def new_render(
        self,
        shot_id: str,
        *,
        fingerprint: str,
        request: dict[str, Any],
        take: int = DEFAULT_TAKE,
        variant: str | None = None,
        attempt: int = 0,
        current: bool = True,
    ) -> RenderRecord:
        """Start a new render of a shot (``pending``), the shot's current one unless ``current=False``.

        The shot gets a row, last in spec order, if it has none. Earlier renders stay as they are: nothing is ever
        deleted. Raises ``ValueError`` for a request holding a key or an image's bytes.
        """
        request_json = canonical_request(request)
        if take < 1 or attempt < 0:
            raise ValueError(f"take must be at least 1 and attempt at least 0, not {take} and {attempt}")
        stamp = now_iso()
        render = RenderRecord(
            render_id=self._next_render_id,
            shot_id=shot_id,
            fingerprint=fingerprint,
            request_json=request_json,
            take=take,
            variant=variant,
            attempt=attempt,
            status=PENDING,
            created_at=stamp,
            updated_at=stamp,
        )
        self._next_render_id += 1
        if shot_id not in self._shots:
            self._put_shot(ShotRow(shot_id=shot_id, position=self._next_position()))
        self._renders[render.render_id] = render
        self._by_shot.setdefault(shot_id, []).append(render.render_id)
        with self._pending:
            self._dirty_renders.add(render.render_id)
            self._new_requests.add(render.render_id)
            self._version += 1
        if current:
            self.set_current(shot_id, render.render_id)
        return render

    def update_render(self, render_id: int, **changes: Any) -> RenderRecord:
        """Change fields of a render in memory (and its ``updated_at``); a commit makes it durable.

        Only ``UPDATABLE_FIELDS`` may change: anything else is a ``TypeError`` (a bug, not something to store).
        """
        unknown = set(changes) - UPDATABLE_FIELDS
        if unknown:
            raise TypeError(f"update_render() cannot change {', '.join(sorted(unknown))}")
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"unknown render status {changes['status']!r}")
        if "outputs" in changes:
            changes["outputs"] = tuple(changes["outputs"])
        for units in ("cost", "charged"):
            if changes.get(units) is not None:
                changes[units] = float(changes[units])
        render = replace(self._renders[render_id], **changes, updated_at=now_iso())
        self._renders[render_id] = render
        with self._pending:
            self._dirty_renders.add(render_id)
            if "outputs" in changes:
                self._dirty_outputs.add(render_id)
            self._version += 1
        return render

    def set_current(self, shot_id: str, render_id: int) -> None:
        """Make one of the shot's renders its current one."""
        if self._renders[render_id].shot_id != shot_id:
            raise ValueError(f"render {render_id} is a render of {self._renders[render_id].shot_id!r}, not {shot_id!r}")
        self._put_shot(replace(self._shots[shot_id], current_render_id=render_id))

    def place_shots(self, shot_ids: Sequence[str]) -> None:
        """Put shots in the spec's order: these first, in this order (new ones get a row), the rest after them."""
        wanted = list(dict.fromkeys(shot_ids))
        placed = set(wanted)  # built once: a set built per shot made closing a 10,000-shot run quadratic
        rest = [shot_id for shot_id in self.shot_ids if shot_id not in placed]
        for position, shot_id in enumerate(wanted + rest):
            row = self._shots.get(shot_id) or ShotRow(shot_id=shot_id, position=position)
            if row.position != position or shot_id not in self._shots:
                self._put_shot(replace(row, position=position))

    def set_facts(self, **changes: Any) -> FolderFacts:
        """Change the folder's facts (salt, spec, provider, tool version, run start and end)."""
        unknown = set(changes) - _FACT_FIELDS
        if unknown:
            raise TypeError(f"set_facts() cannot change {', '.join(sorted(unknown))}")
        self._facts = replace(self._facts, **changes)
        with self._pending:
            self._facts_dirty = True
            self._version += 1
        return self._facts

    # --- committing ---------------------------------------------------------------------------------------------

    def commit_now(self) -> None:
        """Write every change made so far, durably, before returning (blocks the calling thread for one fsync)."""
        self._written = max(self._written, self._write_changes())

    async def commit(self) -> None:
        """Return once every change made before the call is on disk; concurrent callers share one transaction."""
        import anyio.to_thread  # here: what only reads a store (plan, status, report) never loads anyio

        wanted = self._version
        if self._commit_lock is None:
            self._commit_lock = anyio.Lock()
        async with self._commit_lock:
            if self._written >= wanted:
                return  # the transaction written while this caller waited included its changes
            written = await anyio.to_thread.run_sync(self._write_changes)
            self._written = max(self._written, written)

    @property
    def uncommitted(self) -> bool:
        return self._written < self._version

    def _write_changes(self) -> int:
        """One transaction with every change marked so far; the change count it covers. Runs on any one thread."""
        with self._writing:
            with self._pending:
                version = self._version
                facts_dirty, self._facts_dirty = self._facts_dirty, False
                shots, self._dirty_shots = self._dirty_shots, set()
                renders, self._dirty_renders = self._dirty_renders, set()
                requests, self._new_requests = self._new_requests, set()
                outputs, self._dirty_outputs = self._dirty_outputs, set()
            if not (facts_dirty or shots or renders):
                return version
            started = time.perf_counter()
            try:
                self._write_transaction(facts_dirty, shots, renders, requests, outputs)
            except BaseException as exc:
                self._mark_again(facts_dirty, shots, renders, requests, outputs)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(
                        f"{self.directory / DATABASE_NAME}: cannot write the store ({exc}); the run stops to stay safe",
                        path=str(self.directory / DATABASE_NAME),
                    ) from None
                raise
            self.commits += 1
            self.commit_seconds += time.perf_counter() - started
            return version

    def _write_transaction(
        self, facts_dirty: bool, shots: set[str], renders: set[int], requests: set[int], outputs: set[int]
    ) -> None:
        db = self._connection
        db.execute("BEGIN IMMEDIATE")
        try:
            if facts_dirty:
                db.execute(_UPDATE_FACTS, _fact_row(self._facts))
            db.executemany(_UPSERT_SHOT, (_shot_row(self._shots[shot_id]) for shot_id in shots))
            db.executemany(_UPSERT_RENDER, (_render_row(self._renders[render_id]) for render_id in sorted(renders)))
            db.executemany(
                "INSERT INTO requests (render_id, request) VALUES (?, ?)",
                ((render_id, self._renders[render_id].request_json) for render_id in sorted(requests)),
            )
            for render_id in sorted(outputs):
                db.execute("DELETE FROM outputs WHERE render_id = ?", (render_id,))
                db.executemany(_INSERT_OUTPUT, _output_rows(self._renders[render_id]))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _mark_again(
        self, facts_dirty: bool, shots: set[str], renders: set[int], requests: set[int], outputs: set[int]
    ) -> None:
        # A transaction that failed wrote nothing: what it carried must go in the next one.
        with self._pending:
            self._facts_dirty |= facts_dirty
            self._dirty_shots |= shots
            self._dirty_renders |= renders
            self._new_requests |= requests
            self._dirty_outputs |= outputs

    def _put_shot(self, row: ShotRow) -> None:
        self._shots[row.shot_id] = row
        self._end_position = max(self._end_position, row.position + 1)
        with self._pending:
            self._dirty_shots.add(row.shot_id)
            self._version += 1

    def _next_position(self) -> int:
        return self._end_position


# --- reading a folder without opening it for a run ---------------------------------------------------------------


def read_database(path: Path) -> FolderState:
    """The ``FolderState`` in a ``renders.db``, read-only: safe while a run writes to it."""
    if not path.is_file():
        raise StoreError(f"{path}: no render store here", path=str(path))
    # Read-write where we may (nothing is written): a read-only connection would leave its -wal and -shm behind.
    connection = _connect(path, readonly=not os.access(path.parent, os.W_OK) or not os.access(path, os.W_OK))
    try:
        return _read_state(connection, path)
    finally:
        connection.close()


def load_state(path: Path) -> FolderState:
    """What a folder, its ``renders.db`` or a snapshot (``manifest.json`` of version 1 or 2) holds.

    A folder is read from its database when it has one, else from its ``manifest.json``: ``diff``, ``report`` and
    ``status`` accept either a folder or a copied snapshot. Nothing is written.
    """
    if path.is_dir():
        database = path / DATABASE_NAME
        return read_database(database) if database.exists() else snapshot.read_snapshot(path / MANIFEST_NAME)
    if path.name == DATABASE_NAME or _starts_like_sqlite(path):
        return read_database(path)
    return snapshot.read_snapshot(path)


# --- creating, checking and reading the database ------------------------------------------------------------------


def _create_if_missing(directory: Path, *, project: str) -> Path | None:
    """Make ``renders.db`` if the folder has none: from its ``manifest.json`` (migrated, or restored from a
    snapshot), else empty. Returns the manifest it was made from, if any.

    The database is built under a temporary name and renamed into place complete, so a crash never leaves a
    half-made store that a later run would mistake for the truth; the version-1 file is kept before the rename.
    """
    database = directory / DATABASE_NAME
    if database.exists():
        return None
    manifest = directory / MANIFEST_NAME
    source = manifest if manifest.exists() else None
    state = snapshot.read_snapshot(manifest) if source else FolderState(facts=FolderFacts(project=project))
    _check_project(state, project, manifest)
    building = directory / f"{_BUILDING_PREFIX}.{os.getpid()}"
    try:
        _build(building, state)
        if source is not None and _manifest_version(source) == MANIFEST_VERSION:
            migrate.keep_v1(source)
        os.replace(building, database)
    except OSError as exc:
        raise StoreError(f"{database}: cannot create the store ({exc.strerror or exc})", path=str(database)) from None
    finally:
        remove_database(building)
    fsync_dir(directory)
    return source


def _build(path: Path, state: FolderState) -> None:
    remove_database(path)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        # Small pages: a commit writes each page it changed whole to the log, and a run's commits change a few
        # renders each, scattered over the ones in flight; at 1 KiB a page that costs a quarter of the default.
        connection.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        connection.execute("PRAGMA journal_mode = DELETE")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {STORE_VERSION}")
        connection.execute("BEGIN")
        for statement in _split(SCHEMA):
            connection.execute(statement)
        connection.execute(
            f"INSERT INTO folder (id, {', '.join(_FACT_COLUMNS)}) VALUES (1, {', '.join('?' * len(_FACT_COLUMNS))})",
            _fact_row(replace(state.facts, store_version=STORE_VERSION)),
        )
        connection.executemany(_UPSERT_SHOT, (_shot_row(row) for row in state.shots))
        connection.executemany(_UPSERT_RENDER, (_render_row(render) for render in state.renders))
        connection.executemany(
            "INSERT INTO requests (render_id, request) VALUES (?, ?)",
            ((render.render_id, render.request_json) for render in state.renders),
        )
        connection.executemany(_INSERT_OUTPUT, (row for render in state.renders for row in _output_rows(render)))
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        raise OSError(str(exc)) from exc
    finally:
        connection.close()


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection to a checked store: ours, whole, of a version this tool knows. Writes nothing before that."""
    _check_header(path)
    target = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rw'}"
    try:
        connection = sqlite3.connect(target, uri=True, isolation_level=None, check_same_thread=False, timeout=10)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the store ({exc})", path=str(path)) from None
    try:
        _check(connection, path)
        if not readonly:
            _configure(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_header(path: Path) -> None:
    """Refuse another program's file, or a newer store, from its first 100 bytes: before SQLite opens it at all,
    since even reading a database can make SQLite write to it (recovering its log)."""
    try:
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the store ({exc.strerror or exc})", path=str(path)) from None
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        what = "an empty file" if not header else "not an SQLite database"
        raise StoreCorruptError(f"{path}: not a readable database ({what}); it was left untouched", path=str(path))
    version, application_id = int.from_bytes(header[60:64], "big"), int.from_bytes(header[68:72], "big")
    _check_identity(path, application_id=application_id, version=version)


def _check_identity(path: Path, *, application_id: int, version: int) -> None:
    if application_id != APPLICATION_ID:
        raise ForeignStoreError(
            f"{path}: a database of another program, not an orchestrator render store; it was left untouched "
            "(use another --out folder)",
            path=str(path),
        )
    if version > STORE_VERSION:
        raise NewerStoreError(
            f"{path}: store version {version} was written by a newer orchestrator (this one knows up to "
            f"{STORE_VERSION}); it was left untouched",
            path=str(path),
        )


def _check(connection: sqlite3.Connection, path: Path) -> None:
    try:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        verdict = connection.execute("PRAGMA quick_check").fetchone()[0] if application_id == APPLICATION_ID else "ok"
    except sqlite3.DatabaseError as exc:
        raise StoreCorruptError(
            f"{path}: not a readable database ({exc}); it was left untouched", path=str(path)
        ) from None
    _check_identity(path, application_id=application_id, version=version)
    if verdict != "ok" or not tables >= _TABLES or version < 1:
        problem = verdict if verdict != "ok" else "tables missing"
        raise StoreCorruptError(f"{path}: the store is damaged ({problem}); it was left untouched", path=str(path))


def _configure(connection: sqlite3.Connection, path: Path) -> None:
    try:
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the store for writing ({exc})", path=str(path)) from None
    if mode != "wal":
        raise StoreError(f"{path}: this filesystem does not support the store's write-ahead log", path=str(path))


def _read_state(connection: sqlite3.Connection, path: Path) -> FolderState:
    try:
        with _read_transaction(connection):
            facts = connection.execute(f"SELECT {', '.join(_FACT_COLUMNS)} FROM folder WHERE id = 1").fetchone()
            shots = connection.execute("SELECT shot_id, position, current_render_id FROM shots ORDER BY position")
            shot_rows = tuple(ShotRow(*row) for row in shots)
            outputs = _outputs_by_render(connection.execute(f"SELECT {_OUTPUT_COLUMNS} FROM outputs ORDER BY 1, 2"))
            render_rows = tuple(_render_from_row(row, outputs) for row in connection.execute(_SELECT_RENDERS))
    except (sqlite3.DatabaseError, KeyError, TypeError) as exc:
        raise StoreCorruptError(
            f"{path}: the store is damaged ({exc}); it was left untouched", path=str(path)
        ) from None
    if facts is None:
        raise StoreCorruptError(f"{path}: the store is damaged (no folder row); it was left untouched", path=str(path))
    return FolderState(
        facts=FolderFacts(**dict(zip(_FACT_COLUMNS, facts, strict=True))), shots=shot_rows, renders=render_rows
    )


@contextlib.contextmanager
def _read_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    # One read transaction: every table as of the same commit, even while a run writes.
    connection.execute("BEGIN")
    try:
        yield
    finally:
        connection.execute("COMMIT")


def _check_project(state: FolderState, project: str, path: Path) -> None:
    if state.facts.project != project:
        raise ForeignStoreError(
            f"{path}: this folder belongs to project {state.facts.project!r}, not {project!r}; use another --out "
            "folder (the file was left untouched)",
            path=str(path),
        )


# --- rows ----------------------------------------------------------------------------------------------------------

_OUTPUT_COLUMNS = "render_id, position, path, sha256, bytes"
_INSERT_OUTPUT = f"INSERT INTO outputs ({_OUTPUT_COLUMNS}) VALUES (?, ?, ?, ?, ?)"


def _fact_row(facts: FolderFacts) -> tuple[Any, ...]:
    return tuple(getattr(facts, column) for column in _FACT_COLUMNS)


def _shot_row(row: ShotRow) -> tuple[Any, ...]:
    return (row.shot_id, row.position, row.current_render_id)


def _render_row(render: RenderRecord) -> tuple[Any, ...]:
    return tuple(getattr(render, column) for column in _RENDER_COLUMNS)


def _output_rows(render: RenderRecord) -> list[tuple[Any, ...]]:
    return [(render.render_id, i, o.path, o.sha256, o.bytes) for i, o in enumerate(render.outputs)]


def _outputs_by_render(rows: Iterable[tuple[Any, ...]]) -> dict[int, list[OutputFile]]:
    outputs: dict[int, list[OutputFile]] = {}
    for render_id, _position, path, sha256, size in rows:
        outputs.setdefault(render_id, []).append(OutputFile(path, sha256, size))
    return outputs


# Each render with its request, read in one query, the columns in ``RenderRecord``'s field order (``outputs`` comes
# from its own table): a row becomes a record positionally, not through a dict of names (a 10,000-shot store is
# read on every plan). The joined request is ``NULL`` only in a damaged store: every render is inserted with one.
_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(RenderRecord))
_REQUEST_AT = _RECORD_FIELDS.index("request_json")
_OUTPUTS_AT = _RECORD_FIELDS.index("outputs")
if set(_RECORD_FIELDS) != {*_RENDER_COLUMNS, "request_json", "outputs"}:  # pragma: no cover - caught on import
    raise ImportError("RenderRecord's fields and the renders table's columns differ")
_SELECT_RENDERS = (
    "SELECT "
    + ", ".join(
        "requests.request" if name == "request_json" else f"renders.{name}"
        for name in _RECORD_FIELDS
        if name != "outputs"
    )
    + " FROM renders LEFT JOIN requests ON requests.render_id = renders.render_id ORDER BY renders.render_id"
)


def _render_from_row(row: tuple[Any, ...], outputs: dict[int, list[OutputFile]]) -> RenderRecord:
    if row[_REQUEST_AT] is None:
        raise KeyError(f"render {row[0]} has no request")
    values = list(row)
    values.insert(_OUTPUTS_AT, tuple(outputs.get(row[0], ())))
    return RenderRecord(*values)


# --- files ---------------------------------------------------------------------------------------------------------


def _manifest_version(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("manifest_version")
    except (OSError, ValueError, AttributeError):
        return None


def _starts_like_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def _split(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
