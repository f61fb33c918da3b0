"""What ``orchestrator run`` shows while it works: a live view on a terminal, plain lines otherwise, or JSON events.

Each view is an event listener (``orchestrator.run.events``); the scheduler knows none of them.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from orchestrator.cli._app import counted, printable
from orchestrator.plan.plan import units_label
from orchestrator.run.events import NOTICE, PROGRESS, RUN_FINISHED, RUN_STARTED, SHOT, Event
from orchestrator.store.manifest import FAILED, PENDING, STATUSES, SUBMITTING, SUCCEEDED, UNCONFIRMED

if TYPE_CHECKING:
    from orchestrator.api import RunResult

# Waiting for a slot (the in-flight limit): not yet sent. ``submitting`` then means the create is on its way.
QUEUED = "queued"
WAITING = (PENDING, QUEUED)
# Not rendering yet, for the ETA: a render's clock starts when the provider has the task (``submitted``). A create on
# its way takes a slot an instant before its render starts, so it is counted as the next to start.
NOT_STARTED = (*WAITING, SUBMITTING)
# Where a shot ends for this run. ``unconfirmed``: the create's outcome is unknown, and it is never sent again
# without the user's word, so the run is done with it, and the user must look at it.
RESTING = (SUCCEEDED, FAILED, UNCONFIRMED)
STATE_STYLE = {
    "pending": "dim",
    "queued": "dim",
    "submitting": "cyan",
    "submitted": "cyan",
    "processing": "blue",
    "downloading": "magenta",
    "succeeded": "green",
    "failed": "bold red",
    "unconfirmed": "bold yellow",
    "pending-remote": "yellow",
}
# The order of the counts line: the order a shot moves in, then the endings; states nobody listed come last.
STATE_ORDER = (PENDING, QUEUED, *(state for state in STATUSES if state != PENDING))


class View(Protocol):
    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


def settings_lines(data: dict[str, Any]) -> list[str]:
    rps = data.get("requests_per_second")
    to_render = counted(int(data.get("to_render") or 0), render_noun(data.get("shots") or []))
    return [
        f"provider {data.get('provider')} at {data.get('base_url') or '-'}",
        f"limits: {data.get('concurrency')} tasks in flight, "
        + (f"{rps:g} requests/s" if rps else "no request-rate cap"),
        f"output: {data.get('out')}",
        f"{to_render} to render, {data.get('skipped')} unchanged, cost {units_label(float(data.get('cost') or 0))}",
    ]


def shot_progress(event: Event) -> str:
    """The provider's own progress figure (``"40%"``), where it gives one; terminal-safe, or empty."""
    progress = event.data.get("progress")
    return printable(str(progress), newlines=False) if progress not in (None, "") else ""


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
        elif event.kind in (SHOT, PROGRESS):
            self._console.print(printable(f"{stamp} {plain_shot_line(event)}", newlines=False), **_PLAIN)
        elif event.kind == NOTICE:
            self._console.print(printable(f"{stamp} note: {event.detail}", newlines=False), **_PLAIN)

    def close(self) -> None:
        return None


_PLAIN: dict[str, Any] = {"highlight": False, "markup": False}


def plain_shot_line(event: Event) -> str:
    """``s01: submitted -> processing 40% (detail)``; a progress report within one state is ``s01: processing 60%``."""
    progress = f" {shot_progress(event)}" if shot_progress(event) else ""
    detail = f" ({event.detail})" if event.detail else ""
    name = event.data.get("label") or event.shot_id  # ``s03 wide#2`` for a take or a variant
    if event.old == event.new:
        return f"{name}: {event.new}{progress}{detail}"
    return f"{name}: {event.old or PENDING} -> {event.new}{progress}{detail}"


def render_of(event: Event) -> str:
    """The render an event is about, by key: its shot id for take 1 of a shot without variants, as it always was."""
    return str(event.data.get("render") or event.shot_id)


def render_noun(keys: Iterable[str]) -> str:
    """``shot`` while every render is a shot's only one (as runs always read), ``render`` once takes or variants are
    among them."""
    return "render" if any("/" in key or "#" in key for key in keys) else "shot"


def shown_name(key: str) -> str:
    """A render key as people read it: ``s03/wide#2`` is ``s03 wide#2`` (a shot id never holds a ``/``)."""
    return key.replace("/", " ", 1)


