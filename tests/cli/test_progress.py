"""The run views: live (terminal), plain lines, JSON lines, and the final summary."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from orchestrator.api import RunResult
from orchestrator.cli.progress import JsonView, LiveView, PlainView, estimate_remaining, print_summary
from orchestrator.plan.plan import Plan
from orchestrator.run.events import NOTICE, PROGRESS, RUN_FINISHED, RUN_STARTED, SHOT, Event

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


# --- the ETA, the provider's progress, and the queued and unconfirmed states ---------------------------------------


def test_no_eta_before_any_render_has_finished() -> None:
    assert estimate_remaining(durations=[], ages=[3.0], waiting=4, slots=2) is None


def test_eta_from_render_times_and_slots() -> None:
    # One slot frees in 6 s (10 s renders, 4 s in), the other is free: the two waiting shots end at 10 s and 16 s.
    assert estimate_remaining(durations=[10.0], ages=[4.0], waiting=2, slots=2) == 16.0
    assert estimate_remaining(durations=[10.0], ages=[], waiting=3, slots=1) == 30.0
    assert estimate_remaining(durations=[10.0, 20.0], ages=[15.0], waiting=0, slots=4) == 5.0  # only 20 s ran longer
    # More in flight than slots (the target was lowered): waiting shots start as the in-flight count drops below it.
    assert estimate_remaining(durations=[10.0], ages=[9.0, 8.0, 0.0], waiting=1, slots=2) == 12.0


def test_eta_of_a_big_production_fills_the_slots_round_by_round() -> None:
    # 10,000 waiting behind 200 slots of 5 s renders: 50 rounds. A slot still busy for a second ends its 50 a
    # second later; with 199 busy for 5 s and that one, the 10,001st shot goes to the slot that frees first.
    assert estimate_remaining(durations=[5.0], ages=[], waiting=10_000, slots=200) == 250.0
    assert estimate_remaining(durations=[5.0], ages=[4.0], waiting=10_000, slots=200) == 251.0
    assert estimate_remaining(durations=[5.0], ages=[0.0] * 199 + [4.0], waiting=10_001, slots=200) == 256.0
    # Slots that free further apart than one render: the free one takes ten 1 s shots while the other ends its
    # 30 s render (20 s in), then each takes one of the last two.
    assert estimate_remaining(durations=[1.0, 1.0, 30.0], ages=[20.0], waiting=12, slots=2) == 11.0


def test_no_eta_for_a_shot_that_outlived_every_render_seen() -> None:
    assert estimate_remaining(durations=[10.0, 12.0], ages=[13.0], waiting=0, slots=2) is None


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def shot_event(shot_id: str, old: str, new: str, at: float, **data: object) -> Event:
    return Event(SHOT, shot_id=shot_id, old=old, new=new, at=at, data=dict(data))


def test_live_eta_counts_down_instead_of_sticking() -> None:
    screen, _ = console(terminal=True)
    t0 = 1_700_000_000.0
    clock = Clock(t0)
    view = LiveView(screen, clock=clock)
    view(Event(RUN_STARTED, at=t0, data={**START.data, "concurrency": 1, "shots": ["a", "b", "c"]}))
    assert view.eta() is None  # nothing finished yet: no figure
    view(shot_event("a", "queued", "submitting", t0 - 30))  # waited for its create: not render time
    view(shot_event("a", "submitting", "submitted", t0))
    view(shot_event("a", "processing", "succeeded", t0 + 10))
    view(shot_event("b", "submitting", "submitted", t0 + 10))
    view(shot_event("c", "pending", "submitting", t0 + 10))
    clock.now = t0 + 12
    first = view.eta()
    clock.now = t0 + 17
    later = view.eta()
    view(shot_event("b", "processing", "succeeded", t0 + 20))
    view(shot_event("c", "processing", "succeeded", t0 + 30))
    clock.now = t0 + 30
    assert view.eta() is None  # nothing left: no figure either
    view.close()
    assert first == 18.0 and later == 13.0  # b: 8 s then 3 s left, c: 10 s after it


def test_live_view_shows_progress_queued_and_unconfirmed() -> None:
    screen, buffer = console(terminal=True)
    t0 = 1_700_000_000.0
    view = LiveView(screen, clock=Clock(t0 + 5))
    view(Event(RUN_STARTED, at=t0, data={**START.data, "shots": ["a", "b", "c"]}))
    view(shot_event("a", "submitted", "processing", t0 + 1, progress="10%"))
    view(Event(PROGRESS, shot_id="a", old="processing", new="processing", at=t0 + 1.5, data={"progress": "40%"}))
    view(shot_event("b", "pending", "queued", t0 + 1))
    view(shot_event("c", "submitting", "unconfirmed", t0 + 2))
    view(Event(RUN_FINISHED))
    text = buffer.getvalue()
    assert "processing 1" in text and "queued 1" in text and "unconfirmed 1" in text
    active = [line for line in text.splitlines() if line.startswith(("a ", "b "))]
    assert active and all(line.startswith("a ") for line in active)  # a queued shot is not in flight
    assert "40%" in active[-1]
    assert "unconfirmed (outcome of the create unknown): c" in text
    assert "1/3" in text  # an unconfirmed shot is done for this run, like a failed one


def test_plain_lines_carry_progress_and_the_new_states() -> None:
    screen, buffer = console(terminal=False)
    view = PlainView(screen)
    view(shot_event("a", "pending", "queued", 1_700_000_000.0))
    view(shot_event("a", "queued", "submitting", 1_700_000_001.0))
    view(shot_event("a", "submitted", "processing", 1_700_000_002.0, progress="40%"))
    # A progress report within one state is an event of its own kind, as the scheduler emits it.
    view(Event(PROGRESS, shot_id="a", old="processing", new="processing", at=1_700_000_003.0, data={"progress": "60%"}))
    view(Event(SHOT, shot_id="b", old="submitting", new="unconfirmed", detail="no answer to the create"))
    lines = [line.split(" ", 1)[1] for line in buffer.getvalue().splitlines()]
    assert lines == [
        "a: pending -> queued",
        "a: queued -> submitting",
        "a: submitted -> processing 40%",
        "a: processing 60%",
        "b: submitting -> unconfirmed (no answer to the create)",
    ]


def test_json_lines_carry_the_progress() -> None:
    stream = io.StringIO()
    JsonView(stream)(shot_event("a", "submitted", "processing", 1_700_000_002.0, progress="40%"))
    assert json.loads(stream.getvalue())["progress"] == "40%"


def test_unconfirmed_shots_are_listed_with_their_state_in_the_summary() -> None:
    screen, buffer = console(terminal=False)
    result = RunResult(
        manifest_path=Path("/tmp/out/manifest.json"),
        plan=Plan(),
        statuses={"a": "unconfirmed"},
        failures=(("a", "the create got no answer; it may have been billed"),),
    )
    print_summary(result, screen)
    text = buffer.getvalue()
    assert "0 of 1 shot rendered" in text and "unconfirmed" in text and "may have been billed" in text


def test_the_summary_gives_a_command_to_copy_for_each_unconfirmed_render_by_its_key() -> None:
    screen, buffer = console(terminal=False)
    keys = ("s01#2", "s02/wide")
    result = RunResult(
        manifest_path=Path("/tmp/out/manifest.json"),
        plan=Plan(),
        statuses={"s01": "succeeded", **dict.fromkeys(keys, "unconfirmed")},
        failures=tuple((key, "no answer") for key in keys),
    )
    print_summary(result, screen, spec="p.yaml")
    text = buffer.getvalue()
    assert "unconfirmed: s01#2, s02/wide." in text
    assert "(orchestrator adopt p.yaml s01#2 TASK_ID; orchestrator adopt p.yaml s02/wide TASK_ID)" in text

    many = {f"s{i:02}#2": "unconfirmed" for i in range(5)}
    screen, buffer = console(terminal=False)
    print_summary(RunResult(manifest_path=Path("/tmp/m.json"), plan=Plan(), statuses=many), screen, spec="p.yaml")
    assert "(orchestrator adopt p.yaml KEY TASK_ID, for each KEY above)" in buffer.getvalue()


def take_event(key: str, label: str, take: int, old: str, new: str, at: float) -> Event:
    data = {"attempt": 1, "render": key, "label": label, "take": take, "variant": "wide"}
    return Event(SHOT, shot_id="s01", old=old, new=new, at=at, data=data)


TAKES = [
    Event(RUN_STARTED, at=1_700_000_000.0, data={**START.data, "to_render": 2, "shots": ["s01/wide", "s01/wide#2"]}),
    take_event("s01/wide", "s01 wide", 1, "pending", "submitting", 1_700_000_001.0),
    take_event("s01/wide#2", "s01 wide#2", 2, "pending", "submitting", 1_700_000_001.5),
    take_event("s01/wide", "s01 wide", 1, "submitting", "succeeded", 1_700_000_002.0),
]


def test_views_name_each_take_of_a_shot() -> None:
    screen, buffer = console(terminal=False)
    plain = PlainView(screen)
    for event in TAKES:
        plain(event)
    text = buffer.getvalue()
    assert "2 renders to render" in text
    assert "s01 wide#2: pending -> submitting" in text and "s01 wide: submitting -> succeeded" in text
    screen, buffer = console(terminal=True)
    live = LiveView(screen)
    for event in TAKES:
        live(event)
    live(Event(RUN_FINISHED))
    text = buffer.getvalue()
    # Two renders of one shot, counted apart: one finished, the other still submitting.
    assert "1/2" in text and "s01 wide#2" in text and "submitting 1" in text
