"""Report: an HTML contact sheet of a manifest, a page that lives beside the renders.

Inline CSS and JS, thumbnails as small JPEG ``data:`` URIs, no network at all: the page works opened from disk. The
videos are links relative to the report's folder, so the page plays them only where those files are (beside it, as
``report`` writes it); moved elsewhere alone, each player says so in its place instead of spinning. ``embed=True``
(``report --embed``) inlines the videos as ``data:`` URIs instead, for sending one file, at the cost of its size.
Every piece of user text goes through Jinja's autoescape: a ``<script>`` in a prompt shows as text.

A shot with takes or variants lists each take (``wide#2``) with its status, cost and video, the review's select
marked; the review's decision (status, note, who and when) comes from the decisions file beside the spec.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2
from PIL import Image

from orchestrator import __version__
from orchestrator.errors import ConfigError
from orchestrator.plan.diff import WordOp, word_diff
from orchestrator.plan.plan import format_units, output_file, units_label
from orchestrator.report.status import StatusSummary, TakeStatus, charged_units, summarize, takes_of
from orchestrator.spec.fingerprint import SCALAR_FIELDS, FieldChange, field_changes
from orchestrator.store.manifest import STATUSES, Manifest, Output, Render, ShotRecord, write_atomic
from orchestrator.store.records import FolderState

if TYPE_CHECKING:
    from orchestrator.review.decisions import Decision, Decisions

# Above this many bytes of embedded video, ``report --embed`` warns: too large for most mail, slow to open.
EMBED_WARNING_BYTES = 100_000_000
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime"}
THUMB_SIZE = (240, 240)
THUMB_QUALITY = 70
TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Thumb:
    """An input board: a ``data:`` URI when the local file could be read, otherwise a note saying why not."""

    ref: str
    data_uri: str | None = None
    note: str = ""


@dataclass(frozen=True)
class VideoLink:
    path: str  # as recorded, relative to the manifest
    href: str | None  # relative to the report, URL-quoted, or a ``data:`` URI when embedded; None when not on disk
    embedded: bool = False


@dataclass(frozen=True)
class RenderView:
    """A render as the report shows it: current or previous."""

    fingerprint: str
    task_id: str | None
    finished_at: str | None
    cost: str
    videos: tuple[VideoLink, ...]


@dataclass(frozen=True)
class TakeCard:
    """One take of a shot with several: ``wide#2``, where it stands, its video; ``selected`` by the review."""

    name: str
    status: str
    cost: str
    videos: tuple[VideoLink, ...]
    selected: bool = False


@dataclass(frozen=True)
class ReviewCard:
    """The review's decision on a shot, as the decisions file says it."""

    status: str
    note: str
    by: str
    at: str
    select: str  # the selected take's label (``wide take 2``), or ""


@dataclass(frozen=True)
class ShotCard:
    id: str
    status: str
    prompt: str
    negative_prompt: str
    params: tuple[tuple[str, str], ...]
    thumbs: tuple[Thumb, ...]
    task_id: str
    external_task_id: str
    attempts: int
    timings: tuple[tuple[str, str], ...]
    cost: str
    charged: str  # "" when the provider has given no figure (yet)
    error: str
    current: RenderView
    previous: RenderView | None = None
    changes: tuple[FieldChange, ...] = ()
    word_diffs: dict[str, tuple[WordOp, ...]] = field(default_factory=dict)
    takes: tuple[TakeCard, ...] = ()  # when the shot has more than one take (takes, variants)
    review: ReviewCard | None = None


@dataclass(frozen=True)
class ReportData:
    project: str
    spec_path: str
    provider: str
    started_at: str
    finished_at: str
    generated_at: str
    tool_version: str
    summary: StatusSummary
    statuses: tuple[tuple[str, int], ...]  # statuses present, with counts, for the filter
    total_cost: str  # estimated
    total_charged: str
    uncharged: tuple[str, ...]  # shots whose render was sent but has no charged figure yet
    shots: tuple[ShotCard, ...]
    embedded: bool = False  # videos inlined as data: URIs
    embedded_bytes: int = 0  # of video, before base64

    @property
    def media_src(self) -> str:
        """The CSP ``media-src``: the files beside the page, or ``data:`` only when the videos are inlined."""
        return "data:" if self.embedded else "'self'"

    def embed_warning(self) -> str | None:
        """What to tell the user when the embedded videos make the file heavy, else ``None``."""
        if self.embedded_bytes <= EMBED_WARNING_BYTES:
            return None
        return (
            f"the embedded videos total {format_units(self.embedded_bytes / 1e6)} MB (the page is about a third "
            f"larger); over {EMBED_WARNING_BYTES // 1_000_000} MB it is too large for most mail and slow to open"
        )


# --- gathering --------------------------------------------------------------------------------------------------