def estimate_remaining(*, durations: Sequence[float], ages: Sequence[float], waiting: int, slots: int) -> float | None:
    """Seconds until every shot rests, or ``None`` when the render times seen so far cannot say.

    ``durations``: how long each finished render took, from its create to its end; ``ages``: how long each shot in
    flight has been at it; ``waiting``: shots not yet sent; ``slots``: tasks the run keeps in flight. A shot in
    flight is expected to take what the finished ones that ran longer than its age took (nothing to go on when it
    has outlived them all: no estimate, rather than a figure that stands still); each waiting shot takes the
    median render time in the first slot that frees.
    """
    if not durations:
        return None
    # The finished durations sorted, with sums of each tail: the ones longer than an age are a tail, so each shot in
    # flight costs a bisection rather than a pass over every render finished so far (10,000 of them, 4 times a
    # second, in a big production).
    ordered = sorted(durations)
    tail_sums = list(itertools.accumulate(reversed(ordered)))[::-1]  # tail_sums[i] = sum(ordered[i:])
    ends: list[float] = []
    for age in ages:
        first = bisect.bisect_right(ordered, age)
        count = len(ordered) - first
        if not count:
            return None
        ends.append(tail_sums[first] / count - age)
    typical = statistics.median(ordered)
    busy = sorted(ends)
    free = busy[-max(slots, 1) :] if len(busy) > slots else busy + [0.0] * (max(slots, 1) - len(busy))
    return max([*_fill_slots(free, waiting=waiting, each=typical), *busy])


