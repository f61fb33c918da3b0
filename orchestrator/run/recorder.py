"""Recording what happens to a run's shots: the scheduler's one way to change a record and say so.

Each state change goes into the store first (durably, where the next step depends on it: an external id before its
create leaves, a task id the moment it arrives, every end), then one ``Event`` goes to the listeners (the progress
view, ``--json``, a notebook). So an event never announces what the store could still lose, and the scheduler never
prints. The recorder also keeps the run's timeline (when each step of each shot happened), which the benchmark's
breakdown is made of.
"""

from __future__ import annotations

import time

import anyio

from orchestrator.providers.base import Task
from orchestrator.run.events import NOTICE, PROGRESS, SHOT, Event, EventBus
from orchestrator.store.manifest import (
    DOWNLOADING,
    FAILED,
    PENDING,
    PENDING_REMOTE,
    UNCONFIRMED,
    ManifestStore,
    ShotRecord,
)

# States whose event carries the record's error: what went wrong, or what the user can do about it.
_STATES_WITH_ERROR = (FAILED, PENDING_REMOTE, PENDING, DOWNLOADING, UNCONFIRMED)


class Recorder:
    """Changes shot records in ``store`` and tells ``bus``; ``timeline`` collects each shot's steps (wall clock)."""

    def __init__(self, *, store: ManifestStore, bus: EventBus, timeline: dict[str, dict[str, float]]) -> None:
        self.store = store
        self.bus = bus
        self.timeline = timeline

    def record(self, shot_id: str) -> ShotRecord:
        record = self.store.record(shot_id)
        if record is None:
            raise KeyError(shot_id)
        return record

    async def set(
        self,
        shot_id: str,
        status: str,
        *,
        detail: str = "",
        task: Task | None = None,
        durable: bool = True,
        **fields: object,
    ) -> None:
        """Change a shot's state, make it durable (unless told it need not be), then tell the listeners.

        Only purely informative steps (processing, downloading, a create leaving where a lookup settles a crash)
        pass ``durable=False``: they ride on the next commit instead of waiting for their own, which keeps the
        store off the critical path of polling.
        """
        before = self.store.record(shot_id)
        old = before.status if before else None
        self.store.update(shot_id, status=status, **fields)
        if durable:
            with anyio.CancelScope(shield=True):
                # A write that started must finish: the store is how the next run knows what was paid for.
                await self.store.commit()
        self._announce(shot_id, old, status, detail=detail, task=task)

    def set_now(self, shot_id: str, status: str, *, task: Task | None = None, detail: str = "") -> None:
        """A purely informative change (like ``set(..., durable=False)``), for code that cannot await."""
        before = self.store.record(shot_id)
        old = before.status if before else None  # read before the update, which changes that very record
        self.store.update(shot_id, status=status)
        self._announce(shot_id, old, status, detail=detail, task=task)

    async def note_error(self, shot_id: str, message: str) -> None:
        """Keep ``message`` as the shot's error, durably, leaving its state as it is."""
        if self.store.record(shot_id) is None:
            return
        self.store.update(shot_id, error=message)
        with anyio.CancelScope(shield=True):
            await self.store.commit()

    def progress(self, shot_id: str, progress: str) -> None:
        """The provider's own progress figure for a task in flight. Not a transition: old and new are the state the
        shot is in, so a view can say "s01: processing 40%"."""
        state = self.record(shot_id).status
        self.bus.emit(Event(PROGRESS, shot_id=shot_id, old=state, new=state, data={"progress": progress}))

    def notice(self, message: str) -> None:
        self.bus.emit(Event(NOTICE, detail=message))

    def mark(self, shot_id: str, step: str, at: float | None = None) -> None:
        self.timeline.setdefault(shot_id, {})[step] = time.time() if at is None else at

    def _announce(self, shot_id: str, old: str | None, status: str, *, detail: str, task: Task | None) -> None:
        record = self.record(shot_id)
        data: dict[str, object] = {"attempt": record.attempts}
        if record.task_id:
            data["task_id"] = record.task_id
        if task is not None and task.updated_at:
            data["provider_updated_at"] = task.updated_at
        if task is not None and task.progress:
            data["progress"] = task.progress
        if record.error and status in _STATES_WITH_ERROR:
            data["error"] = record.error
        self.bus.emit(Event(SHOT, shot_id=shot_id, old=old, new=status, detail=detail, data=data))