def build_report(
    manifest: Manifest,
    *,
    manifest_dir: Path,
    report_path: Path,
    spec_dir: Path | None = None,
    embed: bool = False,
    state: FolderState | None = None,
    decisions: Decisions | None = None,
) -> ReportData:
    """Everything the template shows, computed here so the template stays dumb (and every string gets escaped).

    ``embed``: the videos become ``data:`` URIs (read whole into memory), so the page needs no other file.
    ``state`` (the store the manifest was read from) gives each shot's takes; ``decisions`` the review's.
    """
    images_dir = spec_dir or guess_spec_dir(manifest, manifest_dir=manifest_dir)
    links = _Linker(manifest_dir=manifest_dir, report_dir=report_path.parent, embed=embed)
    thumbs = _Thumbnailer(images_dir)
    shots = tuple(
        _with_review(
            _shot_view(shot_id, record, links=links, thumbs=thumbs),
            takes_of(state, shot_id) if state is not None else (),
            decisions.get(shot_id) if decisions is not None and shot_id in decisions.shots else None,
            links=links,
        )
        for shot_id, record in manifest.shots.items()
    )
    summary = summarize(manifest, state=state)
    return ReportData(
        project=manifest.project,
        spec_path=manifest.spec_path,
        provider=manifest.provider,
        started_at=manifest.started_at or "",
        finished_at=manifest.finished_at or "",
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        tool_version=__version__,
        summary=summary,
        statuses=tuple((status, n) for status, n in summary.counts.items() if n),
        total_cost=units_label(summary.units),
        total_charged=units_label(summary.charged),
        uncharged=summary.uncharged,
        shots=shots,
        embedded=embed,
        embedded_bytes=links.embedded_bytes,
    )


def guess_spec_dir(manifest: Manifest, *, manifest_dir: Path) -> Path | None:
    """The folder the spec's relative image paths start from, found from the path the manifest recorded."""
    if not manifest.spec_path:
        return None
    recorded = Path(manifest.spec_path)
    candidates = [recorded] if recorded.is_absolute() else [manifest_dir / recorded, Path.cwd() / recorded]
    for candidate in candidates:
        if candidate.parent.is_dir():
            return candidate.parent
    return None


def _shot_view(shot_id: str, record: ShotRecord, *, links: _Linker, thumbs: _Thumbnailer) -> ShotCard:
    request = record.request
    previous = previous_render(record)
    changes = tuple(field_changes(previous.request, request)) if previous and previous.request and request else ()
    words = {c.name: word_diff(_text(c.old), _text(c.new)) for c in changes if c.name in ("prompt", "negative_prompt")}
    return ShotCard(
        id=shot_id,
        status=record.status,
        prompt=_text(request.get("prompt")),
        negative_prompt=_text(request.get("negative_prompt")),
        params=_params(request),
        thumbs=tuple(thumbs.thumb(ref) for ref in request.get("image_refs") or []),
        task_id=record.task_id or "",
        external_task_id=record.external_task_id or "",
        attempts=record.attempts,
        timings=_timings(record),
        cost=_cost(record.cost),
        charged=_cost(charged_units(record)) if record.charged is not None else "",
        error=record.error or "",
        current=RenderView(
            record.fingerprint, record.task_id, record.finished_at, _cost(record.cost), links.videos(record.outputs)
        ),
        previous=_render_view(previous, links) if previous else None,
        changes=changes,
        word_diffs=words,
    )


def _with_review(
    card: ShotCard, takes: tuple[TakeStatus, ...], decision: Decision | None, *, links: _Linker
) -> ShotCard:
    """The card with its takes (when it has more than one) and the review's decision (when one was made)."""
    select = decision.select if decision is not None else None
    cards = tuple(
        TakeCard(
            name=take.name,
            status=take.status,
            cost=_cost(take.render.cost),
            videos=tuple(links.video(Output(o.path, o.sha256, o.bytes)) for o in take.render.outputs),
            selected=select is not None
            and (select.fingerprint, select.take, select.variant)
            == (take.render.fingerprint, take.render.take, take.render.variant),
        )
        for take in takes
    )
    review = None
    if decision is not None:
        label = select.label if select is not None else ""
        review = ReviewCard(decision.status, decision.note or "", decision.by or "", decision.at or "", label)
    return replace(card, takes=cards if len(cards) > 1 else (), review=review)


def previous_render(record: ShotRecord) -> Render | None:
    """The newest render in the history that is not the current one (histories may or may not list the current)."""
    current = [o.path for o in record.outputs]
    for render in reversed(record.history):
        if [o.path for o in render.outputs] != current or render.fingerprint != record.fingerprint:
            return render
    return None


def _render_view(render: Render, links: _Linker) -> RenderView:
    return RenderView(
        render.fingerprint, render.task_id, render.finished_at, _cost(render.cost), links.videos(render.outputs)
    )


