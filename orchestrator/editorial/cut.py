"""The cut: which media stands for each shot, in spec order, as one immutable value.

Everything editorial does (timelines, the reel, conform) reads a ``Cut`` and nothing else, and one function builds
it: ``build_cut``, from the resolved project, the folder's store state and the review decisions beside the spec
(``orchestrator.review.decisions``). A shot's select is the render its decision names (its request's fingerprint,
variant and take); where nobody has picked one yet, or the one picked has no video in the folder, the shot's newest
finished render stands in for it (``stand_in=True``). The review status and note are the decision's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.review.decisions import APPROVED as APPROVED  # re-exported: the statuses markers colour
from orchestrator.review.decisions import HOLD as HOLD
from orchestrator.review.decisions import PENDING_REVIEW as PENDING_REVIEW
from orchestrator.review.decisions import RETAKE as RETAKE
from orchestrator.review.decisions import REVIEW_STATUSES as REVIEW_STATUSES
from orchestrator.review.decisions import Decision, Decisions, TakeRef
from orchestrator.spec.shot import ResolvedProject, ResolvedShot
from orchestrator.store import FolderState, RenderRecord
from orchestrator.store.manifest import SUCCEEDED


@dataclass(frozen=True)
class CutShot:
    """One shot of the cut: its select's media (``None``: nothing finished yet, the board is held instead).

    ``board`` is the shot's first board when it is a local file (``None`` for a URL or inline board: a plain card
    stands in). ``spec_duration`` is the seconds the spec asks for: a held board lasts that long. ``stand_in`` says
    the media is the newest finished render standing in for a select nobody has made yet.
    """

    shot_id: str
    media: Path | None
    board: Path | None
    spec_duration: int
    aspect_ratio: str
    take: int | None
    variant: str | None
    fingerprint: str
    task_id: str | None
    prompt: str
    cost: float | None
    review_status: str = PENDING_REVIEW
    note: str = ""
    stand_in: bool = True

    @property
    def held(self) -> bool:
        """No finished render: the board holds the shot's place for its duration."""
        return self.media is None

    @property
    def select_key(self) -> tuple[object, ...]:
        """What makes two selects the same one: the render's request, take and variant, and its file."""
        return (self.media, self.fingerprint if self.media else None, self.take, self.variant)


@dataclass(frozen=True)
class Cut:
    """The shots in spec order, and where they live: the spec, its output folder (stills go in ``<out>/editorial``)."""

    project: str
    spec_path: Path
    output_dir: Path
    shots: tuple[CutShot, ...]

    @property
    def editorial_dir(self) -> Path:
        return self.output_dir / "editorial"

    def shot(self, shot_id: str) -> CutShot | None:
        return next((shot for shot in self.shots if shot.shot_id == shot_id), None)


def build_cut(
    project: ResolvedProject,
    state: FolderState,
    *,
    output_dir: Path | None = None,
    decisions: Decisions | None = None,
) -> Cut:
    """The cut of ``project`` given the store ``state`` of its output folder (``output_dir``, default the spec's)
    and the review ``decisions`` (none: every shot's newest finished render stands in, ``pending-review``)."""
    out = (output_dir or project.output_dir).absolute()
    return Cut(
        project=project.project,
        spec_path=project.path,
        output_dir=out,
        # Once per shot: ``project.shots`` holds a shot with variants once per variant.
        shots=tuple(
            _cut_shot(project.shot(shot_id), state, out, decisions.get(shot_id) if decisions else None)
            for shot_id in project.shot_ids
        ),
    )


def _cut_shot(shot: ResolvedShot, state: FolderState, out: Path, decision: Decision | None) -> CutShot:
    renders = state.renders_of(shot.id)
    picked = selected(renders, decision.select, out) if decision is not None and decision.select else None
    select = picked or newest_finished(renders, out)
    board = shot.images[0].path if shot.images and shot.images[0].path is not None else None
    return CutShot(
        shot_id=shot.id,
        media=(out / select.outputs[0].path).absolute() if select else None,
        board=board.absolute() if board else None,
        spec_duration=shot.duration,
        aspect_ratio=shot.aspect_ratio,
        take=select.take if select else None,
        variant=select.variant if select else None,
        fingerprint=select.fingerprint if select else shot.fingerprint,
        task_id=select.task_id if select else None,
        prompt=_prompt_of(select) or shot.prompt,
        cost=select.cost if select else None,
        review_status=decision.status if decision is not None else PENDING_REVIEW,
        note=decision.note if decision is not None else "",
        stand_in=picked is None,
    )


def selected(renders: tuple[RenderRecord, ...], ref: TakeRef, out: Path) -> RenderRecord | None:
    """The render a decision names (retries of one take are one take: the newest of them), if its video is here."""
    return newest_finished(
        tuple(r for r in renders if (r.fingerprint, r.take, r.variant) == (ref.fingerprint, ref.take, ref.variant)),
        out,
    )


def newest_finished(renders: tuple[RenderRecord, ...], out: Path) -> RenderRecord | None:
    """The newest render that succeeded and whose video is still in the folder (a deleted file is no select)."""
    finished = [r for r in renders if r.status == SUCCEEDED and r.outputs and (out / r.outputs[0].path).is_file()]
    if not finished:
        return None
    return max(finished, key=lambda render: (render.finished_at or "", render.render_id))


def _prompt_of(render: RenderRecord | None) -> str | None:
    # The prompt the render was made with, which may differ from today's spec.
    if render is None:
        return None
    prompt = render.request.get("prompt")
    return prompt if isinstance(prompt, str) else None
