"""A shot's renders as rows of takes: what ``orchestrator takes`` lists and the review app shows side by side.

The store keeps every render, retries included. A row is one take (one fingerprint, variant and take number): its
newest finished attempt if it has one, else its newest attempt. Rows of the request the spec asks for now come
first (by variant, then take), so that row ``N`` is take ``N`` in the usual case; rows of older requests (the spec
changed since) follow, newest first, marked stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.review.decisions import APPROVED, PENDING_REVIEW, Decision, TakeRef
from orchestrator.store import FolderState, RenderRecord
from orchestrator.store.manifest import SUCCEEDED

UNRENDERED = "unrendered"  # the display status of a shot no take of which has finished
STALE_SUFFIX = " (stale)"


@dataclass(frozen=True)
class TakeRow:
    """One take of a shot. ``number`` is its place in the list (what ``select SHOT N`` and the keys 1-9 pick)."""

    number: int
    ref: TakeRef
    render: RenderRecord
    attempts: int
    selected: bool
    stale: bool  # the spec asks for another request now
    cost: float | None  # units: charged where the provider said, else estimated; every attempt counts

    @property
    def status(self) -> str:
        return self.render.status

    @property
    def video(self) -> str | None:
        """The video's path inside the output folder, once the take has finished."""
        if self.render.status != SUCCEEDED or not self.render.outputs:
            return None
        return self.render.outputs[0].path

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "take": self.ref.take,
            "variant": self.ref.variant,
            "fingerprint": self.ref.fingerprint,
            "label": self.ref.label,
            "status": self.status,
            "cost": self.cost,
            "selected": self.selected,
            "stale": self.stale,
            "attempts": self.attempts,
            "video": self.video,
            "render_id": self.render.render_id,
            "created_at": self.render.created_at,
            "finished_at": self.render.finished_at,
        }


def take_rows(
    state: FolderState, shot_id: str, *, wanted: Iterable[str], select: TakeRef | None = None
) -> tuple[TakeRow, ...]:
    """The shot's takes in the order described above; ``wanted`` are the fingerprints the spec asks for now."""
    wanted_set = frozenset(wanted)
    groups: dict[TakeRef, list[RenderRecord]] = {}
    for render in state.renders_of(shot_id):
        ref = TakeRef(render.fingerprint, render.take, render.variant)
        groups.setdefault(ref, []).append(render)
    current = sorted((ref for ref in groups if ref.fingerprint in wanted_set), key=_take_order)
    older = sorted(
        (ref for ref in groups if ref.fingerprint not in wanted_set),
        key=lambda ref: -max(render.render_id for render in groups[ref]),
    )
    rows = []
    for number, ref in enumerate([*current, *older], start=1):
        renders = groups[ref]
        shown = _representative(renders)
        stale = ref.fingerprint not in wanted_set
        rows.append(TakeRow(number, ref, shown, len(renders), ref == select, stale, _units(renders)))
    return tuple(rows)


def _units(renders: list[RenderRecord]) -> float | None:
    spent = [render.charged if render.charged is not None else render.cost for render in renders]
    known = [units for units in spent if units is not None]
    return sum(known) if known else None


def _take_order(ref: TakeRef) -> tuple[str, int]:
    return (ref.variant or "", ref.take)


def _representative(renders: list[RenderRecord]) -> RenderRecord:
    finished = [render for render in renders if render.status == SUCCEEDED]
    return (finished or renders)[-1]


def review_status(decision: Decision, rows: Iterable[TakeRow], *, wanted: Iterable[str]) -> str:
    """What the shot's badge says: the decided status, ``approved (stale)`` when the spec asks for another request
    than the approved one, ``pending-review`` once a take exists that nobody decided on, else ``unrendered``."""
    if decision.status == APPROVED and decision.select is not None and decision.select.fingerprint not in set(wanted):
        return APPROVED + STALE_SUFFIX
    if decision.status != PENDING_REVIEW:
        return decision.status
    return PENDING_REVIEW if any(row.video for row in rows) else UNRENDERED
