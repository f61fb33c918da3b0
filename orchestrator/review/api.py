"""The review's functions: list a spec's takes, select, approve, send back for a retake, hold.

The CLI (``orchestrator takes|select|approve|retake|hold``) and the review app call these, so a decision made in
either is the same decision, in the same file::

    review = Review.open(Path("specs/pilot.yaml"))
    badges = {shot.shot_id: (shot.status, [row.ref.label for row in shot.takes]) for shot in review.shots()}
    review.select("s03", 2)
    review.approve("s03", by="alice")
    review.retake("s04", "too fast at the end")

Each call re-reads the store (read-only: a running ``orchestrator run`` may be writing it) and the decisions file,
changes one shot's decision and writes the file atomically. The one-shot functions at the bottom (``takes``,
``select``, ...) open a ``Review`` for a single call.
"""

from __future__ import annotations

import getpass
import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import DecisionError
from orchestrator.review.decisions import (
    APPROVED,
    HOLD,
    PENDING_REVIEW,
    RETAKE,
    Decision,
    Decisions,
    TakeRef,
    clean_by,
    clean_note,
    decisions_path,
    load_decisions,
    save_decisions,
)
from orchestrator.review.takes import TakeRow, review_status, take_rows
from orchestrator.spec.shot import ResolvedProject, ResolvedShot
from orchestrator.store import DATABASE_NAME, FolderFacts, FolderState, load_state
from orchestrator.store.manifest import MANIFEST_NAME
from orchestrator.store.timestamps import now_iso

SpecLoader = Callable[[Path], ResolvedProject]
# One decision written at a time per process (the app serves requests on threads); each write re-reads the file
# first, so a decision made meanwhile from the CLI is kept too.
_WRITING = threading.Lock()


@dataclass(frozen=True)
class ShotReview:
    """One shot as a reviewer sees it: its decision, its badge, its takes."""

    shot: ResolvedShot
    status: str  # the badge: pending-review, approved, approved (stale), retake, hold, unrendered
    decision: Decision
    takes: tuple[TakeRow, ...]

    @property
    def shot_id(self) -> str:
        return self.shot.id

    @property
    def selected(self) -> TakeRow | None:
        return next((row for row in self.takes if row.selected), None)

    def to_json(self) -> dict[str, Any]:
        decision = self.decision
        return {
            "id": self.shot_id,
            "status": self.status,
            "decision": {
                "status": decision.status,
                "select": _ref_json(decision.select),
                "retake_take": decision.retake_take,
                "note": decision.note,
                "by": decision.by,
                "at": decision.at,
            },
            "takes": [row.to_json() for row in self.takes],
        }


def _ref_json(ref: TakeRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"take": ref.take, "variant": ref.variant, "fingerprint": ref.fingerprint, "label": ref.label}


@dataclass(frozen=True)
class RetakeWanted:
    """A shot sent back for a retake whose new take is not rendered yet: what ``plan`` and ``run`` must render."""

    shot_id: str
    take: int
    variant: str | None
    note: str


def wanted_fingerprints(project: ResolvedProject) -> dict[str, frozenset[str]]:
    """The fingerprints the spec asks for now, per shot (one per variant)."""
    wanted: dict[str, set[str]] = {}
    for shot in project.shots:
        wanted.setdefault(shot.id, set()).add(shot.fingerprint)
    return {shot_id: frozenset(fingerprints) for shot_id, fingerprints in wanted.items()}


