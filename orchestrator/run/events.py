"""Events: what a run reports while it works, to whoever listens.

The scheduler never prints, and never writes the store itself: it publishes one ``Event`` per change of a render.
The bus hands it first to its journal (the store writer, ``orchestrator.run.writer``), waits for the journal's commit
where the next step needs the change on disk (an external id before its create leaves, a task id, every end), and
only then tells the other listeners (the progress view, ``--json`` output, a notebook callback): an event never
announces what the store could still lose. Run-level facts (the run started, the in-flight
target was lowered after a 1303, submissions stopped after an account error, the run ended) are events too, with
``shot_id`` left ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

# Event kinds.
SHOT = "shot"  # a shot changed state (old -> new)
RUN_STARTED = "run-started"
RUN_FINISHED = "run-finished"
NOTICE = "notice"  # something the user may want to know (limits lowered, retrying, stopping)
PROGRESS = "progress"  # a task in flight reported its progress ("40%"), where the provider gives one


@dataclass(frozen=True)
class NewRender:
    """A render the store has no row for yet: what makes it (its first event adds the row)."""

    fingerprint: str
    request: Mapping[str, Any]
    attempt: int
    take: int = 1
    variant: str | None = None


@dataclass(frozen=True)
class RenderChange:
    """What an event changes in the store: which render (``key``; its row ``render_id``, or ``new`` to add one) and
    the render's fields as the store names them (``status``, ``task_id``, ``outputs``, ...)."""

    key: str
    shot_id: str
    fields: Mapping[str, Any]
    render_id: int | None = None
    new: NewRender | None = None


@dataclass(frozen=True)
class Event:
    """One thing that happened. ``at`` is wall-clock seconds since the epoch (``time.time()``).

    ``change`` is what it changes in the store, for the journal; listeners read ``kind``, ``old``, ``new`` and the
    JSON-ready ``data``.
    """

    kind: str
    shot_id: str | None = None
    old: str | None = None
    new: str | None = None
    detail: str = ""
    at: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)
    change: RenderChange | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the shape of one ``--json`` line."""
        out: dict[str, Any] = {"event": self.kind, "time": round(self.at, 3)}
        if self.shot_id is not None:
            out.update(shot=self.shot_id, old=self.old, new=self.new)
        if self.detail:
            out["detail"] = self.detail
        if self.data:
            out.update(self.data)
        return out


Listener = Callable[[Event], None]


class Journal(Protocol):
    """Where events become durable: the store writer (``orchestrator.run.writer.StoreWriter``)."""

    def apply(self, event: Event) -> None:
        """Take the event's change into the store (in memory; ``commit`` writes it)."""
        ...

    async def commit(self) -> None:
        """Return once every change applied so far is on disk."""
        ...


class EventBus:
    """Hands each event to its journal, then to every listener, in order. A failing listener never stops the run or
    the others; a journal that cannot write stops the run (its error propagates)."""

    def __init__(self, listeners: Iterable[Listener] = (), *, journal: Journal | None = None) -> None:
        self._listeners = list(listeners)
        self.journal = journal
        self.errors: list[BaseException] = []

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, event: Event) -> None:
        """The journal takes the event's change (not waiting for the disk), then the listeners hear of it."""
        self.record(event)
        self._announce(event)

    async def publish(self, event: Event, *, durable: bool = True) -> None:
        """Like ``emit``, but when ``durable`` the listeners hear of it only once the journal has it on disk."""
        self.record(event)
        if durable and event.change is not None:
            await self._commit()
        self._announce(event)

    async def persist(self, event: Event) -> None:
        """The journal alone takes the event, and has it on disk before this returns."""
        self.record(event)
        await self._commit()

    def record(self, event: Event) -> None:
        """The journal alone takes the event: a change nobody needs to hear of (a provider's raw status)."""
        if self.journal is not None and event.change is not None:
            self.journal.apply(event)

    async def _commit(self) -> None:
        if self.journal is not None:
            with anyio.CancelScope(shield=True):
                # A write that started must finish: the store is how the next run knows what was paid for.
                await self.journal.commit()

    def _announce(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception as exc:  # a display bug must never cost a paid render
                self.errors.append(exc)
