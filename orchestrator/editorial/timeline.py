"""The cut as an OpenTimelineIO timeline: one video track in spec order, one clip per shot.

Every format is written from this one timeline (see ``orchestrator.editorial.export``), and ``conform`` compares
an editor's timeline against it. Clip names are the shot ids; each clip has a reel name of its own, short enough
for CMX 3600 (``S00001``...); media are absolute ``file://`` URLs, so that Premiere and Resolve relink; record
timecode starts at 01:00:00:00; the shot's review status is a coloured marker; take, variant, fingerprint, task id,
prompt and cost are the clip's metadata under ``orchestrator`` (kept by ``.otio``, dropped by formats without room).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from orchestrator.editorial.cut import APPROVED, HOLD, PENDING_REVIEW, RETAKE, Cut, CutShot
from orchestrator.editorial.media import MediaFacts, probe, still_path

DEFAULT_RATE = 24.0
RECORD_START_SECONDS = 3600  # 01:00:00:00, where editorial expects a programme to start
METADATA_KEY = "orchestrator"
REEL_NAME_LENGTH = 8  # CMX 3600's reel field
MARKER_COLOURS: dict[str, str] = {APPROVED: "GREEN", RETAKE: "RED", PENDING_REVIEW: "YELLOW", HOLD: "ORANGE"}


def otio_module() -> Any:
    """``opentimelineio``, imported on first use (``import orchestrator`` must stay light)."""
    from orchestrator.errors import EditorialError

    try:
        import opentimelineio  # type: ignore[import-untyped]  # no stubs
    except ImportError:
        raise EditorialError("editorial needs OpenTimelineIO: pip install 'orchestrator[editorial]'") from None
    return opentimelineio


@dataclass(frozen=True)
class ClipPlan:
    """Where a shot sits in the timeline and what it shows, in timeline frames."""

    shot: CutShot
    reel: str
    url: str
    frames: int
    media: MediaFacts | None  # the video's own facts; None for a held board


def reel_name(index: int) -> str:
    """``S00001`` for the first clip: unique per clip, and within CMX 3600's eight characters up to 9,999,999."""
    return f"S{index + 1:05d}"


def plan_clips(cut: Cut, *, rate: float, facts: Callable[[Path], MediaFacts] | None = None) -> list[ClipPlan]:
    """Each shot's clip: its length from the media (``facts``, PyAV by default), a held board for its spec length."""
    read = facts or cached_probe
    plans = []
    for index, shot in enumerate(cut.shots):
        if shot.media is None:
            url = still_path(cut.output_dir, shot).as_uri()
            plans.append(ClipPlan(shot, reel_name(index), url, max(1, round(shot.spec_duration * rate)), None))
        else:
            media = read(shot.media)
            plans.append(ClipPlan(shot, reel_name(index), shot.media.as_uri(), media.frames_at(rate), media))
    return plans


@lru_cache(maxsize=4096)
def cached_probe(path: Path) -> MediaFacts:
    # A render's file never changes under its name (a new render gets a new name), so one probe per path holds.
    return probe(path)


def build_timeline(
    cut: Cut,
    *,
    rate: float = DEFAULT_RATE,
    only: Collection[str] | None = None,
    name: str | None = None,
    facts: Callable[[Path], MediaFacts] | None = None,
) -> Any:
    """The cut as a timeline at ``rate``. With ``only``, other shots are gaps of their length (a partial publish)."""
    otio = otio_module()
    timeline = otio.schema.Timeline(name=name or cut.project)
    timeline.global_start_time = otio.opentime.RationalTime(RECORD_START_SECONDS * rate, rate)
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    for plan in plan_clips(cut, rate=rate, facts=facts):
        if only is not None and plan.shot.shot_id not in only:
            track.append(otio.schema.Gap(source_range=_range(otio, 0, plan.frames, rate)))
        else:
            track.append(_clip(otio, plan, rate))
    return timeline


def _range(otio: Any, start: int, frames: int, rate: float) -> Any:
    return otio.opentime.TimeRange(otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(frames, rate))


def _clip(otio: Any, plan: ClipPlan, rate: float) -> Any:
    shot = plan.shot
    whole = _range(otio, 0, plan.frames, rate)
    reference = otio.schema.ExternalReference(target_url=plan.url, available_range=whole)
    reference.name = Path(plan.url).name
    clip = otio.schema.Clip(name=shot.shot_id, media_reference=reference, source_range=whole)
    clip.metadata[METADATA_KEY] = clip_metadata(plan)
    clip.metadata["cmx_3600"] = {"reel": plan.reel}
    clip.markers.append(
        otio.schema.Marker(
            name=shot.review_status,
            marked_range=_range(otio, 0, 0, rate),
            color=MARKER_COLOURS.get(shot.review_status, "YELLOW"),
            metadata={METADATA_KEY: {"note": shot.note}},
        )
    )
    if shot.note:
        clip.markers[0].comment = shot.note
    return clip


def clip_metadata(plan: ClipPlan) -> dict[str, Any]:
    """What the clip carries for whoever reads the ``.otio``: which render, made how, for how much."""
    shot = plan.shot
    data: dict[str, Any] = {
        "shot_id": shot.shot_id,
        "take": shot.take,
        "variant": shot.variant,
        "fingerprint": shot.fingerprint,
        "task_id": shot.task_id,
        "prompt": shot.prompt,
        "cost": shot.cost,
        "review_status": shot.review_status,
        "note": shot.note,
        "stand_in": shot.stand_in,
        "held_board": shot.held,
        "reel": plan.reel,
    }
    if plan.media is not None:
        data["media_frames"] = plan.media.frames
        data["media_rate"] = str(plan.media.rate)
    return data


def timeline_frames(timeline: Any) -> int:
    """The timeline's length in its own frames (the rate of its record start)."""
    rate = timeline.global_start_time.rate if timeline.global_start_time else DEFAULT_RATE
    frames: float = timeline.duration().rescaled_to(rate).value
    return round(frames)
