"""One run per output folder: a kernel lock (``fcntl.flock``) on ``<out>/.lock``, released by the kernel on kill -9.

The file is never deleted, only emptied: the holder writes its pid, host and start time into it for messages ("held
by pid N on HOST"), and whether a run is live is judged by trying the lock, never from the pid. Readers (``status``,
``report``, ``plan``, ``snapshot``) never take it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ManifestError, ManifestLockedError
from orchestrator.store.timestamps import now_iso

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


LOCK_NAME = ".lock"
# A reader (``plan``, through ``live_holder``) tries the lock for an instant; a run that starts in that instant waits
# this long for it rather than report a holder that is not there.
_LOCK_PATIENCE = 0.25
_LOCK_POLL = 0.01


@dataclass(frozen=True)
class LockInfo:
    """Who holds a folder's lock: process id, host and start time, as the holder wrote them into the lock file."""

    pid: int
    host: str
    started_at: str

    def describe(self) -> str:
        if self.pid <= 0:
            return "a process that has not written its details"
        return f"pid {self.pid} on {self.host}, started {self.started_at}"


_UNKNOWN_HOLDER = LockInfo(pid=0, host="", started_at="")


class ManifestLock:
    """``<out>/.lock``: one run at a time per output folder, held through a kernel lock (``flock``) on the file.

    The kernel releases the lock when its holder exits, however it exits (``kill -9`` included), so nothing ever has
    to judge whether a holder is still alive, and the file is never deleted: deleting a lock file by path is how two
    runs end up holding two different files of one name. The holder writes its pid, host and start time into the
    file for messages (who holds the folder, which run has a shot in flight) and empties it when it releases; the
    file's content never decides anything, only the kernel lock does.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise ``ManifestLockedError`` naming the process that holds it."""
        _make_folder(self.path.parent, lock=self.path)
        fd = self._open(os.O_RDWR | os.O_CREAT)
        try:
            if not _try_lock(fd, exclusive=True, patience=_LOCK_PATIENCE, path=self.path):
                holder = _holder(fd, patience=_LOCK_PATIENCE)
                raise ManifestLockedError(
                    f"{self.path.parent}: another run is using this output folder (held by {holder.describe()}); "
                    "wait for it to finish or stop it",
                    path=str(self.path),
                )
            _write_holder(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (closing the file drops the kernel lock), leaving the file empty for the next run."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no finished run's pid is ever shown as a holder
        finally:
            os.close(fd)

    def live_holder(self) -> LockInfo | None:
        """The run holding this lock, if one does; ``None`` when it is free. Creates nothing and writes nothing.

        Judged by trying a shared lock for an instant: it fails only while a run holds the lock.
        """
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return None
        except ManifestError:
            return None  # a lock file we cannot open: no run of ours is holding it for us to report
        try:
            if _try_lock(fd, exclusive=False, patience=0.0, path=self.path):
                return None
            return _holder(fd, patience=_LOCK_PATIENCE)
        finally:
            os.close(fd)  # drops the shared lock, if it was taken

    def _open(self, flags: int) -> int:
        # O_NOFOLLOW: a symlink planted at <out>/.lock would have us lock (and write into) another file.
        try:
            return os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise ManifestError(
                f"{self.path}: cannot open the folder's lock file ({exc.strerror or exc})", path=str(self.path)
            ) from None


def _make_folder(folder: Path, *, lock: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ManifestError(f"{folder}: cannot create the output folder ({reason})", path=str(lock)) from None


def _try_lock(fd: int, *, exclusive: bool, patience: float, path: Path) -> bool:
    """Take ``flock`` on ``fd`` without blocking, trying again for up to ``patience`` seconds; False while held."""
    if fcntl is None:  # pragma: no cover (POSIX has it)
        raise ManifestError(f"{path}: this platform has no kernel file locks (fcntl); runs need a POSIX system")
    operation = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_LOCK_POLL)
        except OSError as exc:
            raise ManifestError(
                f"{path}: cannot lock the output folder ({exc.strerror or exc}); this filesystem may not support "
                "file locks",
                path=str(path),
            ) from None
        else:
            return True


def _write_holder(fd: int) -> None:
    # Not fsynced: the content is for messages only, and the kernel lock it describes does not outlive a crash.
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": now_iso()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def _holder(fd: int, *, patience: float) -> LockInfo:
    """What the holder wrote into the lock file. It writes right after taking the lock: give it ``patience``."""
    deadline = time.monotonic() + patience
    while True:
        info = _read_holder(fd)
        if info is not None or time.monotonic() >= deadline:
            return info or _UNKNOWN_HOLDER
        time.sleep(_LOCK_POLL)


def _read_holder(fd: int) -> LockInfo | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return LockInfo(pid=int(data["pid"]), host=str(data["host"]), started_at=str(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
