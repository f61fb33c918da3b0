"""The store's values: what a folder, a shot and a render are, as read back from the database or a snapshot.

Every record is frozen. Reading the store gives a ``FolderState``; the same value comes back from the database
(``orchestrator.store.database``) and from its snapshot (``orchestrator.store.snapshot``), so code that only reads
(``diff``, ``report``, ``status``) takes either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.store.manifest import PENDING

STORE_VERSION = 1
"""The store's schema version: the database's ``user_version`` and the ``store_version`` of its snapshot."""

DEFAULT_TAKE = 1

# A request record holds what was sent, with images by hash: a key, a token or an image's bytes never belong in it.
_SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "key", "secret", "token", "access_key", "secret_key"})
_LONGEST_REQUEST_TEXT = 10_000  # prompts are at most 2,500 characters; anything longer is an image's bytes


@dataclass(frozen=True)
class OutputFile:
    """One file a render produced. ``path`` is relative to the output folder."""

    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class FolderFacts:
    """What is true of the whole output folder: whose it is, which spec and provider its runs used, when."""

    project: str
    salt: str = ""
    spec_path: str = ""
    spec_sha256: str = ""
    spec_version: int = 1
    provider: str = ""
    tool_version: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    store_version: int = STORE_VERSION


@dataclass(frozen=True)
class ShotRow:
    """A shot of the folder: its place in the spec and which of its renders is current (``None``: none yet)."""

    shot_id: str
    position: int
    current_render_id: int | None = None


@dataclass(frozen=True)
class RenderRecord:
    """One render of a shot, kept forever: what was asked, which task made it, where it stands, what came out.

    ``request_json`` is the request as sent, in canonical JSON (``canonical_request``); ``request`` decodes it.
    ``take`` and ``variant`` tell renders of one shot apart (1 and ``None`` until takes and variants exist);
    ``attempt`` counts tries at the same request (0 until the first create is prepared).
    """

    render_id: int
    shot_id: str
    fingerprint: str
    request_json: str = "{}"
    take: int = DEFAULT_TAKE
    variant: str | None = None
    attempt: int = 0
    status: str = PENDING
    external_task_id: str | None = None
    task_id: str | None = None
    provider_status: str | None = None
    outputs: tuple[OutputFile, ...] = ()
    cost: float | None = None  # estimated units (the rate card's)
    charged: float | None = None  # units the provider says it charged; 0 for a failed task
    created_at: str | None = None
    updated_at: str | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    error: str | None = None

    @property
    def request(self) -> dict[str, Any]:
        """The request as sent (a fresh dict: changing it changes nothing stored)."""
        value: dict[str, Any] = json.loads(self.request_json)
        return value

    @property
    def output_stem(self) -> str:
        """The name its video gets in ``<out>/<shot id>/`` (see ``output_stem``)."""
        return output_stem(self.fingerprint, take=self.take, variant=self.variant, attempt=self.attempt)


# Fields ``update_render`` may change. The rest make the render what it is (shot, take, variant, fingerprint,
# request), or are kept by the store itself (``render_id``, ``created_at``, ``updated_at``).
UPDATABLE_FIELDS: frozenset[str] = frozenset(
    {
        "attempt",
        "status",
        "external_task_id",
        "task_id",
        "provider_status",
        "outputs",
        "cost",
        "charged",
        "submitted_at",
        "finished_at",
        "error",
    }
)


@dataclass(frozen=True)
class FolderState:
    """Everything a folder's store holds, as one immutable value: shots in spec order, renders by id."""

    facts: FolderFacts
    shots: tuple[ShotRow, ...] = ()
    renders: tuple[RenderRecord, ...] = ()
    _shots: dict[str, ShotRow] = field(init=False, repr=False, compare=False)
    _by_shot: dict[str, tuple[RenderRecord, ...]] = field(init=False, repr=False, compare=False)
    _by_id: dict[int, RenderRecord] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Indexes, built once: a report over 10,000 shots asks for each shot's renders.
        by_shot: dict[str, list[RenderRecord]] = {}
        for render in self.renders:
            by_shot.setdefault(render.shot_id, []).append(render)
        object.__setattr__(self, "_shots", {row.shot_id: row for row in self.shots})
        object.__setattr__(self, "_by_shot", {key: tuple(value) for key, value in by_shot.items()})
        object.__setattr__(self, "_by_id", {render.render_id: render for render in self.renders})

    @property
    def shot_ids(self) -> tuple[str, ...]:
        return tuple(row.shot_id for row in self.shots)

    def shot(self, shot_id: str) -> ShotRow | None:
        return self._shots.get(shot_id)

    def render(self, render_id: int) -> RenderRecord | None:
        return self._by_id.get(render_id)

    def renders_of(self, shot_id: str) -> tuple[RenderRecord, ...]:
        """Every render of the shot, oldest first."""
        return self._by_shot.get(shot_id, ())

    def current(self, shot_id: str) -> RenderRecord | None:
        row = self._shots.get(shot_id)
        if row is None or row.current_render_id is None:
            return None
        return self._by_id.get(row.current_render_id)


def output_stem(fingerprint: str, *, take: int = DEFAULT_TAKE, variant: str | None = None, attempt: int = 1) -> str:
    """``<fp12>[-t<take>][-<variant>][-r<attempt>]``: take 1, no variant and attempt 1 give today's names."""
    parts = [fingerprint[:12]]
    if take != DEFAULT_TAKE:
        parts.append(f"t{take}")
    if variant is not None:
        parts.append(variant)
    if attempt > 1:
        parts.append(f"r{attempt}")
    return "-".join(parts)


def canonical_request(request: Mapping[str, Any]) -> str:
    """The request as the store keeps it: compact JSON, keys sorted. Refuses what must never be stored.

    Raises ``ValueError`` for a key-like field or a string long enough to be an image's bytes: the caller built the
    record wrong (images go in by hash), and storing it would put a secret or megabytes on disk for good.
    """
    _refuse_secrets(request, where="request")
    return canonical_json(request)


def canonical_json(value: Mapping[str, Any]) -> str:
    """Compact JSON with sorted keys: one text for one value, whichever order its keys were built in."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _refuse_secrets(value: Any, *, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).lower() in _SECRET_KEYS:
                raise ValueError(f"{where}.{key}: a request record never holds a key or token")
            _refuse_secrets(item, where=f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse_secrets(item, where=f"{where}[{index}]")
    elif isinstance(value, str) and (len(value) > _LONGEST_REQUEST_TEXT or value.startswith("data:")):
        raise ValueError(f"{where}: a request record keeps images by hash, never their bytes")
