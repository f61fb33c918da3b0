"""What ``orchestrator run`` shows while it works: a live view on a terminal, plain lines otherwise, or JSON events.

Each view is an event listener (``orchestrator.events``); the scheduler knows none of them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from orchestrator.cli._app import counted, printable
from orchestrator.events import NOTICE, RUN_FINISHED, RUN_STARTED, SHOT, Event
from orchestrator.manifest import FAILED, PENDING, STATUSES, SUCCEEDED
from orchestrator.plan import units_label

if TYPE_CHECKING:
    from orchestrator.api import RunResult

RESTING = (SUCCEEDED, FAILED)
STATE_STYLE = {
    "pending": "dim",
    "submitting": "cyan",
    "submitted": "cyan",
    "processing": "blue",
    "downloading": "magenta",
    "succeeded": "green",
    "failed": "red",
    "pending-remote": "yellow",
}


class View(Protocol):
    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


def settings_lines(data: dict[str, Any]) -> list[str]:
    rps = data.get("requests_per_second")
    return [
        f"provider {data.get('provider')} at {data.get('base_url') or '-'}",
        f"limits: {data.get('concurrency')} tasks in flight, "
        + (f"{rps:g} requests/s" if rps else "no request-rate cap"),
        f"output: {data.get('out')}",
        f"{counted(int(data.get('to_render') or 0), 'shot')} to render, {data.get('skipped')} unchanged, "
        f"cost {units_label(float(data.get('cost') or 0))}",
    ]


class JsonView:
    """One JSON object per event, one per line, flushed at once (for scripts reading a pipe)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, event: Event) -> None:
        self._stream.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
        self._stream.flush()

    def close(self) -> None:
        return None


class PlainView:
    """Timestamped lines, one per state change: for logs, CI and pipes."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def __call__(self, event: Event) -> None:
        stamp = datetime.fromtimestamp(event.at).strftime("%H:%M:%S")
        if event.kind == RUN_STARTED:
            for line in settings_lines(event.data):
                self._console.print(f"{stamp} {line}", highlight=False, markup=False)
        elif event.kind == SHOT:
            detail = f" ({event.detail})" if event.detail else ""
            line = f"{stamp} {event.shot_id}: {event.old or PENDING} -> {event.new}{detail}"
            self._console.print(printable(line, newlines=False), highlight=False, markup=False)
        elif event.kind == NOTICE:
            self._console.print(
                printable(f"{stamp} note: {event.detail}", newlines=False), highlight=False, markup=False
            )

    def close(self) -> None:
        return None


class LiveView:
    """A rich live display: overall bar with ETA, counts per state, the active shots with state and age."""

    def __init__(self, console: Console, *, max_rows: int = 12) -> None:
        self._console = console
        self._max_rows = max_rows
        self._states: dict[str, str] = {}
        self._since: dict[str, float] = {}
        self._notes: list[str] = []
        self._progress = Progress(
            TextColumn("[bold]rendering"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self._bar = self._progress.add_task("shots", total=0)
        self._live = Live(console=console, refresh_per_second=4, get_renderable=self._render, transient=False)
        self._started = False

    def __call__(self, event: Event) -> None:
        if event.kind == RUN_STARTED:
            for line in settings_lines(event.data):
                self._console.print(line, highlight=False, markup=False)
            shots = event.data.get("shots", [])
            self._states = dict.fromkeys(shots, PENDING)
            self._since = dict.fromkeys(shots, time.time())
            self._progress.update(self._bar, total=len(shots), completed=0)
            self._live.start()
            self._started = True
        elif event.kind == SHOT and event.shot_id is not None and event.new is not None:
            self._states[event.shot_id] = event.new
            self._since[event.shot_id] = event.at
            done = sum(1 for state in self._states.values() if state in RESTING)
            self._progress.update(self._bar, completed=done)
        elif event.kind == NOTICE:
            self._notes = [*self._notes[-2:], printable(event.detail or "", newlines=False)]
        elif event.kind == RUN_FINISHED:
            self.close()

    def close(self) -> None:
        if self._started:
            self._live.refresh()
            self._live.stop()
            self._started = False

    def _render(self) -> RenderableType:
        counts = Counter(self._states.values())
        line = Text()
        for state in STATUSES:
            if counts.get(state):
                line.append(f"{state} {counts[state]}  ", style=STATE_STYLE.get(state, ""))
        parts: list[RenderableType] = [self._progress, line]
        active = [(s, st) for s, st in self._states.items() if st not in (*RESTING, PENDING)]
        if active:
            table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
            table.add_column("shot")
            table.add_column("state")
            table.add_column("age", justify="right")
            now = time.time()
            for shot_id, state in active[: self._max_rows]:
                age = now - self._since.get(shot_id, now)
                table.add_row(shot_id, Text(state, style=STATE_STYLE.get(state, "")), f"{age:5.1f}s")
            if len(active) > self._max_rows:
                table.add_row(f"... {len(active) - self._max_rows} more", "", "")
            parts.append(table)
        parts.extend(Text(f"note: {note}", style="yellow") for note in self._notes)
        return Group(*parts)


def print_summary(result: RunResult, console: Console) -> None:
    """The end of a run: counts, each shot that did not succeed with its reason, and where the manifest is."""
    counts = Counter(result.statuses.values())
    succeeded = counts.get(SUCCEEDED, 0)
    elapsed = f" in {result.elapsed:.1f} s" if result.elapsed else ""
    console.print(
        f"{succeeded} of {counted(len(result.statuses), 'shot')} rendered{elapsed}; "
        f"{len(result.skipped)} unchanged skipped",
        highlight=False,
    )
    if result.failures:
        table = Table(title="not rendered", title_justify="left", show_lines=False)
        table.add_column("shot", style="bold")
        table.add_column("status")
        table.add_column("reason", overflow="fold")
        for shot_id, reason in result.failures:
            status = result.statuses.get(shot_id, "")
            # Reasons come from the provider: plain text, never markup or terminal escapes.
            table.add_row(
                Text(shot_id), Text(status, style=STATE_STYLE.get(status, "")), Text(printable(reason, newlines=False))
            )
        console.print(table)
    console.print(f"manifest: {result.manifest_path}", highlight=False, markup=False)
    if result.interrupted:
        console.print("interrupted: run the same command again to resume; nothing is lost or billed twice.")
    if result.aborted:
        console.print(
            printable(f"stopped submitting: {result.aborted}", newlines=False),
            style="red",
            highlight=False,
            markup=False,
        )
