"""Writing the timeline in the formats editorial opens, each through its OpenTimelineIO adapter (never by hand).

| format | adapter | opened by |
|---|---|---|
| ``otio`` | ``otio_json`` | OTIO tools, Resolve 18+, anything scripted; keeps everything |
| ``xml`` | ``fcp_xml`` (otio-fcp-adapter) | Premiere Pro, DaVinci Resolve, Final Cut Pro 7 |
| ``fcpxml`` | ``fcpx_xml`` (otio-fcpx-xml-adapter) | Final Cut Pro X / 10+ |
| ``edl`` | ``cmx_3600`` (otio-cmx3600-adapter) | Avid, and every NLE and conform tool |
| ``aaf`` | ``AAF`` (otio-aaf-adapter, optional) | Avid Media Composer |

What each keeps and drops is in docs/editorial.md.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.editorial.cut import Cut
from orchestrator.editorial.media import write_still
from orchestrator.editorial.timeline import DEFAULT_RATE, build_timeline, otio_module, timeline_frames
from orchestrator.errors import EditorialError


@dataclass(frozen=True)
class Format:
    name: str
    adapter: str
    suffixes: tuple[str, ...]
    package: str  # what to install when its adapter is missing


FORMATS: dict[str, Format] = {
    "otio": Format("otio", "otio_json", (".otio",), "opentimelineio"),
    "xml": Format("xml", "fcp_xml", (".xml",), "otio-fcp-adapter"),
    "fcpxml": Format("fcpxml", "fcpx_xml", (".fcpxml",), "otio-fcpx-xml-adapter"),
    "edl": Format("edl", "cmx_3600", (".edl",), "otio-cmx3600-adapter"),
    "aaf": Format("aaf", "AAF", (".aaf",), "otio-aaf-adapter"),
}


@dataclass(frozen=True)
class ExportResult:
    """What ``export_cut`` wrote: the file, its format, how many clips and gaps, its length, the stills made."""

    path: Path
    format: str
    clips: int
    gaps: int
    frames: int
    rate: float
    stills: tuple[Path, ...]


def format_for(path: Path, given: str | None) -> Format:
    """The format named by ``--format``, else the one the file's extension says."""
    if given is not None:
        found = FORMATS.get(given.lower())
        if found is None:
            raise EditorialError(f"unknown format {given!r}; use one of {', '.join(FORMATS)}")
        return found
    suffix = path.suffix.lower()
    for candidate in FORMATS.values():
        if suffix in candidate.suffixes:
            return candidate
    known = ", ".join(s for f in FORMATS.values() for s in f.suffixes)
    raise EditorialError(f"{path}: cannot tell the format from {suffix or 'no extension'}; give --format ({known})")


def export_cut(
    cut: Cut,
    dest: Path,
    *,
    fmt: str | None = None,
    rate: float = DEFAULT_RATE,
    only: set[str] | None = None,
    name: str | None = None,
) -> ExportResult:
    """Write ``cut`` to ``dest``, held boards' stills first (under ``<out>/editorial/``); ``only`` as for
    ``build_timeline``."""
    chosen = format_for(dest, fmt)
    stills = tuple(write_still(cut.output_dir, shot) for shot in cut.shots if shot.held and _shown(shot.shot_id, only))
    timeline = build_timeline(cut, rate=rate, only=only, name=name)
    write_timeline(timeline, dest, chosen, rate=rate)
    track = timeline.video_tracks()[0]
    clips = sum(1 for item in track if item.schema_name() == "Clip")
    return ExportResult(dest, chosen.name, clips, len(track) - clips, timeline_frames(timeline), rate, stills)


def _shown(shot_id: str, only: set[str] | None) -> bool:
    return only is None or shot_id in only


def write_timeline(timeline: Any, dest: Path, chosen: Format, *, rate: float = DEFAULT_RATE) -> None:
    """Write through the adapter to a file beside ``dest``, renamed into place complete."""
    otio = otio_module()
    _require_adapter(otio, chosen)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=dest.suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        otio.adapters.write_to_file(
            _as_adapter_needs(otio, timeline, chosen),
            str(tmp),
            adapter_name=chosen.adapter,
            **_adapter_options(chosen, rate),
        )
        os.replace(tmp, dest)
    except OSError as exc:
        raise EditorialError(f"{dest}: cannot write the timeline ({exc.strerror or exc})") from None
    except Exception as exc:  # an adapter's own errors have no common base; one line, never a traceback
        raise EditorialError(f"{dest}: the {chosen.name} writer refused the timeline: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _as_adapter_needs(otio: Any, timeline: Any, chosen: Format) -> Any:
    """The CMX 3600 writer places record times from 0 and ignores the timeline's start: shift a copy's track so
    that its events are recorded from 01:00:00:00 like every other format's (its reader places them back at 0)."""
    if chosen.adapter != "cmx_3600" or timeline.global_start_time is None:
        return timeline
    shifted = timeline.deepcopy()
    for track in shifted.tracks:
        track.source_range = otio.opentime.TimeRange(-timeline.global_start_time, track.duration())
    return shifted


def _adapter_options(chosen: Format, rate: float) -> dict[str, Any]:
    if chosen.adapter == "cmx_3600":
        # Reel names come from each clip's metadata (unique, at most 8 characters): never the adapter's truncation.
        return {"rate": rate, "style": "avid"}
    if chosen.adapter == "AAF":
        return {"use_empty_mob_ids": True}
    return {}


def _require_adapter(otio: Any, chosen: Format) -> None:
    names = {adapter.name for adapter in otio.plugins.ActiveManifest().adapters}
    if chosen.adapter not in names:
        package = chosen.package
        raise EditorialError(f"the {chosen.name} format needs the {package} package: pip install {package}")


def read_timeline(path: Path, *, rate: float = DEFAULT_RATE) -> Any:
    """An editor's timeline, through the adapter its extension names; the first timeline of a collection.

    ``rate`` is for an EDL, which does not say its own."""
    otio = otio_module()
    chosen = format_for(path, None)
    _require_adapter(otio, chosen)
    if not path.is_file():
        raise EditorialError(f"{path}: no such file")
    try:
        options = {"rate": rate} if chosen.adapter == "cmx_3600" else {}
        result = otio.adapters.read_from_file(str(path), adapter_name=chosen.adapter, **options)
    except Exception as exc:  # adapters raise anything from ValueError to their own parse errors
        raise EditorialError(f"{path}: not a readable {chosen.name} timeline: {exc}") from None
    if result.schema_name() == "SerializableCollection":
        timelines = [item for item in result.find_children() if item.schema_name() == "Timeline"] or list(result)
        if not timelines:
            raise EditorialError(f"{path}: holds no timeline")
        return timelines[0]
    return result