def default_user() -> str:
    """Who decides, when ``--by`` is not given: ``$USER``, else the login name."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Review:
    """A spec's review: its resolved shots, its output folder's store (read-only) and its decisions file."""

    def __init__(self, spec: Path, project: ResolvedProject, *, out: Path | None = None) -> None:
        self.spec = spec
        self.project = project
        self.out_dir = out if out is not None else project.output_dir
        self.decisions_file = decisions_path(project.path)
        self._out = out
        self._wanted = wanted_fingerprints(project)
        self._stamp = _file_stamp(project.path)

    @classmethod
    def open(cls, spec: Path, *, out: Path | None = None, load_spec: SpecLoader | None = None) -> Review:
        """Load and resolve the spec (``SpecError`` with every problem) and find its output folder."""
        loader = load_spec or _spec_loader()
        return cls(spec, loader(spec), out=out)

    def reloaded(self, load_spec: SpecLoader | None = None) -> Review:
        """This review, or a new one if the spec file changed since it was loaded (an approval may be stale now).

        For the app, which stays open while people edit the spec. Raises ``SpecError`` if the spec is now broken.
        """
        if _file_stamp(self.project.path) == self._stamp:
            return self
        return Review(self.spec, (load_spec or _spec_loader())(self.spec), out=self._out)

    # --- reading ----------------------------------------------------------------------------------------------

    def state(self) -> FolderState:
        """The store as it is now (an empty one before the first run)."""
        if (self.out_dir / DATABASE_NAME).exists() or (self.out_dir / MANIFEST_NAME).exists():
            return load_state(self.out_dir)
        return FolderState(facts=FolderFacts(project=self.project.project))

    def decisions(self) -> Decisions:
        return load_decisions(self.decisions_file)

    def shots(self, shot_id: str | None = None) -> tuple[ShotReview, ...]:
        """Every shot in spec order, or only ``shot_id`` (``DecisionError`` when the spec has no such shot)."""
        state, decisions = self.state(), self.decisions()
        chosen = [self._shot(shot_id)] if shot_id is not None else [self.project.shot(i) for i in self.project.shot_ids]
        return tuple(self._review_of(shot, state, decisions) for shot in chosen)

    def shot(self, shot_id: str) -> ShotReview:
        return self.shots(shot_id)[0]

    def wanted(self, shot_id: str) -> frozenset[str]:
        return self._wanted.get(shot_id, frozenset())

    def _review_of(self, shot: ResolvedShot, state: FolderState, decisions: Decisions) -> ShotReview:
        decision = decisions.get(shot.id)
        rows = take_rows(state, shot.id, wanted=self.wanted(shot.id), select=decision.select)
        return ShotReview(shot, review_status(decision, rows, wanted=self.wanted(shot.id)), decision, rows)

    def _shot(self, shot_id: str) -> ResolvedShot:
        try:
            return self.project.shot(shot_id)
        except KeyError:
            raise DecisionError(f"{self.spec}: no shot {shot_id!r} in the spec") from None

    # --- what plan needs --------------------------------------------------------------------------------------

    def pending_retakes(self, state: FolderState | None = None) -> tuple[RetakeWanted, ...]:
        """Shots sent back for a retake whose asked-for take has no render yet, in spec order (``state``: the store
        as the caller read it, e.g. a run under the folder's lock; read now without it)."""
        state, decisions = state if state is not None else self.state(), self.decisions()
        wanted: list[RetakeWanted] = []
        for shot in map(self.project.shot, self.project.shot_ids):
            decision = decisions.get(shot.id)
            if decision.status != RETAKE or decision.retake_take is None:
                continue
            variant = self._retake_variant(shot.id, decision.select)
            rendered = any(
                render.take >= decision.retake_take
                and render.variant == variant
                and render.fingerprint in self.wanted(shot.id)
                for render in state.renders_of(shot.id)
            )
            if not rendered:
                wanted.append(RetakeWanted(shot.id, decision.retake_take, variant, decision.note))
        return tuple(wanted)

    def stale_approvals(self) -> tuple[str, ...]:
        """Shots approved for a request the spec no longer asks for: they are planned again."""
        decisions = self.decisions()
        return tuple(
            shot_id
            for shot_id in self.project.shot_ids
            if (decision := decisions.get(shot_id)).status == APPROVED
            and decision.select is not None
            and decision.select.fingerprint not in self.wanted(shot_id)
        )

    # --- deciding ---------------------------------------------------------------------------------------------

    def select(
        self, shot_id: str, number: int | TakeRef, *, by: str | None = None, note: str | None = None
    ) -> Decision:
        """Make a finished take the shot's select (a row number of ``takes``, or a ``TakeRef``).

        A new select is not yet approved: the shot is back to ``pending-review``.
        """

        def change(review: ShotReview, base: Decision) -> Decision:
            row = self._finished_row(review, number)
            if base.select == row.ref and base.status != RETAKE:
                return replace(base, note=base.note if note is None else clean_note(note))
            return replace(base, status=PENDING_REVIEW, select=row.ref, retake_take=None, note=clean_note(note))

        return self._decide(shot_id, change, by=by)

    def approve(
        self, shot_id: str, number: int | TakeRef | None = None, *, by: str | None = None, note: str | None = None
    ) -> Decision:
        """Approve the shot's select (or take ``number``, which becomes the select), bound to its fingerprint."""

        def change(review: ShotReview, base: Decision) -> Decision:
            row = self._finished_row(review, number if number is not None else self._default_pick(review))
            if row.stale:
                raise DecisionError(
                    f"{shot_id}: {row.ref.label} renders an older request of the shot (the spec changed since); "
                    "approve a take of the current request"
                )
            return replace(base, status=APPROVED, select=row.ref, retake_take=None, note=clean_note(note))

        return self._decide(shot_id, change, by=by)

    def retake(self, shot_id: str, note: str, *, by: str | None = None) -> Decision:
        """Send the shot back: one more take of its current request is wanted (the old takes stay).

        The request is the select's variant; a shot with variants and no select retakes its only variant, and asks
        for a select when it has several (which one to render again is the reviewer's call, not ours).
        """
        text = clean_note(note)
        if not text:
            raise DecisionError(f"{shot_id}: a retake needs a note saying what to change")

        def change(review: ShotReview, base: Decision) -> Decision:
            if base.status == RETAKE and base.retake_take is not None:
                take = base.retake_take  # asked again before it was rendered: still the same one more take
            else:
                if base.select is None and len(self._variants(review.shot_id)) > 1:
                    raise self._no_variant_chosen(review.shot_id)
                take = self._next_take(review, self._retake_variant(review.shot_id, base.select))
            return replace(base, status=RETAKE, retake_take=take, note=text)

        return self._decide(shot_id, change, by=by)

    def _retake_variant(self, shot_id: str, select: TakeRef | None) -> str | None:
        """Which variant a retake renders again: the select's, else the shot's only one (``None``: no variants, or
        several and no select, which ``retake`` refuses)."""
        if select is not None:
            return select.variant
        variants = self._variants(shot_id)
        return variants[0] if len(variants) == 1 else None

    def _variants(self, shot_id: str) -> list[str]:
        return [shot.variant for shot in self.project.requests_of(shot_id) if shot.variant is not None]

    def _no_variant_chosen(self, shot_id: str) -> DecisionError:
        variants = self._variants(shot_id)
        return DecisionError(
            f"{shot_id}: it has {len(variants)} variants ({', '.join(variants)}); select the take to render again "
            f"first (`orchestrator select {self.spec} {shot_id} N`, N as `orchestrator takes` numbers them), then "
            "ask for the retake"
        )

    def hold(self, shot_id: str, note: str | None = None, *, by: str | None = None) -> Decision:
        """Park the shot: nobody decides on it for now."""
        return self._decide(
            shot_id, lambda _, base: replace(base, status=HOLD, retake_take=None, note=clean_note(note)), by=by
        )

    def _decide(self, shot_id: str, change: Callable[[ShotReview, Decision], Decision], *, by: str | None) -> Decision:
        who = clean_by(by if by is not None else default_user())
        shot = self._shot(shot_id)
        with _WRITING:
            decisions = self.decisions()
            review = self._review_of(shot, self.state(), decisions)
            decision = replace(change(review, decisions.get(shot_id)), by=who, at=now_iso())
            save_decisions(
                decisions.with_decision(decision),
                order=list(self.project.shot_ids),
                spec_name=self.project.path.name,
            )
        return decision

    def _finished_row(self, review: ShotReview, number: int | TakeRef) -> TakeRow:
        if isinstance(number, TakeRef):
            row = next((row for row in review.takes if row.ref == number), None)
            if row is None:
                raise DecisionError(f"{review.shot_id}: no render is {number.describe()}")
        else:
            if not 1 <= number <= len(review.takes):
                raise DecisionError(_no_such_take(review, number))
            row = review.takes[number - 1]
        if row.video is None:
            raise DecisionError(
                f"{review.shot_id}: {row.ref.label} is {row.status}, not finished: pick a finished take"
            )
        return row

    def _default_pick(self, review: ShotReview) -> int | TakeRef:
        if review.decision.select is not None:
            return review.decision.select
        finished = [row for row in review.takes if row.video is not None and not row.stale]
        if len(finished) == 1:
            return finished[0].number
        raise DecisionError(
            f"{review.shot_id}: {len(finished)} finished takes and none selected; name one "
            f"(`orchestrator takes {self.spec} {review.shot_id}` lists them)"
        )

    def _next_take(self, review: ShotReview, variant: str | None) -> int:
        takes = [row.ref.take for row in review.takes if not row.stale and row.ref.variant == variant]
        if not takes:
            raise DecisionError(f"{review.shot_id}: nothing to retake yet, the shot has no take of its current request")
        return max(takes) + 1


def _no_such_take(review: ShotReview, number: int) -> str:
    if not review.takes:
        return f"{review.shot_id}: no take yet"
    return f"{review.shot_id}: no take {number}; pick 1 to {len(review.takes)} (as `orchestrator takes` numbers them)"


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def _spec_loader() -> SpecLoader:
    # Imported late, as diff does: the spec layer pulls in Pillow and the schema.
    loader: SpecLoader = importlib.import_module("orchestrator.spec.load").load_project
    return loader


# --- one call each ----------------------------------------------------------------------------------------------


def takes(spec: Path, shot_id: str | None = None, *, out: Path | None = None) -> tuple[ShotReview, ...]:
    """Every shot's takes (or one shot's), with its decision and badge."""
    return Review.open(spec, out=out).shots(shot_id)


def select(
    spec: Path, shot_id: str, number: int | TakeRef, *, by: str | None = None, note: str | None = None
) -> Decision:
    return Review.open(spec).select(shot_id, number, by=by, note=note)


def approve(
    spec: Path, shot_id: str, number: int | TakeRef | None = None, *, by: str | None = None, note: str | None = None
) -> Decision:
    return Review.open(spec).approve(shot_id, number, by=by, note=note)


def retake(spec: Path, shot_id: str, note: str, *, by: str | None = None) -> Decision:
    return Review.open(spec).retake(shot_id, note, by=by)


def hold(spec: Path, shot_id: str, note: str | None = None, *, by: str | None = None) -> Decision:
    return Review.open(spec).hold(shot_id, note, by=by)
