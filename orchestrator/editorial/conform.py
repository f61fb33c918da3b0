"""Reading the cut back: what an editor did to the timeline we handed over, shot by shot. Nothing is written.

A clip of the edit is one of ours when it carries our metadata (``.otio``), is named after a shot, has one of our
reel names (an EDL) or points at one of our files; anything else was added from outside. Against the cut as it
stands now, each shot of ours is then unchanged, moved (out of spec order), removed, trimmed (new in and out, in
frames of the edit) or cut with a different take (another render of the shot, or some other file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from orchestrator.editorial.cut import Cut
from orchestrator.editorial.export import read_timeline
from orchestrator.editorial.media import MediaFacts
from orchestrator.editorial.timeline import DEFAULT_RATE, METADATA_KEY, ClipPlan, plan_clips
from orchestrator.store import FolderState

MOVED = "moved"
REMOVED = "removed"
TRIMMED = "trimmed"
ADDED = "added"
OTHER_TAKE = "different-take"
KINDS: tuple[str, ...] = (MOVED, REMOVED, TRIMMED, OTHER_TAKE, ADDED)


@dataclass(frozen=True)
class Change:
    """One thing editorial did. ``shot_id`` is ``None`` for a clip added from outside (``clip`` names it).

    Positions are 1-based places in the track; ``in_frame``/``out_frame`` (out exclusive) are in the edit's rate.
    """

    kind: str
    shot_id: str | None
    clip: str
    detail: str
    spec_position: int | None = None
    edit_position: int | None = None
    in_frame: int | None = None
    out_frame: int | None = None
    was_in: int | None = None
    was_out: int | None = None
    media: str | None = None
    take: int | None = None
    variant: str | None = None


@dataclass(frozen=True)
class ConformResult:
    edit: Path
    rate: float
    changes: tuple[Change, ...]
    unchanged: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        return {kind: sum(1 for change in self.changes if change.kind == kind) for kind in KINDS}


@dataclass(frozen=True)
class _EditClip:
    position: int
    name: str
    url: str | None
    reel: str | None
    shot_hint: str | None
    start: int
    frames: int


def conform(
    cut: Cut,
    edit: Path,
    *,
    state: FolderState | None = None,
    rate: float = DEFAULT_RATE,
    facts: Callable[[Path], MediaFacts] | None = None,
) -> ConformResult:
    """Compare the editor's timeline at ``edit`` with ``cut``; ``state`` names the takes of other renders used."""
    timeline = read_timeline(edit, rate=rate)
    edit_rate = _timeline_rate(timeline, rate)
    ours = plan_clips(cut, rate=edit_rate, facts=facts)
    clips = _edit_clips(timeline, edit_rate)
    matched, outside = _match(ours, clips)
    changes = [_added(clip) for clip in outside]
    changes += _removed(ours, matched)
    changes += _moved(ours, matched)
    for plan in ours:
        clip = matched.get(plan.shot.shot_id)
        if clip is not None:
            changes += _trimmed(plan, clip)
            changes += _other_take(plan, clip, cut, state)
    touched = {change.shot_id for change in changes}
    unchanged = tuple(p.shot.shot_id for p in ours if p.shot.shot_id in matched and p.shot.shot_id not in touched)
    order = {plan.shot.shot_id: index for index, plan in enumerate(ours)}
    changes.sort(key=lambda c: (order.get(c.shot_id or "", len(order) + (c.edit_position or 0)), KINDS.index(c.kind)))
    return ConformResult(edit=edit, rate=edit_rate, changes=tuple(changes), unchanged=unchanged)


def _timeline_rate(timeline: Any, fallback: float) -> float:
    if timeline.global_start_time is not None:
        return float(timeline.global_start_time.rate)
    tracks = timeline.video_tracks()
    for item in tracks[0] if tracks else ():
        if item.source_range is not None:
            return float(item.source_range.duration.rate)
    return fallback


def _edit_clips(timeline: Any, rate: float) -> list[_EditClip]:
    tracks = timeline.video_tracks()
    if not tracks:
        return []
    clips: list[_EditClip] = []
    for item in tracks[0]:
        if item.schema_name() != "Clip":
            continue  # gaps and transitions are not shots
        trimmed = item.trimmed_range()
        ours = item.metadata.get(METADATA_KEY)
        clips.append(
            _EditClip(
                position=len(clips) + 1,
                name=item.name or "",
                url=getattr(item.media_reference, "target_url", None),
                reel=(item.metadata.get("cmx_3600") or {}).get("reel"),
                shot_hint=ours.get("shot_id") if isinstance(ours, dict) else None,
                start=round(trimmed.start_time.rescaled_to(rate).value),
                frames=round(trimmed.duration.rescaled_to(rate).value),
            )
        )
    return clips


