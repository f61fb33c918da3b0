"""The resolved shot: the one value every later stage (fingerprint, plan, run, diff, report) works from.

A spec is loaded and resolved once (see ``orchestrator.spec.load``); after that nothing re-reads the YAML. Every field
here is final: defaults applied, image sets expanded, templates rendered, images identified by content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Mode = Literal["std", "pro"]
AspectRatio = Literal["16:9", "9:16", "1:1"]
ImageSource = Literal["path", "url", "base64"]

MODES: tuple[str, ...] = ("std", "pro")
DURATIONS: tuple[int, ...] = (5, 10)
ASPECT_RATIOS: tuple[str, ...] = ("16:9", "9:16", "1:1")
DEFAULT_MODEL = "kling-v1-6"
KNOWN_MODELS: tuple[str, ...] = (DEFAULT_MODEL,)


@dataclass(frozen=True)
class Location:
    """Where a YAML node starts: file as given by the user, 1-based line and column."""

    file: str
    line: int
    column: int


@dataclass(frozen=True)
class ImageRef:
    """One image (a board or a mask), identified by its content where we can read it.

    Exactly one of ``path``, ``url`` and ``base64`` is set, as ``source`` says. ``ref`` is what the spec wrote
    (a relative path, a URL, or ``"<base64>"``) for messages and reports. For URLs, ``sha256`` and the pixel facts
    are unknown (``None``): we do not download user URLs at validation time.
    """

    source: ImageSource
    ref: str
    path: Path | None = None
    url: str | None = None
    base64: str | None = field(default=None, repr=False)
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None  # "PNG" or "JPEG", from the bytes, never the extension
    bytes: int | None = None

    @property
    def identity(self) -> str:
        """What identifies the image's content: its sha256, or the URL when the bytes are not known."""
        return f"sha256:{self.sha256}" if self.sha256 else f"url:{self.url}"


@dataclass(frozen=True)
class TrajectoryPoint:
    x: int
    y: int


@dataclass(frozen=True)
class DynamicMask:
    mask: ImageRef
    trajectories: tuple[TrajectoryPoint, ...]


@dataclass(frozen=True)
class ResolvedShot:
    """A shot with everything decided: exactly what would be sent to the provider, plus where it came from.

    ``fingerprint`` is the sha256 of the render-relevant fields (see ``orchestrator.spec.fingerprint``), filled in
    by the resolver. A plain value: which attempt a render is and the external id it carries belong to the render
    (``orchestrator.plan.work.Render``).

    A shot with ``variants:`` (or a ``matrix:``) resolves to one value per variant, ``variant`` its name (``None``
    for a shot without variants); each is a request of its own, with its own fingerprint. ``takes`` is how many
    renders of that request the shot wants: they share the fingerprint, the take number tells them apart.
    """

    id: str
    index: int
    project: str
    model: str
    images: tuple[ImageRef, ...]
    prompt: str
    mode: str = "std"
    duration: int = 5
    aspect_ratio: str = "16:9"
    negative_prompt: str | None = None
    cfg_scale: float | None = None
    static_mask: ImageRef | None = None
    dynamic_masks: tuple[DynamicMask, ...] = ()
    callback_url: str | None = None
    location: Location | None = None
    fingerprint: str = ""
    variant: str | None = None
    takes: int = 1

    @property
    def key(self) -> str:
        """The request's name: its shot id, ``s03/wide`` for a variant (a render adds ``#<take>`` past take 1)."""
        return self.id if self.variant is None else f"{self.id}/{self.variant}"

    @property
    def label(self) -> str:
        """How people read the request: ``s03``, ``s03 wide``."""
        return self.id if self.variant is None else f"{self.id} {self.variant}"


@dataclass(frozen=True)
class Limits:
    """How hard a run may push the provider. ``concurrency`` counts tasks in flight at the provider."""

    concurrency: int = 4
    requests_per_second: float = 2.0


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class BudgetEntry:
    """A spec's ``budget:`` entry as given: the studio's shared budget (docs/budget.md). Each part may be missing:
    the command line and ``ORCHESTRATOR_BUDGET_URL`` fill in or override it (orchestrator.budget.config)."""

    url: str | None = None
    slots: int | None = None  # the account's tasks in flight, shared by every run on it
    units_cap: float | None = None  # the studio's spend cap per day, in units


@dataclass(frozen=True)
class ResolvedProject:
    """A whole spec, resolved: project facts plus the shots in spec order."""

    path: Path  # the spec file, absolute
    sha256: str  # of the spec file's bytes
    version: int
    project: str
    model: str
    output_dir: Path  # absolute
    shots: tuple[ResolvedShot, ...]
    limits: Limits = DEFAULT_LIMITS
    provider: str | None = None  # the spec's preferred provider, if it names one
    # ``pricing:`` as given: the older keys to numbers, model names to (partial) rate cards (orchestrator.plan.pricing)
    pricing: dict[str, float | dict[str, float]] = field(default_factory=dict)
    vars: dict[str, object] = field(default_factory=dict)
    budget: BudgetEntry | None = None  # the spec's ``budget:`` entry, if it has one

    @property
    def shot_ids(self) -> tuple[str, ...]:
        """Each shot's id once, in spec order (``shots`` holds one value per variant)."""
        return tuple(dict.fromkeys(shot.id for shot in self.shots))

    def requests_of(self, shot_id: str) -> tuple[ResolvedShot, ...]:
        """The shot's requests: itself, or one per variant in spec order."""
        return tuple(shot for shot in self.shots if shot.id == shot_id)

    def shot(self, shot_id: str) -> ResolvedShot:
        """The shot's first request (the shot itself when it has no variants)."""
        for shot in self.shots:
            if shot.id == shot_id:
                return shot
        raise KeyError(shot_id)
