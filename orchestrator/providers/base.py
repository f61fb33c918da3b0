"""The provider seam: what the scheduler needs from any Kling-compatible service.

A provider turns a resolved shot into a task, reports on tasks, and downloads results. Each method makes one HTTP
call (``find_task`` may make a few), returns typed records, and raises ``orchestrator.errors`` classified as
transient (retry later), shot-rejected (fail this shot), account (stop the run) or not-found.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from orchestrator.spec.shot import ResolvedShot

DEFAULT_MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024


class TaskStatus(StrEnum):
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEED = "succeed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.SUCCEED, TaskStatus.FAILED)


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do besides create and get, declared as data: the scheduler asks, never learns by failure.

    ``find_by_external_id`` and ``list_tasks`` say which ways exist to find a task whose create went unanswered.
    ``absence_is_proof`` says whether a lookup or list that does *not* find it proves it was never created: true
    only where one answer covers the whole account (Kling direct); a gateway spread over several upstream accounts
    can only prove presence. Without a way to confirm, a create whose outcome is unknown is never sent again on our
    own: the shot becomes ``unconfirmed`` and the user decides (see docs/wire.md, "Never bill twice").
    """

    find_by_external_id: bool = False
    list_tasks: bool = False
    absence_is_proof: bool = False

    @property
    def can_confirm(self) -> bool:
        """Is there any way to look for a task created under our external id?"""
        return self.find_by_external_id or self.list_tasks


@dataclass(frozen=True)
class Video:
    id: str
    url: str
    duration: str = ""


@dataclass(frozen=True)
class Task:
    """A task as the provider reports it. Timestamps are Unix milliseconds, as on the wire."""

    task_id: str
    status: TaskStatus
    status_message: str = ""
    external_task_id: str | None = None
    videos: tuple[Video, ...] = ()
    created_at: int | None = None
    updated_at: int | None = None
    request_id: str | None = None
    # The status word exactly as the provider sent it ("IN_PROGRESS", "succeed", an unknown one...): an unknown
    # status maps to PROCESSING (never terminal) and is kept here for the manifest and the user.
    raw_status: str = ""
    progress: str | None = None  # "40%", where the provider reports one (the CometAPI gateway does)
    units_charged: float | None = None  # ``final_unit_deduction`` of a finished task: what the account was charged

    def started_on(self, *, sent: float, received: float) -> float:
        """When the provider started the task, on our clock (seconds): its own ``created_at`` when it falls between
        our create being sent and answered (give or take a second of clock skew), else when we sent it. Polls are
        scheduled from this instant, so answer latency does not delay them."""
        if self.created_at:
            created = self.created_at / 1000
            if sent - 1.0 <= created <= received + 1.0:
                return created
        return sent


@dataclass(frozen=True)
class Download:
    """A verified file on disk: where it is, its sha256 and size."""

    path: Path
    sha256: str
    bytes: int


@runtime_checkable
class Provider(Protocol):
    """What every provider offers. Use it as an async context manager; it owns its HTTP client."""

    name: str
    base_url: str
    capabilities: Capabilities

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def create_task(self, shot: ResolvedShot, *, external_task_id: str | None = None) -> Task:
        """Submit the shot under ``external_task_id`` (the render's; by default the shot's first attempt's, as
        ``orchestrator.spec.fingerprint.external_task_id`` makes it). Raises on any error; never retries by itself."""
        ...

    async def get_task(self, task_id: str) -> Task:
        """One task by the provider's id. ``TaskNotFoundError`` if unknown."""
        ...

    async def find_task(self, external_task_id: str) -> Task | None:
        """Best-effort lookup by our own id: the task, or ``None`` when the provider has none (or cannot say)."""
        ...

    async def download(self, url: str, dest: Path, *, max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES) -> Download:
        """Stream ``url`` to a temp file beside ``dest`` (capped at ``max_bytes``), verify, then move into place."""
        ...


MAX_LIST_PAGE = 500  # the list route's largest page (docs/wire.md)


@runtime_checkable
class ListsTasks(Protocol):
    """A provider that can also list its recent tasks: one call answers for many (see ``orchestrator.run.watcher``)."""

    async def list_tasks(self, *, page_size: int) -> list[Task]:
        """The account's most recent tasks, newest first, at most ``page_size`` (1 to ``MAX_LIST_PAGE``). One call.

        Raises like ``get_task``; a provider that does not support listing raises a ``ProviderError`` that is not
        transient.
        """
        ...