def _match(ours: Sequence[ClipPlan], clips: Sequence[_EditClip]) -> tuple[dict[str, _EditClip], list[_EditClip]]:
    """Each shot's clip in the edit (its first, when an editor used it twice; later uses count as added)."""
    ids = {plan.shot.shot_id for plan in ours}
    by_reel = {plan.reel: plan.shot.shot_id for plan in ours}
    by_path = {_path_of(plan.url): plan.shot.shot_id for plan in ours}
    matched: dict[str, _EditClip] = {}
    outside: list[_EditClip] = []
    for clip in clips:
        shot_id = next(
            (
                candidate
                for candidate in (
                    clip.shot_hint,
                    clip.name.strip(),
                    by_reel.get((clip.reel or "").strip()),
                    by_path.get(_path_of(clip.url)),
                )
                if candidate in ids
            ),
            None,
        )
        if shot_id is None or shot_id in matched:
            outside.append(clip)
        else:
            matched[shot_id] = clip
    return matched, outside


def _path_of(url: str | None) -> str | None:
    if not url:
        return None
    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme in ("file", "") else url


def _added(clip: _EditClip) -> Change:
    return Change(
        ADDED,
        None,
        clip.name,
        f"added from outside: {clip.name or '(unnamed clip)'} at {clip.position}",
        edit_position=clip.position,
        in_frame=clip.start,
        out_frame=clip.start + clip.frames,
        media=clip.url,
    )


def _removed(ours: Sequence[ClipPlan], matched: dict[str, _EditClip]) -> list[Change]:
    return [
        Change(REMOVED, plan.shot.shot_id, plan.shot.shot_id, "removed from the cut", spec_position=index + 1)
        for index, plan in enumerate(ours)
        if plan.shot.shot_id not in matched
    ]


def _moved(ours: Sequence[ClipPlan], matched: dict[str, _EditClip]) -> list[Change]:
    """The shots outside the longest run kept in spec order: moving those few gives the editor's order."""
    kept = [plan.shot.shot_id for plan in ours if plan.shot.shot_id in matched]
    spec_place = {shot_id: index + 1 for index, shot_id in enumerate(kept)}
    in_edit = sorted(kept, key=lambda shot_id: matched[shot_id].position)
    still = set(_longest_increasing(in_edit, key=spec_place.__getitem__))
    changes = []
    for shot_id in kept:
        if shot_id not in still:
            was, now = spec_place[shot_id], in_edit.index(shot_id) + 1
            changes.append(
                Change(MOVED, shot_id, shot_id, f"moved from {was} to {now}", spec_position=was, edit_position=now)
            )
    return changes


def _longest_increasing(items: Sequence[str], *, key: Any) -> list[str]:
    """The longest subsequence of ``items`` whose keys increase (patience sorting, O(n log n))."""
    import bisect

    tails: list[int] = []
    tail_items: list[int] = []
    previous: list[int] = [-1] * len(items)
    for index, item in enumerate(items):
        value = key(item)
        place = bisect.bisect_left(tails, value)
        if place == len(tails):
            tails.append(value)
            tail_items.append(index)
        else:
            tails[place] = value
            tail_items[place] = index
        previous[index] = tail_items[place - 1] if place else -1
    result = []
    at = tail_items[-1] if tail_items else -1
    while at != -1:
        result.append(items[at])
        at = previous[at]
    return result[::-1]


def _trimmed(plan: ClipPlan, clip: _EditClip) -> list[Change]:
    if (clip.start, clip.frames) == (0, plan.frames):
        return []
    out = clip.start + clip.frames
    return [
        Change(
            TRIMMED,
            plan.shot.shot_id,
            clip.name,
            f"trimmed: in {0} -> {clip.start}, out {plan.frames} -> {out} (frames)",
            in_frame=clip.start,
            out_frame=out,
            was_in=0,
            was_out=plan.frames,
        )
    ]


def _other_take(plan: ClipPlan, clip: _EditClip, cut: Cut, state: FolderState | None) -> list[Change]:
    used = _path_of(clip.url)
    if used is None or used == _path_of(plan.url):
        return []
    take, variant = _render_of(used, plan.shot.shot_id, cut, state)
    what = f"take {take}" + (f" ({variant})" if variant else "") if take is not None else f"other media {used}"
    return [
        Change(
            OTHER_TAKE,
            plan.shot.shot_id,
            clip.name,
            f"a different take: {what}",
            media=clip.url,
            take=take,
            variant=variant,
        )
    ]


def _render_of(path: str, shot_id: str, cut: Cut, state: FolderState | None) -> tuple[int | None, str | None]:
    if state is None:
        return None, None
    for render in state.renders_of(shot_id):
        if any(str((cut.output_dir / output.path).absolute()) == path for output in render.outputs):
            return render.take, render.variant
    return None, None


def conform_to_json(result: ConformResult) -> dict[str, Any]:
    return {
        "edit": str(result.edit),
        "rate": result.rate,
        "changed": result.changed,
        "counts": result.counts(),
        "changes": [asdict(change) for change in result.changes],
        "unchanged": list(result.unchanged),
    }
