"""The simulator's memory on disk, so a restarted simulator still knows its tasks (the real service keeps them).

A state folder holds::

    simulator-state.json   format marker: {"format": "orchestrator-simulator-state", "version": 1}
    tasks.jsonl            append-only journal: one JSON object per line (create, rendered, reset)
    boards/<sha256>        each distinct board image sent inline, stored once (needed to render again)
    videos/<task_id>.mp4   the rendered animatics
    .lock                  held (flock) while a simulator uses the folder

Each create and each finished render appends one line with a single ``write`` straight to the OS: cheap (about a
microsecond) and it survives the process being killed. Lines are not fsynced one by one (that would cost a disk
flush per request); the journal is fsynced when the simulator stops. Times are wall-clock epoch milliseconds, so
a task's status keeps progressing while no simulator runs. API keys are never stored, only their ``key_id`` label
(and, under the gateway dialect, the label of the upstream account that billed the task).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from orchestrator.errors import ConfigError
from orchestrator.providers.local.state import SimTask
from orchestrator.providers.local.validation import Board, CreateRequest

try:  # POSIX only; elsewhere the folder is simply not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

STATE_FORMAT = "orchestrator-simulator-state"
STATE_VERSION = 1
MARKER_NAME = "simulator-state.json"
JOURNAL_NAME = "tasks.jsonl"
LOCK_NAME = ".lock"
BOARDS_DIR = "boards"
VIDEOS_DIR = "videos"


@dataclass(frozen=True)
class BoardRef:
    """A board as remembered: the hash of its stored bytes, or the URL it was given by."""

    sha256: str | None = None
    url: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"sha256": self.sha256} if self.sha256 is not None else {"url": self.url or ""}


@dataclass(frozen=True)
class TaskRecord:
    """One task as the journal remembers it (all times in wall-clock epoch ms)."""

    task_id: str
    key_id: str
    external_task_id: str | None
    created_at: int
    processing_at: int
    ends_at: int
    fails: bool
    failure_message: str
    duration: int
    aspect_ratio: str
    boards: tuple[BoardRef, ...]
    rendered_at: int | None = None
    mode: str = "std"  # journals written before modes were recorded charge their tasks as std
    account: str = ""  # the account that holds and bills the task ("": the key's own)


def now_ms() -> int:
    return int(time.time() * 1000)


class StateStore:
    """One state folder, opened (and locked) by one simulator. ``tasks`` is what the journal held at open."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.boards = folder / BOARDS_DIR
        self.videos = folder / VIDEOS_DIR
        self._write_lock = threading.Lock()
        self._known_boards: set[str] = set()
        self._lock_file: BinaryIO | None = None
        self._fd: int | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            self._check_marker()
            self.boards.mkdir(exist_ok=True)
            self.videos.mkdir(exist_ok=True)
            self.tasks, self.last_task_id = self._read_journal()
            self._remove_partial_files()
            self._fd = os.open(folder / JOURNAL_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            self.close()
            raise ConfigError(f"cannot use simulator state folder {folder}: {exc.strerror or exc}") from None
        except ConfigError:
            self.close()
            raise

    # -- opening ------------------------------------------------------------------------------------------------

    def _take_lock(self) -> None:
        self._lock_file = open(self.folder / LOCK_NAME, "ab")  # noqa: SIM115 (held until close)
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"simulator state folder {self.folder} is in use by another simulator "
                "(another orchestrator run or `orchestrator simulate --state` on the same folder)"
            ) from None

    def _check_marker(self) -> None:
        marker = self.folder / MARKER_NAME
        if not marker.exists():
            if any(p.name != LOCK_NAME for p in self.folder.iterdir()):
                raise ConfigError(
                    f"{self.folder} is not a simulator state folder (no {MARKER_NAME}) and is not empty: "
                    "give an empty or new folder"
                )
            _write_atomically(marker, json.dumps({"format": STATE_FORMAT, "version": STATE_VERSION}).encode())
            return
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            data = None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise ConfigError(f"{marker} is not a simulator state marker: {_start_afresh(self.folder)}")
        if data.get("version") != STATE_VERSION:
            raise ConfigError(
                f"{marker} has state version {data.get('version')!r}, this simulator reads {STATE_VERSION}: "
                f"{_start_afresh(self.folder)}"
            )

    def _read_journal(self) -> tuple[list[TaskRecord], int]:
        path = self.folder / JOURNAL_NAME
        raw = path.read_bytes() if path.exists() else b""
        if raw and not raw.endswith(b"\n"):
            # A line cut short by a crash mid-write: that record never completed (its answer was never sent).
            raw = raw[: raw.rfind(b"\n") + 1]
            with open(path, "r+b") as handle:
                handle.truncate(len(raw))
        tasks: dict[str, TaskRecord] = {}
        last_id = 0
        for number, line in enumerate(raw.splitlines(), start=1):
            try:
                last_id = max(last_id, _apply(tasks, json.loads(line)))
            except (ValueError, KeyError, TypeError, RecursionError):
                hint = _start_afresh(self.folder)
                raise ConfigError(f"{path}, line {number}: not a simulator journal record: {hint}") from None
        return list(tasks.values()), last_id

    def _remove_partial_files(self) -> None:
        # Temp files of a render or a board write cut short by a crash: the task is rendered again, the board was
        # never referenced (its create line comes after it).
        for leftover in [*self.videos.glob(".*.tmp.mp4"), *self.boards.glob(".*.tmp")]:
            leftover.unlink(missing_ok=True)

    # -- writing ------------------------------------------------------------------------------------------------

    def record_create(self, task: SimTask, create: CreateRequest) -> None:
        """Remember a new task and the boards needed to render it again (before its answer is sent)."""
        created_at = task.created_ms
        ends_at = created_at + round(task.render_time * 1000)
        record = {
            "op": "create",
            "task_id": task.task_id,
            "key_id": task.key_id,
            "external_task_id": task.external_task_id,
            "created_at": created_at,
            "processing_at": created_at + round(task.processing_after * task.render_time * 1000),
            "ends_at": ends_at,
            "fails": task.fails,
            "failure_message": task.failure_message,
            "duration": task.duration,
            "mode": task.mode,
            "account": task.account,
            "aspect_ratio": create.aspect_ratio,
            "boards": [self._save_board(board).to_json() for board in create.boards],
        }
        self._append(record)

    def record_rendered(self, task_id: str) -> None:
        self._append({"op": "rendered", "task_id": task_id, "at": now_ms()})

    def record_reset(self) -> None:
        self._append({"op": "reset", "at": now_ms()})

    def _save_board(self, board: Board) -> BoardRef:
        if board.data is None:
            return BoardRef(url=board.url or "")
        digest = hashlib.sha256(board.data).hexdigest()
        if digest not in self._known_boards:
            path = self.boards / digest
            if not path.exists():
                _write_atomically(path, board.data, sync=False)
            self._known_boards.add(digest)
        return BoardRef(sha256=digest)

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        with self._write_lock:
            if self._fd is None:
                return  # closed: the simulator is stopping and nothing more needs remembering
            os.write(self._fd, line)

    # -- reading back -------------------------------------------------------------------------------------------

    def board_bytes(self, ref: BoardRef) -> bytes | None:
        """The stored bytes of an inline board (``None`` for a URL board); a missing file is an ``OSError``."""
        if ref.sha256 is None:
            return None
        return (self.boards / ref.sha256).read_bytes()

    def create_request(self, record: TaskRecord) -> CreateRequest:
        """The facts a render needs, rebuilt from the journal (prompt and mode do not change an animatic)."""
        boards = tuple(Board(data=self.board_bytes(ref), url=ref.url) for ref in record.boards)
        return CreateRequest(
            boards=boards,
            prompt="",
            mode=record.mode,
            duration=record.duration,
            aspect_ratio=record.aspect_ratio,
            external_task_id=record.external_task_id,
            callback_url=None,
        )

    def close(self) -> None:
        with self._write_lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None