def _fill_slots(free: list[float], *, waiting: int, each: float) -> list[float]:
    """When each slot frees once ``waiting`` shots of ``each`` seconds went, each to the first slot that frees.

    Once the slots free within ``each`` of one another, every further round gives each slot one shot in turn: those
    rounds are added at once, so thousands of waiting shots cost no more than a few rounds.
    """
    heapq.heapify(free)
    while waiting and (max(free) - free[0] > each or waiting < len(free)):
        heapq.heappush(free, heapq.heappop(free) + each)
        waiting -= 1
    rounds, waiting = divmod(waiting, len(free))
    free = [at + rounds * each for at in free]
    heapq.heapify(free)
    for _ in range(waiting):
        heapq.heappush(free, heapq.heappop(free) + each)
    return free


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = max(0, round(seconds))
    return f"eta {whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class LiveView:
    """A rich live display: overall bar with ETA, counts per state, the active shots with state, progress and age."""

    def __init__(self, console: Console, *, max_rows: int = 12, clock: Callable[[], float] = time.time) -> None:
        self._console = console
        self._max_rows = max_rows
        self._clock = clock
        self._states: dict[str, str] = {}
        self._counts: Counter[str] = Counter()  # kept as events come: a 10,000-shot run must not recount per event
        self._since: dict[str, float] = {}  # when the shot entered its state
        self._sent: dict[str, float] = {}  # when the provider got the task: the start of its render, for the ETA
        self._progress_of: dict[str, str] = {}
        self._durations: list[float] = []
        self._slots = 1
        self._notes: list[str] = []
        self._progress = Progress(
            TextColumn("[bold]rendering"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
        )
        self._bar = self._progress.add_task("shots", total=0, eta="")
        self._live = Live(console=console, refresh_per_second=4, get_renderable=self._render, transient=False)
        self._started = False

    def __call__(self, event: Event) -> None:
        if event.kind == RUN_STARTED:
            self._start(event)
        elif event.kind in (SHOT, PROGRESS) and event.shot_id is not None and event.new is not None:
            self._shot(render_of(event), event.new, event)
        elif event.kind == NOTICE:
            self._notes = [*self._notes[-2:], printable(event.detail or "", newlines=False)]
        elif event.kind == RUN_FINISHED:
            self.close()

    def _start(self, event: Event) -> None:
        for line in settings_lines(event.data):
            self._console.print(line, highlight=False, markup=False)
        shots = event.data.get("shots", [])
        self._slots = max(1, int(event.data.get("concurrency") or 1))
        self._states = dict.fromkeys(shots, PENDING)
        self._counts = Counter(self._states.values())
        self._since = dict.fromkeys(shots, event.at)
        self._progress.update(self._bar, total=len(shots), completed=0)
        self._live.start()
        self._started = True

    def _shot(self, shot_id: str, state: str, event: Event) -> None:
        previous = self._states.get(shot_id)
        if state != previous:
            self._since[shot_id] = event.at
            self._progress_of.pop(shot_id, None)
            self._counts[state] += 1
            if previous is not None:
                self._counts[previous] -= 1
        self._states[shot_id] = state
        if progress := shot_progress(event):
            self._progress_of[shot_id] = progress
        if state not in NOT_STARTED and state not in RESTING:
            self._sent.setdefault(shot_id, event.at)
        elif state == SUCCEEDED and shot_id in self._sent:
            self._durations.append(event.at - self._sent.pop(shot_id))
        elif state in RESTING:
            self._sent.pop(shot_id, None)  # a failure's time says nothing about how long renders take
        self._progress.update(self._bar, completed=sum(self._counts[resting] for resting in RESTING))

    def close(self) -> None:
        if self._started:
            self._live.refresh()
            self._live.stop()
            self._started = False

    def eta(self) -> float | None:
        """Seconds until the run's shots rest, from the render times seen so far (``None``: no estimate)."""
        now = self._clock()
        waiting = sum(self._counts[state] for state in NOT_STARTED)
        if not waiting and not self._sent:
            return None  # nothing left to estimate
        return estimate_remaining(
            durations=self._durations,
            ages=[now - started for started in self._sent.values()],
            waiting=waiting,
            slots=self._slots,
        )

    def _render(self) -> RenderableType:
        self._progress.update(self._bar, eta=format_eta(self.eta()))
        counts = self._counts
        line = Text()
        for state in [*STATE_ORDER, *sorted(set(counts) - set(STATE_ORDER))]:
            if counts.get(state):
                line.append(f"{state} {counts[state]}  ", style=STATE_STYLE.get(state, ""))
        parts: list[RenderableType] = [self._progress, line]
        active = [(s, st) for s, st in self._states.items() if st not in (*RESTING, *WAITING)]
        if active:
            parts.append(self._active_table(active))
        unconfirmed = [shot_id for shot_id, state in self._states.items() if state == UNCONFIRMED]
        if unconfirmed:
            # Prominent: each may have been billed, and only the user can say whether to send it again.
            names = ", ".join(printable(shown_name(shot_id), newlines=False) for shot_id in unconfirmed)
            parts.append(Text(f"unconfirmed (outcome of the create unknown): {names}", style=STATE_STYLE[UNCONFIRMED]))
        parts.extend(Text(f"note: {note}", style="yellow") for note in self._notes)
        return Group(*parts)

    def _active_table(self, active: list[tuple[str, str]]) -> Table:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        shown = active[: self._max_rows]
        with_progress = any(shot_id in self._progress_of for shot_id, _ in shown)  # only where a provider gives it
        table.add_column("shot")
        table.add_column("state")
        if with_progress:
            table.add_column("progress", justify="right")
        table.add_column("age", justify="right")
        now = self._clock()
        for shot_id, state in shown:
            age = now - self._since.get(shot_id, now)
            progress = [self._progress_of.get(shot_id, "")] if with_progress else []
            cells = [
                Text(printable(shown_name(shot_id), newlines=False)),
                Text(state, style=STATE_STYLE.get(state, "")),
            ]
            table.add_row(*cells, *progress, f"{age:5.1f}s")
        if len(active) > self._max_rows:
            table.add_row(f"... {len(active) - self._max_rows} more")
        return table


# Up to this many unconfirmed renders get a command each to copy; past it, one command with KEY.
_ADOPT_COMMANDS_SHOWN = 3


def _adopt_commands(keys: Sequence[str], spec: str) -> str:
    """``orchestrator adopt SPEC s03#2 TASK_ID`` for each unconfirmed render, by the key ``adopt`` takes."""
    if len(keys) > _ADOPT_COMMANDS_SHOWN:
        return f"orchestrator adopt {spec} KEY TASK_ID, for each KEY above"
    return "; ".join(f"orchestrator adopt {spec} {key} TASK_ID" for key in keys)


def print_summary(result: RunResult, console: Console, *, spec: str = "SPEC") -> None:
    """The end of a run: counts, each shot that did not succeed with its reason, what to do about unconfirmed
    shots, and where the manifest is."""
    counts = Counter(result.statuses.values())
    succeeded = counts.get(SUCCEEDED, 0)
    elapsed = f" in {result.elapsed:.1f} s" if result.elapsed else ""
    console.print(
        f"{succeeded} of {counted(len(result.statuses), render_noun(result.statuses))} rendered{elapsed}; "
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
                Text(printable(shown_name(shot_id), newlines=False)),
                Text(status, style=STATE_STYLE.get(status, "")),
                Text(printable(reason, newlines=False)),
            )
        console.print(table)
    if result.unconfirmed:
        keys = ", ".join(result.unconfirmed)
        console.print(
            printable(
                f"unconfirmed: {keys}. Each create may have been billed and is never sent again on its own. "
                f"Attach the task you find in your provider's console ({_adopt_commands(result.unconfirmed, spec)}), "
                f"or resend knowingly (orchestrator run {spec} --resend-unconfirmed: may bill twice)",
                newlines=False,
            ),
            style="magenta",
            highlight=False,
            markup=False,
            soft_wrap=True,  # commands to copy: never broken across lines
        )
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