def _params(request: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    shown = [(name, _text(request.get(name))) for name in SCALAR_FIELDS if request.get(name) is not None]
    masks = len(request.get("dynamic_masks") or [])
    if request.get("static_mask"):
        shown.append(("static_mask", "yes"))
    if masks:
        shown.append(("dynamic_masks", str(masks)))
    return tuple(shown)


def _timings(record: ShotRecord) -> tuple[tuple[str, str], ...]:
    shown = [
        ("created", record.created_at),
        ("submitted", record.submitted_at),
        ("finished", record.finished_at),
    ]
    result = [(label, value) for label, value in shown if value]
    took = _seconds_between(record.submitted_at, record.finished_at)
    if took is not None:
        result.append(("took", f"{took:.0f} s"))
    return tuple(result)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
        return (b - a).total_seconds()
    except (ValueError, TypeError):
        return None


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _cost(units: float | None) -> str:
    return "" if units is None else units_label(units)


class _Linker:
    """Turns output paths (relative to the manifest) into links relative to the report, for files that exist.

    With ``embed``, into ``data:`` URIs of the files' bytes instead (each file read once), counting the bytes.
    """

    def __init__(self, *, manifest_dir: Path, report_dir: Path, embed: bool = False) -> None:
        self.manifest_dir = manifest_dir
        self.report_dir = report_dir
        self.embed = embed
        self.embedded_bytes = 0
        self._inlined: dict[Path, str | None] = {}

    def videos(self, outputs: list[Output]) -> tuple[VideoLink, ...]:
        return tuple(self.video(output) for output in outputs)

    def video(self, output: Output) -> VideoLink:
        target = output_file(self.manifest_dir, output.path)  # never a link out of the output folder
        if target is None:
            return VideoLink(output.path, None)
        if self.embed:
            return VideoLink(output.path, self._data_uri(target), embedded=True)
        relative = os.path.relpath(target, self.report_dir.resolve())
        return VideoLink(output.path, quote(Path(relative).as_posix()))

    def _data_uri(self, target: Path) -> str | None:
        if target not in self._inlined:
            try:
                data = target.read_bytes()
            except OSError:
                self._inlined[target] = None  # vanished or unreadable since it was found: shown as missing
            else:
                self.embedded_bytes += len(data)
                kind = VIDEO_TYPES.get(target.suffix.lower(), "video/mp4")
                self._inlined[target] = f"data:{kind};base64," + base64.b64encode(data).decode("ascii")
        return self._inlined[target]


class _Thumbnailer:
    """Small JPEG thumbnails of local boards, each file read once; anything unreadable becomes a note, not an error."""

    def __init__(self, base: Path | None) -> None:
        self.base = base
        self.cache: dict[str, Thumb] = {}

    def thumb(self, ref: object) -> Thumb:
        key = _text(ref)
        if key not in self.cache:
            self.cache[key] = self._make(key)
        return self.cache[key]

    def _make(self, ref: str) -> Thumb:
        if ref.startswith(("http://", "https://")):
            return Thumb(ref, note="remote image")
        if ref.startswith("<") or not ref:
            return Thumb(ref or "?", note="inline image")
        path = Path(ref) if Path(ref).is_absolute() or self.base is None else self.base / ref
        try:
            if path.exists() and not path.is_file():
                # A FIFO or device named in a (hand-edited) manifest would block or never end: not an image.
                return Thumb(ref, note="not a regular file")
            return Thumb(ref, data_uri=jpeg_data_uri(path))
        except FileNotFoundError:
            return Thumb(ref, note="file not found")
        except (OSError, ValueError, Image.DecompressionBombError):
            return Thumb(ref, note="unreadable image")


def jpeg_data_uri(path: Path, *, size: tuple[int, int] = THUMB_SIZE) -> str:
    """A small JPEG of the image at ``path`` as a ``data:`` URI (raises OSError or ValueError when unreadable)."""
    with warnings.catch_warnings():
        # A huge board is the user's business, not a reason to stop the report.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image.thumbnail(size)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=THUMB_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- rendering --------------------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    # autoescape=True for every template, whatever its extension: all user text is escaped, always.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("orchestrator.report.html", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(data: ReportData) -> str:
    return _environment().get_template(TEMPLATE).render(report=data, statuses=STATUSES)


def write_report(
    manifest: Manifest,
    *,
    manifest_dir: Path,
    output: Path,
    spec_dir: Path | None = None,
    embed: bool = False,
    state: FolderState | None = None,
    decisions: Decisions | None = None,
) -> ReportData:
    """Build the report and write it to ``output`` (folders created as needed); ``embed`` inlines the videos."""
    data = build_report(
        manifest,
        manifest_dir=manifest_dir,
        report_path=output,
        spec_dir=spec_dir,
        embed=embed,
        state=state,
        decisions=decisions,
    )
    html = render_report(data)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.exists() and not output.is_file():
            # A device or pipe (/dev/stdout, a FIFO): write into it; never rename a file over it.
            output.write_text(html, encoding="utf-8")
        else:
            write_atomic(output, html)  # a full disk leaves the previous report, never half of one
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write the report ({exc.strerror})") from None
    return data