def sim_task(record: TaskRecord, *, now_mono: float, wall_ms: int, video: Path) -> SimTask:
    """The in-memory task for a journal record, its wall-clock times mapped onto this process's monotonic clock.

    A task whose video is recorded and present comes back rendered; otherwise its ``render`` is left ``None`` for
    the caller to queue (it stays ``processing`` until the file exists).
    """
    created_mono = now_mono - max(0, wall_ms - record.created_at) / 1000
    render_time = max(0, record.ends_at - record.created_at) / 1000
    processing_after = (record.processing_at - record.created_at) / 1000 / render_time if render_time else 0.0
    task = SimTask(
        task_id=record.task_id,
        key_id=record.key_id,
        external_task_id=record.external_task_id,
        created_mono=created_mono,
        created_ms=record.created_at,
        render_time=render_time,
        processing_after=min(1.0, max(0.0, processing_after)),
        fails=record.fails,
        failure_message=record.failure_message,
        duration=record.duration,
        mode=record.mode,
        account=record.account,
    )
    if record.rendered_at is not None and video.is_file():
        done: Future[None] = Future()
        done.set_result(None)
        task.render = done
        task.rendered_mono = now_mono - max(0, wall_ms - record.rendered_at) / 1000
    return task


def _apply(tasks: dict[str, TaskRecord], entry: Any) -> int:
    """Apply one journal entry to ``tasks``; the task id number it mentions (0 for none), for id uniqueness."""
    op = entry["op"]
    if op == "reset":
        tasks.clear()
        return 0
    task_id = entry["task_id"]
    if not isinstance(task_id, str) or not task_id.isdigit():
        raise ValueError("task_id")
    if op == "rendered":
        old = tasks.get(task_id)
        if old is not None:
            tasks[task_id] = replace(old, rendered_at=_int(entry["at"]))
        return int(task_id)
    if op != "create":
        raise ValueError(f"unknown op {op!r}")
    tasks[task_id] = TaskRecord(
        task_id=task_id,
        key_id=_str(entry["key_id"]),
        external_task_id=None if entry["external_task_id"] is None else _str(entry["external_task_id"]),
        created_at=_int(entry["created_at"]),
        processing_at=_int(entry["processing_at"]),
        ends_at=_int(entry["ends_at"]),
        fails=bool(entry["fails"]),
        failure_message=_str(entry["failure_message"]),
        duration=_int(entry["duration"]),
        aspect_ratio=_str(entry["aspect_ratio"]),
        boards=tuple(_board(item) for item in entry["boards"]),
        mode=_str(entry.get("mode", "std")),
        account=_str(entry.get("account", "")),
    )
    return int(task_id)


def _board(item: Any) -> BoardRef:
    if "sha256" in item:
        digest = _str(item["sha256"])
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError("sha256")  # the name becomes a path: only our own hex names
        return BoardRef(sha256=digest)
    return BoardRef(url=_str(item["url"]))


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _start_afresh(folder: Path) -> str:
    return f"delete or move {folder} to start afresh (the tasks it remembers will be forgotten)"


def _write_atomically(path: Path, data: bytes, *, sync: bool = True) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
