"""Events: what a run reports while it works, to whoever listens.

The scheduler never prints. It records each shot's state change durably and then tells its listeners (the progress
view, ``--json`` output, a notebook callback) with one ``Event``. Run-level facts (the run started, the in-flight
target was lowered after a 1303, submissions stopped after an account error, the run ended) are events too, with
``shot_id`` left ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# Event kinds.
SHOT = "shot"  # a shot changed state (old -> new)
RUN_STARTED = "run-started"
RUN_FINISHED = "run-finished"
NOTICE = "notice"  # something the user may want to know (limits lowered, retrying, stopping)
PROGRESS = "progress"  # a task in flight reported its progress ("40%"), where the provider gives one


@dataclass(frozen=True)
class Event:
    """One thing that happened. ``at`` is wall-clock seconds since the epoch (``time.time()``)."""

    kind: str
    shot_id: str | None = None
    old: str | None = None
    new: str | None = None
    detail: str = ""
    at: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)

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


class EventBus:
    """Hands each event to every listener, in order. A failing listener never stops the run or the others."""

    def __init__(self, listeners: Iterable[Listener] = ()) -> None:
        self._listeners = list(listeners)
        self.errors: list[BaseException] = []

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception as exc:  # a display bug must never cost a paid render
                self.errors.append(exc)
