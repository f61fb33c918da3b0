"""The run views: live (terminal), plain lines, JSON lines, and the final summary."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from orchestrator.api import RunResult
from orchestrator.cli.progress import JsonView, LiveView, PlainView, print_summary
from orchestrator.events import NOTICE, RUN_FINISHED, RUN_STARTED, SHOT, Event
from orchestrator.plan import Plan

START = Event(
    RUN_STARTED,
    at=1_700_000_000.0,
    data={
        "provider": "local",
        "base_url": "http://127.0.0.1:9",
        "concurrency": 4,
        "requests_per_second": 2.0,
        "out": "/tmp/out",
        "to_render": 2,
        "skipped": 1,
        "cost": 2.0,
        "shots": ["a", "b"],
    },
)
EVENTS = [
    START,
    Event(SHOT, shot_id="a", old="pending", new="submitting", at=1_700_000_001.0),
    Event(SHOT, shot_id="a", old="submitting", new="submitted", detail="task 1", at=1_700_000_002.0),
    Event(NOTICE, detail="in-flight target now 2"),
    Event(SHOT, shot_id="b", old="submitted", new="failed", detail="moderation", at=1_700_000_003.0),
]


def console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=100, color_system=None), buffer


def test_plain_view_prints_settings_and_one_line_per_change() -> None:
    screen, buffer = console(terminal=False)
    view = PlainView(screen)
    for event in EVENTS:
        view(event)
    text = buffer.getvalue()
    assert "provider local at http://127.0.0.1:9" in text
    assert "limits: 4 tasks in flight, 2 requests/s" in text
    assert "a: submitting -> submitted (task 1)" in text
    assert "note: in-flight target now 2" in text
    assert "b: submitted -> failed (moderation)" in text


def test_live_view_shows_bar_counts_and_active_shots() -> None:
    screen, buffer = console(terminal=True)
    view = LiveView(screen)
    for event in EVENTS:
        view(event)
    view(Event(RUN_FINISHED))
    text = buffer.getvalue()
    assert "rendering" in text and "1/2" in text
    assert "submitted 1" in text and "failed 1" in text
    assert "a" in text and "age" in text


def test_json_view_writes_parseable_lines() -> None:
    stream = io.StringIO()
    view = JsonView(stream)
    for event in EVENTS:
        view(event)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["run-started", "shot", "shot", "notice", "shot"]
    assert lines[2] == {
        "event": "shot",
        "time": 1_700_000_002.0,
        "shot": "a",
        "old": "submitting",
        "new": "submitted",
        "detail": "task 1",
    }


def test_summary_lists_each_failure_with_its_reason() -> None:
    screen, buffer = console(terminal=False)
    result = RunResult(
        manifest_path=Path("/tmp/out/manifest.json"),
        plan=Plan(),
        statuses={"a": "succeeded", "b": "failed"},
        failures=(("b", "content moderation"),),
        skipped=("c",),
        elapsed=3.2,
    )
    print_summary(result, screen)
    text = buffer.getvalue()
    assert "1 of 2 shots rendered in 3.2 s; 1 unchanged skipped" in text
    assert "content moderation" in text and "manifest: /tmp/out/manifest.json" in text
    assert result.exit_code == 1
