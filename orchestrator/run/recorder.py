"""Recording what happens to a run's renders: every change becomes one event, built from what the run knows.

The recorder keeps, per render, what the run itself knows of it (its state, attempt, task id and last error),
starting from the ``Render`` values the plan decided, and builds each event from that: it never reads the store
back. Each event carries its change for the store writer (``orchestrator.run.writer``), which the event bus serves
first, and durably where the next step depends on it (see ``orchestrator.run.events``). The recorder also keeps the
run's timeline (when each step of each render happened), which the benchmark's breakdown is made of.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.plan.work import Render, Start
from orchestrator.providers.base import Task
from orchestrator.run.events import NOTICE, PROGRESS, SHOT, Event, EventBus, NewRender, RenderChange
from orchestrator.spec.fingerprint import request_record
from orchestrator.store.manifest import DOWNLOADING, FAILED, PENDING, PENDING_REMOTE, UNCONFIRMED
from orchestrator.store.records import DEFAULT_TAKE

# States whose event carries the render's error: what went wrong, or what the user can do about it.
_STATES_WITH_ERROR = (FAILED, PENDING_REMOTE, PENDING, DOWNLOADING, UNCONFIRMED)


@dataclass
class _Known:
    """What the run knows of one render; changed only by the recorder's own events."""

    render: Render
    status: str | None
    task_id: str | None
    error: str | None
    started: bool  # does the store have its row (an earlier run's, or one an event of this run added)?


def render_data(render: Render) -> dict[str, object]:
    """Which render of its shot an event is about: ``render`` (its key, what a view keys it by), ``label`` (what it
    shows), ``take`` and ``variant``. Nothing for take 1 of a shot without variants: its events read as they always
    did."""
    if render.take == DEFAULT_TAKE and render.variant is None:
        return {}
    return {"render": render.key, "label": render.label, "take": render.take, "variant": render.variant}


class Recorder:
    """Turns each change of a render into an event on ``bus``; ``timeline`` collects each render's steps."""

    def __init__(self, *, bus: EventBus, timeline: dict[str, dict[str, float]], renders: Iterable[Render] = ()) -> None:
        self.bus = bus
        self.timeline = timeline
        self._known: dict[str, _Known] = {}
        for render in renders:
            self.track(render)

    def track(self, render: Render) -> None:
        """Start following ``render`` from what the plan says of it."""
        created = render.start is Start.CREATE
        self._known[render.key] = _Known(
            render=render,
            status=None if created else render.status,
            task_id=None if created else render.task_id,
            error=None if created else render.error,
            started=not created and render.render_id is not None,
        )

    def status(self, render: Render) -> str | None:
        """The render's state as this run last recorded it (``None``: a new render not recorded yet)."""
        return self._known[render.key].status

    async def set(
        self,
        render: Render,
        status: str,
        *,
        detail: str = "",
        task: Task | None = None,
        durable: bool = True,
        **fields: Any,
    ) -> None:
        """Change a render's state and fields; the listeners hear of it once it is on disk (unless ``durable`` is
        false: only purely informative steps, which ride on the next commit instead of waiting for their own)."""
        event = self._transition(render, status, detail=detail, task=task, fields=fields)
        await self.bus.publish(event, durable=durable)

    def set_now(self, render: Render, status: str, *, task: Task | None = None, detail: str = "") -> None:
        """A purely informative change (like ``set(..., durable=False)``), for code that cannot await."""
        self.bus.emit(self._transition(render, status, detail=detail, task=task, fields={}))

    async def note_error(self, render: Render, message: str) -> None:
        """Keep ``message`` as the render's error, durably, its state as it is (nothing to hear: not a transition)."""
        known = self._known.get(render.key)
        if known is None or not known.started:
            return
        known.error = message
        await self.bus.persist(Event(SHOT, shot_id=render.shot.id, change=self._change(known, {"error": message})))

    def provider_status(self, render: Render, raw: str) -> None:
        """The provider's own word for the task's state, kept with the render (informative, not durable)."""
        known = self._known[render.key]
        if known.started:
            self.bus.record(Event(SHOT, shot_id=render.shot.id, change=self._change(known, {"provider_status": raw})))

    def progress(self, render: Render, progress: str) -> None:
        """The provider's own progress figure for a task in flight. Not a transition: old and new are the state the
        render is in, so a view can say "s01: processing 40%"."""
        state = self._known[render.key].status
        data = {"progress": progress, **render_data(render)}
        self.bus.emit(Event(PROGRESS, shot_id=render.shot.id, old=state, new=state, data=data))

    def notice(self, message: str) -> None:
        self.bus.emit(Event(NOTICE, detail=message))

    def mark(self, key: str, step: str, at: float | None = None) -> None:
        self.timeline.setdefault(key, {})[step] = time.time() if at is None else at

    def _transition(
        self, render: Render, status: str, *, detail: str, task: Task | None, fields: dict[str, Any]
    ) -> Event:
        known = self._known[render.key]
        old = known.status
        known.status = status
        if "task_id" in fields:
            known.task_id = fields["task_id"]
        if "error" in fields:
            known.error = fields["error"]
        change = self._change(known, {"status": status, **fields})
        return Event(
            SHOT,
            shot_id=render.shot.id,
            old=old,
            new=status,
            detail=detail,
            data=self._data(known, status, task),
            change=change,
        )

    def _change(self, known: _Known, fields: dict[str, Any]) -> RenderChange:
        render = known.render
        new = None
        if not known.started:
            new = NewRender(
                fingerprint=render.shot.fingerprint,
                request=render.request if render.request is not None else request_record(render.shot),
                attempt=render.attempt,
                take=render.take,
                variant=render.variant,
            )
            known.started = True
        return RenderChange(
            key=render.key,
            shot_id=render.shot.id,
            fields=fields,
            render_id=None if new is not None else render.render_id,
            new=new,
        )

    @staticmethod
    def _data(known: _Known, status: str, task: Task | None) -> dict[str, object]:
        data: dict[str, object] = {"attempt": known.render.attempt, **render_data(known.render)}
        if known.task_id:
            data["task_id"] = known.task_id
        if task is not None and task.updated_at:
            data["provider_updated_at"] = task.updated_at
        if task is not None and task.progress:
            data["progress"] = task.progress
        if known.error and status in _STATES_WITH_ERROR:
            data["error"] = known.error
        return data
